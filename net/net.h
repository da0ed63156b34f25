// NetClientState: one end of a virtual network link (QEMU's NetClientState), and the base of the
// -netdev backends.
//
// Two clients are peers: a NIC (virtio-net's queue pair) and a backend queue (a TAP queue, a
// datagram socket, a hub port, a loopback). A client sends a frame to its peer with SendIov; the
// peer receives it in ReceiveIov. A receiver that cannot take a frame now (no guest buffers, a
// full TAP) answers 0: the frame is kept in the receiver's incoming queue, the sender learns it was
// queued (SendIov returns 0) and its `sent` callback runs once the frame is finally delivered (or
// purged), which is the sender's cue to send more. Until then the receiver gets no new frame
// directly, so order is kept. The receiver calls ReceiverReady() when it can take frames again: the
// queue is flushed and the peer's PeerReady() hook runs (a TAP resumes reading). Disconnecting,
// or destroying, a client purges what it queued at its peer and what its peer queued at it.
//
// Frames may carry a virtio-net header (`struct virtio_net_hdr`, 10 or 12 bytes) in front, when
// both sides agreed on it: a backend that takes one (UsingVnetHdr) gets the NIC's header as the
// first bytes of every frame, of the length set with SetVnetHdrLen.
//
// Example (a backend):
//   class Echo : public NetClientState {
//    public:
//     Echo() : NetClientState("echo", "e0") {}
//     ssize_t ReceiveIov(const iovec* iov, int n) override { return IovSize(iov, n); }
//   };
//   NetClientState::Connect(&nic, &echo);
//   nic.SendIov(iov, 1, [] { /* the peer took a queued frame: send more */ });
//
// Thread-safety: SendIov, ReceiverReady and the receive hooks may run on any thread (a vCPU thread
// sends, the backend's loop thread receives); the incoming queue has its own lock and no lock of
// this class is held while a hook runs. Connect/Disconnect are control-plane calls made while
// neither side is moving data (devices quiesce first).
#ifndef VDEV_NET_NET_H_
#define VDEV_NET_NET_H_

#include <sys/types.h>
#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "core/base/counters.h"

namespace vdev {
class EventLoop;
}  // namespace vdev

namespace vdev::net {

// The largest frame a client moves (a 64 KiB GSO frame plus its Ethernet and virtio headers).
inline constexpr size_t kMaxFrameSize = 65536 + 14 + 4 + 12;
// The incoming queue's capacity for frames whose sender gave no callback (others always queue:
// such a sender stops until called back).
inline constexpr size_t kMaxQueuedFrames = 1024;

size_t IovSize(const iovec* iov, int n);
// Copies up to `len` bytes of the iov into `out`; returns the count.
size_t IovToBuf(const iovec* iov, int n, size_t offset, void* out, size_t len);
// Copies up to `len` bytes of `in` into the iov from `offset` on; returns the count.
size_t IovFromBuf(const iovec* iov, int n, size_t offset, const void* in, size_t len);

// The checksum/segmentation offloads a receiver of a vnet header accepts (TUNSETOFFLOAD).
struct Offloads {
  bool csum = false;
  bool tso4 = false;
  bool tso6 = false;
  bool ecn = false;
  bool ufo = false;
  bool operator==(const Offloads&) const = default;
};

class NetFilter;

class NetClientState {
 public:
  using SentCallback = std::function<void()>;

  NetClientState(std::string type, std::string name);
  NetClientState(const NetClientState&) = delete;
  NetClientState& operator=(const NetClientState&) = delete;
  // Disconnects (purging both directions).
  virtual ~NetClientState();

  const std::string& type() const { return type_; }  // "nic", "tap", "hubport", ...
  const std::string& name() const { return name_; }
  NetClientState* peer() const { return peer_; }

  // Links two unlinked clients. False when either already has a peer.
  static bool Connect(NetClientState* a, NetClientState* b);
  // Unlinks this client and its peer; frames queued between them are purged (their senders are
  // called back as if delivered, so no sender waits forever).
  void Disconnect();

