#include "hw/virtio/vhost/vhost_user_backend.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/checked_math.h"
#include "core/base/status_macros.h"

namespace vdev::vhost {
namespace {

absl::Status Refuse(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("vhost-user backend: ", what));
}

uint64_t GetU64(const std::vector<uint8_t>& p, size_t off = 0) {
  uint64_t v;
  std::memcpy(&v, p.data() + off, 8);
  return v;
}

uint32_t GetU32(const std::vector<uint8_t>& p, size_t off = 0) {
  uint32_t v;
  std::memcpy(&v, p.data() + off, 4);
  return v;
}

constexpr size_t kRegionSize = 32;          // {u64 gpa, size, uaddr, offset}
constexpr size_t kMaxBackendRegions = 32;   // ADD_MEM_REG slots (GET_MAX_MEM_SLOTS)
constexpr uint32_t kRequestGetStatus = 40;  // VHOST_USER_GET_STATUS
constexpr uint32_t kRequestSetStatus = 39;  // VHOST_USER_SET_STATUS
constexpr uint8_t kStatusDriverOk = 4;

// Payload size each request must have (-1: any / checked by its handler).
int PayloadSize(uint32_t request) {
  switch (static_cast<VhostUserRequest>(request)) {
    case VhostUserRequest::kGetFeatures:
    case VhostUserRequest::kSetOwner:
    case VhostUserRequest::kResetOwner:
    case VhostUserRequest::kGetProtocolFeatures:
    case VhostUserRequest::kGetQueueNum:
    case VhostUserRequest::kResetDevice:
    case VhostUserRequest::kGetMaxMemSlots:
      return 0;
    case VhostUserRequest::kSetFeatures:
    case VhostUserRequest::kSetProtocolFeatures:
    case VhostUserRequest::kSetVringKick:
    case VhostUserRequest::kSetVringCall:
    case VhostUserRequest::kSetVringErr:
    case VhostUserRequest::kSendRarp:
    case VhostUserRequest::kNetSetMtu:
      return 8;
    case VhostUserRequest::kSetVringNum:
    case VhostUserRequest::kSetVringBase:
    case VhostUserRequest::kGetVringBase:
    case VhostUserRequest::kSetVringEnable:
      return 8;
    case VhostUserRequest::kSetVringAddr:
      return 40;
    case VhostUserRequest::kAddMemReg:
    case VhostUserRequest::kRemMemReg:
      return 8 + kRegionSize;
    case VhostUserRequest::kSetMemTable:
    case VhostUserRequest::kGetConfig:
    case VhostUserRequest::kSetConfig:
      return -1;
    default:
      if (request == kRequestSetStatus) return 8;
      if (request == kRequestGetStatus) return 0;
      return -2;  // unknown
  }
}

// Requests that may bring fds, and how many.
bool FdsAllowed(uint32_t request, size_t n) {
  switch (static_cast<VhostUserRequest>(request)) {
    case VhostUserRequest::kSetMemTable:
      return n <= static_cast<size_t>(kMaxMemRegions);
    case VhostUserRequest::kSetVringKick:
    case VhostUserRequest::kSetVringCall:
    case VhostUserRequest::kSetVringErr:
    case VhostUserRequest::kRemMemReg:  // QEMU sends the region's fd; it is closed
      return n <= 1;
    case VhostUserRequest::kAddMemReg:
      return n == 1;
    default:
      return n == 0;
  }
}

// Requests that carry a reply of their own.
bool HasReply(uint32_t request) {
  switch (static_cast<VhostUserRequest>(request)) {
    case VhostUserRequest::kGetFeatures:
    case VhostUserRequest::kGetProtocolFeatures:
    case VhostUserRequest::kGetQueueNum:
    case VhostUserRequest::kGetVringBase:
    case VhostUserRequest::kGetMaxMemSlots:
    case VhostUserRequest::kGetConfig:
      return true;
    default:
      return request == kRequestGetStatus;
  }
}

absl::Status ReplyU64(int sock, uint32_t request, uint64_t v) {
  uint8_t p[8];
  std::memcpy(p, &v, 8);
  return SendVhostUserMessage(sock, request, kVhostUserVersion | kFlagReply, p, {});
}

}  // namespace

