#include "hw/misc/edu.h"

#include "absl/strings/str_format.h"
#include "core/base/checked_math.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"

namespace vdev::misc {

void EduDevice::ClassInit(pci::PCIDeviceClass& k) {
  k.description = "QEMU's educational PCI device (factorial, interrupts, DMA)";
  k.category = DeviceCategory::kMisc;
  k.vendor_id = 0x1234;
  k.device_id = 0x11e8;
  k.revision = 0x10;
  k.class_id = 0x00ff;  // PCI_CLASS_OTHERS
  k.subsystem_vendor_id = 0x1af4;
  k.subsystem_id = 0x1100;
  k.interrupt_pin = 1;  // INTA#
  k.AddProperty(qom::HexProp("dma_mask", &EduDevice::dma_mask_, (uint64_t{1} << 28) - 1,
                             "DMA addresses are clamped to this mask"));
  k.AddProperty(qom::Prop("msix-vectors", &EduDevice::msix_vectors_prop_, uint32_t{0},
                          "MSI-X vectors in BAR1 (0: none); interrupts use vector 0"));
}

absl::Status EduDevice::Realize() {
  VDEV_RETURN_IF_ERROR(PCIDevice::Realize());
  MemoryRegionOps ops;
  ops.read = [this](MmioOffset off, unsigned size) { return MmioRead(off.value(), size); };
  ops.write = [this](MmioOffset off, uint64_t v, unsigned size) {
    MmioWrite(off.value(), v, size);
  };
  ops.valid = {4, 8, false};
  mmio_ = MemoryRegion::CreateIo("edu-mmio", kBarSize, std::move(ops));
  mmio_->set_owner_counters(&counters());
  RegisterBar(0, kBarSize, 0)->AddSubregion(0, mmio_.get());
  VDEV_RETURN_IF_ERROR(InitMsi(0, 1, /*is_64bit=*/true, /*per_vector_mask=*/false));
  if (msix_vectors_prop_ > 0) {
    VDEV_RETURN_IF_ERROR(InitMsixExclusiveBar(msix_vectors_prop_, 1));
  }
  return absl::OkStatus();
}

void EduDevice::Unrealize() {
  mmio_.reset();
  PCIDevice::Unrealize();
}

void EduDevice::Reset() {
  {
    absl::MutexLock l(&mu_);
    liveness_ = fact_ = status_ = irq_status_ = 0;
    dma_src_ = dma_dst_ = dma_count_ = dma_cmd_ = 0;
    dma_buf_.fill(0);
  }
  PCIDevice::Reset();
}

uint64_t EduDevice::MmioRead(uint64_t addr, unsigned size) {
  if ((addr < 0x80 && size != 4) || (addr >= 0x80 && size != 4 && size != 8)) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_access", "%s: %u-byte read at 0x%x", DisplayName(), size,
                         addr);
    return ~uint64_t{0};
  }
  absl::MutexLock l(&mu_);
  switch (addr) {
    case kEduId:
      return 0x010000edu;
    case kEduLiveness:
      return ~liveness_;
    case kEduFactorial:
      return fact_;
    case kEduStatus:
      return status_;
    case kEduIrqStatus:
      return irq_status_;
    case kEduDmaSrc:
      return dma_src_;
    case kEduDmaDst:
      return dma_dst_;
    case kEduDmaCount:
      return dma_count_;
    case kEduDmaCmd:
      return dma_cmd_;
    default:
      return ~uint64_t{0};
  }
}

void EduDevice::MmioWrite(uint64_t addr, uint64_t val, unsigned size) {
  if ((addr < 0x80 && size != 4) || (addr >= 0x80 && size != 4 && size != 8)) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_access", "%s: %u-byte write at 0x%x", DisplayName(), size,
                         addr);
    return;
  }
  absl::MutexLock l(&mu_);
  switch (addr) {
    case kEduLiveness:
      liveness_ = static_cast<uint32_t>(val);
      break;
    case kEduFactorial: {
      if (status_ & 0x1) break;  // busy: QEMU ignores the write too
      // n! mod 2^32 is 0 for n >= 34 (it has 32 factors of two), so the loop is bounded by that
      // rather than by n: a guest cannot make it spin for billions of steps.
      uint32_t n = static_cast<uint32_t>(val);
      uint32_t f = 1;
      for (; n > 1 && f != 0; --n) f *= n;
      fact_ = f;
      if (status_ & 0x80) RaiseIrqLocked(kFactorialIrq);
      break;
    }
    case kEduStatus:
      status_ = (status_ & ~0x80u) | (static_cast<uint32_t>(val) & 0x80u);
      break;
    case kEduIrqRaise:
      RaiseIrqLocked(static_cast<uint32_t>(val));
      break;
    case kEduIrqAck:
      LowerIrqLocked(static_cast<uint32_t>(val));
      break;
    case kEduDmaSrc:
      dma_src_ = val;
      break;
    case kEduDmaDst:
      dma_dst_ = val;
      break;
    case kEduDmaCount:
      dma_count_ = val;
      break;
    case kEduDmaCmd:
      if (dma_cmd_ & 0x1) break;  // a transfer is running (never, here; kept for QEMU parity)
      dma_cmd_ = val;
      if (dma_cmd_ & 0x1) RunDmaLocked();
      break;
    default:
      break;
  }
}

void EduDevice::RunDmaLocked() {
  const bool to_ram = dma_cmd_ & 0x2;
  const uint64_t dev_addr = to_ram ? dma_src_ : dma_dst_;
  const uint64_t ram_addr = (to_ram ? dma_dst_ : dma_src_);
  const uint64_t clamped = ram_addr & dma_mask_;
  if (clamped != ram_addr) {
    VDEV_LOG_GUEST_ERROR(counters(), "dma_clamped", "%s: DMA address 0x%x clamped to 0x%x",
                         DisplayName(), ram_addr, clamped);
  }
  if (!RangeWithin(dev_addr, dma_count_, kDmaStart, kDmaSize)) {
    VDEV_LOG_GUEST_ERROR(counters(), "dma_bad_range",
                         "%s: DMA of 0x%x bytes at device address 0x%x is outside the buffer",
                         DisplayName(), dma_count_, dev_addr);
  } else {
    uint8_t* buf = dma_buf_.data() + (dev_addr - kDmaStart);
    const bool ok = to_ram ? DmaWrite(GuestAddr(clamped), absl::MakeConstSpan(buf, dma_count_))
                           : DmaRead(GuestAddr(clamped), absl::MakeSpan(buf, dma_count_));
    if (ok) counters().Increment("dma_bytes", dma_count_);
  }
  dma_cmd_ &= ~uint64_t{0x1};
  if (dma_cmd_ & 0x4) RaiseIrqLocked(kDmaIrq);
}

void EduDevice::RaiseIrqLocked(uint32_t bits) {
  irq_status_ |= bits;
  if (irq_status_ == 0) return;
  if (msix_enabled()) {
    MsixNotify(0);
  } else if (msi_enabled()) {
    MsiNotify(0);
  } else {
    SetIrq(true);
  }
}

void EduDevice::LowerIrqLocked(uint32_t bits) {
  irq_status_ &= ~bits;
  if (irq_status_ == 0) SetIrq(false);  // also when MSI took over: nothing may stay latched
}

VDEV_REGISTER_TYPE(EduDevice);

}  // namespace vdev::misc
