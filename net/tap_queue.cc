// One TAP queue: its fd on the netdev's loop, the write path (writev, or io_uring batches inside
// the NIC's transmit batch), the read path (straight into guest buffers, batched, or through a
// bounce buffer), backpressure both ways, and the header/offload ioctls the NIC drives.
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"
#include "core/loop/io_uring.h"
#include "net/tap_queue_internal.h"
#include "net/vhost_net.h"
#include "net/virtio_net_uapi.h"

namespace vdev::net {
namespace {

// Frames read per readiness event before giving other fds a turn.
constexpr int kReadBudget = 256;

class TapQueueImpl final : public TapQueue {
 public:
  TapQueueImpl(std::string name, std::string ifname, bool multi_queue, UniqueFd fd,
               bool has_vnet_hdr)
      : TapQueue(std::move(name)),
        ifname_(std::move(ifname)),
        multi_queue_(multi_queue),
        fd_(std::move(fd)),
        has_vnet_hdr_(has_vnet_hdr),
        buf_(kMaxFrameSize) {
    tx_frames_ = counters().Get("tx_frames");
    rx_frames_ = counters().Get("rx_frames");
    tx_errors_ = counters().Get("tx_errors");
    rx_errors_ = counters().Get("rx_errors");
    if (has_vnet_hdr_) {
      int len = sizeof(virtio_net_hdr);
      ioctl(fd_.get(), TUNSETVNETHDRSZ, &len);
      // UFO is gone from some kernels: probe it.
      has_ufo_ = ioctl(fd_.get(), TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_UFO) == 0;
      ioctl(fd_.get(), TUNSETOFFLOAD, 0u);
    }
    ReadMtu();
  }
  // (The base destructor unlinks; it must not call this client's callbacks back.)

  // Batches TAP writes and reads through io_uring (one system call for many frames). Only with
  // an unlimited send buffer: a limited one must be able to push back frame by frame.
  void EnableBatching(bool unlimited_sndbuf) override {
    if (!unlimited_sndbuf) return;
    auto ring = IoUring::Create(2 * kMaxBatch);
    if (ring.ok()) uring_ = std::move(*ring);
  }

  int fd() const override { return fd_.get(); }

  absl::Status Start(EventLoop& loop) override {
    loop_ = &loop;
    resume_ = [this] { loop_->Post([this] { SetReading(true); }); };
    auto w = loop.WatchFd(fd_.get(), EPOLLIN, [this](uint32_t ev) { OnReady(ev); });
    if (!w.ok()) return w.status();
    watch_ = std::move(*w);
    return absl::OkStatus();
  }
  // On the loop thread.
  void Stop() override { watch_.Reset(); }

  // ---- NetClientState ----
  // The lock is held from Begin to End (across calls): checked by hand, not by the analysis.
  void ReceiveBatchBegin() override ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (uring_ == nullptr) return;
    batch_mu_.Lock();
    batch_owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  }
  void ReceiveBatchEnd() override ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (uring_ == nullptr) return;
    SubmitWrites();
    batch_owner_.store(std::thread::id(), std::memory_order_relaxed);
    batch_mu_.Unlock();
  }
  bool InBatch() const {
    return batch_owner_.load(std::memory_order_relaxed) == std::this_thread::get_id();
  }

