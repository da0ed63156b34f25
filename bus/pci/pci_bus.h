// PCIBus: 32 slots x 8 functions (QEMU's TYPE_PCI_BUS, "PCI"). Assigns `addr=` or the first
// free slot and enforces the multifunction rules of PCI 3.0 §6.2.1 (header type bit 7).
//
// Thread-safety: control-plane thread only.
#ifndef VDEV_BUS_PCI_PCI_BUS_H_
#define VDEV_BUS_PCI_PCI_BUS_H_

#include <array>
#include <string>
#include <vector>

#include "bus/pci/pci_device.h"
#include "bus/pci/pci_regs.h"
#include "core/bus.h"

namespace vdev::pci {

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

 protected:
  absl::Status CheckPlug(DeviceState& dev) override;
  void OnAttach(DeviceState& dev) override;
  void OnDetach(DeviceState& dev) override;

 private:
  // Plugged functions by devfn. Held as DeviceState* (see OnDetach).
  std::array<DeviceState*, kSlotsPerBus * kFunctionsPerSlot> slots_{};
  int first_auto_slot_ = 0;
};

// A human-readable class name ("Ethernet controller") for a class code (class << 8 | subclass).
std::string PciClassName(uint16_t class_id);

}  // namespace vdev::pci

#endif  // VDEV_BUS_PCI_PCI_BUS_H_
