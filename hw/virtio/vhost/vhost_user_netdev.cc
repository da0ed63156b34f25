#include "hw/virtio/vhost/vhost_user_netdev.h"

#include <sys/epoll.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"
#include "qom/property.h"

namespace vdev::vhost {
namespace {

constexpr absl::Duration kFirstBackoff = absl::Milliseconds(50);
constexpr absl::Duration kDefaultMaxBackoff = absl::Seconds(1);
constexpr absl::Duration kServerWait = absl::Seconds(30);
constexpr uint64_t kWantedProtocol =
    (uint64_t{1} << kProtocolMq) | (uint64_t{1} << kProtocolReplyAck) |
    (uint64_t{1} << kProtocolMtu) | (uint64_t{1} << kProtocolResetDevice) |
    (uint64_t{1} << kProtocolConfigureMemSlots) | (uint64_t{1} << kProtocolRarp);

bool ConnectionLost(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kDeadlineExceeded ||
         s.code() == absl::StatusCode::kDataLoss ||  // a reply out of step with our requests
         // A send on a socket the backend closed.
         (s.code() != absl::StatusCode::kOk && absl::StrContains(s.message(), "Broken pipe")) ||
         (s.code() != absl::StatusCode::kOk && absl::StrContains(s.message(), "Connection reset"));
}

}  // namespace

// The NIC's peer for one queue pair. Frames never pass through it (the backend moves them); it
// carries the link state and the pairing.
class VhostUserNetdev::Client : public net::NetClientState {
 public:
  explicit Client(std::string name) : NetClientState("vhost-user", std::move(name)) {}
  ssize_t ReceiveIov(const iovec* iov, int n) override { return -1; }
};

void VhostUserNetdev::ClassInit(qom::ObjectClass& k) {
  k.description = "a vhost-user backend process serves the NIC's rings (DPDK, OVS-DPDK)";
  k.AddProperty(qom::LinkProp("chardev", &VhostUserNetdev::chardev_,
                              "the socket chardev to the backend (-chardev socket,id=...)"));
  k.AddProperty(qom::Prop("queues", &VhostUserNetdev::queues_, uint32_t{1},
                          "number of queue pairs (1..256; more than 1 needs the backend's MQ)"));
}

VhostUserNetdev::~VhostUserNetdev() {
  alive_->store(false);
  if (!clients_.empty()) {
    OnLoop([this] {
      hup_watch_.Reset();
      accept_watch_.Reset();
      reconnect_timer_.Reset();
    });
  }
  // (The chardev may be gone first when the whole machine goes: the link is cleared then.)
  if (claimed_chardev_ && chardev_ != nullptr) chardev_->Release();
}

absl::Status VhostUserNetdev::Complete() {
  const std::string who = absl::StrCat("vhost-user '", name(), "'");
  if (chardev_ == nullptr)
    return absl::InvalidArgumentError(absl::StrCat(who, ": chardev is required"));
  if (queues_ < 1 || queues_ > 256) {
    return absl::InvalidArgumentError(absl::StrCat(who, ": queues must be 1..256, got ", queues_));
  }
  if (!chardev_->Claim()) {
    return absl::FailedPreconditionError(
        absl::StrCat(who, ": chardev '", chardev_->name(), "' is already in use"));
  }
  claimed_chardev_ = true;
  VDEV_ASSIGN_OR_RETURN(UniqueFd sock, chardev_->Open(kServerWait));
  absl::StatusOr<VhostUserClient> c = Handshake(std::move(sock));
  if (!c.ok())
    return absl::Status(c.status().code(), absl::StrCat(who, ": ", c.status().message()));
  (void)loop();
  for (uint32_t q = 0; q < queues_; ++q) {
    clients_.push_back(
        std::make_unique<Client>(queues_ == 1 ? name() : absl::StrCat(name(), ".", q)));
  }
  absl::Status s = absl::OkStatus();
  OnLoop([&] {
    auto t = loop().AddTimer([this] { TryReconnect(); });
    if (!t.ok()) {
      s = t.status();
      return;
    }
    reconnect_timer_ = std::move(*t);
    Adopt(std::move(*c));
  });
  return s;
}

absl::StatusOr<VhostUserClient> VhostUserNetdev::Handshake(UniqueFd sock) {
  VhostUserClient c(std::move(sock));
  VDEV_ASSIGN_OR_RETURN(uint64_t features, c.GetU64(VhostUserRequest::kGetFeatures));
  uint64_t protocol = 0;
  if (features >> kVirtioProtocolFeatures & 1) {
    VDEV_ASSIGN_OR_RETURN(uint64_t offered, c.GetU64(VhostUserRequest::kGetProtocolFeatures));
    protocol = offered & kWantedProtocol;
    VDEV_RETURN_IF_ERROR(c.SetU64(VhostUserRequest::kSetProtocolFeatures, protocol));
    c.set_reply_ack(protocol >> kProtocolReplyAck & 1);
  }
  if (protocol >> kProtocolMq & 1) {
    VDEV_ASSIGN_OR_RETURN(uint64_t pairs, c.GetU64(VhostUserRequest::kGetQueueNum));
    if (pairs < queues_) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "the backend serves %u queue pairs, queues=%u asks for more", pairs, queues_));
    }
  } else if (queues_ > 1) {
    return absl::FailedPreconditionError(
        absl::StrFormat("queues=%u needs the backend's MQ protocol feature", queues_));
  }
  uint64_t slots = 0;
  if (protocol >> kProtocolConfigureMemSlots & 1) {
    VDEV_ASSIGN_OR_RETURN(slots, c.GetU64(VhostUserRequest::kGetMaxMemSlots));
    if (slots == 0 || slots > 512) {
      return absl::InvalidArgumentError(
          absl::StrFormat("vhost-user: GET_MAX_MEM_SLOTS answered %u", slots));
    }
  }
  VDEV_RETURN_IF_ERROR(c.SetOwner());
  absl::MutexLock l(&mu_);
  features_ = features;
  protocol_ = protocol;
  max_mem_slots_ = slots;
  sent_regions_.clear();  // a new connection knows none of them
  return c;
}

