#include "hw/virtio/virtio_rng.h"

#include "bus/virtio/chain_io.h"
#include "bus/virtio/virtio_uapi.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"

namespace vdev::virtio {

void VirtIORNG::ClassInit(VirtIODeviceClass& k) {
  k.description = "virtio entropy device";
  k.category = DeviceCategory::kMisc;
  k.device_id = VIRTIO_ID_RNG;
  k.config_size = 0;
  k.AddProperty(qom::LinkProp("rng", &VirtIORNG::rng_, "entropy backend (default: getrandom)"));
}

absl::Status VirtIORNG::Realize() {
  VDEV_RETURN_IF_ERROR(VirtIODevice::Realize());
  AddQueue(kQueueSize);
  return absl::OkStatus();
}

size_t VirtIORNG::Fill(absl::Span<uint8_t> buf) {
  return rng_ != nullptr ? rng_->Fill(buf) : FillFromGetrandom(buf);
}

void VirtIORNG::HandleQueue(uint16_t index) {
  VirtQueue* vq = queue(index);
  VirtQueueElement e;
  uint64_t bytes = 0;
  // Every request available now is answered (each with at most kMaxBytesPerRequest), so no
  // request is left waiting for a kick that will not come; a driver that keeps refilling while
  // we work is cut off after two rings' worth and served on its next kick.
  for (int n = 0; n < 2 * vq->size(); ++n) {
    if (vq->Pop(&e) != PopResult::kOk) break;
    if (e.in_len == 0) {
      VDEV_LOG_GUEST_ERROR(counters(), "bad_request",
                           "%s: request without a device-writable buffer", DisplayName());
      vq->Push(e, 0);
      continue;
    }
    // Straight into the guest's buffers, piece by piece, until the request or the source ends.
    ChainWriter w(e.in);
    while (w.written() < kMaxBytesPerRequest) {
      const absl::Span<uint8_t> piece = w.Peek(kMaxBytesPerRequest - w.written());
      if (piece.empty()) break;
      const size_t got = Fill(piece);
      w.Skip(got);
      if (got < piece.size()) break;
    }
    const uint64_t written = w.written();
    if (written == 0) {
      // The source has nothing now: a used buffer must carry at least one byte (§5.4.6.1), so
      // the request waits for a later kick.
      vq->Unpop(e);
      counters().Increment("source_empty");
      break;
    }
    bytes += written;
    vq->Push(e, static_cast<uint32_t>(written));
  }
  counters().Increment("entropy_bytes", bytes);
  NotifyQueue(index);
}

void VirtIORngPCI::ClassInit(VirtIOPCIProxyClass& k) {
  k.description = "virtio entropy device over PCI";
  k.category = DeviceCategory::kMisc;
  k.class_id = 0x00ff;
  k.backend_type = VirtIORNG::kTypeName;
  k.AliasBackendProperties();
}

VDEV_REGISTER_TYPE(VirtIORNG);
VDEV_REGISTER_TYPE(VirtIORngPCI);

}  // namespace vdev::virtio