VhostUserBackendSession::VhostUserBackendSession(VhostUserBackendDevice* device,
                                                 BackendLimits limits)
    : device_(device), limits_(limits), rings_(limits.num_rings) {
  mem_ = *GuestMemory::Create();
}

VhostUserBackendSession::~VhostUserBackendSession() { Close(); }

void VhostUserBackendSession::Close() {
  StopAll();
  for (BackendRing& r : rings_) r = BackendRing{};
  mem_->Clear();
  regions_.clear();
  owner_ = false;
  features_ = protocol_features_ = 0;
  features_set_ = false;
  status_ = 0;
  mtu_ = 0;
}

void VhostUserBackendSession::StopAll() {
  for (uint32_t i = 0; i < rings_.size(); ++i) {
    if (!rings_[i].started) continue;
    rings_[i].base = device_->StopRing(i);
    rings_[i].started = false;
  }
}

absl::Status VhostUserBackendSession::Handle(int sock, VhostUserMessage msg) {
  const uint32_t request = msg.request;
  // The header first: version 1, no REPLY flag, the exact size, the fds this request takes.
  if ((msg.flags & 3) != kVhostUserVersion || (msg.flags & kFlagReply)) {
    return Refuse(
        absl::StrFormat("request %u with flags 0x%x (version 1, not a reply)", request, msg.flags));
  }
  const int want = PayloadSize(request);
  if (want == -2) return Refuse(absl::StrFormat("unknown or unsupported request %u", request));
  if (want >= 0 && msg.payload.size() != static_cast<size_t>(want)) {
    return Refuse(absl::StrFormat("request %u with a %u-byte payload (expected %d)", request,
                                  msg.payload.size(), want));
  }
  if (!FdsAllowed(request, msg.fds.size())) {
    return Refuse(absl::StrFormat("request %u with %u fds", request, msg.fds.size()));
  }
  bool replied = false;
  absl::StatusOr<uint64_t> r = Dispatch(sock, msg, &replied);
  const bool ack = !HasReply(request) && (msg.flags & kFlagNeedReply) &&
                   (protocol_features_ >> kProtocolReplyAck & 1);
  if (ack) {
    // The ack says whether it worked (0: success); a failure still drops the connection.
    VDEV_RETURN_IF_ERROR(ReplyU64(sock, request, r.ok() ? 0 : 1));
  }
  return r.status();
}

absl::StatusOr<uint32_t> VhostUserBackendSession::RingIndex(uint64_t index,
                                                            const char* what) const {
  if (index >= rings_.size()) {
    return Refuse(absl::StrFormat("%s for ring %u of %u", what, index, rings_.size()));
  }
  return static_cast<uint32_t>(index);
}

