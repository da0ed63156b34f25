#include "hw/machine/virt.h"

#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"
#include "core/qdev/fdt.h"

namespace vdev::machine {
namespace {

constexpr uint32_t kGicPhandle = 1;
constexpr uint32_t kSpi = 0;         // GIC_FDT_IRQ_TYPE_SPI
constexpr uint32_t kEdgeRising = 1;  // GIC_FDT_IRQ_FLAGS_EDGE_LO_HI, as QEMU's virt
constexpr uint32_t kLevelHigh = 4;

}  // namespace

void VirtMachine::ClassInit(MachineClass& k) {
  k.description = "virtio-mmio and PCIe board described by a device tree";
  k.SetPropertyDefault("ram-size", "128M");
}

absl::Status VirtMachine::Init() {
  VDEV_RETURN_IF_ERROR(Machine::Init());
  if (ram_size() > 0)
    VDEV_RETURN_IF_ERROR(AddRamRegion(GuestAddr(kRamBase), ram_size(), "mach-virt.ram"));
  // Transports are added top-down, like QEMU, so that "the first free one" is the lowest address.
  for (int i = 0; i < kMmioCount; ++i) {
    auto t = qom::MakeChecked<virtio::VirtIOMMIOProxy>();
    t->Connect(i, &system_memory(), kMmioBase + kMmioStride * static_cast<uint64_t>(i), &irq(),
               kMmioFirstSpi + static_cast<uint32_t>(i), &guest_memory());
    VDEV_ASSIGN_OR_RETURN(DeviceState * d, AddBoardDevice(std::move(t), &sysbus()));
    transports_.push_back(static_cast<virtio::VirtIOMMIOProxy*>(d));
  }
  auto host = qom::MakeChecked<pci::GpexPciHost>();
  // INTA#..INTD# of the root bus on SPIs 3..6 (the DTB's interrupt-map says the same).
  host->Connect(&system_memory(), nullptr, &guest_memory(), &irq(),
                [](int slot, int pin) { return 3 + pin; });
  VDEV_ASSIGN_OR_RETURN(DeviceState * h, AddBoardDevice(std::move(host), &sysbus(), "gpex"));
  host_ = static_cast<pci::GpexPciHost*>(h);
  auto root = qom::MakeChecked<pci::GpexRoot>();
  VDEV_RETURN_IF_ERROR(root->SetProperty("addr", "0"));
  VDEV_RETURN_IF_ERROR(AddBoardDevice(std::move(root), &host_->bus()).status());
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> VirtMachine::GenerateDtb() {
  FdtBuilder fdt;
  fdt.BeginNode("");
  fdt.PropU32("#address-cells", 2);
  fdt.PropU32("#size-cells", 2);
  fdt.PropString("compatible", "linux,dummy-virt");
  fdt.PropString("model", "vdev virt");
  fdt.PropU32("interrupt-parent", kGicPhandle);

  fdt.BeginNode("chosen");
  fdt.PropString("bootargs", "");
  fdt.EndNode();

  for (const GuestRamRegion& r : guest_memory().regions()) {
    fdt.BeginNode(absl::StrFormat("memory@%x", r.gpa.value()));
    fdt.PropString("device_type", "memory");
    fdt.PropU64s("reg", {r.gpa.value(), r.size});
    fdt.EndNode();
  }

  fdt.BeginNode(absl::StrFormat("intc@%x", kGicDistBase));
  fdt.PropString("compatible", "arm,cortex-a15-gic");
  fdt.PropU32("#interrupt-cells", 3);
  fdt.PropEmpty("interrupt-controller");
  fdt.PropU64s("reg", {kGicDistBase, 0x10000, kGicDistBase + 0x10000, 0x10000});
  fdt.PropU32("phandle", kGicPhandle);
  fdt.EndNode();

  for (virtio::VirtIOMMIOProxy* t : transports_) {
    if (t->vdev() == nullptr) continue;  // only the transports in use
    fdt.BeginNode(absl::StrFormat("virtio_mmio@%x", t->base()));
    fdt.PropString("compatible", "virtio,mmio");
    fdt.PropU64s("reg", {t->base(), virtio::VirtIOMMIOProxy::kWindowSize});
    fdt.PropU32s("interrupts", {kSpi, t->gsi(), kEdgeRising});
    fdt.PropEmpty("dma-coherent");
    fdt.EndNode();
  }

  const uint64_t ecam = host_->ecam_base(), ecam_size = host_->ecam_size();
  fdt.BeginNode(absl::StrFormat("pcie@%x", ecam));
  fdt.PropString("compatible", "pci-host-ecam-generic");
  fdt.PropString("device_type", "pci");
  fdt.PropU64s("reg", {ecam, ecam_size});
  fdt.PropU32s("bus-range", {0, static_cast<uint32_t>(ecam_size >> 20) - 1});
  fdt.PropU32("#address-cells", 3);
  fdt.PropU32("#size-cells", 2);
  fdt.PropU32("#interrupt-cells", 1);
  // 32-bit memory window 0x10000000..0x3effffff, identity-mapped.
  fdt.PropU32s("ranges", {0x02000000, 0, 0x10000000, 0, 0x10000000, 0, 0x2eff0000});
  fdt.PropU32s("interrupt-map-mask", {0, 0, 0, 7});
  fdt.PropU32s("interrupt-map", {0, 0, 0, 1, kGicPhandle, kSpi, 3, kLevelHigh,  //
                                 0, 0, 0, 2, kGicPhandle, kSpi, 4, kLevelHigh,  //
                                 0, 0, 0, 3, kGicPhandle, kSpi, 5, kLevelHigh,  //
                                 0, 0, 0, 4, kGicPhandle, kSpi, 6, kLevelHigh});
  fdt.PropEmpty("dma-coherent");
  fdt.EndNode();

  fdt.EndNode();
  return fdt.Finish();
}

VDEV_REGISTER_TYPE(VirtMachine);

}  // namespace vdev::machine