  ssize_t ReceiveIov(const iovec* iov, int n) override {
    if (dead_.load(std::memory_order_relaxed)) return -1;  // the interface is gone
    if (uring_ != nullptr && InBatch() && (uring_broken_ || n > kMaxIov)) {
      SubmitWrites();  // what the batch holds goes first: keep the order
    }
    if (uring_ != nullptr && !uring_broken_ && InBatch() && n <= kMaxIov) {
      // Inside the NIC's batch: queue the write; ReceiveBatchEnd submits them all at once.
      if (tx_pending_ == kMaxBatch) SubmitWrites();
      TxSlot& slot = tx_slots_[tx_pending_];
      int cnt = 0;
      if (has_vnet_hdr_ && !using_vnet_hdr_) slot.iov[cnt++] = {zero_hdr_, size_t(vnet_hdr_len_)};
      for (int i = 0; i < n; ++i) slot.iov[cnt++] = iov[i];
      uring_->PrepWritev(fd_.get(), slot.iov, cnt, tx_pending_);
      ++tx_pending_;
      return static_cast<ssize_t>(IovSize(iov, n));
    }
    // A frame from the NIC. Without the header in use, the kernel still expects one: zeros.
    iovec v[64 + 1];
    virtio_net_hdr_mrg_rxbuf zero{};
    int cnt = 0;
    if (has_vnet_hdr_ && !using_vnet_hdr_) v[cnt++] = {&zero, size_t(vnet_hdr_len_)};
    if (n > 64) return WriteLinearised(iov, n);
    for (int i = 0; i < n; ++i) v[cnt++] = iov[i];
    const ssize_t r = writev(fd_.get(), v, cnt);
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        WantWrite();
        return 0;
      }
      tx_errors_->Add(1);
      return -1;
    }
    tx_frames_->Add(1);
    return static_cast<ssize_t>(IovSize(iov, n));
  }

  // Submits the queued writes and waits for them (the frames' memory is the guest's until then).
  void SubmitWrites() {
    if (tx_pending_ == 0) return;
    const unsigned n = tx_pending_;
    tx_pending_ = 0;
    auto r = uring_->SubmitAndWait(n);
    if (!r.ok() || *r != n) {
      // Should not happen; if it does, stop batching rather than risk stale operations.
      VDEV_LOG(kWarning, "tap %s: io_uring submission failed; back to one system call per frame",
               name());
      tx_errors_->Add(n);
      uring_broken_ = true;
      return;
    }
    uring_->Reap([&](uint64_t, int32_t res) {
      if (res < 0) {
        tx_errors_->Add(1);  // EAGAIN included: with an unlimited send buffer, not expected
      } else {
        tx_frames_->Add(1);
      }
    });
  }

  void PeerReady() override {
    // The NIC can receive again: resume reading (on the loop thread).
    loop_->Post([this] { SetReading(true); });
  }

  bool HasVnetHdr() const override { return has_vnet_hdr_; }
  bool HasVnetHdrLen(int len) const override {
    return has_vnet_hdr_ &&
           (len == sizeof(virtio_net_hdr) || len == sizeof(virtio_net_hdr_mrg_rxbuf));
  }
  void UsingVnetHdr(bool enable) override { using_vnet_hdr_ = has_vnet_hdr_ && enable; }
  void SetVnetHdrLen(int len) override {
    if (!HasVnetHdrLen(len)) return;
    if (ioctl(fd_.get(), TUNSETVNETHDRSZ, &len) == 0) vnet_hdr_len_ = len;
  }
  bool HasUfo() const override { return has_ufo_; }
  void SetOffload(const Offloads& o) override {
    if (!has_vnet_hdr_) return;
    unsigned flags = 0;
    if (o.csum) {
      flags |= TUN_F_CSUM;
      if (o.tso4) flags |= TUN_F_TSO4;
      if (o.tso6) flags |= TUN_F_TSO6;
      if (o.ecn) flags |= TUN_F_TSO_ECN;
      if (o.ufo && has_ufo_) flags |= TUN_F_UFO;
    }
    if (ioctl(fd_.get(), TUNSETOFFLOAD, flags) != 0) {
      VDEV_LOG(kWarning, "tap %s: TUNSETOFFLOAD 0x%x: %s", name(), flags, strerror(errno));
      return;
    }
    gso_ = flags & (TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UFO);
    ReadMtu();
  }
  void SetQueueEnabled(bool enable) override {
    if (!multi_queue_) return;
    ifreq ifr{};
    ifr.ifr_flags = enable ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
    // EINVAL: already in that state.
    if (ioctl(fd_.get(), TUNSETQUEUE, &ifr) != 0 && errno != EINVAL) {
      VDEV_LOG(kWarning, "tap %s: TUNSETQUEUE: %s", name(), strerror(errno));
    }
  }
  int CarriedVnetHdrLen() const override { return using_vnet_hdr_ ? vnet_hdr_len_ : 0; }
  // The largest frame the kernel may hand us: a GSO frame with offloads on, else the MTU's.
  size_t MaxFrameSize() const override {
    return (gso_ ? 65535 : mtu_.load(std::memory_order_relaxed)) + 14 + 4;
  }

 private:
  void ReadMtu() {
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, ifname_.c_str(), IFNAMSIZ - 1);
    const int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s >= 0) {
      if (ioctl(s, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0) mtu_ = ifr.ifr_mtu;
      close(s);
    }
  }

  ssize_t WriteLinearised(const iovec* iov, int n) {
    const size_t size = IovSize(iov, n);
    const size_t hdr = has_vnet_hdr_ && !using_vnet_hdr_ ? vnet_hdr_len_ : 0;
    if (size + hdr > buf_.size()) {
      tx_errors_->Add(1);
      return -1;
    }
    std::vector<uint8_t> tmp(hdr + size);
    IovToBuf(iov, n, 0, tmp.data() + hdr, size);
    const ssize_t r = write(fd_.get(), tmp.data(), tmp.size());
    if (r < 0) {
      if (errno == EAGAIN) {
        WantWrite();
        return 0;
      }
      tx_errors_->Add(1);
      return -1;
    }
    tx_frames_->Add(1);
    return static_cast<ssize_t>(size);
  }

  // The TAP is full: watch for room (from whatever thread the NIC transmits on).
  void WantWrite() {
    if (want_write_.exchange(true)) return;
    loop_->Post([this] { UpdateEvents(); });
  }

  void SetReading(bool on) {
    reading_ = on;
    UpdateEvents();
  }

  void UpdateEvents() {
    if (!watch_.active()) return;
    uint32_t ev =
        (reading_ ? uint32_t{EPOLLIN} : 0u) | (want_write_.load() ? uint32_t{EPOLLOUT} : 0u);
    if (ev != watch_.events()) (void)watch_.SetEvents(ev);
  }

  void OnReady(uint32_t ev) {
    if (ev & (EPOLLERR | EPOLLHUP)) {
      // The interface went away under us: stop serving the fd, and let the NIC's frames waiting
      // here go (their callbacks resume its transmit), so nothing waits forever.
      VDEV_LOG(kWarning, "tap %s: fd error or hang-up; no longer served", name());
      dead_ = true;
      watch_.Reset();
      PurgeIncoming();
      return;
    }
    if (ev & EPOLLOUT) {
      want_write_ = false;
      UpdateEvents();
      ReceiverReady();  // resends the queued frames; the NIC's transmit resumes on their callbacks
    }
    if (ev & EPOLLIN) ReadFrames();
  }

  // Reads frames and hands them to the NIC until the TAP is empty, the budget is spent, or the
  // NIC cannot take more (then reading pauses until PeerReady).
  void ReadFrames() {
    ReadBurst();
    EndDirectBatch();  // the NIC publishes what it completed in the burst
  }

  // Reads up to rx_batch_ frames with one io_uring submission, straight into the NIC's buffers.
  // Returns false when the TAP is empty (or the NIC offered nothing).
  bool ReadBatch(int* budget) {
    if (uring_broken_) return false;
    int filled = 0;
    bool full = false;
    const ssize_t taken = SendDirectBatch(
        std::min(rx_batch_, *budget), [&](const BufferSet* sets, int count, ssize_t* lens) -> int {
          // (Under the NIC's lock: the header settings cannot change meanwhile.)
          const int strip = has_vnet_hdr_ && !using_vnet_hdr_ ? vnet_hdr_len_ : 0;
          for (int k = 0; k < count; ++k) {
            iovec* v = rx_slots_[k].iov;
            int cnt = 0;
            if (strip) v[cnt++] = {rx_scratch_, size_t(strip)};
            const int n = std::min(sets[k].n, kMaxIov);
            for (int j = 0; j < n; ++j) v[cnt++] = sets[k].iov[j];
            uring_->PrepReadv(fd_.get(), v, cnt, static_cast<uint64_t>(k));
          }
          auto r = uring_->SubmitAndWait(static_cast<unsigned>(count));
          for (int k = 0; k < count; ++k) lens[k] = -1;
          if (!r.ok() || *r != static_cast<unsigned>(count)) {
            uring_broken_ = true;  // nothing is read into these buffers later: no more batches
            return count;
          }
          {
            // Unlinked reads run in order; one that finds the TAP empty leaves a hole (<= 0), and a
            // frame that arrived just after it may fill a later one.
            uring_->Reap([&](uint64_t k, int32_t res) {
              if (k < static_cast<uint64_t>(count)) lens[k] = res > strip ? res - strip : -1;
            });
          }
          int ok = 0;
          for (int k = 0; k < count; ++k) ok += lens[k] > 0;
          rx_frames_->Add(ok);
          filled = ok;
          // Adapt the batch to the traffic: full batches grow it, short ones shrink it.
          if (ok == count) {
            rx_batch_ = std::min(rx_batch_ * 2, kMaxBatch);
          } else if (ok < count / 2) {
            rx_batch_ = std::max(rx_batch_ / 2, 1);
          }
          full = ok == count;
          return count;
        });
    if (taken == kNoDirect) return false;
    *budget -= std::max(filled, 1);
    return full;  // a short batch: the TAP is (about) empty
  }

  void ReadBurst() {
    const int strip = has_vnet_hdr_ && !using_vnet_hdr_ ? vnet_hdr_len_ : 0;
    virtio_net_hdr_mrg_rxbuf scratch;
    if (uring_ != nullptr) {
      int budget = kReadBudget;
      while (budget > 0 && ReadBatch(&budget)) {
      }
      if (budget <= 0) return;
      // The NIC offered no buffers, or the TAP is empty: the per-frame path below sorts out which.
    }
    for (int i = 0; i < kReadBudget; ++i) {
      // Zero copy: read into the guest's buffers when the NIC offers them.
      bool again = false;
      const ssize_t direct = SendDirect([&](const iovec* iov, int n) -> ssize_t {
        iovec v[260];
        if (n > 256) return -1;
        int cnt = 0;
        if (strip) v[cnt++] = {&scratch, size_t(strip)};
        for (int k = 0; k < n; ++k) v[cnt++] = iov[k];
        const ssize_t r = readv(fd_.get(), v, cnt);
        if (r < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK) {
            again = true;
            return 0;
          }
          rx_errors_->Add(1);
          ReadMtu();  // a frame bigger than the buffers (EFAULT/EINVAL): the MTU may have grown
          return -1;
        }
        if (r <= strip) {
          again = r == 0;
          rx_errors_->Add(1);
          return -1;
        }
        rx_frames_->Add(1);
        return r - strip;
      });
      if (direct != kNoDirect) {
        if (again) return;
        continue;  // delivered, or a bad read already counted
      }
      if (!CanSend()) {
        if (peer() != nullptr) {
          SetReading(false);  // until the NIC says it can receive (PeerReady)
        } else {
          DiscardOne();  // nobody listens: drain, do not spin
        }
        return;
      }
      // Copy path: into our buffer, then to the NIC.
      const ssize_t r = read(fd_.get(), buf_.data(), buf_.size());
      if (r < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) rx_errors_->Add(1);
        return;
      }
      if (r <= strip) {
        rx_errors_->Add(1);  // shorter than the header, or empty
        if (r == 0) return;
        continue;
      }
      rx_frames_->Add(1);
      if (Send(buf_.data() + strip, size_t(r) - strip, resume_) == 0) {
        // Queued at the NIC: wait for it to be delivered before reading more.
        SetReading(false);
        return;
      }
    }
  }

  void DiscardOne() { (void)!read(fd_.get(), buf_.data(), buf_.size()); }

  const std::string ifname_;
  const bool multi_queue_;
  UniqueFd fd_;
  const bool has_vnet_hdr_;
  bool using_vnet_hdr_ = false;
  int vnet_hdr_len_ = sizeof(virtio_net_hdr);
  bool has_ufo_ = false;
  bool gso_ = false;
  std::atomic<int> mtu_{1500};
  std::vector<uint8_t> buf_;  // the copy path's frame buffer (loop thread)

  // io_uring batching (nullptr: one system call per frame).
  static constexpr int kMaxBatch = 64;
  static constexpr int kMaxIov = 64;
  std::unique_ptr<IoUring> uring_;
  absl::Mutex batch_mu_;  // one transmit batch at a time
  std::atomic<std::thread::id> batch_owner_{};
  bool uring_broken_ = false;
  std::atomic<bool> dead_{false};
  struct TxSlot {
    iovec iov[kMaxIov + 1];
  };
  TxSlot tx_slots_[kMaxBatch];
  int tx_pending_ = 0;
  uint8_t zero_hdr_[sizeof(virtio_net_hdr_mrg_rxbuf)] = {};
  int rx_batch_ = 4;
  struct RxSlot {
    iovec iov[kMaxIov + 1];
  };
  RxSlot rx_slots_[kMaxBatch];
  uint8_t rx_scratch_[sizeof(
      virtio_net_hdr_mrg_rxbuf)];  // adapts: doubles while batches come back full, halves when not

  EventLoop* loop_ = nullptr;
  SentCallback resume_;  // a frame queued at the NIC was delivered: read again
  FdWatch watch_;
  bool reading_ = true;  // loop thread
  std::atomic<bool> want_write_{false};
  Counter* tx_frames_;
  Counter* rx_frames_;
  Counter* tx_errors_;
  Counter* rx_errors_;
};

}  // namespace

std::unique_ptr<TapQueue> NewTapQueue(std::string name, std::string ifname, bool multi_queue,
                                      UniqueFd fd, bool has_vnet_hdr) {
  return std::make_unique<TapQueueImpl>(std::move(name), std::move(ifname), multi_queue,
                                        std::move(fd), has_vnet_hdr);
}

}  // namespace vdev::net
