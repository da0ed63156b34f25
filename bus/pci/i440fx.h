// The i440FX host bridge: the system-bus device that provides the root PCI bus "pci.0", and its
// PCI function 00.0 (8086:1237, Intel 82441FX PMC). Configuration mechanism #1 (0xCF8/0xCFC)
// is added with the PCI address-space work (issue #3).
#ifndef VDEV_BUS_PCI_I440FX_H_
#define VDEV_BUS_PCI_I440FX_H_

#include "bus/pci/pci_bus.h"
#include "bus/pci/pci_device.h"
#include "core/sysbus.h"

namespace vdev::pci {

class I440FXPciHost : public SysBusDevice {
 public:
  static constexpr char kTypeName[] = "i440FX-pcihost";
  using Parent = SysBusDevice;
  static void ClassInit(DeviceClass& k);
  I440FXPciHost();
  PCIBus& bus() { return *bus_; }

 private:
  PCIBus* bus_;
};

class I440FXFunction : public PCIDevice {
 public:
  static constexpr char kTypeName[] = "i440FX";
  using Parent = PCIDevice;
  static void ClassInit(PCIDeviceClass& k);
};

}  // namespace vdev::pci

#endif  // VDEV_BUS_PCI_I440FX_H_