absl::StatusOr<uint64_t> VhostUserBackendSession::Dispatch(int sock, VhostUserMessage& msg,
                                                           bool* replied) {
  const uint32_t request = msg.request;
  const std::vector<uint8_t>& p = msg.payload;
  const uint64_t offered = device_->DeviceFeatures() | uint64_t{1} << kVirtioProtocolFeatures;
  switch (static_cast<VhostUserRequest>(request)) {
    case VhostUserRequest::kGetFeatures:
      VDEV_RETURN_IF_ERROR(ReplyU64(sock, request, offered));
      return 0;
    case VhostUserRequest::kSetFeatures: {
      const uint64_t f = GetU64(p);
      if (f & ~offered) {
        return Refuse(absl::StrFormat("SET_FEATURES 0x%x has bits not offered (0x%x)", f & ~offered,
                                      offered));
      }
      if (std::any_of(rings_.begin(), rings_.end(),
                      [](const BackendRing& r) { return r.started; }) &&
          f != features_) {
        return Refuse("SET_FEATURES changes the features while rings run");
      }
      VDEV_RETURN_IF_ERROR(device_->SetFeatures(f & ~(uint64_t{1} << kVirtioProtocolFeatures)));
      features_ = f;
      features_set_ = true;
      return 0;
    }
    case VhostUserRequest::kSetOwner:
      owner_ = true;
      return 0;
    case VhostUserRequest::kResetOwner:
    case VhostUserRequest::kResetDevice:
      StopAll();
      device_->ResetDevice();
      status_ = 0;
      if (request == static_cast<uint32_t>(VhostUserRequest::kResetOwner)) {
        owner_ = false;
        features_set_ = false;
      }
      return 0;
    case VhostUserRequest::kGetProtocolFeatures:
      VDEV_RETURN_IF_ERROR(ReplyU64(sock, request, limits_.protocol_features));
      return 0;
    case VhostUserRequest::kSetProtocolFeatures: {
      const uint64_t f = GetU64(p);
      if (f & ~limits_.protocol_features) {
        return Refuse(absl::StrFormat("SET_PROTOCOL_FEATURES 0x%x has bits not offered (0x%x)",
                                      f & ~limits_.protocol_features, limits_.protocol_features));
      }
      protocol_features_ = f;
      return 0;
    }
    case VhostUserRequest::kGetQueueNum:
      VDEV_RETURN_IF_ERROR(ReplyU64(sock, request, std::max<uint64_t>(1, rings_.size() / 2)));
      return 0;
    case VhostUserRequest::kGetMaxMemSlots:
      VDEV_RETURN_IF_ERROR(ReplyU64(sock, request, kMaxBackendRegions));
      return 0;
    case VhostUserRequest::kSetMemTable:
      VDEV_RETURN_IF_ERROR(SetMemTable(msg));
      return 0;
    case VhostUserRequest::kAddMemReg:
      VDEV_RETURN_IF_ERROR(AddMemReg(msg));
      return 0;
    case VhostUserRequest::kRemMemReg:
      VDEV_RETURN_IF_ERROR(RemMemReg(msg));
      return 0;
    case VhostUserRequest::kSetVringNum: {
      VDEV_ASSIGN_OR_RETURN(uint32_t i, RingIndex(GetU32(p), "SET_VRING_NUM"));
      const uint32_t num = GetU32(p, 4);
      if (rings_[i].started) return Refuse(absl::StrFormat("SET_VRING_NUM on running ring %u", i));
      if (num == 0 || num > limits_.max_ring_size || (num & (num - 1)) != 0) {
        return Refuse(absl::StrFormat("SET_VRING_NUM %u for ring %u (a power of two up to %u)", num,
                                      i, limits_.max_ring_size));
      }
      rings_[i].num = num;
      return 0;
    }
    case VhostUserRequest::kSetVringBase: {
      VDEV_ASSIGN_OR_RETURN(uint32_t i, RingIndex(GetU32(p), "SET_VRING_BASE"));
      const uint32_t base = GetU32(p, 4);
      if (rings_[i].started) return Refuse(absl::StrFormat("SET_VRING_BASE on running ring %u", i));
      if (base > 0xffff) {
        return Refuse(absl::StrFormat(
            "SET_VRING_BASE %u for ring %u (a split ring's index is 16 bits)", base, i));
      }
      rings_[i].base = base;
      return 0;
    }
    case VhostUserRequest::kSetVringAddr: {
      VDEV_ASSIGN_OR_RETURN(uint32_t i, RingIndex(GetU32(p), "SET_VRING_ADDR"));
      BackendRing& r = rings_[i];
      if (r.started) return Refuse(absl::StrFormat("SET_VRING_ADDR on running ring %u", i));
      const uint32_t flags = GetU32(p, 4);
      if (flags & ~1u) return Refuse(absl::StrFormat("SET_VRING_ADDR flags 0x%x", flags));
      if (flags & 1u) return Refuse("SET_VRING_ADDR asks for logging, which was not offered");
      const uint64_t n = r.num != 0 ? r.num : 1;
      VDEV_ASSIGN_OR_RETURN(GuestAddr desc, UserToGuest(GetU64(p, 8), 16 * n, "descriptor table"));
      VDEV_ASSIGN_OR_RETURN(GuestAddr used, UserToGuest(GetU64(p, 16), 6 + 8 * n, "used ring"));
      VDEV_ASSIGN_OR_RETURN(GuestAddr avail, UserToGuest(GetU64(p, 24), 6 + 2 * n, "avail ring"));
      r.desc = desc;
      r.used = used;
      r.avail = avail;
      r.addr_flags = flags;
      r.addr_set = true;
      return 0;
    }
    case VhostUserRequest::kSetVringKick:
      VDEV_RETURN_IF_ERROR(SetVringFd(msg, "SET_VRING_KICK", &BackendRing::kick));
      return 0;
    case VhostUserRequest::kSetVringCall:
      VDEV_RETURN_IF_ERROR(SetVringFd(msg, "SET_VRING_CALL", &BackendRing::call));
      return 0;
    case VhostUserRequest::kSetVringErr:
      VDEV_RETURN_IF_ERROR(SetVringFd(msg, "SET_VRING_ERR", &BackendRing::err));
      return 0;
    case VhostUserRequest::kSetVringEnable: {
      VDEV_ASSIGN_OR_RETURN(uint32_t i, RingIndex(GetU32(p), "SET_VRING_ENABLE"));
      const uint32_t on = GetU32(p, 4);
      if (on > 1) return Refuse(absl::StrFormat("SET_VRING_ENABLE %u for ring %u", on, i));
      BackendRing& r = rings_[i];
      r.enabled = on == 1;
      if (r.started) {
        device_->RingEnabled(i, r.enabled);
        return 0;
      }
      VDEV_RETURN_IF_ERROR(MaybeStart(i));
      return 0;
    }
    case VhostUserRequest::kGetVringBase: {
      VDEV_ASSIGN_OR_RETURN(uint32_t i, RingIndex(GetU32(p), "GET_VRING_BASE"));
      BackendRing& r = rings_[i];
      if (r.started) {
        r.base = device_->StopRing(i);
        r.started = false;
      }
      // The ring is stopped: it needs a new kick before it runs again.
      r.kick.Reset();
      r.kick_set = false;
      uint8_t reply[8];
      const uint32_t base = r.base;
      std::memcpy(reply, &i, 4);
      std::memcpy(reply + 4, &base, 4);
      VDEV_RETURN_IF_ERROR(
          SendVhostUserMessage(sock, request, kVhostUserVersion | kFlagReply, reply, {}));
      return 0;
    }
    case VhostUserRequest::kSendRarp: {
      if (!(protocol_features_ >> kProtocolRarp & 1)) {
        return Refuse("SEND_RARP without the RARP protocol feature");
      }
      uint8_t mac[6];
      std::memcpy(mac, p.data(), 6);
      if (mac[0] & 1) return Refuse("SEND_RARP for a multicast address");
      VDEV_RETURN_IF_ERROR(device_->SendRarp(mac));
      return 0;
    }
    case VhostUserRequest::kNetSetMtu: {
      if (!(protocol_features_ >> kProtocolMtu & 1)) {
        return Refuse("NET_SET_MTU without the NET_MTU protocol feature");
      }
      const uint64_t mtu = GetU64(p);
      if (mtu < 68 || mtu > 65535) return Refuse(absl::StrFormat("NET_SET_MTU %u", mtu));
      mtu_ = static_cast<uint32_t>(mtu);
      return 0;
    }
    case VhostUserRequest::kGetConfig:
    case VhostUserRequest::kSetConfig:
      VDEV_RETURN_IF_ERROR(Config(sock, msg));
      return 0;
    default:
      break;
  }
  if (request == kRequestGetStatus || request == kRequestSetStatus) {
    if (!(protocol_features_ >> kProtocolStatus & 1)) {
      return Refuse("GET/SET_STATUS without the STATUS protocol feature");
    }
    if (request == kRequestGetStatus) {
      VDEV_RETURN_IF_ERROR(ReplyU64(sock, request, status_));
      return 0;
    }
    const uint64_t s = GetU64(p);
    if (s > 0xff) return Refuse(absl::StrFormat("SET_STATUS 0x%x", s));
    status_ = static_cast<uint8_t>(s);
    if (status_ == 0) {
      StopAll();
      device_->ResetDevice();
      return 0;
    }
    if (status_ & kStatusDriverOk) {
      for (uint32_t i = 0; i < rings_.size(); ++i) VDEV_RETURN_IF_ERROR(MaybeStart(i));
    }
    return 0;
  }
  return Refuse(absl::StrFormat("unknown or unsupported request %u", request));
}

