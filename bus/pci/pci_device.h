// PCIDevice: a function on a PCI bus, with its 256-byte configuration space.
//
// IDs, class and revision come from class metadata (PCIDeviceClass) set in class_init. The
// configuration space has per-byte write masks and write-1-to-clear masks, so a guest can only
// change what the spec lets it change. `addr=slot[.fn]` picks the slot and function; without it
// the bus takes the first free slot. Spec: PCI Local Bus 3.0 §6.
//
//   -device edu,addr=05.0        -device my-func,addr=6.1,multifunction=on
//
// Thread-safety: config accesses arrive serialised by the bus (issue #3 adds the device lock).
#ifndef VDEV_BUS_PCI_PCI_DEVICE_H_
#define VDEV_BUS_PCI_PCI_DEVICE_H_

#include <array>
#include <cstdint>

#include "bus/pci/pci_regs.h"
#include "core/device.h"
#include "qom/property.h"

namespace vdev::pci {

class PCIDeviceClass : public DeviceClass {
 public:
  uint16_t vendor_id = 0;
  uint16_t device_id = 0;
  uint8_t revision = 0;
  uint16_t class_id = 0xff00;  // class << 8 | subclass; 0xff00 = "unassigned"
  uint8_t prog_if = 0;
  uint16_t subsystem_vendor_id = 0;
  uint16_t subsystem_id = 0;
  uint8_t header_type = 0;  // 0: endpoint; kHeaderTypeBridge: PCI-to-PCI bridge (no subsystem IDs)
};

class PCIDevice : public DeviceState {
 public:
  static constexpr char kTypeName[] = "pci-device";
  static constexpr bool kAbstract = true;
  using Parent = DeviceState;
  using Class = PCIDeviceClass;
  static void ClassInit(PCIDeviceClass& k);

  const PCIDeviceClass& pci_class() const {
    return static_cast<const PCIDeviceClass&>(object_class());
  }
  // Where the device sits on its bus (valid once plugged).
  qom::PciDevFn devfn() const { return addr_; }
  bool multifunction() const { return multifunction_; }

  // Config-space access as a guest sees it. Widths 1, 2, 4, naturally aligned and inside the
  // space; anything else reads all-ones / is dropped, and is counted as a guest error.
  uint32_t ConfigRead(uint32_t offset, int size);
  void ConfigWrite(uint32_t offset, uint32_t value, int size);

  // Direct access for device code (no masks).
  uint8_t* config() { return config_.data(); }
  void SetConfigWriteMask(uint32_t offset, uint8_t mask) { wmask_[offset] = mask; }
  void SetConfigW1cMask(uint32_t offset, uint8_t mask) { w1cmask_[offset] = mask; }

 protected:
  absl::Status Realize() override;
  void Reset() override;
  // Builds the standard header from the class metadata (called by Realize; subclasses that add
  // registers set their masks after it).
  void InitConfigHeader();

 private:
  friend class PCIBus;

  qom::PciDevFn addr_;
  bool multifunction_ = false;
  std::array<uint8_t, kConfigSpaceSize> config_{};
  std::array<uint8_t, kConfigSpaceSize> wmask_{};
  std::array<uint8_t, kConfigSpaceSize> w1cmask_{};
};

}  // namespace vdev::pci

#endif  // VDEV_BUS_PCI_PCI_DEVICE_H_
