// VirtIOMMIOProxy: the virtio-mmio transport (VIRTIO 1.2 §4.2), a system-bus device with one
// 512-byte register window and one level-triggered interrupt. Version 2 by default; legacy
// version 1 (guest page size, queue PFN and alignment) with `legacy=on`. Boards create a set of
// them at fixed addresses; `-device virtio-rng-device` plugs into the first free one.
//
//   -machine virt -device virtio-rng-device        (one virtio_mmio@ADDR node in the DTB)
//
// Thread-safety: register accesses arrive from vCPU threads; transport state is guarded by
// `mu_`; the device serialises itself (lock order: device, then transport).
#ifndef VDEV_HW_VIRTIO_VIRTIO_MMIO_H_
#define VDEV_HW_VIRTIO_VIRTIO_MMIO_H_

#include <memory>

#include "absl/synchronization/mutex.h"
#include "bus/virtio/virtio_bus.h"
#include "bus/virtio/virtio_device.h"
#include "bus/virtio/virtio_regs.h"
#include "core/memory/irq.h"
#include "core/memory/memory.h"
#include "core/qdev/sysbus.h"

namespace vdev::virtio {

class VirtIOMMIOProxy : public SysBusDevice, public VirtioTransport {
 public:
  static constexpr char kTypeName[] = "virtio-mmio";
  using Parent = SysBusDevice;
  static void ClassInit(DeviceClass& k);

  static constexpr uint64_t kWindowSize = 0x200;
  static constexpr uint32_t kMagic = 0x74726976;   // "virt"
  static constexpr uint32_t kVendor = 0x554d4551;  // "QEMU"

  VirtIOMMIOProxy();
  ~VirtIOMMIOProxy() override;

  // The board places the window and wires the interrupt (before realize).
  // `index` names its bus "virtio-mmio-bus.<index>".
  void Connect(int index, MemoryRegion* system_memory, uint64_t base, IrqRouter* irq, uint32_t gsi,
               const GuestMemory* ram);
  uint64_t base() const { return base_; }
  uint32_t gsi() const { return gsi_; }
  // The bus (nullptr until realized).
  VirtioBus* bus() { return bus_; }
  VirtIODevice* vdev() const { return bus_ ? bus_->device() : nullptr; }

  // VirtioTransport.
  void NotifyQueue(uint16_t index) override;
  void NotifyConfig() override;
  const GuestMemory* dma_memory() const override { return ram_; }

 protected:
  absl::Status Realize() override;
  void Unrealize() override;
  void Reset() override;

 private:
  uint64_t Read(uint64_t off, unsigned size);
  void Write(uint64_t off, uint64_t val, unsigned size);
  // GuestPageSize, QueueAlign, QueuePFN (version 1 only).
  bool WriteLegacyRegister(VirtIODevice& d, uint64_t off, uint32_t v);
  void RaiseLocked(uint32_t bits) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateIrqLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  bool legacy_ = false;  // property: version 1

  VirtioBus* bus_ = nullptr;
  int index_ = 0;
  MemoryRegion* system_memory_ = nullptr;
  uint64_t base_ = 0;
  IrqRouter* irq_ = nullptr;
  uint32_t gsi_ = 0;
  const GuestMemory* ram_ = nullptr;

  // What the driver programs: selectors and queue fields (the model every transport shares).
  VirtioRegisters regs_;
  absl::Mutex mu_;
  uint32_t interrupt_status_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t guest_page_size_ ABSL_GUARDED_BY(mu_) = 4096;  // legacy
  uint32_t queue_align_ ABSL_GUARDED_BY(mu_) = 4096;      // legacy
  std::unique_ptr<MemoryRegion> window_;
};

}  // namespace vdev::virtio

#endif  // VDEV_HW_VIRTIO_VIRTIO_MMIO_H_