void VhostUserNetdev::Adopt(VhostUserClient c) {
  const int fd = c.fd();
  uint64_t generation;
  {
    absl::MutexLock l(&mu_);
    client_.emplace(std::move(c));
    generation = ++connects_;
  }
  down_ = false;
  backoff_ = kFirstBackoff;
  accept_watch_.Reset();
  // Only hang-ups wake us: replies are read by whoever made the request.
  auto w = loop().WatchFd(fd, EPOLLRDHUP, [this, generation](uint32_t revents) {
    if (revents & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) Disconnected(generation);
  });
  if (w.ok()) hup_watch_ = std::move(*w);
}

void VhostUserNetdev::Disconnected(uint64_t generation) {
  VhostListener* listener;
  {
    absl::MutexLock l(&mu_);
    if (generation != connects_) return;  // about an earlier connection
    client_.reset();
    listener = listener_;
  }
  if (down_) return;
  down_ = true;
  hup_watch_.Reset();
  VDEV_LOG(kWarning, "vhost-user '%s': the backend went away; link down, reconnecting", name());
  SetLinkDown(true);
  if (listener != nullptr) listener->BackendDown();
  backoff_ = kFirstBackoff;
  if (chardev_ == nullptr) return;  // the machine is going away
  if (chardev_->server()) {
    // Wait for the backend to connect again.
    auto w = loop().WatchFd(chardev_->listen_fd(), EPOLLIN, [this](uint32_t) { TryReconnect(); });
    if (w.ok()) accept_watch_ = std::move(*w);
  } else {
    reconnect_timer_.Arm(backoff_);
  }
}

void VhostUserNetdev::TryReconnect() {
  if (chardev_ == nullptr) return;  // the machine is going away
  absl::StatusOr<UniqueFd> sock = chardev_->Open(absl::ZeroDuration());
  absl::StatusOr<VhostUserClient> c =
      sock.ok() ? Handshake(std::move(*sock)) : absl::StatusOr<VhostUserClient>(sock.status());
  if (!c.ok()) {
    if (!chardev_->server()) {
      const absl::Duration cap =
          chardev_->reconnect() > 0 ? absl::Seconds(chardev_->reconnect()) : kDefaultMaxBackoff;
      backoff_ = std::min(backoff_ * 2, cap);
      reconnect_timer_.Arm(backoff_);
    }
    return;
  }
  Adopt(std::move(*c));
  VhostListener* listener;
  {
    absl::MutexLock l(&mu_);
    listener = listener_;
  }
  VDEV_LOG(kInfo, "vhost-user '%s': the backend is back", name());
  if (listener != nullptr) listener->BackendUp();
  SetLinkDown(false);
}

void VhostUserNetdev::SetLinkDown(bool down) {
  for (auto& c : clients_) c->SetLinkDown(down);
}

uint64_t VhostUserNetdev::features() const {
  absl::MutexLock l(&mu_);
  return features_;
}

uint64_t VhostUserNetdev::protocol_features() const {
  absl::MutexLock l(&mu_);
  return protocol_;
}

bool VhostUserNetdev::connected() const {
  absl::MutexLock l(&mu_);
  return client_.has_value();
}

uint64_t VhostUserNetdev::connects() const {
  absl::MutexLock l(&mu_);
  return connects_;
}

void VhostUserNetdev::SetListener(VhostListener* listener) {
  absl::MutexLock l(&mu_);
  listener_ = listener;
}

absl::Status VhostUserNetdev::Op(const std::function<absl::Status(VhostUserClient&)>& op) {
  absl::MutexLock l(&mu_);
  if (!client_.has_value()) {
    return absl::UnavailableError(absl::StrCat("vhost-user '", name(), "': no backend connected"));
  }
  absl::Status s = op(*client_);
  if (!s.ok() && ConnectionLost(s)) {
    // Gone now (connected() says so at once); the rest of the disconnect runs on the loop.
    client_.reset();
    loop().Post([this, alive = alive_, generation = connects_] {
      if (alive->load()) Disconnected(generation);
    });
  }
  return s;
}

