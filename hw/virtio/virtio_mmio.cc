#include "hw/virtio/virtio_mmio.h"

#include <linux/virtio_mmio.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bus/virtio/virtio_uapi.h"
#include "core/base/checked_math.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"

namespace vdev::virtio {
namespace {

// Version-2 queue registers and the register-model field each is.
struct QueueRegister {
  uint64_t off;
  QueueField field;
};
constexpr QueueRegister kQueueRegisters[] = {
    {VIRTIO_MMIO_QUEUE_NUM, QueueField::kSize},
    {VIRTIO_MMIO_QUEUE_READY, QueueField::kEnable},
    {VIRTIO_MMIO_QUEUE_DESC_LOW, QueueField::kDescLow},
    {VIRTIO_MMIO_QUEUE_DESC_HIGH, QueueField::kDescHigh},
    {VIRTIO_MMIO_QUEUE_AVAIL_LOW, QueueField::kDriverLow},
    {VIRTIO_MMIO_QUEUE_AVAIL_HIGH, QueueField::kDriverHigh},
    {VIRTIO_MMIO_QUEUE_USED_LOW, QueueField::kDeviceLow},
    {VIRTIO_MMIO_QUEUE_USED_HIGH, QueueField::kDeviceHigh},
};

const QueueRegister* FindQueueRegister(uint64_t off) {
  for (const QueueRegister& r : kQueueRegisters) {
    if (r.off == off) return &r;
  }
  return nullptr;
}

}  // namespace

void VirtIOMMIOProxy::ClassInit(DeviceClass& k) {
  k.description = "virtio-mmio transport";
  k.category = DeviceCategory::kMisc;
  k.user_creatable = false;  // boards create them
  k.hotpluggable = false;
  k.AddProperty(
      qom::Prop("legacy", &VirtIOMMIOProxy::legacy_, false, "on: legacy interface (version 1)"));
}

VirtIOMMIOProxy::VirtIOMMIOProxy() = default;

VirtIOMMIOProxy::~VirtIOMMIOProxy() = default;

void VirtIOMMIOProxy::Connect(int index, MemoryRegion* system_memory, uint64_t base, IrqRouter* irq,
                              uint32_t gsi, const GuestMemory* ram) {
  index_ = index;
  system_memory_ = system_memory;
  base_ = base;
  irq_ = irq;
  gsi_ = gsi;
  ram_ = ram;
}

absl::Status VirtIOMMIOProxy::Realize() {
  VDEV_RETURN_IF_ERROR(SysBusDevice::Realize());
  VDEV_ASSIGN_OR_RETURN(bus_,
                        TryCreateChildBus<VirtioBus>(absl::StrCat("virtio-mmio-bus.", index_)));
  bus_->set_transport(this);
  MemoryRegionOps ops;
  ops.read = [this](MmioOffset off, unsigned size) { return Read(off.value(), size); };
  ops.write = [this](MmioOffset off, uint64_t v, unsigned size) { Write(off.value(), v, size); };
  ops.valid = {1, 4, false};  // registers are 32-bit (checked below); config takes any width
  window_ =
      MemoryRegion::CreateIo(absl::StrFormat("virtio-mmio@%x", base_), kWindowSize, std::move(ops));
  window_->set_owner_counters(&counters());
  if (system_memory_ != nullptr) system_memory_->AddSubregion(base_, window_.get());
  return absl::OkStatus();
}

void VirtIOMMIOProxy::Unrealize() {
  window_.reset();
  if (bus_ != nullptr) {
    if (VirtIODevice* d = bus_->device()) bus_->Detach(*d);
    DestroyChildBus(bus_);
    bus_ = nullptr;
  }
  SysBusDevice::Unrealize();
}

void VirtIOMMIOProxy::Reset() {
  regs_.Reset();
  absl::MutexLock l(&mu_);
  interrupt_status_ = 0;
  guest_page_size_ = queue_align_ = 4096;
  UpdateIrqLocked();
}

void VirtIOMMIOProxy::UpdateIrqLocked() {
  if (irq_ != nullptr) irq_->SetLevel(gsi_, this, interrupt_status_ != 0);
}

void VirtIOMMIOProxy::RaiseLocked(uint32_t bits) {
  interrupt_status_ |= bits;
  UpdateIrqLocked();
}

void VirtIOMMIOProxy::NotifyQueue(uint16_t) {
  absl::MutexLock l(&mu_);
  RaiseLocked(VIRTIO_MMIO_INT_VRING);
}

void VirtIOMMIOProxy::NotifyConfig() {
  absl::MutexLock l(&mu_);
  RaiseLocked(VIRTIO_MMIO_INT_CONFIG);
}

uint64_t VirtIOMMIOProxy::Read(uint64_t off, unsigned size) {
  VirtIODevice* d = vdev();
  if (off >= VIRTIO_MMIO_CONFIG) {
    if (d == nullptr) return 0;
    return d->ConfigRead(static_cast<uint32_t>(off - VIRTIO_MMIO_CONFIG), static_cast<int>(size));
  }
  if (size != 4) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_access", "%s: %u-byte register read at 0x%x",
                         DisplayName(), size, off);
    return ~uint64_t{0};
  }
  if (off == VIRTIO_MMIO_MAGIC_VALUE) return kMagic;
  if (off == VIRTIO_MMIO_VERSION) return legacy_ ? 1 : 2;
  if (off == VIRTIO_MMIO_DEVICE_ID) return d ? d->device_id() : 0;  // 0: no device here
  if (off == VIRTIO_MMIO_VENDOR_ID) return kVendor;
  if (d == nullptr) return 0;
  switch (off) {
    case VIRTIO_MMIO_INTERRUPT_STATUS: {
      absl::MutexLock l(&mu_);
      return interrupt_status_;
    }
    case VIRTIO_MMIO_DEVICE_FEATURES:
      return regs_.ReadDeviceFeatures(*d);
    case VIRTIO_MMIO_QUEUE_NUM_MAX:
      return regs_.ReadQueue(*d, QueueField::kMaxSize);
    case VIRTIO_MMIO_QUEUE_PFN:
      if (!legacy_) break;
      return regs_.ReadLegacyPfn(*d);
    case VIRTIO_MMIO_QUEUE_READY:
      if (legacy_) break;
      return regs_.ReadQueue(*d, QueueField::kEnable);
    case VIRTIO_MMIO_STATUS:
      return d->status();
    case VIRTIO_MMIO_CONFIG_GENERATION:
      if (legacy_) break;
      return d->config_generation();
    default:
      break;
  }
  VDEV_LOG_GUEST_ERROR(counters(), "bad_access", "%s: read of register 0x%x", DisplayName(), off);
  return 0;
}

