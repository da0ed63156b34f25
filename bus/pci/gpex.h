// The generic PCI Express host bridge of QEMU's `virt` boards ("gpex-pcihost"): ECAM only (no
// I/O-port configuration mechanism), with its root function "gpex-root" (1b36:0008) at 00.0.
#ifndef VDEV_BUS_PCI_GPEX_H_
#define VDEV_BUS_PCI_GPEX_H_

#include "bus/pci/pci_device.h"
#include "bus/pci/pci_host.h"

namespace vdev::pci {

class GpexPciHost : public PCIHostBridge {
 public:
  static constexpr char kTypeName[] = "gpex-pcihost";
  using Parent = PCIHostBridge;
  static void ClassInit(DeviceClass& k);
};

class GpexRoot : public PCIDevice {
 public:
  static constexpr char kTypeName[] = "gpex-root";
  using Parent = PCIDevice;
  static void ClassInit(PCIDeviceClass& k);
};

}  // namespace vdev::pci

#endif  // VDEV_BUS_PCI_GPEX_H_
