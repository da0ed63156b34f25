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

// The legacy block: host features (4), guest features (4), queue PFN (4), queue size (2), queue
// select (2), queue notify (2), status (1), ISR (1); with MSI-X enabled, the config vector (2) and
// the queue vector (2); then the device configuration (VIRTIO_PCI_CONFIG_OFF).
uint64_t VirtIOPCIProxy::LegacyRead(uint64_t off, unsigned size) {
  VirtIODevice& d = *vdev();
  const bool msix = msix_enabled();
  const uint64_t cfg = VIRTIO_PCI_CONFIG_OFF(msix);
  if (off >= cfg) return d.ConfigRead(static_cast<uint32_t>(off - cfg), static_cast<int>(size));
  auto field = [&](uint64_t o, unsigned n) { return off == o && size == n; };
  if (field(VIRTIO_PCI_HOST_FEATURES, 4)) return d.ReadHostFeatures(0);
  if (field(VIRTIO_PCI_GUEST_FEATURES, 4)) return d.ReadGuestFeatures(0);
  if (field(VIRTIO_PCI_QUEUE_PFN, 4)) return regs_.ReadLegacyPfn(d);
  if (field(VIRTIO_PCI_QUEUE_NUM, 2)) return regs_.ReadQueue(d, QueueField::kMaxSize);
  if (field(VIRTIO_PCI_QUEUE_SEL, 2)) return regs_.queue_select();
  if (field(VIRTIO_PCI_STATUS, 1)) return d.status();
  if (field(VIRTIO_PCI_ISR, 1)) return IsrRead();
  if (msix && field(VIRTIO_MSI_CONFIG_VECTOR, 2)) return regs_.config_vector();
  if (msix && field(VIRTIO_MSI_QUEUE_VECTOR, 2)) return regs_.ReadQueue(d, QueueField::kVector);
  VDEV_LOG_GUEST_ERROR(counters(), "bad_legacy_access", "%s: %u-byte legacy read at 0x%x",
                       DisplayName(), size, off);
  return ~uint64_t{0};
}

void VirtIOPCIProxy::LegacyWrite(uint64_t off, uint64_t val, unsigned size) {
  VirtIODevice& d = *vdev();
  const bool msix = msix_enabled();
  const uint64_t cfg = VIRTIO_PCI_CONFIG_OFF(msix);
  if (off >= cfg) {
    d.ConfigWrite(static_cast<uint32_t>(off - cfg), static_cast<uint32_t>(val),
                  static_cast<int>(size));
    return;
  }
  auto field = [&](uint64_t o, unsigned n) { return off == o && size == n; };
  bool ok = true;
  if (field(VIRTIO_PCI_GUEST_FEATURES, 4)) {
    d.SetLegacy(true);
    d.WriteGuestFeatures(0, static_cast<uint32_t>(val));
  } else if (field(VIRTIO_PCI_QUEUE_PFN, 4)) {
    // Legacy queues keep their maximum size; the three parts sit in one 4 KiB-aligned area.
    ok = regs_.WriteLegacyPfn(d, static_cast<uint32_t>(val), VIRTIO_PCI_VRING_ALIGN,
                              /*use_max_size=*/true);
  } else if (field(VIRTIO_PCI_QUEUE_SEL, 2)) {
    regs_.set_queue_select(static_cast<uint16_t>(val));
  } else if (field(VIRTIO_PCI_QUEUE_NOTIFY, 2)) {
    d.Kick(static_cast<uint16_t>(val));
  } else if (field(VIRTIO_PCI_STATUS, 1)) {
    WriteStatus(/*legacy=*/true, static_cast<uint8_t>(val));
  } else if (msix && field(VIRTIO_MSI_CONFIG_VECTOR, 2)) {
    regs_.SetConfigVector(val);
  } else if (msix && field(VIRTIO_MSI_QUEUE_VECTOR, 2)) {
    ok = regs_.WriteQueue(d, QueueField::kVector, val);
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
