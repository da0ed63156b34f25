// The "virt" machine: a board for arm64/riscv-style guests described by a device tree. RAM at
// 0x40000000; eight virtio-mmio transports at 0x0a000000 + 0x200 * i with interrupts SPI 16 + i
// (devices such as virtio-rng-device take the first free one); a PCIe host with its ECAM window
// at 0x3f000000 (16 buses) and BARs in 0x10000000..0x3effffff. `vdev --dump-dtb FILE` writes its
// DTB: memory, chosen, the interrupt controller, and one virtio_mmio node per transport in use.
//
//   vdev -machine virt -device virtio-rng-device --dump-dtb virt.dtb
#ifndef VDEV_HW_MACHINE_VIRT_H_
#define VDEV_HW_MACHINE_VIRT_H_

#include <vector>

#include "bus/pci/gpex.h"
#include "core/qdev/machine.h"
#include "hw/virtio/virtio_mmio.h"

namespace vdev::machine {

class VirtMachine : public Machine {
 public:
  static constexpr char kTypeName[] = "virt";
  using Parent = Machine;
  static void ClassInit(MachineClass& k);

  static constexpr uint64_t kRamBase = 0x40000000;
  static constexpr uint64_t kMmioBase = 0x0a000000;
  static constexpr uint64_t kMmioStride = 0x200;
  static constexpr int kMmioCount = 8;
  static constexpr uint32_t kMmioFirstSpi = 16;
  static constexpr uint64_t kGicDistBase = 0x08000000;

  const std::vector<virtio::VirtIOMMIOProxy*>& transports() const { return transports_; }
  pci::PCIBus& pci_bus() { return host_->bus(); }

  absl::StatusOr<std::vector<uint8_t>> GenerateDtb() override;

 protected:
  absl::Status Init() override;

 private:
  std::vector<virtio::VirtIOMMIOProxy*> transports_;
  pci::GpexPciHost* host_ = nullptr;
};

}  // namespace vdev::machine

#endif  // VDEV_HW_MACHINE_VIRT_H_
