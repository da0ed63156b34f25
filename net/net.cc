#include "net/net.h"

#include <algorithm>
#include <cstring>

#include "core/base/logging.h"

namespace vdev::net {

size_t IovSize(const iovec* iov, int n) {
  size_t total = 0;
  for (int i = 0; i < n; ++i) total += iov[i].iov_len;
  return total;
}

namespace {

// Copies up to `len` bytes between `buf` and the iov from `offset` on (into the iov when
// `to_iov`); returns the count.
size_t CopyIov(const iovec* iov, int n, size_t offset, uint8_t* buf, size_t len, bool to_iov) {
  size_t done = 0;
  for (int i = 0; i < n && done < len; ++i) {
    if (offset >= iov[i].iov_len) {
      offset -= iov[i].iov_len;
      continue;
    }
    const size_t chunk = std::min(iov[i].iov_len - offset, len - done);
    uint8_t* seg = static_cast<uint8_t*>(iov[i].iov_base) + offset;
    if (to_iov) {
      std::memcpy(seg, buf + done, chunk);
    } else {
      std::memcpy(buf + done, seg, chunk);
    }
    done += chunk;
    offset = 0;
  }
  return done;
}

}  // namespace

size_t IovFromBuf(const iovec* iov, int n, size_t offset, const void* in, size_t len) {
  return CopyIov(iov, n, offset, static_cast<uint8_t*>(const_cast<void*>(in)), len, true);
}

size_t IovToBuf(const iovec* iov, int n, size_t offset, void* out, size_t len) {
  return CopyIov(iov, n, offset, static_cast<uint8_t*>(out), len, false);
}

NetClientState::NetClientState(std::string type, std::string name)
    : type_(std::move(type)),
      name_(std::move(name)),
      tx_link_down_(counters_.Get("tx_link_down")) {}

NetClientState::~NetClientState() {
  Unlink(/*sender_going_away=*/true);
  PurgeQueue(nullptr, this);
}

bool NetClientState::Connect(NetClientState* a, NetClientState* b) {
  if (a == nullptr || b == nullptr || a == b || a->peer_ != nullptr || b->peer_ != nullptr) {
    return false;
  }
  a->peer_ = b;
  b->peer_ = a;
  return true;
}

void NetClientState::Disconnect() { Unlink(/*sender_going_away=*/false); }

void NetClientState::Unlink(bool sender_going_away) {
  NetClientState* p = peer_;
  if (p == nullptr) return;
  p->PurgeQueue(this, sender_going_away ? this : nullptr);
  PurgeQueue(p);
  p->peer_ = nullptr;
  peer_ = nullptr;
}

void NetClientState::SetLinkDown(bool down) {
  link_down_ = down;
  LinkStatusChanged();
  // QEMU's set_link: a NIC's link follows its backend's (and the backend hears about it).
  if (peer_ != nullptr) {
    peer_->link_down_ = down;
    peer_->LinkStatusChanged();
  }
}

bool NetClientState::CanSend() {
  NetClientState* p = peer_;
  if (p == nullptr) return false;
  if (p->must_queue_.load(std::memory_order_acquire)) return false;
  return p->CanReceive();
}

ssize_t NetClientState::Send(const void* buf, size_t len, const SentCallback& sent) {
  iovec v{const_cast<void*>(buf), len};
  return SendIov(&v, 1, sent);
}

ssize_t NetClientState::SendIov(const iovec* iov, int n, const SentCallback& sent) {
  NetClientState* p = peer_;
  const size_t size = IovSize(iov, n);
  if (p == nullptr) {
    counters_.Increment("tx_no_peer");
    return -1;
  }
  if (link_down_ || p->link_down_) {
    // As a cable pulled out: the frame is gone, but the sender is not held up.
    tx_link_down_->Add(1);
    return static_cast<ssize_t>(size);
  }
  if (has_filters_.load(std::memory_order_acquire)) Filter(iov, n, /*sent_by_this=*/true);
  return p->Deliver(iov, n, this, sent);
}

NetClientState* NetClientState::DirectPeer() const {
  // Zero copy only when nothing stands between the two: link up both ends, no filter watching
  // either side, nothing queued ahead (frames keep their order).
  NetClientState* p = peer_;
  if (p == nullptr || link_down_ || p->link_down_) return nullptr;
  if (has_filters_.load(std::memory_order_acquire) ||
      p->has_filters_.load(std::memory_order_acquire) ||
      p->must_queue_.load(std::memory_order_acquire)) {
    return nullptr;
  }
  return p;
}

ssize_t NetClientState::SendDirect(FillFn fill) {
  NetClientState* p = DirectPeer();
  return p != nullptr ? p->ReceiveDirect(fill) : kNoDirect;
}

ssize_t NetClientState::SendDirectBatch(int max, BatchFillFn fill) {
  NetClientState* p = DirectPeer();
  return p != nullptr ? p->ReceiveDirectBatch(max, fill) : kNoDirect;
}

ssize_t NetClientState::Deliver(const iovec* iov, int n, NetClientState* sender,
                                const SentCallback& sent) {
  // Under queue_mu_: queue a copy (`refused`: the receiver said "not now", so stop delivering
  // directly until the next flush).
  auto enqueue = [&](bool observed, bool refused) ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
    if (refused) receive_disabled_ = true;
    if (!sent && queue_.size() >= kMaxQueuedFrames) {
      UpdateMustQueue();
      counters_.Increment("rx_queue_full_drops");
      return ssize_t{-1};
    }
    Packet pkt{sender, std::vector<uint8_t>(IovSize(iov, n)), sent, observed};
    IovToBuf(iov, n, 0, pkt.data.data(), pkt.data.size());
    queue_.push_back(std::move(pkt));
    UpdateMustQueue();
    counters_.Increment("rx_queued");
    return ssize_t{0};
  };
  // Keep order behind what is already waiting.
  for (;;) {
    const uint64_t gen = ready_gen_.load(std::memory_order_acquire);
    const bool must_queue = must_queue_.load(std::memory_order_acquire);
    if (!must_queue && CanReceive()) break;
    absl::MutexLock l(&queue_mu_);
    // What was read may be stale: a flush that emptied the queue can have ended since the flag
    // was read, or the receiver became ready (and flushed) since it said no. Queued now, the
    // frame would wait for a flush nobody runs, and everything after it behind it: look again.
    if ((must_queue || ready_gen_.load(std::memory_order_relaxed) != gen) && !flushing_ &&
        !receive_disabled_ && queue_.empty()) {
      continue;
    }
    return enqueue(false, false);
  }
  if (has_filters_.load(std::memory_order_acquire)) Filter(iov, n, /*sent_by_this=*/false);
  for (;;) {
    const uint64_t gen = ready_gen_.load(std::memory_order_acquire);
    const ssize_t ret = ReceiveIov(iov, n);
    if (ret < 0) counters_.Increment("rx_refused");
    if (ret != 0) return ret;
    absl::MutexLock l(&queue_mu_);
    // A flush that ran since the refusal found nothing to do: the receiver may have room now.
    if (ready_gen_.load(std::memory_order_relaxed) != gen && queue_.empty()) continue;
    return enqueue(true, true);
  }
}

