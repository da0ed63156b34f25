// virtio-net receive: the receive filter, buffers for a frame, and the copy, zero-copy and
// batched zero-copy paths.
#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bus/virtio/chain_io.h"
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
  // Asked for every frame a backend sends: the hint answers without the lock while frames flow.
  if (pair < rx_hints_ && rx_hint_[pair].load(std::memory_order_acquire) && dma_allowed()) {
    return true;
  }
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

void VirtIONet::UndoRx(VirtQueue* vq, std::vector<VirtQueueElement>& elems, size_t from,
                       size_t to) {
  for (size_t i = to; i > from; --i) vq->Unpop(elems[i - 1]);
}

bool VirtIONet::PopRxBuffers(VirtQueue* vq, uint64_t need, std::vector<VirtQueueElement>* elems,
                             size_t first, size_t* count, RxShortfall* why) {
  uint64_t have = 0;
  size_t n = 0;
  while (have < need) {
    if (elems->size() <= first + n) elems->emplace_back();
    VirtQueueElement& e = (*elems)[first + n];
    const PopResult r = vq->Pop(&e);
    if (r == PopResult::kBroken) {
      UndoRx(vq, *elems, first, first + n);
      MarkNeedsReset(absl::StrCat("receive queue ", vq->index(), ": ", vq->broken_reason()));
      *why = RxShortfall::kBroken;
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
      UndoRx(vq, *elems, first, first + n);
      *why = RxShortfall::kNoBuffers;
      return false;
    }
    ++n;
    if (e.in_len == 0 || e.out_len != 0) {
      UndoRx(vq, *elems, first, first + n);
      MarkNeedsReset(
          absl::StrCat("receive queue ", vq->index(), ": a buffer that is not device-writable"));
      *why = RxShortfall::kBroken;
      return false;
    }
    have += e.in_len;
    if (!mergeable_) break;
  }
  if (have < need) {  // one buffer (no mergeable buffers), too small for the frame
    UndoRx(vq, *elems, first, first + n);
    *why = RxShortfall::kTooSmall;
    return false;
  }
  *count = n;
  return true;
}

void VirtIONet::FlushRx(size_t pair) {
  Pair& p = pairs_[pair];
  if (p.rx_frames_pending != 0) {
    rx_frames_->Add(std::exchange(p.rx_frames_pending, 0));
    rx_bytes_->Add(std::exchange(p.rx_bytes_pending, 0));
  }
  uint16_t& unflushed = p.rx_unflushed;
  if (unflushed == 0) return;
  const uint16_t index = static_cast<uint16_t>(2 * pair);
  queue(index)->Flush(unflushed);
  unflushed = 0;
  NotifyQueue(index);
}

void VirtIONet::RxBatch(size_t pair, bool begin) {
  absl::MutexLock l(&mu_);
  if (pair >= pairs_.size()) return;
  pairs_[pair].rx_burst = begin;
  if (!begin) FlushRx(pair);
}

void VirtIONet::DirectBatchEnd(size_t pair) {
  absl::MutexLock l(&mu_);
  if (pair < pairs_.size()) FlushRx(pair);
}

uint64_t VirtIONet::RxNeed(size_t pair) const {
  net::NetClientState* peer = pairs_[pair].nc->peer();
  return guest_hdr_len_ + (peer != nullptr ? peer->MaxFrameSize() : kMaxTxFrame);
}

