// virtio-net (VIRTIO 1.2 §5.1): the device — properties, realize, feature negotiation, the config
// space, start/stop/reset, and the kick dispatch. Transmit is tx.cc, receive rx.cc, the control
// queue ctrl.cc, vhost hand-over vhost.cc, the PCI binding pci.cc.
//
//   -netdev tap,id=n0 -device virtio-net-device,netdev=n0   (on a virtio-mmio transport)
#include <algorithm>
#include <atomic>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/byte_order.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"
#include "hw/net/virtio_net/virtio_net.h"
#include "hw/net/virtio_net/virtio_net_internal.h"

namespace vdev::virtio {
namespace {

std::atomic<uint32_t> next_default_mac{0};

}  // namespace

void VirtIONet::ClassInit(VirtIODeviceClass& k) {
  k.description = "virtio network device";
  k.category = DeviceCategory::kNetwork;
  k.device_id = VIRTIO_ID_NET;
  k.config_size = offsetof(virtio_net_config, rss_max_key_size);
  k.AddProperty(qom::Prop("mac", &VirtIONet::mac_prop_, qom::MacAddress{},
                          "MAC address (default: 52:54:00:12:34:56 + n)"));
  k.AddProperty(qom::LinkProp("netdev", &VirtIONet::netdev_, "the backend (-netdev id)"));
  // The feature switches: one bit each of the feature word the device offers (QEMU's
  // DEFINE_PROP_BIT64 on host_features), QEMU's names and defaults.
  struct FeatureSwitch {
    const char* name;
    unsigned bit;
    bool on;
    const char* what;
  };
  static constexpr FeatureSwitch kSwitches[] = {
      {"mq", VIRTIO_NET_F_MQ, false, "multiqueue: one queue pair per backend queue (MQ)"},
      {"csum", VIRTIO_NET_F_CSUM, true, "guest may send partially checksummed frames (CSUM)"},
      {"guest_csum", VIRTIO_NET_F_GUEST_CSUM, true,
       "partially checksummed frames to the guest (GUEST_CSUM)"},
      {"host_tso4", VIRTIO_NET_F_HOST_TSO4, true, "TSO over IPv4 from the guest (HOST_TSO4)"},
      {"host_tso6", VIRTIO_NET_F_HOST_TSO6, true, "TSO over IPv6 from the guest (HOST_TSO6)"},
      {"host_ecn", VIRTIO_NET_F_HOST_ECN, true, "TSO with ECN from the guest (HOST_ECN)"},
      {"host_ufo", VIRTIO_NET_F_HOST_UFO, true, "UFO from the guest (HOST_UFO)"},
      {"guest_tso4", VIRTIO_NET_F_GUEST_TSO4, true, "TSO over IPv4 to the guest (GUEST_TSO4)"},
      {"guest_tso6", VIRTIO_NET_F_GUEST_TSO6, true, "TSO over IPv6 to the guest (GUEST_TSO6)"},
      {"guest_ecn", VIRTIO_NET_F_GUEST_ECN, true, "TSO with ECN to the guest (GUEST_ECN)"},
      {"guest_ufo", VIRTIO_NET_F_GUEST_UFO, true, "UFO to the guest (GUEST_UFO)"},
      {"mrg_rxbuf", VIRTIO_NET_F_MRG_RXBUF, true, "mergeable receive buffers (MRG_RXBUF)"},
      {"status", VIRTIO_NET_F_STATUS, true, "link status in config space (STATUS)"},
      {"ctrl_vq", VIRTIO_NET_F_CTRL_VQ, true, "control queue (CTRL_VQ)"},
      {"ctrl_rx", VIRTIO_NET_F_CTRL_RX, true, "RX mode and MAC table commands (CTRL_RX)"},
      {"ctrl_vlan", VIRTIO_NET_F_CTRL_VLAN, true, "VLAN filter commands (CTRL_VLAN)"},
      {"ctrl_rx_extra", VIRTIO_NET_F_CTRL_RX_EXTRA, true, "extra RX modes (CTRL_RX_EXTRA)"},
      {"ctrl_mac_addr", VIRTIO_NET_F_CTRL_MAC_ADDR, true, "MAC address command (CTRL_MAC_ADDR)"},
      {"ctrl_guest_offloads", VIRTIO_NET_F_CTRL_GUEST_OFFLOADS, true,
       "offload switching command (CTRL_GUEST_OFFLOADS)"},
      {"guest_announce", VIRTIO_NET_F_GUEST_ANNOUNCE, true,
       "guest announces itself (GUEST_ANNOUNCE)"},
  };
  for (const FeatureSwitch& f : kSwitches) {
    k.AddProperty(qom::BitProp(f.name, &VirtIONet::host_features_, f.bit, f.on, f.what));
  }
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
    if (host_features_ & Bit(VIRTIO_NET_F_MQ)) {
      npairs = netdev_->num_queues();
    } else if (netdev_->num_queues() > 1) {
      return absl::InvalidArgumentError(absl::StrCat(ctx, ": netdev '", netdev_->name(), "' has ",
                                                     netdev_->num_queues(), " queues; use mq=on"));
    }
    if (npairs > kMaxQueuePairs) {
      return absl::InvalidArgumentError(
          absl::StrCat(ctx, ": at most ", kMaxQueuePairs, " queue pairs"));
    }
    if (!netdev_->Claim()) {
      return absl::FailedPreconditionError(absl::StrCat(ctx, ": netdev '", netdev_->name(),
                                                        "' is already in use by another device"));
    }
    has_vnet_hdr_ = true;
    has_ufo_ = true;
    for (size_t i = 0; i < npairs; ++i) {
      has_vnet_hdr_ = has_vnet_hdr_ && netdev_->queue(i)->HasVnetHdr() &&
                      netdev_->queue(i)->HasVnetHdrLen(sizeof(virtio_net_hdr_mrg_rxbuf));
      has_ufo_ = has_ufo_ && netdev_->queue(i)->HasUfo();
    }
    has_ufo_ = has_ufo_ && has_vnet_hdr_;
    if (absl::Status s = RealizeVhost(npairs); !s.ok()) {
      netdev_->Release();
      return absl::Status(s.code(), absl::StrCat(ctx, ": ", s.message()));
    }
  }
  if (mac_prop_ == qom::MacAddress{}) {
    // QEMU's default: 52:54:00:12:34:56, the next NIC :57, ...
    const uint32_t n = next_default_mac.fetch_add(1);
    mac_prop_.bytes = {0x52,
                       0x54,
                       0x00,
                       0x12,
                       static_cast<uint8_t>(0x34 + ((0x56 + n) >> 8)),
                       static_cast<uint8_t>(0x56 + n)};
  }
  num_pairs_ = npairs;
  if (absl::Status s = VirtIODevice::Realize(); !s.ok()) {
    UnrealizeVhost();
    if (netdev_ != nullptr) netdev_->Release();
    return s;
  }
  loop_ = netdev_ != nullptr ? &netdev_->loop() : &main_loop();
  tx_frames_ = counters().Get("tx_frames");
  rx_frames_ = counters().Get("rx_frames");
  rx_filtered_ = counters().Get("rx_filtered");
  tx_bytes_ = counters().Get("tx_bytes");
  rx_bytes_ = counters().Get("rx_bytes");
  rx_hint_ = std::make_unique<std::atomic<bool>[]>(npairs);
  rx_hints_ = npairs;
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
  if (has_ctrl_vq()) AddQueue(64);
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
  UnrealizeVhost();
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

bool VirtIONet::has_ctrl_vq() const { return host_features_ & Bit(VIRTIO_NET_F_CTRL_VQ); }

bool VirtIONet::PeerHasVnetHdr() const { return has_vnet_hdr_; }
bool VirtIONet::PeerHasUfo() const { return has_ufo_; }

uint64_t VirtIONet::DeviceFeatures() const {
  uint64_t f = host_features_ | Bit(VIRTIO_NET_F_MAC) | Bit(VIRTIO_NET_F_SPEED_DUPLEX);
  if (!(f & Bit(VIRTIO_NET_F_CTRL_VQ))) f &= ~kNeedCtrlVq;
  if (!(f & Bit(VIRTIO_NET_F_CTRL_RX))) f &= ~Bit(VIRTIO_NET_F_CTRL_RX_EXTRA);
  if (num_pairs_ <= 1) f &= ~Bit(VIRTIO_NET_F_MQ);
  if (host_mtu_ != 0) f |= Bit(VIRTIO_NET_F_MTU);
  // Offloads only when the backend takes headers (the frames would be lost otherwise).
  if (!PeerHasVnetHdr()) f &= ~kNeedVnetHdr;
  if (!PeerHasUfo()) f &= ~(Bit(VIRTIO_NET_F_HOST_UFO) | Bit(VIRTIO_NET_F_GUEST_UFO));
  return DropOrphans(f);
}

uint64_t VirtIONet::DropOrphans(uint64_t f) {
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

uint64_t VirtIONet::ControlPlaneFeatures() const { return kNeedCtrlVq | Bit(VIRTIO_NET_F_CTRL_VQ); }

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
    StoreLe(mac_.bytes.data() + offset, value, size);
    return;
  }
  VirtIODevice::WriteConfig(offset, value, size);
}