absl::Status VhostUserNetdev::SetMtu(uint16_t mtu) {
  if (!(protocol_features() >> kProtocolMtu & 1)) return absl::OkStatus();
  return Op([mtu](VhostUserClient& c) { return c.SetU64(VhostUserRequest::kNetSetMtu, mtu); });
}

absl::Status VhostUserNetdev::SendRarp(const uint8_t mac[6]) {
  if (!(protocol_features() >> kProtocolRarp & 1)) {
    return absl::FailedPreconditionError(
        absl::StrCat(name(), ": the vhost-user backend did not take the RARP protocol feature"));
  }
  return Op([mac](VhostUserClient& c) { return c.SendRarp(mac); });
}

absl::Status VhostUserNetdev::ResetDevice() {
  if (!(protocol_features() >> kProtocolResetDevice & 1)) return absl::OkStatus();
  return Op([](VhostUserClient& c) { return c.Request(VhostUserRequest::kResetDevice); });
}

absl::Status VhostUserNetdev::SetFeatures(uint64_t features) {
  // The backend needs PROTOCOL_FEATURES acked to keep the protocol features it agreed to.
  const uint64_t with = features | (this->features() & (uint64_t{1} << kVirtioProtocolFeatures));
  return Op([with](VhostUserClient& c) { return c.SetU64(VhostUserRequest::kSetFeatures, with); });
}

absl::Status VhostUserNetdev::SetMemTable(const GuestMemory& mem) {
  if (!(protocol_features() >> kProtocolConfigureMemSlots & 1)) {
    return Op([&mem](VhostUserClient& c) { return c.SetMemTable(mem); });
  }
  // CONFIGURE_MEM_SLOTS: the backend keeps what it was given on this connection; send only the
  // difference (a region gone is removed, a new one added).
  return Op([this, &mem](VhostUserClient& c) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    auto same = [](const GuestRamRegion& a, const GuestRamRegion& b) {
      return a.gpa == b.gpa && a.size == b.size && a.host == b.host && a.fd_offset == b.fd_offset;
    };
    const auto& now = mem.regions();
    if (now.size() > max_mem_slots_) {
      return absl::FailedPreconditionError(
          absl::StrFormat("vhost-user: %u RAM regions, the backend has %u memory slots", now.size(),
                          max_mem_slots_));
    }
    std::vector<GuestRamRegion> kept;
    for (const GuestRamRegion& old : sent_regions_) {
      const bool still = std::any_of(now.begin(), now.end(),
                                     [&](const GuestRamRegion& r) { return same(r, old); });
      if (still) {
        kept.push_back(old);
      } else {
        VDEV_RETURN_IF_ERROR(c.RemMemReg(old));
      }
    }
    sent_regions_ = kept;
    for (const GuestRamRegion& r : now) {
      const bool have = std::any_of(kept.begin(), kept.end(),
                                    [&](const GuestRamRegion& k) { return same(r, k); });
      if (have) continue;
      VDEV_RETURN_IF_ERROR(c.AddMemReg(r));
      sent_regions_.push_back(r);
    }
    return absl::OkStatus();
  });
}

absl::Status VhostUserNetdev::SetupRing(uint32_t index, const VringSetup& r) {
  return Op([&](VhostUserClient& c) {
    VDEV_RETURN_IF_ERROR(c.SetVringNum(index, r.num));
    VDEV_RETURN_IF_ERROR(c.SetVringBase(index, r.base));
    VDEV_RETURN_IF_ERROR(c.SetVringAddr(index, r.addr.desc, r.addr.used, r.addr.avail));
    VDEV_RETURN_IF_ERROR(c.SetVringFd(VhostUserRequest::kSetVringKick, index, r.kick));
    VDEV_RETURN_IF_ERROR(c.SetVringFd(VhostUserRequest::kSetVringCall, index, r.call));
    return c.SetVringFd(VhostUserRequest::kSetVringErr, index, r.err);
  });
}

absl::Status VhostUserNetdev::SetVringEnable(uint32_t index, bool enable) {
  // Without PROTOCOL_FEATURES rings start enabled and SET_VRING_ENABLE does not exist.
  if (!(features() >> kVirtioProtocolFeatures & 1)) return absl::OkStatus();
  return Op([=](VhostUserClient& c) { return c.SetVringEnable(index, enable); });
}

absl::StatusOr<uint32_t> VhostUserNetdev::GetVringBase(uint32_t index) {
  uint32_t base = 0;
  VDEV_RETURN_IF_ERROR(Op([&](VhostUserClient& c) {
    VDEV_ASSIGN_OR_RETURN(base, c.GetVringBase(index));
    return absl::OkStatus();
  }));
  return base;
}

VDEV_REGISTER_TYPE(VhostUserNetdev);

}  // namespace vdev::vhost