ssize_t VirtIONet::ReceiveFrames(size_t pair, const RxRequest& req, RxShortfall* why) {
  Pair& p = pairs_[pair];
  VirtQueue* vq = queue(static_cast<uint16_t>(2 * pair));
  const int max = std::clamp(req.max, 1, kRxMaxFrames);
  std::vector<VirtQueueElement>& elems = p.rx_elems;
  // Slot 0: as many buffers as a frame of req.need bytes takes.
  size_t first_count = 0;
  if (!PopRxBuffers(vq, req.need, &elems, 0, &first_count, why)) {
    return net::NetClientState::kNoDirect;
  }
  // Later slots: one buffer each, big enough on its own, and only while slot 0 took one (then
  // any buffer left over is among the last popped, which is what Unpop can give back).
  std::array<size_t, kRxMaxFrames + 1>& start = p.rx_slot_start;
  start[0] = 0;
  start[1] = first_count;
  int slots = 1;
  size_t popped = first_count;
  while (slots < max && first_count == 1) {
    if (elems.size() <= popped) elems.emplace_back();
    VirtQueueElement& e = elems[popped];
    const PopResult r = vq->Pop(&e);
    if (r == PopResult::kBroken) {
      UndoRx(vq, elems, 0, popped);
      MarkNeedsReset(absl::StrCat("receive queue ", vq->index(), ": ", vq->broken_reason()));
      *why = RxShortfall::kBroken;
      return net::NetClientState::kNoDirect;
    }
    if (r == PopResult::kEmpty) break;
    if (e.out_len != 0 || e.in_len < req.need) {
      vq->Unpop(e);  // odd or small: it waits for a call that takes it alone
      break;
    }
    start[++slots] = ++popped;
  }
  // Where each slot's frame goes: its buffers as one list (a slot of one buffer uses that
  // buffer's list), and the part after the guest header when the source writes the frame
  // without one.
  net::NetClientState::BufferSet sets[kRxMaxFrames];
  uint64_t capacity[kRxMaxFrames];
  const std::vector<iovec>* slot_iov[kRxMaxFrames];
  for (int k = 0; k < slots; ++k) {
    const std::vector<iovec>* whole = &elems[start[k]].in;
    if (start[k + 1] - start[k] > 1) {
      std::vector<iovec>& merged = p.rx_slot_iov[k];
      merged.clear();
      for (size_t i = start[k]; i < start[k + 1]; ++i) {
        merged.insert(merged.end(), elems[i].in.begin(), elems[i].in.end());
      }
      whole = &merged;
    }
    slot_iov[k] = whole;
    const std::vector<iovec>* t = whole;
    if (!req.with_header) {
      std::vector<iovec>& after = p.rx_slot_target[k];
      after.clear();
      AppendSegments(*whole, guest_hdr_len_, &after);
      t = &after;
    }
    sets[k] = {t->data(), static_cast<int>(std::min(t->size(), req.max_iov))};
    capacity[k] = net::IovSize(sets[k].iov, sets[k].n);
  }
  ssize_t lens[kRxMaxFrames];
  const int filled = std::clamp(req.fill(sets, slots, lens), 0, slots);
  const size_t h = req.with_header ? guest_hdr_len_ : 0;
  size_t next = 0;  // the next buffer an accepted frame lands in (used buffers stay a prefix)
  int accepted = 0;
  for (int k = 0; k < filled; ++k) {
    if (lens[k] <= 0) continue;  // no frame in this set
    if (static_cast<uint64_t>(lens[k]) > capacity[k]) {
      counters().Increment("rx_truncated");  // bigger than the buffers (a TAP says nothing)
      continue;
    }
    if (static_cast<uint64_t>(lens[k]) < h + kEthHeader) {
      counters().Increment("rx_bad_frame");
      continue;
    }
    const uint64_t frame_len = static_cast<uint64_t>(lens[k]) - h;
    if (!req.filtered) {
      uint8_t eth[18];
      const size_t peek = std::min<size_t>(sizeof(eth), frame_len);
      CopyFromSegments(*slot_iov[k], guest_hdr_len_, eth, peek);
      if (!Accept(eth, peek)) {
        rx_filtered_->Add(1);
        continue;
      }
    }
    const uint64_t total = guest_hdr_len_ + frame_len;
    size_t used = start[k + 1] - start[k];
    if (next != start[k]) {
      // A frame before this one was dropped: move this one down into its buffer (single-buffer
      // slots only: several slots means one buffer each).
      p.move_buf.resize(total);
      CopyFromSegments(*slot_iov[k], 0, p.move_buf.data(), total);
      CopyToSegments(elems[next].in, 0, p.move_buf.data(), total);
      slot_iov[k] = &elems[next].in;
    }
    const std::vector<iovec>& dst = *slot_iov[k];
    // The header: blank when the source wrote none; checksum flags only if the driver asked.
    if (h == 0) {
      const virtio_net_hdr_mrg_rxbuf blank{};
      CopyToSegments(dst, 0, &blank, guest_hdr_len_);
    } else if (!(curr_offloads_ & Bit(VIRTIO_NET_F_GUEST_CSUM))) {
      const uint8_t no_flags = 0;
      CopyToSegments(dst, 0, &no_flags, 1);
    }
    // The buffers the frame fills, and how many (num_buffers, 1 without mergeable buffers).
    uint64_t left = total;
    uint16_t nb = 0;
    for (size_t i = next; left > 0 && nb < used; ++i, ++nb) {
      const uint64_t len = std::min(left, elems[i].in_len);
      vq->Fill(elems[i], static_cast<uint32_t>(len), static_cast<uint16_t>(p.rx_unflushed + i));
      left -= len;
    }
    if (guest_hdr_len_ == sizeof(virtio_net_hdr_mrg_rxbuf)) {
      CopyToSegments(dst, offsetof(virtio_net_hdr_mrg_rxbuf, num_buffers), &nb, sizeof(nb));
    }
    next += nb;
    ++accepted;
    p.rx_bytes_pending += frame_len;
  }
  UndoRx(vq, elems, next, popped);
  p.rx_unflushed = static_cast<uint16_t>(p.rx_unflushed + next);
  p.rx_frames_pending += static_cast<uint64_t>(accepted);
  if (accepted > 0 && pair < rx_hints_) rx_hint_[pair].store(true, std::memory_order_release);
  if (!req.defer_flush || p.rx_unflushed >= kRxBatch) FlushRx(pair);
  return filled;
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
  // A filtered frame is dropped before it takes buffers (it must not wait for them).
  uint8_t eth[18];
  const size_t peek = std::min<size_t>(sizeof(eth), size - h);
  net::IovToBuf(iov, n, h, eth, peek);
  if (!Accept(eth, peek)) {
    rx_filtered_->Add(1);
    return static_cast<ssize_t>(size);
  }
  // The frame is in hand: a batch of one, copied in with a header of the guest's layout (the
  // backend's when it carries one, else blank).
  const size_t guest_hdr = guest_hdr_len_;  // the lambda runs under mu_, held here
  const uint64_t total = guest_hdr + (size - h);
  auto copy = [&](const net::NetClientState::BufferSet* sets, int, ssize_t* lens) {
    const absl::Span<const iovec> dst(sets[0].iov, static_cast<size_t>(sets[0].n));
    virtio_net_hdr_mrg_rxbuf hdr{};
    if (h != 0) net::IovToBuf(iov, n, 0, &hdr, std::min<size_t>(h, guest_hdr));
    hdr.num_buffers = 0;
    size_t off = CopyToSegments(dst, 0, &hdr, guest_hdr);
    size_t skip = h;  // the backend's header bytes, which may span iovecs
    for (int i = 0; i < n; ++i) {
      const size_t s = std::min(skip, iov[i].iov_len);
      skip -= s;
      off +=
          CopyToSegments(dst, off, static_cast<uint8_t*>(iov[i].iov_base) + s, iov[i].iov_len - s);
    }
    lens[0] = static_cast<ssize_t>(off);
    return 1;
  };
  RxShortfall why = RxShortfall::kNone;
  const ssize_t r = ReceiveFrames(pair,
                                  {.need = total,
                                   .max = 1,
                                   .with_header = true,
                                   .max_iov = SIZE_MAX,
                                   .fill = copy,
                                   .defer_flush = pairs_[pair].rx_burst,
                                   .filtered = true},
                                  &why);
  if (r != net::NetClientState::kNoDirect) return static_cast<ssize_t>(size);
  switch (why) {
    case RxShortfall::kTooSmall:
      MarkNeedsReset(absl::StrFormat(
          "receive buffer of %u bytes for a %u-byte frame without mergeable buffers",
          pairs_[pair].rx_elems[0].in_len, total));
      return -1;
    case RxShortfall::kNoBuffers:
      counters().Increment("rx_no_buffers");
      return 0;  // the backend keeps it; the next kick of the receive queue brings it in
    default:
      return -1;  // the ring broke
  }
}