void VirtIONet::ClearRxHints() {
  for (size_t i = 0; i < rx_hints_; ++i) rx_hint_[i].store(false, std::memory_order_release);
}

void VirtIONet::ResetState() {
  ClearRxHints();
  if (vhost_ != nullptr && vhost_dev_ != nullptr) (void)vhost_->ResetDevice();
  mac_ = mac_prop_;
  const bool up = pairs_.empty() || !pairs_[0].nc->link_down();
  net_status_ = up ? VIRTIO_NET_S_LINK_UP : 0;
  curr_pairs_ = 1;
  frontend_pairs_ = false;
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
  StartVhost();
}

void VirtIONet::Stop() {
  ClearRxHints();
  StopVhost();
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
  ClearRxHints();
  curr_pairs_ = n;
  VhostSetPairs(n);
  for (size_t i = 0; i < pairs_.size(); ++i) {
    if (net::NetClientState* peer = pairs_[i].nc->peer(); peer != nullptr) {
      peer->SetQueueEnabled(i < n);
    }
  }
}

void VirtIONet::FrontendQueuesChanged(const std::vector<bool>& enabled) {
  // The frontend ran VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET on its control queue and enabled the pairs
  // it chose: serve the leading pairs whose both queues it enabled.
  frontend_pairs_ = true;
  size_t n = 0;
  while (n < pairs_.size() && enabled[2 * n] && enabled[2 * n + 1]) ++n;
  if (n == curr_pairs_) return;
  const size_t before = curr_pairs_;
  SetQueuePairs(n);
  // A pair the frontend just enabled may have buffers and frames already (its kicks came
  // before): serve them as after a kick.
  for (size_t p = before; p < n; ++p) {
    ScheduleRxFlush(p);
    FlushTx(p);
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
  if (!running() || !negotiated(VIRTIO_NET_F_GUEST_ANNOUNCE) || !negotiated(VIRTIO_NET_F_STATUS)) {
    return;
  }
  net_status_ |= VIRTIO_NET_S_ANNOUNCE;
  ConfigChanged();
}

absl::Status VirtIONet::AnnounceFromFrontend(const uint8_t mac[6]) {
  absl::MutexLock l(&mu_);
  if (pairs_.empty() || pairs_[0].nc->peer() == nullptr) {
    return absl::FailedPreconditionError(DisplayName() + ": no backend to announce on");
  }
  // RARP (RFC 903) "reverse request" from and for `mac`, broadcast, padded to the 60-byte
  // minimum: the frame switches learn the address from.
  uint8_t frame[60] = {};
  std::memset(frame, 0xff, 6);
  std::memcpy(frame + 6, mac, 6);
  StoreBe16(frame + 12, 0x8035);  // ETH_P_RARP
  uint8_t* a = frame + 14;
  StoreBe16(a, 1);           // Ethernet
  StoreBe16(a + 2, 0x0800);  // IPv4
  a[4] = 6;
  a[5] = 4;
  StoreBe16(a + 6, 3);          // reverse request
  std::memcpy(a + 8, mac, 6);   // sender hardware address; protocol address 0
  std::memcpy(a + 18, mac, 6);  // target hardware address; protocol address 0
  uint8_t hdr[sizeof(virtio_net_hdr_mrg_rxbuf)] = {};  // no offload
  iovec iov[2];
  int n = 0;
  if (host_hdr_len_ > 0) iov[n++] = {hdr, static_cast<size_t>(host_hdr_len_)};
  iov[n++] = {frame, sizeof(frame)};
  pairs_[0].nc->SendIov(iov, n);
  counters().Increment("announces_sent");
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Kicks

void VirtIONet::HandleQueue(uint16_t index) {
  const size_t ctrl = 2 * pairs_.size();
  if (has_ctrl_vq() && index == ctrl) {
    HandleCtrl(queue(index));
    return;
  }
  if (VhostKick(index)) return;
  const size_t pair = index / 2;
  if (pair >= curr_pairs_ && frontend_pairs_) {
    // The frontend set this ring up but has not enabled its pair (yet): served when it does.
    counters().Increment("kicks_pair_not_enabled");
    return;
  }
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

VDEV_REGISTER_TYPE(VirtIONet);

}  // namespace vdev::virtio
