#include "hw/virtio/virtio_net.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bus/virtio/virtio_uapi.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"
#include "core/machine.h"
#include "net/virtio_net_uapi.h"

namespace vdev::virtio {
namespace {

constexpr uint64_t Bit(unsigned b) { return uint64_t{1} << b; }

// Offload features the guest can switch with CTRL_GUEST_OFFLOADS_SET.
constexpr uint64_t kGuestOffloads = Bit(VIRTIO_NET_F_GUEST_CSUM) | Bit(VIRTIO_NET_F_GUEST_TSO4) |
                                    Bit(VIRTIO_NET_F_GUEST_TSO6) | Bit(VIRTIO_NET_F_GUEST_ECN) |
                                    Bit(VIRTIO_NET_F_GUEST_UFO);
// Everything that needs the backend to carry a virtio-net header.
constexpr uint64_t kNeedVnetHdr = kGuestOffloads | Bit(VIRTIO_NET_F_CSUM) |
                                  Bit(VIRTIO_NET_F_HOST_TSO4) | Bit(VIRTIO_NET_F_HOST_TSO6) |
                                  Bit(VIRTIO_NET_F_HOST_ECN) | Bit(VIRTIO_NET_F_HOST_UFO) |
                                  Bit(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS);

constexpr size_t kEthHeader = 14;
constexpr uint64_t kMaxTxFrame = 65535 + 14 + 4;  // a 64 KiB GSO frame and its Ethernet header
// Control payloads are copied out of the ring: bounded (a MAC table larger than the device's
// still fits, so its overflow flags can be set).
constexpr size_t kMaxCtrlPayload = 65536;
constexpr size_t kMaxIov = 256;

// Copies `len` bytes to/from an iovec list at `offset`.
size_t CopyToIov(const std::vector<iovec>& iov, size_t offset, const void* src, size_t len) {
  size_t done = 0;
  for (const iovec& v : iov) {
    if (done == len) break;
    if (offset >= v.iov_len) {
      offset -= v.iov_len;
      continue;
    }
    const size_t chunk = std::min(v.iov_len - offset, len - done);
    std::memcpy(static_cast<uint8_t*>(v.iov_base) + offset, static_cast<const uint8_t*>(src) + done,
                chunk);
    done += chunk;
    offset = 0;
  }
  return done;
}

size_t CopyFromIov(const std::vector<iovec>& iov, size_t offset, void* dst, size_t len) {
  return net::IovToBuf(iov.data(), static_cast<int>(iov.size()), offset, dst, len);
}

// Appends the part of `in` from `offset` on to `out`.
void AppendIov(const std::vector<iovec>& in, size_t offset, std::vector<iovec>* out) {
  for (const iovec& v : in) {
    if (offset >= v.iov_len) {
      offset -= v.iov_len;
      continue;
    }
    out->push_back({static_cast<uint8_t*>(v.iov_base) + offset, v.iov_len - offset});
    offset = 0;
  }
}

std::atomic<uint32_t> next_default_mac{0};

}  // namespace

// The NIC side of one queue pair.
class VirtIONet::Nic : public net::NetClientState {
 public:
  Nic(VirtIONet* dev, size_t pair, std::string name)
      : NetClientState("nic", std::move(name)), dev_(dev), pair_(pair) {}
  bool CanReceive() override { return dev_->CanReceive(pair_); }
  ssize_t ReceiveIov(const iovec* iov, int n) override { return dev_->Receive(pair_, iov, n); }
  ssize_t ReceiveDirect(FillFn fill) override { return dev_->ReceiveDirect(pair_, fill); }
  ssize_t ReceiveDirectBatch(int max, BatchFillFn fill) override {
    return dev_->ReceiveDirectBatch(pair_, max, fill);
  }
  void LinkStatusChanged() override { dev_->LinkChanged(); }
  void DirectBatchEnd() override { dev_->DirectBatchEnd(pair_); }
  void PeerReady() override {}