  // ---- sending ----
  // Sends one frame to the peer. Returns its size when the peer took it, 0 when it was queued
  // (`sent` runs after delivery or purge; without `sent`, a frame that finds the queue full is
  // dropped and -1 returned), -1 when it was dropped (no peer, link down, the peer refused it).
  // `sent` is copied only when the frame is queued.
  ssize_t SendIov(const iovec* iov, int n, const SentCallback& sent = {});
  ssize_t Send(const void* buf, size_t len, const SentCallback& sent = {});
  // Whether the peer would take a frame now.
  bool CanSend();
  // Zero-copy send: asks the peer for buffers (ReceiveDirect) when nothing is queued and no
  // filter watches; kNoDirect when the caller must use SendIov instead.
  using FillFn = absl::FunctionRef<ssize_t(const iovec* iov, int n)>;
  ssize_t SendDirect(FillFn fill);

  // ---- receiving (overridden by the receiving side) ----
  // Whether a frame would be taken now. False makes senders queue (or hold) their frames.
  virtual bool CanReceive() { return true; }
  // Takes one frame: > 0 consumed, 0 cannot now (queue it), < 0 dropped.
  virtual ssize_t ReceiveIov(const iovec* iov, int n) = 0;
  // Zero-copy receive: the receiver offers its own buffers for the next frame and calls `fill`
  // with them; `fill` writes one frame (with this client's vnet header, if any) and returns its
  // length, 0 when there was nothing, or < 0 on error. Returns what the receiver kept (the frame
  // length), 0 when nothing was received, or kNoDirect when the receiver cannot offer buffers now
  // (the sender then reads into its own buffer and uses SendIov).
  static constexpr ssize_t kNoDirect = -2;
  virtual ssize_t ReceiveDirect(FillFn fill) { return kNoDirect; }
  // Batched zero-copy receive: the receiver offers up to `max` buffer sets, each big enough for
  // MaxFrameSize() (plus this client's header); `fill` reads frames into them in order, stores
  // each set's frame length in `lens` (<= 0: the set got no frame), and returns how many sets it
  // tried. Returns the number of sets tried, or kNoDirect.
  struct BufferSet {
    const iovec* iov;
    int n;
  };
  using BatchFillFn = absl::FunctionRef<int(const BufferSet* sets, int count, ssize_t* lens)>;
  virtual ssize_t ReceiveDirectBatch(int max, BatchFillFn fill) { return kNoDirect; }
  ssize_t SendDirectBatch(int max, BatchFillFn fill);
  // A sender about to hand this client several frames in a row, and done: a receiver may defer
  // the work to the end (one system call for many frames). The frames' memory stays valid until
  // ReceiveBatchEnd returns. (Senders call the Begin/EndSendBatch wrappers on themselves.)
  virtual void ReceiveBatchBegin() {}
  virtual void ReceiveBatchEnd() {}
  void BeginSendBatch() {
    if (NetClientState* p = peer_; p != nullptr) p->ReceiveBatchBegin();
  }
  void EndSendBatch() {
    if (NetClientState* p = peer_; p != nullptr) p->ReceiveBatchEnd();
  }
  // The sender's burst of ReceiveDirect calls is over: a receiver that batches its completions
  // publishes them now. (Senders call EndDirectBatch on themselves.)
  virtual void DirectBatchEnd() {}
  void EndDirectBatch() {
    if (NetClientState* p = peer_; p != nullptr) p->DirectBatchEnd();
  }
  // This client can receive again: flushes its incoming queue, then tells its peer (PeerReady).
  // Call it without holding locks the receive hooks take (devices post it to their loop).
  void ReceiverReady();
  // Drops this client's frames waiting at its peer, without calling their callbacks.
  void DropQueuedAtPeer() {
    if (NetClientState* p = peer_; p != nullptr) p->PurgeQueue(this, this);
  }
  // Drops every frame waiting to be received here (a NIC that stops), calling the senders back.
  void PurgeIncoming() { PurgeQueue(nullptr); }
  // The peer became ready to receive (called by the peer's ReceiverReady).
  virtual void PeerReady() {}

  // ---- link ----
  bool link_down() const { return link_down_; }
  // set_link: takes the link down or up and tells both sides (LinkStatusChanged).
  void SetLinkDown(bool down);
  virtual void LinkStatusChanged() {}

