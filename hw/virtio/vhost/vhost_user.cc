#include "hw/virtio/vhost/vhost_user.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "core/base/fd_passing.h"

namespace vdev::vhost {
namespace {

// What the backend sent cannot be trusted or the stream is out of step: the connection is
// unusable (DataLoss, which the netdev treats as a lost connection).
absl::Status BadReply(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("vhost-user: ", what));
}

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("vhost-user: ", what));
}

// Waits until `sock` is readable, or the deadline.
absl::Status WaitReadable(int sock, absl::Time deadline) {
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError("vhost-user: the backend did not answer in time");
    }
    pollfd p{sock, POLLIN, 0};
    const int r = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (r > 0) return absl::OkStatus();
    if (r < 0 && errno != EINTR) return ErrnoToStatus(errno, "poll");
  }
}

// Waits until `sock` can take a message, or the timeout: a backend that stops reading fills the
// socket buffer, and a blocking send would then hang its caller.
absl::Status WaitWritable(int sock, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    pollfd p{sock, POLLOUT, 0};
    const absl::Duration left = deadline - absl::Now();
    const int r = poll(&p, 1, std::max<int>(0, static_cast<int>(absl::ToInt64Milliseconds(left))));
    if (r > 0) {
      if (p.revents & (POLLERR | POLLHUP)) {
        return absl::UnavailableError("vhost-user: the backend closed the connection");
      }
      return absl::OkStatus();
    }
    if (r == 0) return absl::DeadlineExceededError("vhost-user: the backend stopped reading");
    if (errno != EINTR) return ErrnoToStatus(errno, "poll");
  }
}