 private:
  VirtIONet* dev_;
  const size_t pair_;
};

void VirtIONet::ClassInit(VirtIODeviceClass& k) {
  k.description = "virtio network device";
  k.category = DeviceCategory::kNetwork;
  k.device_id = VIRTIO_ID_NET;
  k.config_size = offsetof(virtio_net_config, rss_max_key_size);
  k.AddProperty(qom::Prop("mac", &VirtIONet::mac_prop_, qom::MacAddress{},
                          "MAC address (default: 52:54:00:12:34:56 + n)"));
  k.AddProperty(qom::LinkProp("netdev", &VirtIONet::netdev_, "the backend (-netdev id)"));
  k.AddProperty(qom::Prop("mq", &VirtIONet::mq_, false,
                          "multiqueue: one queue pair per backend queue (MQ)"));
  auto feature = [&k](const char* name, bool VirtIONet::*m, const char* what) {
    k.AddProperty(qom::Prop(name, m, true, what));
  };
  feature("csum", &VirtIONet::csum_, "guest may send partially checksummed frames (CSUM)");
  feature("guest_csum", &VirtIONet::guest_csum_, "partially checksummed frames to the guest (GUEST_CSUM)");
  feature("host_tso4", &VirtIONet::host_tso4_, "TSO over IPv4 from the guest (HOST_TSO4)");
  feature("host_tso6", &VirtIONet::host_tso6_, "TSO over IPv6 from the guest (HOST_TSO6)");
  feature("host_ecn", &VirtIONet::host_ecn_, "TSO with ECN from the guest (HOST_ECN)");
  feature("host_ufo", &VirtIONet::host_ufo_, "UFO from the guest (HOST_UFO)");
  feature("guest_tso4", &VirtIONet::guest_tso4_, "TSO over IPv4 to the guest (GUEST_TSO4)");
  feature("guest_tso6", &VirtIONet::guest_tso6_, "TSO over IPv6 to the guest (GUEST_TSO6)");
  feature("guest_ecn", &VirtIONet::guest_ecn_, "TSO with ECN to the guest (GUEST_ECN)");
  feature("guest_ufo", &VirtIONet::guest_ufo_, "UFO to the guest (GUEST_UFO)");
  feature("mrg_rxbuf", &VirtIONet::mrg_rxbuf_, "mergeable receive buffers (MRG_RXBUF)");
  feature("status", &VirtIONet::status_, "link status in config space (STATUS)");
  feature("ctrl_vq", &VirtIONet::ctrl_vq_, "control queue (CTRL_VQ)");
  feature("ctrl_rx", &VirtIONet::ctrl_rx_, "RX mode and MAC table commands (CTRL_RX)");
  feature("ctrl_vlan", &VirtIONet::ctrl_vlan_, "VLAN filter commands (CTRL_VLAN)");
  feature("ctrl_rx_extra", &VirtIONet::ctrl_rx_extra_, "extra RX modes (CTRL_RX_EXTRA)");
  feature("ctrl_mac_addr", &VirtIONet::ctrl_mac_addr_, "MAC address command (CTRL_MAC_ADDR)");
  feature("ctrl_guest_offloads", &VirtIONet::ctrl_guest_offloads_,
          "offload switching command (CTRL_GUEST_OFFLOADS)");
  feature("guest_announce", &VirtIONet::guest_announce_, "guest announces itself (GUEST_ANNOUNCE)");
  k.AddProperty(qom::Prop("host_mtu", &VirtIONet::host_mtu_, uint16_t{0},
                          "MTU advised to the guest (MTU; 0: not offered)"));
  k.AddProperty(qom::Prop("speed", &VirtIONet::speed_, int32_t{-1},
                          "link speed in Mbit/s (SPEED_DUPLEX; -1: unknown)"));
  k.AddProperty(qom::Prop("duplex", &VirtIONet::duplex_, std::string(""),
                          "half or full (SPEED_DUPLEX; empty: unknown)"));
  k.AddProperty(qom::Prop("rx_queue_size", &VirtIONet::rx_queue_size_, uint16_t{256},
                          "receive queue size (power of two, 256..1024)"));
  k.AddProperty(qom::Prop("tx_queue_size", &VirtIONet::tx_queue_size_, uint16_t{256},
                          "transmit queue size (power of two, 256..1024)"));
  k.AddProperty(qom::Prop("x-txburst", &VirtIONet::tx_burst_, uint32_t{256},
                          "frames sent per turn before yielding"));
}

VirtIONet::VirtIONet() = default;
VirtIONet::~VirtIONet() = default;

net::NetClientState* VirtIONet::nic(size_t i) const {
  return i < pairs_.size() ? pairs_[i].nc.get() : nullptr;
}

size_t VirtIONet::curr_queue_pairs() const {
  absl::MutexLock l(&mu_);
  return curr_pairs_;
}

qom::MacAddress VirtIONet::mac() const {
  absl::MutexLock l(&mu_);
  return mac_;
}

bool VirtIONet::link_up() const {
  absl::MutexLock l(&mu_);
  return net_status_ & VIRTIO_NET_S_LINK_UP;
}

VirtIONet::RxFilter VirtIONet::rx_filter() const {
  absl::MutexLock l(&mu_);
  return filter_;
}

absl::Status VirtIONet::Realize() {
  const std::string ctx = DisplayName();
  auto pow2 = [](uint16_t v) { return v >= 256 && v <= 1024 && (v & (v - 1)) == 0; };
  if (!pow2(rx_queue_size_) || !pow2(tx_queue_size_)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: rx_queue_size and tx_queue_size must be powers of two in 256..1024, got %u and %u",
        ctx, rx_queue_size_, tx_queue_size_));
  }
  if (!duplex_.empty() && duplex_ != "half" && duplex_ != "full") {
    return absl::InvalidArgumentError(
        absl::StrCat(ctx, ": duplex must be 'half' or 'full', got '", duplex_, "'"));
  }
  if (speed_ < -1) {
    return absl::InvalidArgumentError(absl::StrCat(ctx, ": speed must be >= -1, got ", speed_));
  }
  if (tx_burst_ < 1 || tx_burst_ > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(ctx, ": x-txburst must be 1..4096"));
  }
  if (host_mtu_ != 0 && (host_mtu_ < 68 || host_mtu_ > 65535 - 14)) {
    return absl::InvalidArgumentError(absl::StrCat(ctx, ": host_mtu must be 68..65521"));
  }
  duplex_value_ = duplex_ == "half" ? 0 : duplex_ == "full" ? 1 : 0xff;
  size_t npairs = 1;
  if (netdev_ != nullptr) {
    if (netdev_->num_queues() == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(ctx, ": netdev '", netdev_->name(), "' has no queues"));
    }
    if (mq_) {
      npairs = netdev_->num_queues();
    } else if (netdev_->num_queues() > 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          ctx, ": netdev '", netdev_->name(), "' has ", netdev_->num_queues(),
          " queues; use mq=on"));
    }
    if (npairs > kMaxQueuePairs) {
      return absl::InvalidArgumentError(absl::StrCat(ctx, ": at most ", kMaxQueuePairs,
                                                     " queue pairs"));
    }
    if (!netdev_->Claim()) {
      return absl::FailedPreconditionError(absl::StrCat(
          ctx, ": netdev '", netdev_->name(), "' is already in use by another device"));
    }
    has_vnet_hdr_ = true;
    has_ufo_ = true;
    for (size_t i = 0; i < npairs; ++i) {
      has_vnet_hdr_ = has_vnet_hdr_ && netdev_->queue(i)->HasVnetHdr() &&
                      netdev_->queue(i)->HasVnetHdrLen(sizeof(virtio_net_hdr_mrg_rxbuf));
      has_ufo_ = has_ufo_ && netdev_->queue(i)->HasUfo();
    }
    has_ufo_ = has_ufo_ && has_vnet_hdr_;
  }
  if (mac_prop_ == qom::MacAddress{}) {
    // QEMU's default: 52:54:00:12:34:56, the next NIC :57, ...
    const uint32_t n = next_default_mac.fetch_add(1);
    mac_prop_.bytes = {0x52, 0x54, 0x00, 0x12, static_cast<uint8_t>(0x34 + ((0x56 + n) >> 8)),
                       static_cast<uint8_t>(0x56 + n)};
  }
  num_pairs_ = npairs;
  if (absl::Status s = VirtIODevice::Realize(); !s.ok()) {
    if (netdev_ != nullptr) netdev_->Release();
    return s;
  }
  loop_ = netdev_ != nullptr ? &netdev_->loop() : &MainLoopFor(*this);
  tx_frames_ = counters().Get("tx_frames");
  rx_frames_ = counters().Get("rx_frames");
  rx_filtered_ = counters().Get("rx_filtered");
  for (size_t i = 0; i < npairs; ++i) {
    AddQueue(rx_queue_size_);
    AddQueue(tx_queue_size_);
    Pair p;
    const std::string name = DisplayName();
    p.nc = std::make_unique<Nic>(this, i, npairs == 1 ? name : absl::StrCat(name, ".", i));
    if (netdev_ != nullptr) net::NetClientState::Connect(p.nc.get(), netdev_->queue(i));
    p.tx_complete = [this, i, alive = alive_] {
      if (alive->load()) TxComplete(i);
    };
    pairs_.push_back(std::move(p));
  }
  if (ctrl_vq_) AddQueue(64);
  {
    absl::MutexLock l(&mu_);
    ResetState();
  }
  return absl::OkStatus();
}

