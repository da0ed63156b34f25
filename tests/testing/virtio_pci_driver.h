// The software guest's virtio-pci driver: probes a function found by PciGuest, maps its virtio
// structures (modern: from the vendor capabilities; legacy: the I/O BAR), and follows the
// spec's initialisation sequence (VIRTIO 1.2 §3.1.1) through guest-visible accesses only.
//
// Example:
//   VirtioPciDriver drv(guest, *fn, m->memory_space(), m->io_space(), m->guest_memory());
//   ASSERT_TRUE(drv.Probe());
//   ASSERT_TRUE(drv.Negotiate(1ull << VIRTIO_F_VERSION_1));
//   GuestVring* vq = drv.SetupQueue(0, GuestAddr(0x100000), 64, /*msix_vector=*/1);
//   drv.DriverOk();
//   vq->Publish(vq->AddChain({{GuestAddr(0x200000), 64, true}}));
//   drv.Kick(0);
//
// Thread-safety: none; the test thread is the guest.
#ifndef VDEV_TESTS_TESTING_VIRTIO_PCI_DRIVER_H_
#define VDEV_TESTS_TESTING_VIRTIO_PCI_DRIVER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>

#include "core/memory/guest_memory.h"
#include "core/memory/memory.h"
#include "core/qdev/machine.h"
#include "tests/testing/pci_guest.h"
#include "tests/testing/virtio_ring.h"

namespace vdev::testing {

class VirtioPciDriver {
 public:
  enum class Mode { kModern, kLegacy };

  VirtioPciDriver(PciGuest& pci, const PciGuest::Function& fn, AddressSpace& mem, AddressSpace& io,
                  const GuestMemory& ram, Mode mode = Mode::kModern);

  // Modern: finds the common, notify, ISR and device capabilities (false if one is missing).
  // Legacy: checks for the I/O BAR.
  bool Probe();
  // Reset, ACKNOWLEDGE, DRIVER, accept offered & wanted, FEATURES_OK (modern) and check it
  // stuck. Returns the accepted features, or nullopt when the device refused them.
  std::optional<uint64_t> Negotiate(uint64_t wanted);
  // Configures queue `index` with a ring at `base` (modern: size, vector, addresses, enable;
  // legacy: the PFN, size fixed by the device). Returns the guest-side ring.
  GuestVring* SetupQueue(uint16_t index, GuestAddr base, uint16_t size,
                         uint16_t msix_vector = 0xffff);
  void SetConfigVector(uint16_t vector);
  void DriverOk();
  void Kick(uint16_t index);

  uint8_t status();
  void SetStatus(uint8_t s);
  uint8_t ReadIsr();
  uint16_t NumQueues();
  uint64_t DeviceConfigRead(uint32_t off, unsigned size);

  // Raw register access for hostile tests (modern common configuration / legacy BAR).
  uint64_t CommonRead(uint32_t off, unsigned size);
  MemTxResult CommonWrite(uint32_t off, uint64_t value, unsigned size);
  MemTxResult NotifyWrite(uint16_t queue, uint16_t value);
  // A write at `offset` into the notification structure, whatever queue that is.
  MemTxResult NotifyAt(uint32_t offset, uint16_t value);
  uint64_t LegacyRead(uint32_t off, unsigned size);
  void LegacyWrite(uint32_t off, uint64_t value, unsigned size);

  // Capability offsets in config space by cfg_type (1..5); 0 when absent.
  uint8_t cap(uint8_t cfg_type) const;

 private:
  uint64_t Addr(uint8_t cfg_type) const;  // guest address of a modern structure

  PciGuest& pci_;
  PciGuest::Function fn_;
  AddressSpace& mem_;
  AddressSpace& io_;
  const GuestMemory& ram_;
  Mode mode_;
  std::map<uint8_t, uint8_t> caps_;          // cfg_type -> capability offset
  std::map<uint8_t, uint64_t> struct_addr_;  // cfg_type -> guest address
  uint32_t notify_multiplier_ = 0;
  std::map<uint16_t, std::unique_ptr<GuestVring>> rings_;
};

// A virtio-pci function of a `pc` machine as the software guest sees it: the bus enumerated over
// CF8/CFC with PIIX interrupt routing, the function 1af4:`device_id` found, its driver probed.
struct PcVirtioFunction {
  std::unique_ptr<PciGuest> guest;
  const PciGuest::Function* fn = nullptr;
  std::unique_ptr<VirtioPciDriver> driver;
};
// False (with what is known filled in) when the function is missing or the probe fails.
bool ProbePcVirtio(Machine& m, uint16_t device_id, PcVirtioFunction* out,
                   VirtioPciDriver::Mode mode = VirtioPciDriver::Mode::kModern);

}  // namespace vdev::testing

#endif  // VDEV_TESTS_TESTING_VIRTIO_PCI_DRIVER_H_
