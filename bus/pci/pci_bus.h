// PCIBus: 32 slots x 8 functions (QEMU's TYPE_PCI_BUS, "PCI"). Assigns `addr=` or the first
// free slot and enforces the multifunction rules of PCI 3.0 §6.2.1 (header type bit 7).
//
// Thread-safety: plug and unplug on the control-plane thread. Guest config cycles and BAR
// remapping may run on vCPU threads: they see a device only once it is realized and until it
// starts to unrealize, and they read the slot table under config_mutex().
#ifndef VDEV_BUS_PCI_PCI_BUS_H_
#define VDEV_BUS_PCI_PCI_BUS_H_

#include <array>
#include <functional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "bus/pci/pci_device.h"
#include "bus/pci/pci_regs.h"
#include "core/memory/guest_memory.h"
#include "core/memory/irq.h"
#include "core/memory/memory.h"
#include "core/qdev/bus.h"

namespace vdev::pci {

// What a host bridge gives the buses below it: where BARs are mapped, the memory devices DMA to,
// and where interrupts go. Owned by the host bridge; borrowed by its buses.
struct PciHostContext {
  MemoryRegion* memory = nullptr;  // container that memory BARs are mapped into
  MemoryRegion* io = nullptr;      // container that I/O BARs are mapped into (may be null)
  GuestMemory* dma = nullptr;      // RAM, for bus-master DMA
  IrqRouter* irq = nullptr;
  // INTx routing of the root bus: slot and pin (0 = INTA#) to a GSI; -1 = not connected.
  std::function<int(int slot, int pin)> route_intx;
};

class PCIBus : public BusState {
 public:
  static constexpr char kTypeName[] = "PCI";
  using Parent = BusState;
  static void ClassInit(BusClass& k);

  // The function at `devfn`, or nullptr.
  PCIDevice* device_at(int devfn) const {
    if (devfn < 0 || devfn >= 256) return nullptr;
    return static_cast<PCIDevice*>(slots_[static_cast<size_t>(devfn)]);
  }
  // Bus number: 0 for a root bus; behind a bridge, what the guest programmed as its secondary bus.
  uint8_t bus_number() const;
  // Lowest slot used for automatic placement (slot 0 is the host bridge's on a root bus).
  void set_first_auto_slot(int slot) { first_auto_slot_ = slot; }

  std::vector<std::string> DescribeDevice(const DeviceState& dev) const override;

  // ---- host side ----
  // Set on a root bus by its host bridge; buses behind bridges inherit their root's.
  void set_host_context(const PciHostContext* ctx) { host_context_ = ctx; }
  const PciHostContext* host_context() const;
  // The root bus of this hierarchy.
  PCIBus* root_bus();
  // The bridge device this bus is behind (nullptr for a root bus).
  PCIDevice* bridge() const;
  // The bus numbered `bus` in this hierarchy as the guest numbered it, or nullptr.
  PCIBus* FindBusByNumber(uint8_t bus);
  // The GSI that pin `pin` (0 = INTA#) of the device in `slot` drives, after the standard swizzle
  // at each bridge (PCI-to-PCI Bridge Architecture 1.2 §9.1); -1 when not connected.
  int RouteIntx(int slot, int pin);

  // Re-applies every BAR mapping of the hierarchy from the guest-programmed registers: a BAR is
  // mapped while its decode bit is set, its address is non-zero, does not wrap, fits the bridge
  // windows above it, and overlaps neither another BAR nor board memory. Overlapping BARs are
  // all left unmapped (and counted as "bar_overlap" on their devices).
  void UpdateMappings();
  // Removes `dev`'s BARs from the address spaces (it is being unrealized) and re-maps the rest.
  void UnmapDevice(PCIDevice& dev);

  // Held shared by guest config cycles (PCIHostBridge) and exclusively while the slot table of
  // any bus of the hierarchy changes or a device is being hidden. On the root bus.
  absl::Mutex& config_mutex() { return root_bus()->config_mu_; }

 protected:
  absl::Status CheckPlug(DeviceState& dev) override;
  void OnAttach(DeviceState& dev) override;
  void OnDetach(DeviceState& dev) override;
  // Hides the device from config cycles (waiting for those in flight) and unmaps its BARs.
  void BeforeUnrealize(DeviceState& dev) override;

 private:
  void UpdateMappingsSkipping(PCIDevice* skip);
  // Plugged functions by devfn. Held as DeviceState* (see OnDetach).
  std::array<DeviceState*, kSlotsPerBus * kFunctionsPerSlot> slots_{};
  int first_auto_slot_ = 0;
  const PciHostContext* host_context_ = nullptr;
  // Serialises mapping updates of the hierarchy (held on the root bus).
  absl::Mutex remap_mu_;
  absl::Mutex config_mu_;
};

// A human-readable class name ("Ethernet controller") for a class code (class << 8 | subclass).
std::string PciClassName(uint16_t class_id);

}  // namespace vdev::pci

#endif  // VDEV_BUS_PCI_PCI_BUS_H_