void VirtIONet::Unrealize() {
  alive_->store(false);
  // Stop the data path (vCPU kicks are ignored from here on), then leave the backend from its
  // loop, where it cannot be receiving, and let posted work drain.
  VirtioReset();
  if (loop_ != nullptr) {
    loop_->RunAndWait([this] {
      for (Pair& p : pairs_) p.nc->Disconnect();
    });
    loop_->RunAndWait([] {});
  } else {
    for (Pair& p : pairs_) p.nc->Disconnect();
  }
  VirtIODevice::Unrealize();
  pairs_.clear();
  if (netdev_ != nullptr) netdev_->Release();
}

bool VirtIONet::PeerHasVnetHdr() const { return has_vnet_hdr_; }
bool VirtIONet::PeerHasUfo() const { return has_ufo_; }

uint64_t VirtIONet::DeviceFeatures() const {
  uint64_t f = Bit(VIRTIO_NET_F_MAC) | Bit(VIRTIO_NET_F_SPEED_DUPLEX);
  auto add = [&f](bool on, unsigned bit) {
    if (on) f |= Bit(bit);
  };
  add(csum_, VIRTIO_NET_F_CSUM);
  add(guest_csum_, VIRTIO_NET_F_GUEST_CSUM);
  add(host_tso4_, VIRTIO_NET_F_HOST_TSO4);
  add(host_tso6_, VIRTIO_NET_F_HOST_TSO6);
  add(host_ecn_, VIRTIO_NET_F_HOST_ECN);
  add(host_ufo_, VIRTIO_NET_F_HOST_UFO);
  add(guest_tso4_, VIRTIO_NET_F_GUEST_TSO4);
  add(guest_tso6_, VIRTIO_NET_F_GUEST_TSO6);
  add(guest_ecn_, VIRTIO_NET_F_GUEST_ECN);
  add(guest_ufo_, VIRTIO_NET_F_GUEST_UFO);
  add(mrg_rxbuf_, VIRTIO_NET_F_MRG_RXBUF);
  add(status_, VIRTIO_NET_F_STATUS);
  add(ctrl_vq_, VIRTIO_NET_F_CTRL_VQ);
  if (ctrl_vq_) {
    add(ctrl_rx_, VIRTIO_NET_F_CTRL_RX);
    add(ctrl_vlan_, VIRTIO_NET_F_CTRL_VLAN);
    add(ctrl_rx_ && ctrl_rx_extra_, VIRTIO_NET_F_CTRL_RX_EXTRA);
    add(ctrl_mac_addr_, VIRTIO_NET_F_CTRL_MAC_ADDR);
    add(ctrl_guest_offloads_, VIRTIO_NET_F_CTRL_GUEST_OFFLOADS);
    add(guest_announce_, VIRTIO_NET_F_GUEST_ANNOUNCE);
    add(mq_ && num_pairs_ > 1, VIRTIO_NET_F_MQ);
  }
  add(host_mtu_ != 0, VIRTIO_NET_F_MTU);
  // Offloads only when the backend takes headers (the frames would be lost otherwise).
  if (!PeerHasVnetHdr()) f &= ~kNeedVnetHdr;
  if (!PeerHasUfo()) f &= ~(Bit(VIRTIO_NET_F_HOST_UFO) | Bit(VIRTIO_NET_F_GUEST_UFO));
  // Dependencies (§5.1.3.1): what lacks its prerequisite is not offered.
  if (!(f & Bit(VIRTIO_NET_F_CSUM))) {
    f &= ~(Bit(VIRTIO_NET_F_HOST_TSO4) | Bit(VIRTIO_NET_F_HOST_TSO6) | Bit(VIRTIO_NET_F_HOST_UFO));
  }
  if (!(f & (Bit(VIRTIO_NET_F_HOST_TSO4) | Bit(VIRTIO_NET_F_HOST_TSO6)))) {
    f &= ~Bit(VIRTIO_NET_F_HOST_ECN);
  }
  if (!(f & Bit(VIRTIO_NET_F_GUEST_CSUM))) {
    f &= ~(Bit(VIRTIO_NET_F_GUEST_TSO4) | Bit(VIRTIO_NET_F_GUEST_TSO6) |
           Bit(VIRTIO_NET_F_GUEST_UFO) | Bit(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS));
  }
  if (!(f & (Bit(VIRTIO_NET_F_GUEST_TSO4) | Bit(VIRTIO_NET_F_GUEST_TSO6)))) {
    f &= ~Bit(VIRTIO_NET_F_GUEST_ECN);
  }
  return f;
}

