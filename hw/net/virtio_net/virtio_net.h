// virtio-net (VIRTIO 1.2 §5.1): `virtio-net-device`, and `virtio-net-pci`, its PCI binding.
//
//   -netdev tap,id=n0,ifname=t0 -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56
//   -netdev tap,id=n0,queues=4 -device virtio-net-pci,netdev=n0,mq=on,vectors=10
//   -device virtio-net-device,netdev=n0          (on a virtio-mmio transport, `-machine virt`)
//
// Queues: receiveq/transmitq pairs (rx = 2i, tx = 2i + 1), one per backend queue with mq=on,
// then the control queue (ctrl_vq=on). Each pair is a NetClientState ("nic") peered with one
// queue of the netdev.
//
// Transmit: a kick sends the available frames, at most tx_burst per turn; more work continues
// from the main loop, so a guest cannot hold a vCPU thread. The virtio-net header is validated
// (GSO type and size against the negotiated HOST_* features, checksum offsets inside the frame),
// then passed to a backend that takes one or stripped. A backend that cannot take a frame holds
// the queue until it can. Receive: frames pass the filter (promiscuous / all-multicast /
// all-unicast / no-multicast / no-unicast / no-broadcast modes, a 64-entry MAC table with
// overflow flags, a 4096-bit VLAN table), then go into guest buffers with a header of the
// negotiated layout (10 bytes legacy, 12 with MRG_RXBUF or VERSION_1; num_buffers with mergeable
// buffers). A TAP reads straight into the guest's buffers when they can hold its largest frame.
// Without buffers the frame waits in the backend and reading stops until the guest adds some.
//
// Guest errors are counted (counters(): "tx_bad_header", "rx_filtered", "ctrl_err", ...); a
// ring that cannot be trusted, or a receive buffer too small for a frame without mergeable
// buffers, sets DEVICE_NEEDS_RESET.
//
// Thread-safety: the data path runs under the device's lock, from vCPU threads (kicks) and from
// the backend's loop (receive, transmit completions, continuations).
#ifndef VDEV_HW_NET_VIRTIO_NET_VIRTIO_NET_H_
#define VDEV_HW_NET_VIRTIO_NET_VIRTIO_NET_H_

#include <array>
#include <atomic>
#include <bitset>
#include <memory>
#include <string>
#include <vector>

#include "bus/virtio/virtio_device.h"
#include "hw/virtio/vhost/vhost_dev.h"
#include "net/net.h"
#include "net/netdev.h"
#include "qom/property.h"

namespace vdev::virtio {

class VirtIONet : public VirtIODevice {
 public:
  static constexpr char kTypeName[] = "virtio-net-device";
  using Parent = VirtIODevice;
  static void ClassInit(VirtIODeviceClass& k);

  static constexpr size_t kMacTableEntries = 64;
  static constexpr size_t kMaxVlans = 4096;
  static constexpr uint16_t kMaxQueuePairs = 256;

  VirtIONet();
  ~VirtIONet() override;

  // The NIC side of queue pair `i` (nullptr when out of range).
  net::NetClientState* nic(size_t i) const;
  size_t max_queue_pairs() const { return pairs_.size(); }
  size_t curr_queue_pairs() const;
  qom::MacAddress mac() const;
  // Link state as the guest sees it (VIRTIO_NET_S_LINK_UP); follows the backend's.
  bool link_up() const;
  // Asks the guest to announce itself (GUEST_ANNOUNCE: VIRTIO_NET_S_ANNOUNCE + config interrupt).
  void Announce();
  // Sends a RARP announcement of `mac` out of the first queue pair's backend, as if the guest
  // had (what QEMU's announce-self sends for a guest without GUEST_ANNOUNCE).
  absl::Status AnnounceFromFrontend(const uint8_t mac[6]) override;

  // The receive filter's state (for tests and `info network`).
  struct RxFilter {
    bool promisc = true, allmulti = false, alluni = false;
    bool nomulti = false, nouni = false, nobcast = false;
    bool uni_overflow = false, multi_overflow = false;
    std::vector<qom::MacAddress> uni, multi;
    std::bitset<kMaxVlans> vlans;
  };
  RxFilter rx_filter() const;

 protected:
  absl::Status Realize() override;
  void Unrealize() override;
  uint64_t DeviceFeatures() const override;
  uint64_t FilterFeatures(uint64_t offered) const override;

 public:
  // The control queue and everything that needs it (a vhost-user frontend keeps them).
  uint64_t ControlPlaneFeatures() const override;