bool NetClientState::FlushQueue() {
  {
    absl::MutexLock l(&queue_mu_);
    ready_gen_.fetch_add(1, std::memory_order_acq_rel);
    if (flushing_) return false;
    flushing_ = true;
    UpdateMustQueue();
  }
  for (;;) {
    Packet pkt;
    {
      absl::MutexLock l(&queue_mu_);
      if (queue_.empty()) {
        receive_disabled_ = false;
        flushing_ = false;
        UpdateMustQueue();
        return true;
      }
      pkt = std::move(queue_.front());
      queue_.pop_front();
    }
    iovec v{pkt.data.data(), pkt.data.size()};
    ssize_t ret = 0;
    if (CanReceive()) {
      if (!pkt.observed) Filter(&v, 1, /*sent_by_this=*/false);
      pkt.observed = true;
      ret = ReceiveIov(&v, 1);
    }
    if (ret == 0) {
      absl::MutexLock l(&queue_mu_);
      queue_.push_front(std::move(pkt));
      receive_disabled_ = true;
      flushing_ = false;
      UpdateMustQueue();
      return false;
    }
    if (ret < 0) counters_.Increment("rx_refused");
    if (pkt.sent) pkt.sent();
  }
}

void NetClientState::PurgeQueue(const NetClientState* sender,
                                const NetClientState* no_callbacks_for) {
  std::vector<SentCallback> callbacks;
  {
    absl::MutexLock l(&queue_mu_);
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (sender == nullptr || it->sender == sender) {
        // Senders resume as if delivered; one that is being destroyed is not called.
        if (it->sent && it->sender != no_callbacks_for) callbacks.push_back(std::move(it->sent));
        counters_.Increment("rx_purged");
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    if (queue_.empty()) receive_disabled_ = false;
    UpdateMustQueue();
  }
  for (auto& cb : callbacks) cb();
}

void NetClientState::ReceiverReady() {
  FlushQueue();
  if (NetClientState* p = peer_; p != nullptr) p->PeerReady();
}

void NetClientState::AddFilter(NetFilter* f) {
  absl::MutexLock l(&filter_mu_);
  filters_.push_back(f);
  has_filters_.store(true, std::memory_order_release);
}

void NetClientState::RemoveFilter(NetFilter* f) {
  absl::MutexLock l(&filter_mu_);
  filters_.erase(std::remove(filters_.begin(), filters_.end(), f), filters_.end());
  has_filters_.store(!filters_.empty(), std::memory_order_release);
}

void NetClientState::Filter(const iovec* iov, int n, bool sent_by_this) {
  absl::MutexLock l(&filter_mu_);
  for (NetFilter* f : filters_) f->Observe(*this, iov, n, sent_by_this);
}

}  // namespace vdev::net