std::string VirtIONet::CheckFeatures(uint64_t f) const {
  struct Dep {
    unsigned bit;
    uint64_t needs_any;
    const char* what;
  };
  const Dep deps[] = {
      {VIRTIO_NET_F_GUEST_TSO4, Bit(VIRTIO_NET_F_GUEST_CSUM), "GUEST_TSO4 without GUEST_CSUM"},
      {VIRTIO_NET_F_GUEST_TSO6, Bit(VIRTIO_NET_F_GUEST_CSUM), "GUEST_TSO6 without GUEST_CSUM"},
      {VIRTIO_NET_F_GUEST_UFO, Bit(VIRTIO_NET_F_GUEST_CSUM), "GUEST_UFO without GUEST_CSUM"},
      {VIRTIO_NET_F_GUEST_ECN, Bit(VIRTIO_NET_F_GUEST_TSO4) | Bit(VIRTIO_NET_F_GUEST_TSO6),
       "GUEST_ECN without GUEST_TSO4/6"},
      {VIRTIO_NET_F_HOST_TSO4, Bit(VIRTIO_NET_F_CSUM), "HOST_TSO4 without CSUM"},
      {VIRTIO_NET_F_HOST_TSO6, Bit(VIRTIO_NET_F_CSUM), "HOST_TSO6 without CSUM"},
      {VIRTIO_NET_F_HOST_UFO, Bit(VIRTIO_NET_F_CSUM), "HOST_UFO without CSUM"},
      {VIRTIO_NET_F_HOST_ECN, Bit(VIRTIO_NET_F_HOST_TSO4) | Bit(VIRTIO_NET_F_HOST_TSO6),
       "HOST_ECN without HOST_TSO4/6"},
      {VIRTIO_NET_F_CTRL_RX, Bit(VIRTIO_NET_F_CTRL_VQ), "CTRL_RX without CTRL_VQ"},
      {VIRTIO_NET_F_CTRL_VLAN, Bit(VIRTIO_NET_F_CTRL_VQ), "CTRL_VLAN without CTRL_VQ"},
      {VIRTIO_NET_F_GUEST_ANNOUNCE, Bit(VIRTIO_NET_F_CTRL_VQ), "GUEST_ANNOUNCE without CTRL_VQ"},
      {VIRTIO_NET_F_MQ, Bit(VIRTIO_NET_F_CTRL_VQ), "MQ without CTRL_VQ"},
      {VIRTIO_NET_F_CTRL_MAC_ADDR, Bit(VIRTIO_NET_F_CTRL_VQ), "CTRL_MAC_ADDR without CTRL_VQ"},
      {VIRTIO_NET_F_CTRL_RX_EXTRA, Bit(VIRTIO_NET_F_CTRL_RX), "CTRL_RX_EXTRA without CTRL_RX"},
      {VIRTIO_NET_F_CTRL_GUEST_OFFLOADS, Bit(VIRTIO_NET_F_CTRL_VQ),
       "CTRL_GUEST_OFFLOADS without CTRL_VQ"},
  };
  for (const Dep& d : deps) {
    if ((f & Bit(d.bit)) && !(f & d.needs_any)) return d.what;
  }
  return "";
}