absl::Status VhostUserBackendSession::Config(int sock, const VhostUserMessage& msg) {
  const bool get = msg.request == static_cast<uint32_t>(VhostUserRequest::kGetConfig);
  const char* what = get ? "GET_CONFIG" : "SET_CONFIG";
  if (!(protocol_features_ >> kProtocolConfig & 1)) {
    return Refuse(absl::StrFormat("%s without the CONFIG protocol feature", what));
  }
  const std::vector<uint8_t>& p = msg.payload;
  if (p.size() < 12) return Refuse(absl::StrFormat("%s with a %u-byte payload", what, p.size()));
  const uint32_t offset = GetU32(p), size = GetU32(p, 4), flags = GetU32(p, 8);
  if (size == 0 || size > VhostUserClient::kMaxConfigSize || p.size() != 12 + size) {
    return Refuse(absl::StrFormat("%s of %u bytes in a %u-byte payload (1 to %u bytes)", what, size,
                                  p.size(), VhostUserClient::kMaxConfigSize));
  }
  if (flags > 1) return Refuse(absl::StrFormat("%s with flags 0x%x", what, flags));
  if (!RangeWithin(offset, size, 0, device_->ConfigSize())) {
    return Refuse(absl::StrFormat("%s of [%u, %u) outside the %u-byte configuration", what, offset,
                                  uint64_t{offset} + size, device_->ConfigSize()));
  }
  if (!get) return device_->SetConfig(offset, std::vector<uint8_t>(p.begin() + 12, p.end()));
  std::vector<uint8_t> reply(p.begin(), p.begin() + 12);
  std::vector<uint8_t> data = device_->GetConfig(offset, size);
  data.resize(size);
  reply.insert(reply.end(), data.begin(), data.end());
  return SendVhostUserMessage(sock, msg.request, kVhostUserVersion | kFlagReply, reply, {});
}

