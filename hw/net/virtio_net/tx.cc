// virtio-net transmit (VIRTIO 1.2 §5.1.6.2): a kick sends the available frames in batches of at
// most tx_burst, the header validated against the negotiated offloads; a backend that cannot take
// a frame holds the queue until it completes.
#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "core/base/logging.h"
#include "hw/net/virtio_net/virtio_net_internal.h"

namespace vdev::virtio {

bool VirtIONet::ValidTxHeader(const uint8_t* raw, uint64_t frame_len) {
  virtio_net_hdr h;
  std::memcpy(&h, raw, sizeof(h));
  const uint8_t gso = h.gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
  if (h.flags & ~(VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID)) return false;
  if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
    if (!negotiated(VIRTIO_NET_F_CSUM)) return false;
    if (uint64_t{h.csum_start} + h.csum_offset + 2 > frame_len) return false;
  }
  if (gso == VIRTIO_NET_HDR_GSO_NONE) return !(h.gso_type & VIRTIO_NET_HDR_GSO_ECN);
  unsigned need;
  switch (gso) {
    case VIRTIO_NET_HDR_GSO_TCPV4:
      need = VIRTIO_NET_F_HOST_TSO4;
      break;
    case VIRTIO_NET_HDR_GSO_TCPV6:
      need = VIRTIO_NET_F_HOST_TSO6;
      break;
    case VIRTIO_NET_HDR_GSO_UDP:
      need = VIRTIO_NET_F_HOST_UFO;
      break;
    default:
      return false;
  }
  if (!negotiated(need)) return false;
  if ((h.gso_type & VIRTIO_NET_HDR_GSO_ECN) && !negotiated(VIRTIO_NET_F_HOST_ECN)) return false;
  if (h.gso_size == 0 || !(h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)) return false;
  return h.hdr_len <= frame_len;
}

void VirtIONet::FlushTx(size_t pair) {
  Pair& p = pairs_[pair];
  VirtQueue* vq = queue(static_cast<uint16_t>(2 * pair + 1));
  if (p.tx_waiting || !running() || !dma_allowed()) return;
  VirtQueueElement& e = p.tx_elem;
  uint8_t hdr[sizeof(virtio_net_hdr_mrg_rxbuf)];
  std::vector<iovec>& iov = p.tx_iov;
  uint32_t sent = 0;
  uint64_t frames = 0, bytes = 0;  // counted once per turn, not per frame
  uint16_t done = 0;               // completions filled, published together
  bool more = false;
  // The backend may batch the frames (one system call); their buffers stay the guest's until the
  // batch ends, so it ends before every publication of used buffers.
  // (The peer is read once: Begin and End go to the same client.)
  net::NetClientState* const peer = p.nc->peer();
  auto begin = [peer] {
    if (peer != nullptr) peer->ReceiveBatchBegin();
  };
  auto end = [peer] {
    if (peer != nullptr) peer->ReceiveBatchEnd();
  };
  struct Count {  // publishes the turn's counts however the turn ends
    Counter* frames_counter;
    Counter* bytes_counter;
    uint64_t& frames;
    uint64_t& bytes;
    ~Count() {
      if (frames != 0) frames_counter->Add(frames);
      if (bytes != 0) bytes_counter->Add(bytes);
    }
  } count{tx_frames_, tx_bytes_, frames, bytes};
  begin();
  for (;;) {
    if (done >= kTxHeaders) {
      end();
      vq->Flush(done);
      done = 0;
      begin();
    }
    if (sent >= tx_burst_) {
      // A burst that emptied the ring needs no second turn: ask for kicks again and look once
      // more, as below.
      if (vq->Empty()) {
        vq->SetNotification(true);
        more = !vq->Empty();
      } else {
        more = true;
      }
      break;
    }
    const PopResult r = vq->Pop(&e);
    if (r == PopResult::kBroken) {
      end();
      vq->Flush(done);
      MarkNeedsReset(absl::StrCat("transmit queue ", 2 * pair + 1, ": ", vq->broken_reason()));
      return;
    }
    if (r == PopResult::kEmpty) {
      // Ask for kicks again, then look once more (a frame added in between would be missed).
      vq->SetNotification(true);
      if (vq->Empty()) break;
      vq->SetNotification(false);
      continue;
    }
    ++sent;
    const uint64_t hlen = guest_hdr_len_;
    if (e.in_len != 0 || e.out_len < hlen + kEthHeader || e.out_len > hlen + kMaxTxFrame ||
        e.out.size() > kMaxIov) {
      VDEV_LOG_GUEST_ERROR(counters(), "tx_bad_frame",
                           "%s: transmit buffer of %u bytes (%u writable) dropped", DisplayName(),
                           e.out_len, e.in_len);
      vq->Fill(e, 0, done++);
      continue;
    }
    CopyFromSegments(e.out, 0, hdr, hlen);
    const uint64_t frame_len = e.out_len - hlen;
    if (!ValidTxHeader(hdr, frame_len)) {
      VDEV_LOG_GUEST_ERROR(counters(), "tx_bad_header",
                           "%s: transmit header flags 0x%x gso 0x%x dropped", DisplayName(), hdr[0],
                           hdr[1]);
      vq->Fill(e, 0, done++);
      continue;
    }
    iov.clear();
    if (host_hdr_len_ == static_cast<int>(hlen)) {
      // The header we validated, not the guest's copy (which it may rewrite meanwhile), then the
      // frame: copied behind it when small, else from guest memory.
      uint8_t* h = p.tx_hdrs[done].data();
      std::memcpy(h, hdr, hlen);
      if (frame_len <= kTxBounce - hlen) {
        CopyFromSegments(e.out, hlen, h + hlen, frame_len);
        iov.push_back({h, hlen + frame_len});
      } else {
        iov.push_back({h, hlen});
        AppendSegments(e.out, hlen, &iov);
      }
    } else {
      AppendSegments(e.out, hlen, &iov);  // a backend without headers gets the frame alone
    }
    const ssize_t ret = p.nc->SendIov(iov.data(), static_cast<int>(iov.size()), p.tx_complete);
    vq->Fill(e, 0, done++);
    ++frames;
    bytes += frame_len;
    if (ret == 0) {
      // Queued at the backend: hold the queue until it took the frame.
      p.tx_waiting = true;
      vq->SetNotification(false);
      break;
    }
  }
  end();
  vq->Flush(done);
  NotifyQueue(static_cast<uint16_t>(2 * pair + 1));
  if (more && !p.tx_scheduled) {
    // Bounded work per turn: the rest from the loop (the guest need not kick again).
    vq->SetNotification(false);
    p.tx_scheduled = true;
    // (On the iothread when the queues have one, else on the backend's loop.)
    EventLoop* loop = queue_loop() != nullptr ? queue_loop() : loop_;
    loop->Post([this, pair, alive = alive_] {
      if (!alive->load()) return;
      absl::MutexLock l(&mu_);
      pairs_[pair].tx_scheduled = false;
      FlushTx(pair);
    });
  }
}

bool VirtIONet::Pollable(uint16_t index) const {
  return index % 2 == 1 && index < 2 * num_pairs_;  // transmit queues, not the control queue
}

void VirtIONet::TxComplete(size_t pair) {
  absl::MutexLock l(&mu_);
  if (pair >= pairs_.size()) return;
  pairs_[pair].tx_waiting = false;
  if (!running()) return;
  queue(static_cast<uint16_t>(2 * pair + 1))->SetNotification(true);
  FlushTx(pair);
}

}  // namespace vdev::virtio