absl::Status ReadFull(int sock, uint8_t* buf, size_t len, absl::Time deadline) {
  size_t done = 0;
  while (done < len) {
    if (absl::Status s = WaitReadable(sock, deadline); !s.ok()) return s;
    const ssize_t n = recv(sock, buf + done, len - done, MSG_DONTWAIT);
    if (n == 0) return absl::UnavailableError("vhost-user: the backend closed the connection");
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return ErrnoToStatus(errno, "recv");
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

template <typename T>
void Put(std::vector<uint8_t>& v, T x) {
  const size_t at = v.size();
  v.resize(at + sizeof(T));
  std::memcpy(v.data() + at, &x, sizeof(T));
}

}  // namespace

absl::Status EncodeMemTable(const GuestMemory& mem, std::vector<uint8_t>* payload,
                            std::vector<int>* fds) {
  const auto& regions = mem.regions();
  if (regions.empty() || regions.size() > static_cast<size_t>(kMaxMemRegions)) {
    return Bad(
        absl::StrFormat("%u memory regions (1..%d can be shared)", regions.size(), kMaxMemRegions));
  }
  payload->clear();
  fds->clear();
  Put<uint32_t>(*payload, static_cast<uint32_t>(regions.size()));
  Put<uint32_t>(*payload, 0);
  for (const GuestRamRegion& r : regions) {
    if (r.fd < 0) return Bad(absl::StrCat("memory region '", r.name, "' has no fd to share"));
    Put<uint64_t>(*payload, r.gpa.value());
    Put<uint64_t>(*payload, r.size);
    Put<uint64_t>(*payload, reinterpret_cast<uint64_t>(r.host));
    Put<uint64_t>(*payload, r.fd_offset);
    fds->push_back(r.fd);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> CheckReply(const VhostUserMessage& reply, uint32_t request,
                                                size_t payload_size) {
  if ((reply.flags & 3) != kVhostUserVersion) {
    return BadReply(absl::StrFormat("reply with version %u", reply.flags & 3));
  }
  if (!(reply.flags & kFlagReply))
    return BadReply("a message without the REPLY flag where a reply was due");
  if (reply.request != request) {
    return BadReply(
        absl::StrFormat("reply to request %u while waiting for %u", reply.request, request));
  }
  if (reply.payload.size() != payload_size) {
    return BadReply(absl::StrFormat("reply to request %u with %u bytes (expects %u)", request,
                                    reply.payload.size(), payload_size));
  }
  if (!reply.fds.empty()) {
    return BadReply(
        absl::StrFormat("reply to request %u carries %u fds", request, reply.fds.size()));
  }
  return reply.payload;
}

absl::StatusOr<VhostUserMessage> ReadVhostUserMessage(int sock, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  if (absl::Status s = WaitReadable(sock, deadline); !s.ok()) return s;
  uint8_t header[kHeaderSize];
  // Every fd that came is owned from here on, whatever happens next.
  absl::StatusOr<Received> got = ReceiveWithFds(sock, header, sizeof(header), MSG_DONTWAIT);
  if (!got.ok()) return got.status();
  VhostUserMessage m;
  m.fds = std::move(got->fds);
  const bool bad_control = got->bad_control;
  const size_t n = got->bytes;
  if (n == 0) return absl::UnavailableError("vhost-user: the backend closed the connection");
  if (bad_control) return BadReply("truncated or foreign control message");
  if (n < kHeaderSize) {
    if (absl::Status s = ReadFull(sock, header + n, kHeaderSize - n, deadline); !s.ok()) return s;
  }
  uint32_t size;
  std::memcpy(&m.request, header, 4);
  std::memcpy(&m.flags, header + 4, 4);
  std::memcpy(&size, header + 8, 4);
  if (size > kMaxPayload)
    return BadReply(absl::StrFormat("a %u-byte payload (at most %u)", size, kMaxPayload));
  m.payload.resize(size);
  if (size > 0) {
    if (absl::Status s = ReadFull(sock, m.payload.data(), size, deadline); !s.ok()) return s;
  }
  return m;
}

absl::Status SendVhostUserMessage(int sock, uint32_t request, uint32_t flags,
                                  absl::Span<const uint8_t> payload, absl::Span<const int> fds) {
  if (payload.size() > kMaxPayload || fds.size() > static_cast<size_t>(kMaxFds)) {
    return Bad("message too big to send");
  }
  uint8_t header[kHeaderSize];
  const uint32_t size = static_cast<uint32_t>(payload.size());
  std::memcpy(header, &request, 4);
  std::memcpy(header + 4, &flags, 4);
  std::memcpy(header + 8, &size, 4);
  iovec iov[2] = {{header, sizeof(header)}, {const_cast<uint8_t*>(payload.data()), payload.size()}};
  absl::StatusOr<size_t> n = SendWithFds(sock, iov, payload.empty() ? 1 : 2, fds);
  if (!n.ok()) return n.status();
  if (*n != sizeof(header) + payload.size()) return BadReply("short send");
  return absl::OkStatus();
}

absl::StatusOr<VhostUserClient> VhostUserClient::Connect(const std::string& path,
                                                         absl::Duration timeout) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof(a.sun_path)) return Bad(absl::StrCat("socket path too long: ", path));
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  UniqueFd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return ErrnoToStatus(errno, "socket");
  if (connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    return absl::UnavailableError(
        absl::StrCat("vhost-user: cannot connect to '", path, "': ", strerror(errno)));
  }
  return VhostUserClient(std::move(s), timeout);
}

absl::Status VhostUserClient::Send(VhostUserRequest request, absl::Span<const uint8_t> payload,
                                   absl::Span<const int> fds) {
  const uint32_t req = static_cast<uint32_t>(request);
  if (absl::Status s = WaitWritable(sock_.get(), timeout_); !s.ok()) return s;
  if (absl::Status s = SendVhostUserMessage(
          sock_.get(), req, kVhostUserVersion | (reply_ack_ ? kFlagNeedReply : 0), payload, fds);
      !s.ok()) {
    return s;
  }
  if (!reply_ack_) return absl::OkStatus();
  absl::StatusOr<VhostUserMessage> r = ReadVhostUserMessage(sock_.get(), timeout_);
  if (!r.ok()) return r.status();
  absl::StatusOr<std::vector<uint8_t>> p = CheckReply(*r, req, 8);
  if (!p.ok()) return p.status();
  uint64_t ack;
  std::memcpy(&ack, p->data(), 8);
  if (ack != 0)
    return absl::InternalError(absl::StrFormat("vhost-user: request %u failed (ack %u)", req, ack));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> VhostUserClient::Call(VhostUserRequest request,
                                                           absl::Span<const uint8_t> payload,
                                                           size_t reply_size) {
  const uint32_t req = static_cast<uint32_t>(request);
  if (absl::Status s = WaitWritable(sock_.get(), timeout_); !s.ok()) return s;
  if (absl::Status s = SendVhostUserMessage(sock_.get(), req, kVhostUserVersion, payload, {});
      !s.ok()) {
    return s;
  }
  absl::StatusOr<VhostUserMessage> r = ReadVhostUserMessage(sock_.get(), timeout_);
  if (!r.ok()) return r.status();
  return CheckReply(*r, req, reply_size);
}

absl::StatusOr<uint64_t> VhostUserClient::GetU64(VhostUserRequest request) {
  absl::StatusOr<std::vector<uint8_t>> p = Call(request, {}, 8);
  if (!p.ok()) return p.status();
  uint64_t v;
  std::memcpy(&v, p->data(), 8);
  return v;
}

absl::Status VhostUserClient::SetU64(VhostUserRequest request, uint64_t value) {
  std::vector<uint8_t> p;
  Put(p, value);
  return Send(request, p);
}

absl::Status VhostUserClient::SendRarp(const uint8_t mac[6]) {
  std::vector<uint8_t> p(8, 0);
  std::memcpy(p.data(), mac, 6);
  return Send(VhostUserRequest::kSendRarp, p);
}

absl::StatusOr<std::vector<uint8_t>> VhostUserClient::GetConfig(uint32_t offset, uint32_t size) {
  if (size > kMaxConfigSize) {
    return absl::InvalidArgumentError(absl::StrFormat("GET_CONFIG of %u bytes", size));
  }
  std::vector<uint8_t> p;
  Put(p, offset);
  Put(p, size);
  Put(p, uint32_t{0});
  p.resize(12 + size, 0);
  absl::StatusOr<std::vector<uint8_t>> r = Call(VhostUserRequest::kGetConfig, p, 12 + size);
  if (!r.ok()) return r.status();
  if (std::memcmp(r->data(), p.data(), 8) != 0) {
    return BadReply("GET_CONFIG reply for another offset or size");
  }
  return std::vector<uint8_t>(r->begin() + 12, r->end());
}

absl::Status VhostUserClient::SetConfig(uint32_t offset, absl::Span<const uint8_t> data) {
  if (data.size() > kMaxConfigSize) {
    return absl::InvalidArgumentError(absl::StrFormat("SET_CONFIG of %u bytes", data.size()));
  }
  std::vector<uint8_t> p;
  Put(p, offset);
  Put(p, static_cast<uint32_t>(data.size()));
  Put(p, uint32_t{0});  // VHOST_SET_CONFIG_TYPE_FRONTEND
  p.insert(p.end(), data.begin(), data.end());
  return Send(VhostUserRequest::kSetConfig, p);
}

absl::Status VhostUserClient::SetOwner() { return Send(VhostUserRequest::kSetOwner, {}); }

absl::Status VhostUserClient::Request(VhostUserRequest request) { return Send(request, {}); }

absl::Status VhostUserClient::SetMemTable(const GuestMemory& mem) {
  std::vector<uint8_t> p;
  std::vector<int> fds;
  if (absl::Status s = EncodeMemTable(mem, &p, &fds); !s.ok()) return s;
  return Send(VhostUserRequest::kSetMemTable, p, fds);
}

absl::Status VhostUserClient::SetVringNum(uint32_t index, uint32_t num) {
  std::vector<uint8_t> p;
  Put(p, index);
  Put(p, num);
  return Send(VhostUserRequest::kSetVringNum, p);
}

absl::Status VhostUserClient::SetVringBase(uint32_t index, uint32_t base) {
  std::vector<uint8_t> p;
  Put(p, index);
  Put(p, base);
  return Send(VhostUserRequest::kSetVringBase, p);
}

absl::StatusOr<uint32_t> VhostUserClient::GetVringBase(uint32_t index) {
  std::vector<uint8_t> q;
  Put(q, index);
  Put<uint32_t>(q, 0);
  absl::StatusOr<std::vector<uint8_t>> p = Call(VhostUserRequest::kGetVringBase, q, 8);
  if (!p.ok()) return p.status();
  uint32_t got_index, base;
  std::memcpy(&got_index, p->data(), 4);
  std::memcpy(&base, p->data() + 4, 4);
  if (got_index != index) {
    return BadReply(
        absl::StrFormat("GET_VRING_BASE for ring %u answered for ring %u", index, got_index));
  }
  if (base > 0xffff)
    return BadReply(absl::StrFormat("GET_VRING_BASE: ring base %u is not 16-bit", base));
  return base;
}

absl::Status VhostUserClient::SetVringAddr(uint32_t index, uint64_t desc, uint64_t used,
                                           uint64_t avail) {
  std::vector<uint8_t> p;
  Put(p, index);
  Put<uint32_t>(p, 0);  // flags (no logging)
  Put(p, desc);
  Put(p, used);
  Put(p, avail);
  Put<uint64_t>(p, 0);  // log address
  return Send(VhostUserRequest::kSetVringAddr, p);
}

absl::Status VhostUserClient::SetVringFd(VhostUserRequest request, uint32_t index, int fd) {
  if (request != VhostUserRequest::kSetVringKick && request != VhostUserRequest::kSetVringCall &&
      request != VhostUserRequest::kSetVringErr) {
    return Bad("SetVringFd takes SET_VRING_KICK, _CALL or _ERR");
  }
  if (index > kVringIndexMask) return Bad(absl::StrCat("ring index ", index, " out of range"));
  std::vector<uint8_t> p;
  Put<uint64_t>(p, (index & kVringIndexMask) | (fd < 0 ? kVringNoFd : 0));
  if (fd < 0) return Send(request, p);
  const int fds[1] = {fd};
  return Send(request, p, fds);
}

absl::Status VhostUserClient::SetVringEnable(uint32_t index, bool enable) {
  std::vector<uint8_t> p;
  Put(p, index);
  Put<uint32_t>(p, enable ? 1 : 0);
  return Send(VhostUserRequest::kSetVringEnable, p);
}

namespace {
std::vector<uint8_t> EncodeMemReg(const GuestRamRegion& r) {
  std::vector<uint8_t> p;
  Put<uint64_t>(p, 0);  // padding
  Put<uint64_t>(p, r.gpa.value());
  Put<uint64_t>(p, r.size);
  Put<uint64_t>(p, reinterpret_cast<uint64_t>(r.host));
  Put<uint64_t>(p, r.fd_offset);
  return p;
}
}  // namespace

absl::Status VhostUserClient::AddMemReg(const GuestRamRegion& region) {
  if (region.fd < 0)
    return Bad(absl::StrCat("memory region '", region.name, "' has no fd to share"));
  const int fds[1] = {region.fd};
  return Send(VhostUserRequest::kAddMemReg, EncodeMemReg(region), fds);
}

absl::Status VhostUserClient::RemMemReg(const GuestRamRegion& region) {
  return Send(VhostUserRequest::kRemMemReg, EncodeMemReg(region));
}

}  // namespace vdev::vhost