  // ---- virtio-net header (backends that can carry one: TAP) ----
  virtual bool HasVnetHdr() const { return false; }
  virtual bool HasVnetHdrLen(int len) const { return false; }
  // Starts/stops passing the header (the NIC's choice once features are negotiated).
  virtual void UsingVnetHdr(bool enable) {}
  virtual void SetVnetHdrLen(int len) {}
  virtual bool HasUfo() const { return false; }
  virtual void SetOffload(const Offloads& offloads) {}
  // Multiqueue backends: attach (true) or detach this queue as the guest changes its active
  // queue pairs.
  virtual void SetQueueEnabled(bool enable) {}
  // The largest frame (without a vnet header) this client may send; receivers offering buffers
  // for ReceiveDirect size them by it.
  virtual size_t MaxFrameSize() const { return kMaxFrameSize; }
  // Bytes of virtio-net header in front of the frames this client sends and receives (0: none).
  virtual int CarriedVnetHdrLen() const { return 0; }

  // ---- filters (-object filter-dump,netdev=...) ----
  // Every frame this client sends or is delivered passes the attached filters (observers).
  void AddFilter(NetFilter* f);
  void RemoveFilter(NetFilter* f);

  Counters& counters() { return counters_; }

 protected:
  // Delivers queued frames (the receiver calls this when it can take frames again, from a thread
  // holding none of its receive locks). Returns true when the queue is empty afterwards.
  bool FlushQueue();
  // Drops queued frames from `sender` (all when nullptr), calling their callbacks unless
  // `no_callbacks_for` sent them (it is being destroyed).
  void PurgeQueue(const NetClientState* sender, const NetClientState* no_callbacks_for = nullptr);

 private:
  struct Packet {
    NetClientState* sender;
    std::vector<uint8_t> data;
    SentCallback sent;
    bool observed = false;  // the filters saw it already (it was refused, then queued)
  };
  // The peer, when a zero-copy send may go straight to it (SendDirect, SendDirectBatch).
  NetClientState* DirectPeer() const;
  // Delivery to this client (the receiver side of SendIov).
  ssize_t Deliver(const iovec* iov, int n, NetClientState* sender, const SentCallback& sent);
  // Recomputes must_queue_ (under queue_mu_).
  void UpdateMustQueue() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
    must_queue_.store(receive_disabled_ || flushing_ || !queue_.empty(), std::memory_order_release);
  }
  void Unlink(bool sender_going_away);
  void Filter(const iovec* iov, int n, bool sent_by_this);

  const std::string type_;
  const std::string name_;
  NetClientState* peer_ = nullptr;
  bool link_down_ = false;
  Counters counters_;

  absl::Mutex queue_mu_;
  std::deque<Packet> queue_ ABSL_GUARDED_BY(queue_mu_);
  // Set when a delivery answered 0; cleared by a flush that empties the queue. While set, or
  // while frames are queued, senders append.
  bool receive_disabled_ ABSL_GUARDED_BY(queue_mu_) = false;
  bool flushing_ ABSL_GUARDED_BY(queue_mu_) = false;
  // receive_disabled_ || flushing_ || frames queued: read without the lock on the fast path.
  std::atomic<bool> must_queue_{false};
  // Bumped (under queue_mu_) by every flush: a sender whose frame was refused while a flush ran
  // tries again instead of queueing behind a flush that is already over.
  std::atomic<uint64_t> ready_gen_{0};
  std::atomic<bool> has_filters_{false};
  Counter* tx_link_down_;

  absl::Mutex filter_mu_;
  std::vector<NetFilter*> filters_ ABSL_GUARDED_BY(filter_mu_);
};

// Observes frames passing a client (filter-dump). Thread-safety: Observe may be called from any
// thread, concurrently.
class NetFilter {
 public:
  virtual ~NetFilter() = default;
  // `sent_by_netdev`: the frame leaves the netdev (towards the guest) rather than arriving.
  virtual void Observe(const NetClientState& nc, const iovec* iov, int n, bool sent_by_netdev) = 0;
};

}  // namespace vdev::net

#endif  // VDEV_NET_NET_H_