ssize_t VirtIONet::ReceiveDirect(size_t pair, net::NetClientState::FillFn fill) {
  absl::MutexLock l(&mu_);
  if (!DirectReady(pair)) return net::NetClientState::kNoDirect;
  // A batch of one, read straight into the guest's buffers; completions published at the end of
  // the sender's burst (DirectBatchEnd).
  ssize_t got = 0;
  auto one = [&](const net::NetClientState::BufferSet* sets, int, ssize_t* lens) {
    lens[0] = got = fill(sets[0].iov, sets[0].n);
    return 1;
  };
  RxShortfall why = RxShortfall::kNone;
  const ssize_t r = ReceiveFrames(pair,
                                  {.need = RxNeed(pair),
                                   .max = 1,
                                   .with_header = host_hdr_len_ != 0,
                                   .max_iov = kMaxIov,
                                   .fill = one,
                                   .defer_flush = true},
                                  &why);
  if (r == net::NetClientState::kNoDirect) return r;
  return got <= 0 ? 0 : got;
}

ssize_t VirtIONet::ReceiveDirectBatch(size_t pair, int max, net::NetClientState::BatchFillFn fill) {
  absl::MutexLock l(&mu_);
  if (!DirectReady(pair) || max < 1) return net::NetClientState::kNoDirect;
  RxShortfall why = RxShortfall::kNone;
  const ssize_t r = ReceiveFrames(pair,
                                  {.need = RxNeed(pair),
                                   .max = max,
                                   .with_header = host_hdr_len_ != 0,
                                   .max_iov = kMaxIov,
                                   .fill = fill},
                                  &why);
  if (r == net::NetClientState::kNoDirect && why == RxShortfall::kBroken) return -1;
  return r;
}

bool VirtIONet::DirectReady(size_t pair) {
  // The source writes our header layout or none (anything else takes the copy path).
  const size_t h = host_hdr_len_;
  return RxReady(pair) && (h == 0 || h == static_cast<size_t>(guest_hdr_len_));
}

}  // namespace vdev::virtio
