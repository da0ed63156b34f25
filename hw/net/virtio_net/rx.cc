// virtio-net receive: the receive filter, buffers for a frame, and the copy, zero-copy and
// batched zero-copy paths.
#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/logging.h"
#include "hw/net/virtio_net/virtio_net_internal.h"

namespace vdev::virtio {

bool VirtIONet::RxReady(size_t pair) {
  // With vhost the backend fills the receive rings (vhost-net reads the TAP itself): a TAP's own
  // reading, direct or not, stays paused.
  if (vhost_dev_ != nullptr && vhost_dev_->started()) return false;
  return running() && pair < curr_pairs_ && dma_allowed() &&
         queue(static_cast<uint16_t>(2 * pair))->active();
}

bool VirtIONet::CanReceive(size_t pair) {
  absl::MutexLock l(&mu_);
  return RxReady(pair);
}

bool VirtIONet::Accept(const uint8_t* frame, size_t len) {
  static constexpr uint8_t kBroadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  const RxFilter& f = filter_;
  if (f.promisc) return true;
  if (len >= 18 && frame[12] == 0x81 && frame[13] == 0x00) {
    const uint16_t vid = ((frame[14] << 8) | frame[15]) & 0xfff;
    if (!f.vlans.test(vid)) return false;
  }
  qom::MacAddress dst;
  std::memcpy(dst.bytes.data(), frame, 6);
  if (frame[0] & 1) {
    if (std::memcmp(frame, kBroadcast, 6) == 0) return !f.nobcast;
    if (f.nomulti) return false;
    if (f.allmulti || f.multi_overflow) return true;
    return std::find(f.multi.begin(), f.multi.end(), dst) != f.multi.end();
  }
  if (f.nouni) return false;
  if (f.alluni || f.uni_overflow) return true;
  if (dst == mac_) return true;
  return std::find(f.uni.begin(), f.uni.end(), dst) != f.uni.end();
}

void VirtIONet::UndoRx(VirtQueue* vq, std::vector<VirtQueueElement>& elems, size_t count) {
  for (size_t i = count; i > 0; --i) vq->Unpop(elems[i - 1]);
}

bool VirtIONet::PopRxBuffers(VirtQueue* vq, uint64_t need, std::vector<VirtQueueElement>* elems,
                             size_t* count) {
  uint64_t have = 0;
  size_t n = 0;
  while (have < need) {
    if (elems->size() <= n) elems->emplace_back();
    VirtQueueElement& e = (*elems)[n];
    const PopResult r = vq->Pop(&e);
    if (r == PopResult::kBroken) {
      UndoRx(vq, *elems, n);
      MarkNeedsReset(absl::StrCat("receive queue ", vq->index(), ": ", vq->broken_reason()));
      return false;
    }
    if (r == PopResult::kEmpty) {
      // Give the driver what we completed, so it can recycle the buffers.
      FlushRx(vq->index() / 2);
      // Ask to be kicked when buffers come, and look again (they may have just come; what we
      // hold is still popped, so only new buffers count).
      vq->SetNotification(true);
      if (!vq->Empty()) {
        vq->SetNotification(false);
        continue;
      }
      UndoRx(vq, *elems, n);
      return false;
    }
    ++n;
    if (e.in_len == 0 || e.out_len != 0) {
      UndoRx(vq, *elems, n);
      MarkNeedsReset(
          absl::StrCat("receive queue ", vq->index(), ": a buffer that is not device-writable"));
      return false;
    }
    have += e.in_len;
    if (!mergeable_) break;
  }
  *count = n;
  return true;
}

uint16_t VirtIONet::CompleteRx(size_t pair, VirtQueue* vq, std::vector<VirtQueueElement>& elems,
                               size_t count, uint64_t total, bool batch) {
  uint16_t& unflushed = pairs_[pair].rx_unflushed;
  uint64_t left = total;
  uint16_t used = 0;
  for (; used < count && left > 0; ++used) {
    const uint64_t len = std::min(left, elems[used].in_len);
    vq->Fill(elems[used], static_cast<uint32_t>(len), static_cast<uint16_t>(unflushed + used));
    left -= len;
  }
  for (size_t i = count; i > used; --i) vq->Unpop(elems[i - 1]);
  if (guest_hdr_len_ == sizeof(virtio_net_hdr_mrg_rxbuf)) {
    const uint16_t nb = used;  // 1 without mergeable buffers (VERSION_1)
    CopyToIov(elems[0].in, offsetof(virtio_net_hdr_mrg_rxbuf, num_buffers), &nb, sizeof(nb));
  }
  unflushed = static_cast<uint16_t>(unflushed + used);
  if (!batch || unflushed >= kRxBatch) FlushRx(pair);
  return used;
}

void VirtIONet::FlushRx(size_t pair) {
  uint16_t& unflushed = pairs_[pair].rx_unflushed;
  if (unflushed == 0) return;
  const uint16_t index = static_cast<uint16_t>(2 * pair);
  queue(index)->Flush(unflushed);
  unflushed = 0;
  NotifyQueue(index);
}

void VirtIONet::DirectBatchEnd(size_t pair) {
  absl::MutexLock l(&mu_);
  if (pair < pairs_.size()) FlushRx(pair);
}

ssize_t VirtIONet::Receive(size_t pair, const iovec* iov, int n) {
  absl::MutexLock l(&mu_);
  // Held at the backend until the driver is ready; dropped by a device waiting for a reset.
  if (!RxReady(pair)) return broken_locked() ? -1 : 0;
  const size_t size = net::IovSize(iov, n);
  const size_t h = host_hdr_len_;
  if (size < h + kEthHeader || size > h + kMaxTxFrame) {
    counters().Increment("rx_bad_frame");
    return -1;
  }
  uint8_t eth[18];
  const size_t peek = std::min<size_t>(sizeof(eth), size - h);
  net::IovToBuf(iov, n, h, eth, peek);
  if (!Accept(eth, peek)) {
    rx_filtered_->Add(1);
    return static_cast<ssize_t>(size);
  }
  const uint64_t total = guest_hdr_len_ + (size - h);
  VirtQueue* vq = queue(static_cast<uint16_t>(2 * pair));
  std::vector<VirtQueueElement>& elems = pairs_[pair].rx_elems;
  size_t count = 0;
  if (!PopRxBuffers(vq, mergeable_ ? total : 1, &elems, &count)) {
    if (!running()) return -1;  // the ring broke
    counters().Increment("rx_no_buffers");
    return 0;  // the backend keeps it; the next kick of the receive queue brings it in
  }
  if (!mergeable_ && elems[0].in_len < total) {
    vq->Unpop(elems[0]);
    MarkNeedsReset(
        absl::StrFormat("receive buffer of %u bytes for a %u-byte frame without "
                        "mergeable buffers",
                        elems[0].in_len, total));
    return -1;
  }
  // The header: the backend's when it carries one of our layout, else a blank one.
  virtio_net_hdr_mrg_rxbuf hdr{};
  if (h != 0) net::IovToBuf(iov, n, 0, &hdr, std::min<size_t>(h, guest_hdr_len_));
  hdr.num_buffers = 0;
  if (!(curr_offloads_ & Bit(VIRTIO_NET_F_GUEST_CSUM))) hdr.hdr.flags = 0;
  std::vector<iovec>& dst = pairs_[pair].rx_iov;
  dst.clear();
  for (size_t k = 0; k < count; ++k) dst.insert(dst.end(), elems[k].in.begin(), elems[k].in.end());
  CopyToIov(dst, 0, &hdr, guest_hdr_len_);
  size_t off = guest_hdr_len_;
  for (int i = 0; i < n; ++i) {
    size_t skip = 0;
    // Skip the backend's header bytes, which may span iovecs.
    size_t consumed_before = 0;
    for (int k = 0; k < i; ++k) consumed_before += iov[k].iov_len;
    if (consumed_before < h) skip = std::min(iov[i].iov_len, h - consumed_before);
    off +=
        CopyToIov(dst, off, static_cast<uint8_t*>(iov[i].iov_base) + skip, iov[i].iov_len - skip);
  }
  CompleteRx(pair, vq, elems, count, total);
  rx_frames_->Add(1);
  rx_bytes_->Add(size - h);
  return static_cast<ssize_t>(size);
}

ssize_t VirtIONet::ReceiveDirect(size_t pair, net::NetClientState::FillFn fill) {
  absl::MutexLock l(&mu_);
  if (!RxReady(pair)) return net::NetClientState::kNoDirect;
  const size_t h = host_hdr_len_;
  if (h != 0 && h != static_cast<size_t>(guest_hdr_len_)) return net::NetClientState::kNoDirect;
  Pair& p = pairs_[pair];
  net::NetClientState* peer = p.nc->peer();
  const uint64_t need = guest_hdr_len_ + (peer != nullptr ? peer->MaxFrameSize() : kMaxTxFrame);
  VirtQueue* vq = queue(static_cast<uint16_t>(2 * pair));
  std::vector<VirtQueueElement>& elems = p.rx_elems;
  size_t count = 0;
  if (!PopRxBuffers(vq, need, &elems, &count)) return net::NetClientState::kNoDirect;
  if (count == 1 && elems[0].in_len < need && !mergeable_) {
    // Too small for the largest frame: the copy path checks the actual size.
    vq->Unpop(elems[0]);
    return net::NetClientState::kNoDirect;
  }
  std::vector<iovec>& dst = p.rx_iov;
  dst.clear();
  for (size_t k = 0; k < count; ++k) dst.insert(dst.end(), elems[k].in.begin(), elems[k].in.end());
  std::vector<iovec>* target = &dst;
  if (h == 0) {
    p.rx_target.clear();
    AppendIov(dst, guest_hdr_len_, &p.rx_target);
    target = &p.rx_target;
  }
  const int niov = static_cast<int>(std::min(target->size(), kMaxIov));
  const uint64_t capacity = net::IovSize(target->data(), niov);
  const ssize_t got = fill(target->data(), niov);
  if (got <= 0) {
    UndoRx(vq, elems, count);
    return 0;
  }
  if (static_cast<uint64_t>(got) > capacity) {
    // The backend's frame was bigger than the buffers (a TAP truncates and says nothing).
    UndoRx(vq, elems, count);
    counters().Increment("rx_truncated");
    return got;
  }
  if (static_cast<uint64_t>(got) < h + kEthHeader) {
    UndoRx(vq, elems, count);
    counters().Increment("rx_bad_frame");
    return got;
  }
  const uint64_t frame_len = static_cast<uint64_t>(got) - h;
  uint8_t eth[18];
  const size_t peek = std::min<size_t>(sizeof(eth), frame_len);
  CopyFromIov(dst, guest_hdr_len_, eth, peek);
  if (!Accept(eth, peek)) {
    UndoRx(vq, elems, count);
    rx_filtered_->Add(1);
    return got;
  }
  if (h == 0) {
    const virtio_net_hdr_mrg_rxbuf blank{};
    CopyToIov(dst, 0, &blank, guest_hdr_len_);
  } else if (!(curr_offloads_ & Bit(VIRTIO_NET_F_GUEST_CSUM))) {
    const uint8_t no_flags = 0;  // the driver did not ask for checksum information
    CopyToIov(dst, 0, &no_flags, 1);
  }
  CompleteRx(pair, vq, elems, count, guest_hdr_len_ + frame_len, /*batch=*/true);
  rx_frames_->Add(1);
  rx_bytes_->Add(frame_len);
  return got;
}

ssize_t VirtIONet::ReceiveDirectBatch(size_t pair, int max, net::NetClientState::BatchFillFn fill) {
  absl::MutexLock l(&mu_);
  if (!RxReady(pair) || max < 1) return net::NetClientState::kNoDirect;
  const size_t h = host_hdr_len_;
  if (h != 0 && h != static_cast<size_t>(guest_hdr_len_)) return net::NetClientState::kNoDirect;
  Pair& p = pairs_[pair];
  net::NetClientState* peer = p.nc->peer();
  const uint64_t need = guest_hdr_len_ + (peer != nullptr ? peer->MaxFrameSize() : kMaxTxFrame);
  VirtQueue* vq = queue(static_cast<uint16_t>(2 * pair));
  max = std::min(max, 64);
  if (p.batch_elems.size() < static_cast<size_t>(max)) {
    p.batch_elems.resize(max);
    p.batch_target.resize(max);
  }
  // One buffer per frame, each big enough for the largest frame (else the per-frame path).
  int count = 0;
  while (count < max) {
    VirtQueueElement& e = p.batch_elems[count];
    const PopResult r = vq->Pop(&e);
    if (r == PopResult::kBroken) {
      for (int k = count; k > 0; --k) vq->Unpop(p.batch_elems[k - 1]);
      MarkNeedsReset(absl::StrCat("receive queue ", vq->index(), ": ", vq->broken_reason()));
      return -1;
    }
    if (r == PopResult::kEmpty) break;
    if (e.out_len != 0 || e.in_len < need) {
      vq->Unpop(e);  // odd or small: the per-frame path deals with it
      break;
    }
    ++count;
  }
  if (count == 0) return net::NetClientState::kNoDirect;
  net::NetClientState::BufferSet sets[64];
  uint64_t capacity[64];
  for (int k = 0; k < count; ++k) {
    std::vector<iovec>& t = p.batch_target[k];
    if (h == 0) {
      t.clear();
      AppendIov(p.batch_elems[k].in, guest_hdr_len_, &t);
    } else {
      t = p.batch_elems[k].in;
    }
    sets[k] = {t.data(), static_cast<int>(std::min(t.size(), kMaxIov))};
    capacity[k] = net::IovSize(sets[k].iov, sets[k].n);
  }
  ssize_t lens[64];
  const int filled = std::clamp(fill(sets, count, lens), 0, count);
  // Accepted frames are moved down over filtered ones, so the used buffers stay a prefix.
  int out = 0;
  for (int i = 0; i < filled; ++i) {
    const std::vector<iovec>& src = p.batch_elems[i].in;
    if (lens[i] <= 0) continue;  // no frame in this set
    if (static_cast<uint64_t>(lens[i]) > capacity[i]) {
      counters().Increment("rx_truncated");
      continue;
    }
    if (lens[i] < static_cast<ssize_t>(h + kEthHeader)) {
      counters().Increment("rx_bad_frame");
      continue;
    }
    const uint64_t frame_len = static_cast<uint64_t>(lens[i]) - h;
    uint8_t eth[18];
    const size_t peek = std::min<size_t>(sizeof(eth), frame_len);
    CopyFromIov(src, guest_hdr_len_, eth, peek);
    if (!Accept(eth, peek)) {
      rx_filtered_->Add(1);
      continue;
    }
    const uint64_t total = guest_hdr_len_ + frame_len;
    if (out != i) {
      p.move_buf.resize(total);
      CopyFromIov(src, 0, p.move_buf.data(), total);
      CopyToIov(p.batch_elems[out].in, 0, p.move_buf.data(), total);
    }
    const std::vector<iovec>& dst = p.batch_elems[out].in;
    if (h == 0) {
      const virtio_net_hdr_mrg_rxbuf blank{};
      CopyToIov(dst, 0, &blank, guest_hdr_len_);
    } else if (!(curr_offloads_ & Bit(VIRTIO_NET_F_GUEST_CSUM))) {
      const uint8_t no_flags = 0;
      CopyToIov(dst, 0, &no_flags, 1);
    }
    if (guest_hdr_len_ == sizeof(virtio_net_hdr_mrg_rxbuf)) {
      const uint16_t one = 1;
      CopyToIov(dst, offsetof(virtio_net_hdr_mrg_rxbuf, num_buffers), &one, sizeof(one));
    }
    vq->Fill(p.batch_elems[out], static_cast<uint32_t>(total),
             static_cast<uint16_t>(p.rx_unflushed + out));
    rx_bytes_->Add(frame_len);
    ++out;
  }
  for (int k = count; k > out; --k) vq->Unpop(p.batch_elems[k - 1]);
  p.rx_unflushed = static_cast<uint16_t>(p.rx_unflushed + out);
  rx_frames_->Add(out);
  FlushRx(pair);
  return filled;
}

}  // namespace vdev::virtio