void VirtIOMMIOProxy::Write(uint64_t off, uint64_t val, unsigned size) {
  VirtIODevice* d = vdev();
  if (d == nullptr) return;  // an empty transport ignores everything
  if (off >= VIRTIO_MMIO_CONFIG) {
    d->ConfigWrite(static_cast<uint32_t>(off - VIRTIO_MMIO_CONFIG), static_cast<uint32_t>(val),
                   static_cast<int>(size));
    return;
  }
  if (size != 4) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_access", "%s: %u-byte register write at 0x%x",
                         DisplayName(), size, off);
    return;
  }
  const uint32_t v = static_cast<uint32_t>(val);
  bool ok = true;
  switch (off) {
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
      regs_.set_device_feature_select(v);
      return;
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
      regs_.set_driver_feature_select(v);
      return;
    case VIRTIO_MMIO_DRIVER_FEATURES:
      regs_.WriteDriverFeatures(*d, v);
      return;
    case VIRTIO_MMIO_QUEUE_SEL:
      regs_.set_queue_select(v);
      return;
    case VIRTIO_MMIO_INTERRUPT_ACK: {
      absl::MutexLock l(&mu_);
      interrupt_status_ &= ~v;
      UpdateIrqLocked();
      return;
    }
    case VIRTIO_MMIO_QUEUE_NOTIFY:
      d->Kick(static_cast<uint16_t>(v > 0xffff ? 0xffff : v));
      return;
    case VIRTIO_MMIO_STATUS:
      d->SetLegacy(legacy_);
      d->SetStatus(static_cast<uint8_t>(v));
      if (v == 0) {
        absl::MutexLock l(&mu_);
        interrupt_status_ = 0;
        UpdateIrqLocked();
      }
      return;
    case VIRTIO_MMIO_GUEST_PAGE_SIZE:
    case VIRTIO_MMIO_QUEUE_ALIGN:
    case VIRTIO_MMIO_QUEUE_PFN:
      ok = legacy_ && WriteLegacyRegister(*d, off, v);
      break;
    default: {
      // Version-2 queue registers. QueueReady=0 is accepted and does nothing (enabling is
      // one-way until reset).
      const QueueRegister* r =
          legacy_ && off != VIRTIO_MMIO_QUEUE_NUM ? nullptr : FindQueueRegister(off);
      if (r == nullptr) {
        ok = false;
      } else if (r->field == QueueField::kEnable && v == 0) {
        ok = regs_.QueueExists(*d);
      } else {
        ok = regs_.WriteQueue(*d, r->field, v);
      }
      break;
    }
  }
  if (!ok) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_access",
                         "%s: write of 0x%x to register 0x%x refused (queue %u)", DisplayName(), v,
                         off, regs_.queue_select());
  }
}

bool VirtIOMMIOProxy::WriteLegacyRegister(VirtIODevice& d, uint64_t off, uint32_t v) {
  uint32_t page, align;
  {
    absl::MutexLock l(&mu_);
    if (off == VIRTIO_MMIO_GUEST_PAGE_SIZE) {
      guest_page_size_ = v;
      return true;
    }
    if (off == VIRTIO_MMIO_QUEUE_ALIGN) {
      queue_align_ = v;
      return true;
    }
    page = guest_page_size_;
    align = queue_align_;
  }
  // QueuePFN: the ring lives at PFN * page size, the used ring aligned to QueueAlign.
  auto addr = CheckedMul<uint64_t>(v, page);
  return addr && (*addr >> 12) <= 0xffffffffu && IsPowerOfTwo(align) && *addr % 4096 == 0 &&
         regs_.WriteLegacyPfn(d, static_cast<uint32_t>(*addr >> 12), align,
                              /*use_max_size=*/false);
}

VDEV_REGISTER_TYPE(VirtIOMMIOProxy);

}  // namespace vdev::virtio