void VirtIONet::UpdateConfig(uint8_t* config) {
  virtio_net_config c{};
  std::memcpy(c.mac, mac_.bytes.data(), 6);
  c.status = net_status_;
  c.max_virtqueue_pairs = static_cast<uint16_t>(num_pairs_);
  c.mtu = host_mtu_;
  c.speed = static_cast<uint32_t>(speed_);
  c.duplex = duplex_value_;
  std::memcpy(config, &c, config_size());
}

void VirtIONet::WriteConfig(uint32_t offset, uint32_t value, int size) {
  // Legacy drivers without CTRL_MAC_ADDR set the MAC by writing config space.
  if (offset + size <= 6 && !negotiated(VIRTIO_F_VERSION_1) &&
      !negotiated(VIRTIO_NET_F_CTRL_MAC_ADDR)) {
    for (int i = 0; i < size; ++i) mac_.bytes[offset + i] = static_cast<uint8_t>(value >> (8 * i));
    return;
  }
  VirtIODevice::WriteConfig(offset, value, size);
}

void VirtIONet::ResetState() {
  mac_ = mac_prop_;
  const bool up = pairs_.empty() || !pairs_[0].nc->link_down();
  net_status_ = up ? VIRTIO_NET_S_LINK_UP : 0;
  curr_pairs_ = 1;
  curr_offloads_ = 0;
  guest_hdr_len_ = sizeof(virtio_net_hdr);
  host_hdr_len_ = 0;
  mergeable_ = false;
  filter_ = RxFilter{};
  filter_.vlans.set();
  for (Pair& p : pairs_) {
    p.tx_waiting = false;
    p.rx_unflushed = 0;
  }
}

void VirtIONet::Start() {
  const uint64_t f = negotiated();
  mergeable_ = f & Bit(VIRTIO_NET_F_MRG_RXBUF);
  guest_hdr_len_ = mergeable_ || (f & Bit(VIRTIO_F_VERSION_1)) ? sizeof(virtio_net_hdr_mrg_rxbuf)
                                                               : sizeof(virtio_net_hdr);
  host_hdr_len_ = 0;
  if (PeerHasVnetHdr()) {
    for (Pair& p : pairs_) {
      net::NetClientState* peer = p.nc->peer();
      if (peer == nullptr) continue;
      peer->UsingVnetHdr(true);
      peer->SetVnetHdrLen(guest_hdr_len_);
    }
    host_hdr_len_ = guest_hdr_len_;
  }
  if (f & Bit(VIRTIO_NET_F_CTRL_VLAN)) filter_.vlans.reset();
  if (!(f & Bit(VIRTIO_NET_F_STATUS))) net_status_ |= VIRTIO_NET_S_LINK_UP;
  ApplyOffloads(f & kGuestOffloads);
  SetQueuePairs(1);
  for (size_t i = 0; i < pairs_.size(); ++i) ScheduleRxFlush(i);
}

