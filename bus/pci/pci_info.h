// `info pci` for vdev: every function of a PCI hierarchy with its IDs, class, IRQ pin and line,
// and BARs (where the guest mapped them), in the layout of QEMU's `info pci`.
//
// Example:
//   std::cout << FormatPciInfo(pc->pci_bus());
//
// Thread-safety: control-plane thread; reads config space through the devices' locks.
#ifndef VDEV_BUS_PCI_PCI_INFO_H_
#define VDEV_BUS_PCI_PCI_INFO_H_

#include <string>

#include "bus/pci/pci_bus.h"

namespace vdev::pci {

std::string FormatPciInfo(PCIBus& bus);

}  // namespace vdev::pci

#endif  // VDEV_BUS_PCI_PCI_INFO_H_