absl::Status VhostUserBackendSession::SetVringFd(VhostUserMessage& msg, const char* what,
                                                 UniqueFd BackendRing::*fd) {
  const uint64_t v = GetU64(msg.payload);
  VDEV_ASSIGN_OR_RETURN(uint32_t i, RingIndex(v & kVringIndexMask, what));
  if (v & ~(kVringIndexMask | kVringNoFd)) {
    return Refuse(absl::StrFormat("%s for ring %u with flags 0x%x", what, i, v));
  }
  const bool no_fd = v & kVringNoFd;
  if (no_fd != msg.fds.empty()) {
    return Refuse(absl::StrFormat("%s for ring %u: %s", what, i,
                                  no_fd ? "an fd with the no-fd bit" : "no fd and no no-fd bit"));
  }
  BackendRing& r = rings_[i];
  if (fd == &BackendRing::kick) {
    if (r.started) return Refuse(absl::StrFormat("%s on running ring %u", what, i));
    r.kick_set = true;
    // Without PROTOCOL_FEATURES a ring starts enabled (vhost-user.rst, "Ring states").
    if (!(features_ >> kVirtioProtocolFeatures & 1)) r.enabled = true;
  }
  UniqueFd old = std::move(r.*fd);
  r.*fd = no_fd ? UniqueFd() : std::move(msg.fds[0]);
  if (fd == &BackendRing::call && r.started) device_->CallChanged(i, r.call.get());
  old.Reset();  // after the device let go of it
  if (fd == &BackendRing::kick) return MaybeStart(i);
  return absl::OkStatus();
}