void VirtIONet::Stop() {
  // As QEMU: frames waiting for a stopped device are dropped (their senders resume).
  for (size_t i = 0; i < pairs_.size(); ++i) FlushRx(i);
  for (Pair& p : pairs_) {
    p.tx_waiting = false;
    p.nc->PurgeIncoming();
    // Our frames still waiting at the backend were sent before the reset: drop them (without
    // calling us back, we hold the lock) rather than send them with a stale header layout.
    p.nc->DropQueuedAtPeer();
  }
}

void VirtIONet::ApplyOffloads(uint64_t offloads) {
  curr_offloads_ = offloads;
  net::Offloads o;
  o.csum = offloads & Bit(VIRTIO_NET_F_GUEST_CSUM);
  o.tso4 = offloads & Bit(VIRTIO_NET_F_GUEST_TSO4);
  o.tso6 = offloads & Bit(VIRTIO_NET_F_GUEST_TSO6);
  o.ecn = offloads & Bit(VIRTIO_NET_F_GUEST_ECN);
  o.ufo = offloads & Bit(VIRTIO_NET_F_GUEST_UFO);
  if (!PeerHasVnetHdr()) return;
  for (Pair& p : pairs_) {
    if (net::NetClientState* peer = p.nc->peer(); peer != nullptr) peer->SetOffload(o);
  }
}

void VirtIONet::SetQueuePairs(size_t n) {
  curr_pairs_ = n;
  for (size_t i = 0; i < pairs_.size(); ++i) {
    if (net::NetClientState* peer = pairs_[i].nc->peer(); peer != nullptr) {
      peer->SetQueueEnabled(i < n);
    }
  }
}

void VirtIONet::LinkChanged() {
  absl::MutexLock l(&mu_);
  const bool up = !pairs_.empty() && !pairs_[0].nc->link_down();
  const uint16_t old = net_status_;
  net_status_ = up ? (net_status_ | VIRTIO_NET_S_LINK_UP) : (net_status_ & ~VIRTIO_NET_S_LINK_UP);
  if (old != net_status_ && running() && negotiated(VIRTIO_NET_F_STATUS)) ConfigChanged();
}

void VirtIONet::Announce() {
  absl::MutexLock l(&mu_);
  if (!running() || !negotiated(VIRTIO_NET_F_GUEST_ANNOUNCE) ||
      !negotiated(VIRTIO_NET_F_STATUS)) {
    return;
  }
  net_status_ |= VIRTIO_NET_S_ANNOUNCE;
  ConfigChanged();
}

// ---------------------------------------------------------------------------------------------
// Kicks

void VirtIONet::HandleQueue(uint16_t index) {
  const size_t ctrl = 2 * pairs_.size();
  if (ctrl_vq_ && index == ctrl) {
    HandleCtrl(queue(index));
    return;
  }
  const size_t pair = index / 2;
  if (pair >= curr_pairs_) {
    VDEV_LOG_GUEST_ERROR(counters(), "inactive_queue_notify",
                         "%s: notify of queue %u, but only %u queue pairs are active",
                         DisplayName(), index, curr_pairs_);
    return;
  }
  if (index % 2 == 0) {
    // New receive buffers: frames waiting at the backend can come in, and it may read again.
    queue(index)->SetNotification(false);
    ScheduleRxFlush(pair);
  } else {
    FlushTx(pair);
  }
}

void VirtIONet::ScheduleRxFlush(size_t pair) {
  net::NetClientState* nc = pairs_[pair].nc.get();
  loop_->Post([alive = alive_, nc] {
    if (alive->load()) nc->ReceiverReady();
  });
}

// ---------------------------------------------------------------------------------------------
// Transmit

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
    case VIRTIO_NET_HDR_GSO_TCPV4: need = VIRTIO_NET_F_HOST_TSO4; break;
    case VIRTIO_NET_HDR_GSO_TCPV6: need = VIRTIO_NET_F_HOST_TSO6; break;
    case VIRTIO_NET_HDR_GSO_UDP: need = VIRTIO_NET_F_HOST_UFO; break;
    default: return false;
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
  uint16_t done = 0;  // completions filled, published together
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
  begin();
  for (;;) {
    if (done >= kTxHeaders) {
      end();
      vq->Flush(done);
      done = 0;
      begin();
    }
    if (sent >= tx_burst_) {
      more = true;
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
    CopyFromIov(e.out, 0, hdr, hlen);
    const uint64_t frame_len = e.out_len - hlen;
    if (!ValidTxHeader(hdr, frame_len)) {
      VDEV_LOG_GUEST_ERROR(counters(), "tx_bad_header",
                           "%s: transmit header flags 0x%x gso 0x%x dropped", DisplayName(),
                           hdr[0], hdr[1]);
      vq->Fill(e, 0, done++);
      continue;
    }
    iov.clear();
    if (host_hdr_len_ == static_cast<int>(hlen)) {
      // The header we validated, not the guest's copy (which it may rewrite meanwhile), then the
      // frame from guest memory.
      uint8_t* h = p.tx_hdrs[done].data();
      std::memcpy(h, hdr, hlen);
      iov.push_back({h, hlen});
    }
    AppendIov(e.out, hlen, &iov);  // a backend without headers gets the frame alone
    const ssize_t ret = p.nc->SendIov(iov.data(), static_cast<int>(iov.size()), p.tx_complete);
    vq->Fill(e, 0, done++);
    tx_frames_->Add(1);
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
    loop_->Post([this, pair, alive = alive_] {
      if (!alive->load()) return;
      absl::MutexLock l(&mu_);
      pairs_[pair].tx_scheduled = false;
      FlushTx(pair);
    });
  }
}