 protected:
  // Removes offered features whose prerequisites are not offered.
  static uint64_t DropOrphans(uint64_t features);
  std::string CheckFeatures(uint64_t features) const override;
  void UpdateConfig(uint8_t* config) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteConfig(uint32_t offset, uint32_t value, int size) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleQueue(uint16_t index) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Transmit queues: a polling iothread sends what the guest queued without a kick.
  bool Pollable(uint16_t index) const override;
  void Start() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Stop() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ResetState() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FrontendQueuesChanged(const std::vector<bool>& enabled) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

 private:
  class Nic;
  static constexpr int kRxMaxFrames = 64;  // frames per receive call
  // Header + frame bytes a transmit copies into its own buffer (a small frame costs less copied
  // than as a second segment of the backend's write).
  static constexpr size_t kTxBounce = 256;
  struct Pair {
    std::unique_ptr<Nic> nc;
    net::NetClientState::SentCallback tx_complete;  // built once (no allocation per frame)
    bool tx_waiting = false;    // a frame is queued at the backend: hold the queue
    bool tx_scheduled = false;  // a continuation is posted
    // Scratch for the receive path (under mu_), kept to avoid allocating per frame: the popped
    // buffers, where each frame's slot starts in them, each slot's buffers as one list and the
    // part of it after the guest header, and room to move a frame over a dropped one.
    std::vector<VirtQueueElement> rx_elems;
    std::array<size_t, kRxMaxFrames + 1> rx_slot_start{};
    std::array<std::vector<iovec>, kRxMaxFrames> rx_slot_iov, rx_slot_target;
    std::vector<uint8_t> move_buf;
    VirtQueueElement tx_elem;
    std::vector<iovec> tx_iov;
    // Validated copies of the headers of the frames in the current transmit batch, each followed
    // by the frame itself when it is small (one segment for the backend instead of two).
    std::array<std::array<uint8_t, kTxBounce>, 64> tx_hdrs;
    // Receive completions filled but not yet published (direct receives batch them, and so do
    // copied receives inside a sender's burst).
    uint16_t rx_unflushed = 0;
    bool rx_burst = false;
    // Received frames and bytes not yet in the counters: added when the completions are
    // published (one atomic add per batch, not two per frame).
    uint64_t rx_frames_pending = 0, rx_bytes_pending = 0;
  };
  // Publishes batched receive completions of `pair` and interrupts if the driver wants it.
  void FlushRx(size_t pair) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DirectBatchEnd(size_t pair);
  // A sender's burst begins / ends (the end publishes the completions).
  void RxBatch(size_t pair, bool begin);
  static constexpr uint16_t kRxBatch = 32;
  static constexpr uint16_t kTxHeaders = 64;  // frames per transmit batch

