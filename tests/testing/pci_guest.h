// The software guest's PCI enumerator: walks the PCI hierarchy the way an OS or firmware does,
// only through guest-visible accesses (configuration mechanism #1 at 0xCF8/0xCFC in the I/O
// address space, or the ECAM window in the memory address space), never through device objects.
//
// Enumerate() scans bus 0, numbers the buses behind bridges, sizes every BAR (write all-ones,
// read back, restore), assigns addresses from the windows below, programs bridge windows,
// writes the interrupt line, and enables decode and bus mastering. Tests then drive devices with
// BarRead/BarWrite and program MSI / MSI-X as a driver would.
//
// Example:
//   PciGuest guest(m->io_space(), m->memory_space());
//   guest.Enumerate();
//   const PciGuest::Function* edu = guest.Find(0x1234, 0x11e8);
//   uint64_t id = guest.BarRead(*edu, 0, 0x00, 4);
//
// Thread-safety: none; one test thread.
#ifndef VDEV_TESTS_TESTING_PCI_GUEST_H_
#define VDEV_TESTS_TESTING_PCI_GUEST_H_

#include <array>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "core/memory/memory.h"

namespace vdev::testing {

class PciGuest {
 public:
  enum class Mechanism { kPortIo, kEcam };

  struct Bar {
    uint64_t addr = 0;  // assigned address (0: not implemented)
    uint64_t size = 0;
    bool io = false;
    bool is64 = false;
    bool prefetch = false;
  };
  struct Function {
    uint8_t bus = 0, devfn = 0;
    uint16_t vendor = 0, device = 0;
    uint32_t class_code = 0;  // class << 16 | subclass << 8 | prog-if
    uint8_t header_type = 0;
    uint8_t irq_pin = 0, irq_line = 0;
    std::array<Bar, 6> bars{};
    std::vector<std::pair<uint8_t, uint8_t>> caps;  // (id, offset) in list order
    int slot() const { return devfn >> 3; }
    int fn() const { return devfn & 7; }
  };

  // `route_intx` maps a root-bus slot and pin (0 = INTA#) to the IRQ written into the interrupt
  // line register (the platform's routing, as firmware knows it). Default: none (line 0xff).
  PciGuest(AddressSpace& io, AddressSpace& mem, Mechanism mechanism = Mechanism::kPortIo,
           uint64_t ecam_base = 0xb0000000,
           std::function<int(int slot, int pin)> route_intx = nullptr);

  uint32_t ConfigRead(uint8_t bus, uint8_t devfn, uint16_t off, int size);
  void ConfigWrite(uint8_t bus, uint8_t devfn, uint16_t off, uint32_t value, int size);
  uint32_t ConfigRead(const Function& f, uint16_t off, int size) {
    return ConfigRead(f.bus, f.devfn, off, size);
  }
  void ConfigWrite(const Function& f, uint16_t off, uint32_t value, int size) {
    ConfigWrite(f.bus, f.devfn, off, value, size);
  }

  // Scans, numbers, sizes, assigns and enables everything. Returns the functions found (also
  // kept in functions()).
  const std::vector<Function>& Enumerate();
  const std::vector<Function>& functions() const { return functions_; }
  const Function* Find(uint16_t vendor, uint16_t device, int nth = 0) const;

  // Accesses to a BAR at its assigned address.
  uint64_t BarRead(const Function& f, int bar, uint64_t off, unsigned size);
  MemTxResult BarWrite(const Function& f, int bar, uint64_t off, uint64_t value, unsigned size);

  // The capability list as a driver walks it (at most 48 entries: a looping list ends there).
  std::vector<std::pair<uint8_t, uint8_t>> WalkCapabilities(uint8_t bus, uint8_t devfn);
  uint8_t FindCapability(const Function& f, uint8_t id);

  // MSI: programs address/data and enables it (one vector).
  void EnableMsi(const Function& f, uint64_t address, uint32_t data);
  // MSI-X: programs `vectors` entries as (address, data), unmasks them, and enables MSI-X with
  // the function mask clear. Returns false when the function has no MSI-X.
  bool EnableMsix(const Function& f, const std::vector<std::pair<uint64_t, uint32_t>>& vectors);
  // Address of MSI-X table entry `v` / of the PBA, in the memory space.
  uint64_t MsixEntryAddress(const Function& f, unsigned v);
  uint64_t MsixPbaAddress(const Function& f);

  // Allocation cursors (the windows this "firmware" hands out).
  uint64_t mem32_next = 0xc0000000;
  uint64_t mem64_next = 0x8000000000;
  uint64_t io_next = 0xc000;

 private:
  void ScanBus(uint8_t bus, bool behind_bridge, const std::function<int(int, int)>& route);
  void SetupFunction(Function& f, bool behind_bridge, const std::function<int(int, int)>& route);
  uint8_t next_bus_ = 1;

  AddressSpace& io_;
  AddressSpace& mem_;
  Mechanism mechanism_;
  uint64_t ecam_base_;
  std::function<int(int, int)> route_intx_;
  std::vector<Function> functions_;
};

}  // namespace vdev::testing

#endif  // VDEV_TESTS_TESTING_PCI_GUEST_H_