void VirtIONet::TxComplete(size_t pair) {
  absl::MutexLock l(&mu_);
  if (pair >= pairs_.size()) return;
  pairs_[pair].tx_waiting = false;
  if (!running()) return;
  queue(static_cast<uint16_t>(2 * pair + 1))->SetNotification(true);
  FlushTx(pair);
}

// ---------------------------------------------------------------------------------------------
// Receive

bool VirtIONet::RxReady(size_t pair) {
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
      MarkNeedsReset(absl::StrCat("receive queue ", vq->index(),
                                  ": a buffer that is not device-writable"));
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
    MarkNeedsReset(absl::StrFormat("receive buffer of %u bytes for a %u-byte frame without "
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
    off += CopyToIov(dst, off, static_cast<uint8_t*>(iov[i].iov_base) + skip,
                     iov[i].iov_len - skip);
  }
  CompleteRx(pair, vq, elems, count, total);
  rx_frames_->Add(1);
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
  return got;
}

ssize_t VirtIONet::ReceiveDirectBatch(size_t pair, int max,
                                      net::NetClientState::BatchFillFn fill) {
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
    ++out;
  }
  for (int k = count; k > out; --k) vq->Unpop(p.batch_elems[k - 1]);
  p.rx_unflushed = static_cast<uint16_t>(p.rx_unflushed + out);
  rx_frames_->Add(out);
  FlushRx(pair);
  return filled;
}

// ---------------------------------------------------------------------------------------------
// Control queue

void VirtIONet::HandleCtrl(VirtQueue* vq) {
  VirtQueueElement e;
  for (int n = 0; n < 2 * vq->size(); ++n) {
    const PopResult r = vq->Pop(&e);
    if (r == PopResult::kBroken) {
      MarkNeedsReset(absl::StrCat("control queue: ", vq->broken_reason()));
      return;
    }
    if (r == PopResult::kEmpty) break;
    if (e.out_len < sizeof(virtio_net_ctrl_hdr) || e.in_len < 1) {
      VDEV_LOG_GUEST_ERROR(counters(), "ctrl_bad_request",
                           "%s: control request without header or ack byte (%u/%u bytes)",
                           DisplayName(), e.out_len, e.in_len);
      vq->Push(e, 0);
      continue;
    }
    uint8_t ack = VIRTIO_NET_ERR;
    if (e.out_len - sizeof(virtio_net_ctrl_hdr) <= kMaxCtrlPayload) {
      virtio_net_ctrl_hdr ch;
      CopyFromIov(e.out, 0, &ch, sizeof(ch));
      std::vector<uint8_t> data(e.out_len - sizeof(ch));
      CopyFromIov(e.out, sizeof(ch), data.data(), data.size());
      ack = CtrlCommand(ch.klass, ch.cmd, data);
    }
    if (ack != VIRTIO_NET_OK) counters().Increment("ctrl_err");
    CopyToIov(e.in, 0, &ack, 1);
    vq->Push(e, 1);
  }
  NotifyQueue(vq->index());
}

