#include "hw/machine/pc.h"

#include <algorithm>

#include "core/base/status_macros.h"

namespace vdev::machine {

void PcMachine::ClassInit(MachineClass& k) {
  k.description = "Standard PC (i440FX + PIIX, 1996)";
  k.is_default = true;
  k.SetPropertyDefault("ram-size", "128M");  // QEMU's default -m
}

absl::Status PcMachine::Init() {
  VDEV_RETURN_IF_ERROR(Machine::Init());
  // RAM below the ECAM window (0xb0000000, as on q35) and the rest above 4 GiB.
  const uint64_t low = std::min<uint64_t>(ram_size(), kLowRamLimit);
  if (low > 0) VDEV_RETURN_IF_ERROR(AddRamRegion(GuestAddr(0), low, "pc.ram"));
  if (ram_size() > low) {
    VDEV_RETURN_IF_ERROR(
        AddRamRegion(GuestAddr(uint64_t{1} << 32), ram_size() - low, "pc.ram-above-4g"));
  }
  // QEMU's paths: /machine/i440fx for the host, the 00.0 function in /machine/unattached.
  auto host_dev = qom::MakeChecked<pci::I440FXPciHost>();
  host_dev->Connect(&system_memory(), &system_io(), &guest_memory(), &irq(),
                    &pci::I440FXPciHost::RouteIntx);
  VDEV_ASSIGN_OR_RETURN(DeviceState * host,
                        AddBoardDevice(std::move(host_dev), &sysbus(), "i440fx"));
  host_ = static_cast<pci::I440FXPciHost*>(host);
  auto fn = qom::MakeChecked<pci::I440FXFunction>();
  VDEV_RETURN_IF_ERROR(fn->SetProperty("addr", "0"));
  VDEV_RETURN_IF_ERROR(AddBoardDevice(std::move(fn), &host_->bus()).status());
  return absl::OkStatus();
}

VDEV_REGISTER_TYPE(PcMachine);

}  // namespace vdev::machine
