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

uint64_t Replace32(uint64_t v, bool high, uint64_t half) {
  return high ? (v & 0xffffffffull) | (half << 32) : (v & ~0xffffffffull) | (half & 0xffffffff);
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
  absl::MutexLock l(&mu_);
  interrupt_status_ = 0;
  device_features_sel_ = driver_features_sel_ = queue_sel_ = 0;
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
  uint32_t dsel, qsel;
  {
    absl::MutexLock l(&mu_);
    dsel = device_features_sel_;
    qsel = queue_sel_;
    if (off == VIRTIO_MMIO_INTERRUPT_STATUS) return interrupt_status_;
  }
  const uint16_t qi = qsel <= 0xffff ? static_cast<uint16_t>(qsel) : 0xffff;
  uint64_t qv = 0;
  auto queue_field = [&](auto get) {
    d->WithQueue(qi, [&](VirtQueue& q) {
      qv = get(q);
      return true;
    });
    return qv;
  };
  switch (off) {
    case VIRTIO_MMIO_DEVICE_FEATURES:
      return d->ReadHostFeatures(dsel);
    case VIRTIO_MMIO_QUEUE_NUM_MAX:
      return queue_field([](VirtQueue& q) -> uint64_t { return q.max_size(); });
    case VIRTIO_MMIO_QUEUE_PFN:
      if (!legacy_) break;
      return queue_field([](VirtQueue& q) -> uint64_t { return q.desc_addr().value() / 4096; });
    case VIRTIO_MMIO_QUEUE_READY:
      if (legacy_) break;
      return queue_field([](VirtQueue& q) -> uint64_t { return q.enabled(); });
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
  uint32_t qsel, dfsel, page, align;
  {
    absl::MutexLock l(&mu_);
    switch (off) {
      case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
        device_features_sel_ = v;
        return;
      case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
        driver_features_sel_ = v;
        return;
      case VIRTIO_MMIO_QUEUE_SEL:
        queue_sel_ = v;
        return;
      case VIRTIO_MMIO_INTERRUPT_ACK:
        interrupt_status_ &= ~v;
        UpdateIrqLocked();
        return;
      case VIRTIO_MMIO_GUEST_PAGE_SIZE:
        if (legacy_) {
          guest_page_size_ = v;
          return;
        }
        break;
      case VIRTIO_MMIO_QUEUE_ALIGN:
        if (legacy_) {
          queue_align_ = v;
          return;
        }
        break;
      default:
        break;
    }
    qsel = queue_sel_;
    dfsel = driver_features_sel_;
    page = guest_page_size_;
    align = queue_align_;
  }
  const uint16_t qi = qsel <= 0xffff ? static_cast<uint16_t>(qsel) : 0xffff;
  bool ok = true;
  switch (off) {
    case VIRTIO_MMIO_DRIVER_FEATURES:
      d->WriteGuestFeatures(dfsel, v);
      break;
    case VIRTIO_MMIO_QUEUE_NOTIFY:
      d->Kick(static_cast<uint16_t>(v > 0xffff ? 0xffff : v));
      break;
    case VIRTIO_MMIO_STATUS:
      d->SetLegacy(legacy_);
      d->SetStatus(static_cast<uint8_t>(v));
      if (v == 0) {
        absl::MutexLock l(&mu_);
        interrupt_status_ = 0;
        UpdateIrqLocked();
      }
      break;
    default:
      // Per-queue registers, under the device's lock (no race with DRIVER_OK freezing them).
      ok = d->WithQueue(qi, [&](VirtQueue& q) {
        switch (off) {
          case VIRTIO_MMIO_QUEUE_NUM:
            return v <= 0xffff && q.SetSize(static_cast<uint16_t>(v));
          case VIRTIO_MMIO_QUEUE_PFN: {
            // Legacy: the ring lives at PFN * page size, the used ring aligned to QueueAlign.
            auto addr = CheckedMul<uint64_t>(v, page);
            return legacy_ && addr && (*addr >> 12) <= 0xffffffffu && IsPowerOfTwo(align) &&
                   *addr % 4096 == 0 && q.SetLegacyPfn(static_cast<uint32_t>(*addr >> 12), align);
          }
          case VIRTIO_MMIO_QUEUE_READY:
            return !legacy_ && (v == 1 ? q.SetEnabled(true) : v == 0);
          case VIRTIO_MMIO_QUEUE_DESC_LOW:
          case VIRTIO_MMIO_QUEUE_DESC_HIGH:
            return !legacy_ &&
                   q.SetAddresses(GuestAddr(Replace32(q.desc_addr().value(),
                                                      off == VIRTIO_MMIO_QUEUE_DESC_HIGH, v)),
                                  q.avail_addr(), q.used_addr());
          case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
          case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
            return !legacy_ &&
                   q.SetAddresses(q.desc_addr(),
                                  GuestAddr(Replace32(q.avail_addr().value(),
                                                      off == VIRTIO_MMIO_QUEUE_AVAIL_HIGH, v)),
                                  q.used_addr());
          case VIRTIO_MMIO_QUEUE_USED_LOW:
          case VIRTIO_MMIO_QUEUE_USED_HIGH:
            return !legacy_ &&
                   q.SetAddresses(q.desc_addr(), q.avail_addr(),
                                  GuestAddr(Replace32(q.used_addr().value(),
                                                      off == VIRTIO_MMIO_QUEUE_USED_HIGH, v)));
          default:
            return false;
        }
      });
      break;
  }
  if (!ok) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_access",
                         "%s: write of 0x%x to register 0x%x refused (queue %u)", DisplayName(), v,
                         off, qsel);
  }
}

VDEV_REGISTER_TYPE(VirtIOMMIOProxy);

}  // namespace vdev::virtio