  // Receive side (from the backend's loop).
  bool CanReceive(size_t pair);
  ssize_t Receive(size_t pair, const iovec* iov, int n);
  ssize_t ReceiveDirect(size_t pair, net::NetClientState::FillFn fill);
  ssize_t ReceiveDirectBatch(size_t pair, int max, net::NetClientState::BatchFillFn fill);
  bool Accept(const uint8_t* frame, size_t len) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool RxReady(size_t pair) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool DirectReady(size_t pair) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Buffer bytes a frame from the backend may need: the guest header and the backend's largest
  // frame.
  uint64_t RxNeed(size_t pair) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Why no buffers could be offered.
  enum class RxShortfall { kNone, kNoBuffers, kTooSmall, kBroken };
  // One receive call: up to `max` frames, each into buffers of at least `need` bytes (guest
  // header included). `fill` writes the frames (with a header of the guest's layout in front
  // when `with_header`, else without, and we write a blank one), into at most `max_iov`
  // segments per frame. Completions are published at once, or by FlushRx when `defer_flush`.
  struct RxRequest {
    uint64_t need;
    int max;
    bool with_header;
    size_t max_iov;
    net::NetClientState::BatchFillFn fill;
    bool defer_flush = false;
    bool filtered = false;  // the caller applied the receive filter
  };
  // The one receive path (Receive, ReceiveDirect and ReceiveDirectBatch are its callers): pops
  // buffers for the frames, lets `req.fill` write them, checks each frame (too big, too short,
  // filtered), finishes the headers (checksum flags, num_buffers) and fills the used ring, the
  // used buffers a prefix of those popped and the rest given back. Returns the number of sets
  // `fill` tried, or kNoDirect with `*why` when no buffers were offered.
  ssize_t ReceiveFrames(size_t pair, const RxRequest& req, RxShortfall* why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Pops receive buffers into `elems` from index `first` until they hold `need` bytes (all of
  // it in one buffer without mergeable buffers). False, with everything it popped given back and
  // the reason in `*why`, when there are not enough.
  bool PopRxBuffers(VirtQueue* vq, uint64_t need, std::vector<VirtQueueElement>* elems,
                    size_t first, size_t* count, RxShortfall* why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives elements [from, to) back, last first.
  void UndoRx(VirtQueue* vq, std::vector<VirtQueueElement>& elems, size_t from, size_t to)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScheduleRxFlush(size_t pair) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Transmit side.
  void FlushTx(size_t pair) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TxComplete(size_t pair);
  bool ValidTxHeader(const uint8_t* hdr, uint64_t frame_len) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Control queue.
  void HandleCtrl(VirtQueue* vq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint8_t CtrlCommand(uint8_t cls, uint8_t cmd, const std::vector<uint8_t>& data)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetQueuePairs(size_t n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyOffloads(uint64_t offloads) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void LinkChanged();
  bool has_ctrl_vq() const;  // the ctrl_vq switch is on

  // vhost (virtio_net_vhost.cc): the data queues are served by the backend's data plane.
  class VhostGlue;
  // At realize: whether the netdev is a vhost backend (vhost-user, or a TAP with vhost-net fds);
  // its features.
  absl::Status RealizeVhost(size_t npairs);
  void UnrealizeVhost();
  void StartVhost() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StopVhost() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void VhostSetPairs(size_t n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A kick for a data queue: to the backend. True when the queue is the backend's.
  bool VhostKick(uint16_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void VhostBackendDown();
  void VhostBackendUp();
  bool PeerHasVnetHdr() const;
  bool PeerHasUfo() const;

  // Properties.
  qom::MacAddress mac_prop_{};
  net::Netdev* netdev_ = nullptr;
  // The features the user left on (one bit property each, `mq`, `csum`, ...); DeviceFeatures()
  // drops what the backend or the other switches rule out.
  uint64_t host_features_ = 0;
  uint16_t host_mtu_ = 0;
  int32_t speed_ = -1;
  std::string duplex_;
  uint16_t rx_queue_size_ = 256, tx_queue_size_ = 256;
  uint32_t tx_burst_ = 256;

  size_t num_pairs_ = 1;  // fixed at realize
  std::vector<Pair> pairs_;
  // Per pair: set when a frame was just taken, cleared (under mu_) whenever receiving may stop
  // (Stop, reset, fewer pairs, vhost). CanReceive answers from it without the lock; a stale
  // "yes" costs one frame queued at the NIC (Receive checks again under the lock).
  std::unique_ptr<std::atomic<bool>[]> rx_hint_;
  size_t rx_hints_ = 0;
  void ClearRxHints() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  EventLoop* loop_ = nullptr;
  bool has_vnet_hdr_ = false;  // fixed at realize: the backend takes headers
  bool has_ufo_ = false;
  uint8_t duplex_value_ = 0xff;
  // vhost: fixed at realize.
  vhost::VhostBackend* vhost_ = nullptr;
  std::unique_ptr<vhost::VhostBackend> own_vhost_;  // vhost-net over a TAP's fds
  uint64_t vhost_features_ = 0;
  uint64_t vhost_mask_ = 0;  // the features the backend decides
  std::unique_ptr<VhostGlue> vhost_glue_;
  std::unique_ptr<vhost::VhostDev> vhost_dev_ ABSL_GUARDED_BY(mu_);
  bool vhost_up_ ABSL_GUARDED_BY(mu_) = true;  // the backend is connected
  // Stops posted work from touching the device once it is being unrealized.
  std::shared_ptr<std::atomic<bool>> alive_ = std::make_shared<std::atomic<bool>>(true);
  // Hot counters.
  Counter* tx_frames_ = nullptr;
  Counter* rx_frames_ = nullptr;
  Counter* rx_filtered_ = nullptr;
  Counter* tx_bytes_ = nullptr;  // frame bytes, without the virtio-net header
  Counter* rx_bytes_ = nullptr;

  // Guest-visible state.
  qom::MacAddress mac_ ABSL_GUARDED_BY(mu_);
  uint16_t net_status_ ABSL_GUARDED_BY(mu_) = 0;
  size_t curr_pairs_ ABSL_GUARDED_BY(mu_) = 1;
  // The pairs follow a frontend's ring enables (vhost-user-backend), not the control queue.
  bool frontend_pairs_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t curr_offloads_ ABSL_GUARDED_BY(mu_) = 0;
  int guest_hdr_len_ ABSL_GUARDED_BY(mu_) = 10;
  int host_hdr_len_ ABSL_GUARDED_BY(mu_) = 0;  // header length the backend carries (0: none)
  bool mergeable_ ABSL_GUARDED_BY(mu_) = false;
  RxFilter filter_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vdev::virtio

#endif  // VDEV_HW_NET_VIRTIO_NET_VIRTIO_NET_H_
