#include "hw/machine/pc.h"

#include "core/base/status_macros.h"

namespace vdev {

void PcMachine::ClassInit(MachineClass& k) {
  k.description = "Standard PC (i440FX + PIIX, 1996)";
  k.is_default = true;
}

absl::Status PcMachine::Init() {
  VDEV_RETURN_IF_ERROR(Machine::Init());
  // QEMU's paths: /machine/i440fx for the host, the 00.0 function in /machine/unattached.
  VDEV_ASSIGN_OR_RETURN(DeviceState * host, AddBoardDevice(qom::MakeChecked<pci::I440FXPciHost>(),
                                                           &sysbus(), "i440fx"));
  host_ = static_cast<pci::I440FXPciHost*>(host);
  auto fn = qom::MakeChecked<pci::I440FXFunction>();
  VDEV_RETURN_IF_ERROR(fn->SetProperty("addr", "0"));
  VDEV_RETURN_IF_ERROR(AddBoardDevice(std::move(fn), &host_->bus()).status());
  return absl::OkStatus();
}

VDEV_REGISTER_TYPE(PcMachine);

}  // namespace vdev
