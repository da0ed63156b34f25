// The i440FX host bridge: the system-bus device that provides the root PCI bus "pci.0" with
// configuration mechanism #1 (0xCF8/0xCFC) and an ECAM window, and its PCI function 00.0
// (8086:1237, Intel 82441FX PMC).
#ifndef VDEV_BUS_PCI_I440FX_H_
#define VDEV_BUS_PCI_I440FX_H_

#include "bus/pci/pci_bus.h"
#include "bus/pci/pci_device.h"
#include "bus/pci/pci_host.h"

namespace vdev::pci {

class I440FXPciHost : public PCIHostBridge {
 public:
  static constexpr char kTypeName[] = "i440FX-pcihost";
  using Parent = PCIHostBridge;
  static void ClassInit(DeviceClass& k);
  I440FXPciHost();

  // PIIX3 INTx routing with the PIRQ-to-IRQ assignment SeaBIOS programs: PIRQ A..D go to
  // IRQs 10, 10, 11, 11, and slot S pin P uses PIRQ (P + S - 1) mod 4.
  static int RouteIntx(int slot, int pin);
};

class I440FXFunction : public PCIDevice {
 public:
  static constexpr char kTypeName[] = "i440FX";
  using Parent = PCIDevice;
  static void ClassInit(PCIDeviceClass& k);
};

}  // namespace vdev::pci

#endif  // VDEV_BUS_PCI_I440FX_H_
