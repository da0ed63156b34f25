// pci-bridge: a PCI-to-PCI bridge (QEMU's "pci-bridge", 1b36:0001), PCI-to-PCI Bridge
// Architecture 1.2. Its type 1 header has guest-programmable bus numbers and I/O, memory and
// prefetchable windows; behind it is a secondary PCI bus named after the bridge's id.
//
//   -device pci-bridge,id=br0,addr=3 -device example-pci,bus=br0,addr=1
//
// Routing configuration cycles by bus number and forwarding the windows arrive with the PCI
// address spaces (issue #3).
#ifndef VDEV_BUS_PCI_PCI_BRIDGE_H_
#define VDEV_BUS_PCI_PCI_BRIDGE_H_

#include "bus/pci/pci_bus.h"
#include "bus/pci/pci_device.h"

namespace vdev::pci {

class PCIBridge : public PCIDevice {
 public:
  static constexpr char kTypeName[] = "pci-bridge";
  using Parent = PCIDevice;
  static void ClassInit(PCIDeviceClass& k);

  // The secondary bus (nullptr until realized).
  PCIBus* secondary_bus() const { return secondary_; }

 protected:
  absl::Status Realize() override;
  void Unrealize() override;
  void Reset() override;
  // Bus numbers, windows and bridge control change what is behind the bridge: remap.
  void ConfigWritten(uint32_t offset, int size) override;

 private:
  void InitBridgeRegisters();
  PCIBus* secondary_ = nullptr;
};

}  // namespace vdev::pci

#endif  // VDEV_BUS_PCI_PCI_BRIDGE_H_
