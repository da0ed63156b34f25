// The "pc" machine: an i440FX host bridge with its root bus "pci.0" and the host-bridge function
// at 00.0, as in QEMU's `-machine pc`. The default machine.
//
//   vdev -machine pc -device edu
#ifndef VDEV_HW_MACHINE_PC_H_
#define VDEV_HW_MACHINE_PC_H_

#include "bus/pci/i440fx.h"
#include "core/qdev/machine.h"

namespace vdev::machine {

class PcMachine : public Machine {
 public:
  static constexpr char kTypeName[] = "pc";
  using Parent = Machine;
  static void ClassInit(MachineClass& k);

  pci::PCIBus& pci_bus() { return host_->bus(); }
  pci::I440FXPciHost& pci_host() { return *host_; }

  // RAM above this goes above 4 GiB; the ECAM window and the PCI hole start here.
  static constexpr uint64_t kLowRamLimit = 0xb0000000;

 protected:
  absl::Status Init() override;

 private:
  pci::I440FXPciHost* host_ = nullptr;
};

}  // namespace vdev::machine

#endif  // VDEV_HW_MACHINE_PC_H_