absl::Status VhostUserBackendSession::MaybeStart(uint32_t index) {
  BackendRing& r = rings_[index];
  if (r.started || !r.enabled || !r.kick_set || !r.addr_set || r.num == 0 || !features_set_ ||
      mem_->regions().empty()) {
    return absl::OkStatus();
  }
  // Not waiting for SET_STATUS(DRIVER_OK) even with the STATUS feature: QEMU 7.2 sends it for
  // vhost-user-net but not for vhost-user-rng (measured), so a ring runs once it is complete; the
  // device side decides when the device as a whole starts.
  VDEV_RETURN_IF_ERROR(device_->StartRing(index, r, *mem_));
  r.started = true;
  return absl::OkStatus();
}

absl::StatusOr<GuestAddr> VhostUserBackendSession::UserToGuest(uint64_t uaddr, uint64_t len,
                                                               const char* what) const {
  for (const Region& reg : regions_) {
    if (RangeWithin(uaddr, len, reg.uaddr, reg.size))
      return GuestAddr(reg.gpa + (uaddr - reg.uaddr));
  }
  return Refuse(
      absl::StrFormat("the %s at 0x%x (%u bytes) is not in the memory table", what, uaddr, len));
}

absl::Status VhostUserBackendSession::SetMemTable(const VhostUserMessage& msg) {
  const std::vector<uint8_t>& p = msg.payload;
  if (p.size() < 8) return Refuse("SET_MEM_TABLE without a region count");
  const uint32_t n = GetU32(p);
  if (n == 0 || n > static_cast<uint32_t>(kMaxMemRegions)) {
    return Refuse(absl::StrFormat("SET_MEM_TABLE with %u regions (1 to %d)", n, kMaxMemRegions));
  }
  if (p.size() != 8 + kRegionSize * n) {
    return Refuse(absl::StrFormat("SET_MEM_TABLE with %u regions in %u bytes", n, p.size()));
  }
  if (msg.fds.size() != n) {
    return Refuse(absl::StrFormat("SET_MEM_TABLE with %u regions and %u fds", n, msg.fds.size()));
  }
  std::vector<Region> regions;
  for (uint32_t k = 0; k < n; ++k) {
    const size_t o = 8 + kRegionSize * k;
    regions.push_back({GetU64(p, o), GetU64(p, o + 8), GetU64(p, o + 16), GetU64(p, o + 24)});
  }
  std::vector<UniqueFd> fds;
  for (const UniqueFd& f : msg.fds) fds.push_back(UniqueFd(fcntl(f.get(), F_DUPFD_CLOEXEC, 0)));
  return MapRegions(regions, std::move(fds));
}

absl::Status VhostUserBackendSession::AddMemReg(VhostUserMessage& msg) {
  const std::vector<uint8_t>& p = msg.payload;
  if (regions_.size() >= kMaxBackendRegions) {
    return Refuse(absl::StrFormat("ADD_MEM_REG beyond %u regions", kMaxBackendRegions));
  }
  const Region add{GetU64(p, 8), GetU64(p, 16), GetU64(p, 24), GetU64(p, 32)};
  for (Region& r : regions_) {
    if (r.gpa == add.gpa && r.size == add.size && r.uaddr == add.uaddr && r.offset == add.offset) {
      // The same region again (from the next queue pair's vhost device): one more reference;
      // the mapping we have serves it (the fd it came with is closed with the message).
      ++r.refs;
      return absl::OkStatus();
    }
  }
  std::vector<Region> regions = regions_;
  regions.push_back(add);
  // Every region needs its fd again: the current ones are duplicated from the live mapping.
  std::vector<UniqueFd> fds;
  for (const Region& r : regions_) fds.push_back(DupFdOf(r.gpa));
  fds.push_back(std::move(msg.fds[0]));
  return MapRegions(regions, std::move(fds));
}