uint8_t VirtIONet::CtrlCommand(uint8_t cls, uint8_t cmd, const std::vector<uint8_t>& d) {
  constexpr uint8_t kOk = VIRTIO_NET_OK, kErr = VIRTIO_NET_ERR;
  switch (cls) {
    case VIRTIO_NET_CTRL_RX: {
      if (!negotiated(VIRTIO_NET_F_CTRL_RX) || d.size() != 1) return kErr;
      const bool on = d[0] != 0;
      const bool extra = negotiated(VIRTIO_NET_F_CTRL_RX_EXTRA);
      switch (cmd) {
        case VIRTIO_NET_CTRL_RX_PROMISC: filter_.promisc = on; return kOk;
        case VIRTIO_NET_CTRL_RX_ALLMULTI: filter_.allmulti = on; return kOk;
        case VIRTIO_NET_CTRL_RX_ALLUNI: if (!extra) return kErr; filter_.alluni = on; return kOk;
        case VIRTIO_NET_CTRL_RX_NOMULTI: if (!extra) return kErr; filter_.nomulti = on; return kOk;
        case VIRTIO_NET_CTRL_RX_NOUNI: if (!extra) return kErr; filter_.nouni = on; return kOk;
        case VIRTIO_NET_CTRL_RX_NOBCAST: if (!extra) return kErr; filter_.nobcast = on; return kOk;
        default: return kErr;
      }
    }
    case VIRTIO_NET_CTRL_MAC: {
      if (cmd == VIRTIO_NET_CTRL_MAC_ADDR_SET) {
        if (!negotiated(VIRTIO_NET_F_CTRL_MAC_ADDR) || d.size() != 6) return kErr;
        std::memcpy(mac_.bytes.data(), d.data(), 6);
        return kOk;
      }
      if (cmd != VIRTIO_NET_CTRL_MAC_TABLE_SET || !negotiated(VIRTIO_NET_F_CTRL_RX)) return kErr;
      // Two tables (unicast, then multicast), each a 32-bit count and that many addresses.
      RxFilter f = filter_;
      f.uni.clear();
      f.multi.clear();
      f.uni_overflow = f.multi_overflow = false;
      size_t off = 0;
      for (int table = 0; table < 2; ++table) {
        uint32_t entries;
        if (d.size() - off < sizeof(entries)) return kErr;
        std::memcpy(&entries, d.data() + off, sizeof(entries));
        off += sizeof(entries);
        if (uint64_t{entries} * 6 > d.size() - off) return kErr;
        std::vector<qom::MacAddress>& out = table == 0 ? f.uni : f.multi;
        if (f.uni.size() + entries <= kMacTableEntries) {
          for (uint32_t i = 0; i < entries; ++i) {
            qom::MacAddress m;
            std::memcpy(m.bytes.data(), d.data() + off + 6 * i, 6);
            out.push_back(m);
          }
        } else {
          (table == 0 ? f.uni_overflow : f.multi_overflow) = true;
        }
        off += size_t{entries} * 6;
      }
      if (off != d.size()) return kErr;
      filter_ = std::move(f);
      return kOk;
    }
    case VIRTIO_NET_CTRL_VLAN: {
      if (!negotiated(VIRTIO_NET_F_CTRL_VLAN) || d.size() != 2) return kErr;
      const uint16_t vid = static_cast<uint16_t>(d[0] | d[1] << 8);
      if (vid >= kMaxVlans) return kErr;
      if (cmd == VIRTIO_NET_CTRL_VLAN_ADD) {
        filter_.vlans.set(vid);
      } else if (cmd == VIRTIO_NET_CTRL_VLAN_DEL) {
        filter_.vlans.reset(vid);
      } else {
        return kErr;
      }
      return kOk;
    }
    case VIRTIO_NET_CTRL_ANNOUNCE: {
      if (!negotiated(VIRTIO_NET_F_GUEST_ANNOUNCE) || cmd != VIRTIO_NET_CTRL_ANNOUNCE_ACK ||
          !d.empty()) {
        return kErr;
      }
      net_status_ &= ~VIRTIO_NET_S_ANNOUNCE;
      return kOk;
    }
    case VIRTIO_NET_CTRL_MQ: {
      if (!negotiated(VIRTIO_NET_F_MQ) || cmd != VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET ||
          d.size() != 2) {
        return kErr;
      }
      const uint16_t n = static_cast<uint16_t>(d[0] | d[1] << 8);
      if (n < VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN || n > pairs_.size()) return kErr;
      SetQueuePairs(n);
      for (size_t i = 0; i < n; ++i) ScheduleRxFlush(i);
      return kOk;
    }
    case VIRTIO_NET_CTRL_GUEST_OFFLOADS: {
      if (!negotiated(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS) ||
          cmd != VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET || d.size() != 8) {
        return kErr;
      }
      uint64_t offloads;
      std::memcpy(&offloads, d.data(), 8);
      // Only offloads that were negotiated, and consistent among themselves.
      if (offloads & ~(negotiated() & kGuestOffloads)) return kErr;
      if (!CheckFeatures(offloads | Bit(VIRTIO_NET_F_CTRL_VQ)).empty()) return kErr;
      ApplyOffloads(offloads);
      return kOk;
    }
    default:
      return kErr;
  }
}

void VirtIONetPCI::ClassInit(VirtIOPCIProxyClass& k) {
  k.description = "virtio network device over PCI";
  k.category = DeviceCategory::kNetwork;
  k.class_id = 0x0200;  // Ethernet controller
  k.backend_type = VirtIONet::kTypeName;
  k.ForwardBackendProperties();
  k.SetPropertyDefault("vectors", "3");
}

VDEV_REGISTER_TYPE(VirtIONet);
VDEV_REGISTER_TYPE(VirtIONetPCI);

}  // namespace vdev::virtio
