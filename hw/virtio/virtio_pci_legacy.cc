// VirtIOPCIProxy, the legacy interface of transitional devices (VIRTIO 1.2 §4.1.4.8): the I/O
// BAR with the legacy register block, then the device configuration.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bus/pci/pci_regs.h"
#include "core/base/byte_order.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"
#include "hw/virtio/virtio_pci.h"
#include "hw/virtio/virtio_pci_internal.h"

namespace vdev::virtio {

void VirtIOPCIProxy::MapLegacyInterface(VirtIODevice& vdev) {
  uint64_t size = 0x20;
  while (size < 24u + vdev.config_size()) size *= 2;
  MemoryRegionOps ops;
  ops.read = [this](MmioOffset off, unsigned s) { return LegacyRead(off.value(), s); };
  ops.write = [this](MmioOffset off, uint64_t v, unsigned s) { LegacyWrite(off.value(), v, s); };
  ops.valid = {1, 4, false};
  legacy_ = MemoryRegion::CreateIo(absl::StrCat(type_name(), " legacy"), size, std::move(ops));
  legacy_->set_owner_counters(&counters());
  RegisterBar(kLegacyBar, size, pci::kBarSpaceIo)->AddSubregion(0, legacy_.get());
}

// ---- legacy interface (VIRTIO 1.2 §4.1.4.8) ----

uint64_t VirtIOPCIProxy::LegacyRead(uint64_t off, unsigned size) {
  VirtIODevice* d = vdev();
  const bool msix = msix_enabled();
  const uint64_t cfg = msix ? 24 : 20;
  if (off >= cfg) return d->ConfigRead(static_cast<uint32_t>(off - cfg), static_cast<int>(size));
  uint16_t sel;
  {
    absl::MutexLock l(&mu_);
    sel = queue_select_;
  }
  auto field = [&](uint64_t o, unsigned n) { return off == o && size == n; };
  if (field(VIRTIO_PCI_HOST_FEATURES, 4)) return d->ReadHostFeatures(0) & 0xffffffffu;
  if (field(VIRTIO_PCI_GUEST_FEATURES, 4)) return d->ReadGuestFeatures(0);
  if (field(VIRTIO_PCI_QUEUE_PFN, 4) || field(VIRTIO_PCI_QUEUE_NUM, 2)) {
    uint64_t v = 0;
    d->WithQueue(sel, [&](VirtQueue& q) {
      v = off == VIRTIO_PCI_QUEUE_PFN ? q.desc_addr().value() >> 12 : q.max_size();
      return true;
    });
    return v;
  }
  if (field(VIRTIO_PCI_QUEUE_SEL, 2)) return sel;
  if (field(VIRTIO_PCI_STATUS, 1)) return d->status();
  if (field(VIRTIO_PCI_ISR, 1)) return IsrRead();
  if (msix && (field(20, 2) || field(22, 2))) {
    absl::MutexLock l(&mu_);
    if (off == 20) return config_vector_;
    return sel < queue_vectors_.size() ? queue_vectors_[sel] : kNoVector;
  }
  VDEV_LOG_GUEST_ERROR(counters(), "bad_legacy_access", "%s: %u-byte legacy read at 0x%x",
                       DisplayName(), size, off);
  return ~uint64_t{0};
}

void VirtIOPCIProxy::LegacyWrite(uint64_t off, uint64_t val, unsigned size) {
  VirtIODevice* d = vdev();
  const bool msix = msix_enabled();
  const uint64_t cfg = msix ? 24 : 20;
  if (off >= cfg) {
    d->ConfigWrite(static_cast<uint32_t>(off - cfg), static_cast<uint32_t>(val),
                   static_cast<int>(size));
    return;
  }
  uint16_t sel;
  {
    absl::MutexLock l(&mu_);
    sel = queue_select_;
  }
  auto field = [&](uint64_t o, unsigned n) { return off == o && size == n; };
  bool ok = true;
  if (field(VIRTIO_PCI_GUEST_FEATURES, 4)) {
    d->SetLegacy(true);
    d->WriteGuestFeatures(0, static_cast<uint32_t>(val));
  } else if (field(VIRTIO_PCI_QUEUE_PFN, 4)) {
    // Legacy queues keep their maximum size; the three parts sit in one 4 KiB-aligned area.
    ok = d->WithQueue(sel, [&](VirtQueue& q) {
      return q.SetSize(q.max_size()) &&
             q.SetLegacyPfn(static_cast<uint32_t>(val), VIRTIO_PCI_VRING_ALIGN);
    });
  } else if (field(VIRTIO_PCI_QUEUE_SEL, 2)) {
    absl::MutexLock l(&mu_);
    queue_select_ = static_cast<uint16_t>(val);
  } else if (field(VIRTIO_PCI_QUEUE_NOTIFY, 2)) {
    d->Kick(static_cast<uint16_t>(val));
  } else if (field(VIRTIO_PCI_STATUS, 1)) {
    WriteStatus(/*legacy=*/true, static_cast<uint8_t>(val));
  } else if (msix && field(20, 2)) {
    absl::MutexLock l(&mu_);
    config_vector_ = val < vectors_ ? static_cast<uint16_t>(val) : kNoVector;
  } else if (msix && field(22, 2)) {
    absl::MutexLock l(&mu_);
    if (sel < queue_vectors_.size()) {
      queue_vectors_[sel] = val < vectors_ ? static_cast<uint16_t>(val) : kNoVector;
    } else {
      ok = false;
    }
  } else {
    ok = false;
  }
  if (!ok) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_legacy_access",
                         "%s: %u-byte legacy write of 0x%x at 0x%x refused", DisplayName(), size,
                         val, off);
  }
}

}  // namespace vdev::virtio