absl::Status VhostUserBackendSession::RemMemReg(const VhostUserMessage& msg) {
  const std::vector<uint8_t>& p = msg.payload;
  const Region gone{GetU64(p, 8), GetU64(p, 16), GetU64(p, 24), GetU64(p, 32)};
  std::vector<Region> regions;
  std::vector<UniqueFd> fds;
  bool found = false;
  for (size_t k = 0; k < regions_.size(); ++k) {
    Region& r = regions_[k];
    if (!found && r.gpa == gone.gpa && r.size == gone.size && r.uaddr == gone.uaddr) {
      if (r.refs > 1) {  // added more than once: still in use
        --r.refs;
        return absl::OkStatus();
      }
      found = true;
      continue;
    }
    regions.push_back(r);
    fds.push_back(DupFdOf(r.gpa));
  }
  if (!found) {
    return Refuse(absl::StrFormat("REM_MEM_REG of a region not in the table (0x%x, %u bytes)",
                                  gone.gpa, gone.size));
  }
  return MapRegions(regions, std::move(fds));
}

UniqueFd VhostUserBackendSession::DupFdOf(uint64_t gpa) const {
  for (const GuestRamRegion& r : mem_->regions()) {
    if (r.gpa.value() == gpa) return UniqueFd(fcntl(r.fd, F_DUPFD_CLOEXEC, 0));
  }
  return UniqueFd();
}

absl::Status VhostUserBackendSession::MapRegions(const std::vector<Region>& regions,
                                                 std::vector<UniqueFd> fds) {
  // Each region on its own, then against the others (guest and frontend addresses alike).
  for (size_t k = 0; k < regions.size(); ++k) {
    const Region& r = regions[k];
    if (r.size == 0 || !CheckedAdd(r.gpa, r.size) || !CheckedAdd(r.uaddr, r.size) ||
        !CheckedAdd(r.offset, r.size)) {
      return Refuse(absl::StrFormat("memory region %u: gpa 0x%x size 0x%x uaddr 0x%x offset 0x%x",
                                    k, r.gpa, r.size, r.uaddr, r.offset));
    }
    if (!fds[k].valid()) return Refuse(absl::StrFormat("memory region %u without an fd", k));
    for (size_t j = 0; j < k; ++j) {
      const Region& o = regions[j];
      if (RangesOverlap(r.gpa, r.size, o.gpa, o.size)) {
        return Refuse(absl::StrFormat(
            "memory regions %u and %u overlap in guest memory (0x%x+0x%x, 0x%x+0x%x)", j, k, o.gpa,
            o.size, r.gpa, r.size));
      }
      if (RangesOverlap(r.uaddr, r.size, o.uaddr, o.size)) {
        return Refuse(absl::StrFormat(
            "memory regions %u and %u overlap in the frontend (0x%x+0x%x, 0x%x+0x%x)", j, k,
            o.uaddr, o.size, r.uaddr, r.size));
      }
    }
  }
  // Map into a new memory first: the old one stays until the new one is whole.
  VDEV_ASSIGN_OR_RETURN(std::unique_ptr<GuestMemory> mem, GuestMemory::Create());
  for (size_t k = 0; k < regions.size(); ++k) {
    const Region& r = regions[k];
    absl::Status s = mem->AdoptRegion(GuestAddr(r.gpa), r.size, std::move(fds[k]), r.offset,
                                      absl::StrCat("vhost-user region ", k));
    if (!s.ok()) return Refuse(absl::StrCat("memory region ", k, ": ", s.message()));
  }
  // Running rings move to the new mapping.
  std::vector<uint32_t> running;
  for (uint32_t i = 0; i < rings_.size(); ++i) {
    if (rings_[i].started) running.push_back(i);
  }
  StopAll();
  mem_ = std::move(mem);
  regions_ = regions;
  for (uint32_t i : running) VDEV_RETURN_IF_ERROR(MaybeStart(i));
  return absl::OkStatus();
}

}  // namespace vdev::vhost
