#include "net/dgram.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstring>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"
#include "core/base/unique_fd.h"

namespace vdev::net {
namespace {

// Datagrams read per readiness event before giving other fds a turn.
constexpr int kReadBudget = 256;

// A string property that remembers whether it was given at all.
template <typename Owner>
qom::PropertyInfo OptionalStrProp(std::string name, std::optional<std::string> Owner::*member,
                                  std::string description) {
  qom::PropertyInfo p;
  p.type = "str";
  p.description = std::move(description);
  p.set = [member](qom::Object& o, absl::string_view text) {
    qom::internal::OwnerOf<Owner>(o).*member = std::string(text);
    return absl::OkStatus();
  };
  p.get = [member](const qom::Object& o) {
    return (qom::internal::OwnerOf<Owner>(o).*member).value_or("");
  };
  p.init = [member](qom::Object& o) {
    qom::internal::OwnerOf<Owner>(o).*member = std::nullopt;
    return absl::OkStatus();
  };
  p.name = std::move(name);
  return p;
}

const std::vector<std::pair<std::string, int>>& AddrTypeNames() {
  static const auto* names = new std::vector<std::pair<std::string, int>>{
      {"inet", static_cast<int>(Dgram::AddrType::kInet)},
      {"unix", static_cast<int>(Dgram::AddrType::kUnix)}};
  return *names;
}

// local.type / remote.type: inet or unix, with no default (unset prints as "").
qom::PropertyInfo AddrTypeProp(std::string name, Dgram::AddrType Dgram::*member,
                               std::string description) {
  qom::PropertyInfo p = qom::EnumProp(std::move(name), member, Dgram::AddrType::kNone,
                                      AddrTypeNames(), std::move(description));
  p.default_value.reset();
  std::function<std::string(const qom::Object&)> get = std::move(p.get);
  p.get = [member, get](const qom::Object& o) -> std::string {
    return qom::internal::OwnerOf<Dgram>(o).*member == Dgram::AddrType::kNone ? "" : get(o);
  };
  return p;
}

const char* TypeName(Dgram::AddrType t) {
  return t == Dgram::AddrType::kInet ? "inet" : t == Dgram::AddrType::kUnix ? "unix" : "";
}

std::string InetText(const sockaddr_in& a) {
  char host[INET_ADDRSTRLEN] = "";
  inet_ntop(AF_INET, &a.sin_addr, host, sizeof(host));
  return absl::StrCat(host, ":", ntohs(a.sin_port));
}

// The status for a failed call: the errno's code and text, naming the call.
absl::Status SyscallError(int err, absl::string_view call) {
  absl::Status s = ::vdev::ErrnoToStatus(err, call);
  if (err == EADDRINUSE) return absl::AlreadyExistsError(s.message());
  return s;
}

}  // namespace

// A resolved endpoint.
struct Dgram::Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
  std::string text;  // "127.0.0.1:5000" or the path, for messages
};

// The one queue: a non-blocking datagram socket.
class Dgram::Client : public NetClientState {
 public:
  Client(std::string name, UniqueFd fd, const Endpoint& remote, bool is_unix)
      : NetClientState("dgram", std::move(name)),
        fd_(std::move(fd)),
        remote_(remote),
        is_unix_(is_unix),
        buf_(kMaxFrameSize) {
    tx_frames_ = counters().Get("tx_frames");
    tx_errors_ = counters().Get("tx_errors");
    rx_frames_ = counters().Get("rx_frames");
    rx_errors_ = counters().Get("rx_errors");
    rx_truncated_ = counters().Get("rx_truncated");
    rx_unexpected_source_ = counters().Get("rx_unexpected_source");
    rx_empty_ = counters().Get("rx_empty");
  }

  absl::Status Start(EventLoop& loop) {
    loop_ = &loop;
    if (is_unix_) TryConnect();
    auto w = loop.WatchFd(fd_.get(), EPOLLIN, [this](uint32_t ev) { OnReady(ev); });
    if (!w.ok()) return w.status();
    watch_ = std::move(*w);
    return absl::OkStatus();
  }
  // On the loop thread.
  void Stop() { watch_.Reset(); }

  // ---- NetClientState ----
  // A frame from the NIC: one datagram to the remote.
  ssize_t ReceiveIov(const iovec* iov, int n) override {
    const size_t size = IovSize(iov, n);
    bool connected = false;
    if (is_unix_) connected = connected_.load(std::memory_order_acquire) || TryConnect();
    std::vector<uint8_t> flat;
    iovec one;
    if (n > IOV_MAX) {
      flat.resize(size);
      IovToBuf(iov, n, 0, flat.data(), size);
      one = {flat.data(), size};
      iov = &one;
      n = 1;
    }
    msghdr msg{};
    if (!connected) {
      msg.msg_name = const_cast<sockaddr_storage*>(&remote_.addr);
      msg.msg_namelen = remote_.len;
    }
    msg.msg_iov = const_cast<iovec*>(iov);
    msg.msg_iovlen = static_cast<size_t>(n);
    ssize_t r;
    do {
      r = sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        blocked_.store(true);
        WantWrite();
        return 0;
      }
      blocked_.store(false);
      // The connected peer is gone (the kernel has disconnected us): connect again next time.
      if (is_unix_ && (errno == ECONNREFUSED || errno == ENOTCONN)) {
        connected_.store(false, std::memory_order_release);
      }
      tx_errors_->Add(1);
      return -1;
    }
    blocked_.store(false);
    tx_frames_->Add(1);
    return static_cast<ssize_t>(size);
  }

  void PeerReady() override {
    // The NIC can receive again: resume reading (on the loop thread).
    loop_->Post([this] { SetReading(true); });
  }

 private:
  // Connects a unix socket to the remote path once it exists. Any thread.
  bool TryConnect() {
    if (connect(fd_.get(), reinterpret_cast<const sockaddr*>(&remote_.addr), remote_.len) != 0) {
      return false;
    }
    connected_.store(true, std::memory_order_release);
    return true;
  }

  // Whether a datagram from `from` comes from the remote.
  bool FromRemote(const sockaddr_storage& from, socklen_t len) const {
    if (is_unix_) {
      // Connected, the kernel lets only the remote send to us. Before that, match the path.
      if (connected_.load(std::memory_order_acquire)) return true;
      constexpr size_t kPathOffset = offsetof(sockaddr_un, sun_path);
      if (from.ss_family != AF_UNIX || len <= kPathOffset) return false;
      const auto& un = reinterpret_cast<const sockaddr_un&>(from);
      const size_t path_len = strnlen(un.sun_path, len - kPathOffset);
      return absl::string_view(un.sun_path, path_len) == remote_.text;
    }
    if (from.ss_family != AF_INET || len < sizeof(sockaddr_in)) return false;
    const auto& a = reinterpret_cast<const sockaddr_in&>(from);
    const auto& b = reinterpret_cast<const sockaddr_in&>(remote_.addr);
    return a.sin_addr.s_addr == b.sin_addr.s_addr && a.sin_port == b.sin_port;
  }

  // The socket is full: watch for room (from whatever thread the NIC transmits on).
  void WantWrite() {
    if (want_write_.exchange(true)) return;
    loop_->Post([this] { UpdateEvents(); });
  }

  // After a flush on EPOLLOUT: stop watching for room unless a refused frame is still unsent.
  // That is the case when the flush hit EAGAIN again, and also when the NIC's thread has not yet
  // queued the frame it was refused (the flush found the queue empty): keep watching then, or
  // that frame would wait forever. A frame purged with a disconnection is not waited for.
  void OnWritableDone() {
    if (peer() == nullptr) blocked_.store(false);
    if (blocked_.load()) return;
    want_write_.store(false);
    // A refusal between the check and the store saw want_write_ still set and did not re-arm.
    if (blocked_.load()) want_write_.store(true);
    UpdateEvents();
  }

  void SetReading(bool on) {
    reading_ = on;
    UpdateEvents();
  }

  void UpdateEvents() {
    if (!watch_.active()) return;
    const uint32_t ev =
        (reading_ ? uint32_t{EPOLLIN} : 0u) | (want_write_.load() ? uint32_t{EPOLLOUT} : 0u);
    if (ev != watch_.events()) (void)watch_.SetEvents(ev);
  }

  void OnReady(uint32_t ev) {
    if (ev & EPOLLERR) {
      // A pending socket error (a unix peer that went away): clear it, or it would fire forever.
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) rx_errors_->Add(1);
    }
    if (ev & EPOLLHUP) {
      VDEV_LOG(kWarning, "dgram %s: socket hang-up; no longer served", name());
      watch_.Reset();
      return;
    }
    if (ev & EPOLLOUT) {
      ReceiverReady();  // resends the queued frames; the NIC's transmit resumes on their callbacks
      OnWritableDone();
    }
    if (ev & EPOLLIN) ReadFrames();
  }

  // Reads datagrams and hands them to the NIC until the socket is empty, the budget is spent, or
  // the NIC cannot take more (then reading pauses until PeerReady or the queued frame's callback).
  void ReadFrames() {
    if (is_unix_ && !connected_.load(std::memory_order_acquire)) TryConnect();
    for (int i = 0; i < kReadBudget; ++i) {
      if (!CanSend()) {
        if (peer() != nullptr) {
          SetReading(false);
        } else {
          DiscardOne();  // nobody listens: drain, do not spin
        }
        return;
      }
      sockaddr_storage from{};
      iovec v{buf_.data(), buf_.size()};
      msghdr msg{};
      msg.msg_name = &from;
      msg.msg_namelen = sizeof(from);
      msg.msg_iov = &v;
      msg.msg_iovlen = 1;
      const ssize_t r = recvmsg(fd_.get(), &msg, 0);
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) rx_errors_->Add(1);
        return;
      }
      if (msg.msg_flags & MSG_TRUNC) {
        rx_truncated_->Add(1);
        continue;
      }
      if (!FromRemote(from, msg.msg_namelen)) {
        rx_unexpected_source_->Add(1);
        continue;
      }
      if (r == 0) {
        rx_empty_->Add(1);
        continue;
      }
      rx_frames_->Add(1);
      const ssize_t sent =
          Send(buf_.data(), size_t(r), [this] { loop_->Post([this] { SetReading(true); }); });
      if (sent == 0) {
        // Queued at the NIC: wait for it to be delivered before reading more.
        SetReading(false);
        return;
      }
    }
  }

  void DiscardOne() { (void)!recv(fd_.get(), buf_.data(), buf_.size(), 0); }

  const UniqueFd fd_;
  const Endpoint remote_;
  const bool is_unix_;
  std::atomic<bool> connected_{false};  // unix: connected to the remote
  std::vector<uint8_t> buf_;            // the frame being read (loop thread)

  EventLoop* loop_ = nullptr;
  FdWatch watch_;
  bool reading_ = true;                  // loop thread
  std::atomic<bool> want_write_{false};  // watching for EPOLLOUT
  std::atomic<bool> blocked_{false};     // the last frame was refused (EAGAIN) and not yet sent
  Counter* tx_frames_;
  Counter* tx_errors_;
  Counter* rx_frames_;
  Counter* rx_errors_;
  Counter* rx_truncated_;
  Counter* rx_unexpected_source_;
  Counter* rx_empty_;
};

void Dgram::ClassInit(qom::ObjectClass& k) {
  k.description = "frames as datagrams to and from a remote socket (inet: UDP/IPv4, or unix)";
  k.AddProperty(AddrTypeProp("local.type", &Dgram::local_type_, "local address type (required)"));
  k.AddProperty(
      OptionalStrProp("local.host", &Dgram::local_host_, "inet: address to bind (empty: any)"));
  k.AddProperty(OptionalStrProp("local.port", &Dgram::local_port_,
                                "inet: port to bind (0: an ephemeral port)"));
  k.AddProperty(OptionalStrProp("local.path", &Dgram::local_path_, "unix: socket path to bind"));
  k.AddProperty(AddrTypeProp("remote.type", &Dgram::remote_type_,
                             "remote address type (required; same as local.type)"));
  k.AddProperty(OptionalStrProp("remote.host", &Dgram::remote_host_,
                                "inet: address frames are sent to and accepted from"));
  k.AddProperty(OptionalStrProp("remote.port", &Dgram::remote_port_, "inet: the remote's port"));
  k.AddProperty(OptionalStrProp("remote.path", &Dgram::remote_path_,
                                "unix: socket path frames are sent to and accepted from"));
}

Dgram::~Dgram() {
  if (!clients_.empty()) {
    auto* c = static_cast<Client*>(clients_[0].get());
    OnLoop([c] { c->Stop(); });
    c->Disconnect();
    // Callbacks that ran during Disconnect may have posted work that references the client.
    OnLoop([] {});
    clients_.clear();
  }
  if (!bound_path_.empty()) {
    // Only our own socket file: another process may have replaced it since.
    struct stat st;
    if (lstat(bound_path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == bound_dev_ &&
        st.st_ino == bound_ino_) {
      unlink(bound_path_.c_str());
    }
  }
}

absl::Status Dgram::Validate(bool remote, Endpoint* out) const {
  const char* side = remote ? "remote" : "local";
  const AddrType type = remote ? remote_type_ : local_type_;
  const std::optional<std::string>& host = remote ? remote_host_ : local_host_;
  const std::optional<std::string>& port = remote ? remote_port_ : local_port_;
  const std::optional<std::string>& path = remote ? remote_path_ : local_path_;
  if (type == AddrType::kUnix) {
    if (host.has_value() || port.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(side, host.has_value() ? ".host" : ".port",
                                                     " applies to ", side, ".type=inet, not unix"));
    }
    if (!path.has_value() || path->empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(side, ".path is required with ", side, ".type=unix"));
    }
    sockaddr_un un{};
    if (path->size() >= sizeof(un.sun_path)) {
      return absl::InvalidArgumentError(absl::StrCat(side, ".path '", *path, "' is longer than ",
                                                     sizeof(un.sun_path) - 1, " bytes"));
    }
    un.sun_family = AF_UNIX;
    std::memcpy(un.sun_path, path->data(), path->size());
    std::memcpy(&out->addr, &un, sizeof(un));
    out->len = sizeof(un);
    out->text = *path;
    return absl::OkStatus();
  }
  if (path.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(side, ".path applies to ", side, ".type=unix, not inet"));
  }
  if (!host.has_value() || (remote && host->empty())) {
    return absl::InvalidArgumentError(
        absl::StrCat(side, ".host is required with ", side, ".type=inet"));
  }
  if (!port.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(side, ".port is required with ", side, ".type=inet"));
  }
  const uint64_t min_port = remote ? 1 : 0;
  std::optional<uint64_t> p = qom::ParseU64(*port);
  if (!p || *p < min_port || *p > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(side, ".port expects a port number (", min_port,
                                                   "-65535), got '", *port, "'"));
  }
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(static_cast<uint16_t>(*p));
  if (host->empty()) {
    in.sin_addr.s_addr = htonl(INADDR_ANY);
  } else if (absl::ascii_isdigit(static_cast<unsigned char>((*host)[0]))) {
    // As QEMU: what starts with a digit is an address, never a name to look up.
    if (inet_aton(host->c_str(), &in.sin_addr) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(side, ".host '", *host, "' is not a valid IPv4 address"));
    }
  } else {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_DGRAM;
    addrinfo* res = nullptr;
    const int err = getaddrinfo(host->c_str(), nullptr, &hints, &res);
    if (err != 0 || res == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          side, ".host '", *host,
          "' cannot be resolved: ", err == EAI_SYSTEM ? strerror(errno) : gai_strerror(err)));
    }
    in.sin_addr = reinterpret_cast<const sockaddr_in*>(res->ai_addr)->sin_addr;
    freeaddrinfo(res);
  }
  if (remote) {
    if (IN_MULTICAST(ntohl(in.sin_addr.s_addr))) {
      return absl::UnimplementedError(absl::StrCat(
          "remote.host ", *host, " is a multicast address; multicast is not supported"));
    }
    if (in.sin_addr.s_addr == htonl(INADDR_ANY)) {
      return absl::InvalidArgumentError(
          absl::StrCat("remote.host '", *host, "' is not a destination address"));
    }
  }
  std::memcpy(&out->addr, &in, sizeof(in));
  out->len = sizeof(in);
  out->text = InetText(in);
  return absl::OkStatus();
}

absl::Status Dgram::PrepareUnixPath(const std::string& ctx, const std::string& path) const {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return Annotate(ErrnoToStatus(errno, absl::StrCat("lstat(", path, ")")), ctx);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::AlreadyExistsError(
        absl::StrCat(ctx, ": local.path '", path, "' exists and is not a socket"));
  }
  // A socket file: live when something is bound to it (a datagram connect to it succeeds, or is
  // refused with EPERM because that socket is connected elsewhere), stale when the connect is
  // refused with ECONNREFUSED.
  UniqueFd probe(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!probe.valid()) return Annotate(ErrnoToStatus(errno, "socket"), ctx);
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::memcpy(un.sun_path, path.data(), path.size());
  if (connect(probe.get(), reinterpret_cast<const sockaddr*>(&un), sizeof(un)) == 0 ||
      errno == EPERM) {
    return absl::AlreadyExistsError(
        absl::StrCat(ctx, ": local.path '", path, "' is in use by another socket"));
  }
  if (errno != ECONNREFUSED && errno != ENOENT) {
    return Annotate(ErrnoToStatus(errno, absl::StrCat("connect(", path, ")")), ctx);
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Annotate(ErrnoToStatus(errno, absl::StrCat("unlink(", path, ")")), ctx);
  }
  return absl::OkStatus();
}

absl::Status Dgram::Complete() {
  const std::string ctx = absl::StrCat("dgram '", name(), "'");
  if (local_type_ == AddrType::kNone) {
    return absl::InvalidArgumentError(absl::StrCat(ctx, ": local.type is required (inet or unix)"));
  }
  if (remote_type_ == AddrType::kNone) {
    if (remote_host_ || remote_port_ || remote_path_) {
      return absl::InvalidArgumentError(
          absl::StrCat(ctx, ": remote.type is required (inet or unix)"));
    }
    // QEMU's rule: a unicast dgram netdev always has a fixed remote.
    return absl::InvalidArgumentError(
        absl::StrCat(ctx, ": local.type=", TypeName(local_type_),
                     " requires a remote (remote.type=", TypeName(local_type_),
                     local_type_ == AddrType::kInet ? ",remote.host=...,remote.port=...)"
                                                    : ",remote.path=...)"));
  }
  if (remote_type_ != local_type_) {
    return absl::InvalidArgumentError(
        absl::StrCat(ctx, ": remote.type=", TypeName(remote_type_),
                     " differs from local.type=", TypeName(local_type_)));
  }
  Endpoint local, remote;
  if (absl::Status s = Validate(false, &local); !s.ok()) return Annotate(s, ctx);
  if (absl::Status s = Validate(true, &remote); !s.ok()) return Annotate(s, ctx);
  const bool is_unix = local_type_ == AddrType::kUnix;
  if (is_unix && local.text == remote.text) {
    return absl::InvalidArgumentError(
        absl::StrCat(ctx, ": local.path and remote.path are the same ('", local.text, "')"));
  }

  (void)loop();  // bound now, while the object is in the machine's tree
  UniqueFd fd(socket(is_unix ? AF_UNIX : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Annotate(ErrnoToStatus(errno, "socket"), ctx);
  if (is_unix) VDEV_RETURN_IF_ERROR(PrepareUnixPath(ctx, local.text));
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&local.addr), local.len) != 0) {
    return Annotate(SyscallError(errno, absl::StrCat("bind(", local.text, ")")), ctx);
  }
  if (is_unix) {
    struct stat st;
    if (lstat(local.text.c_str(), &st) == 0) {
      bound_path_ = local.text;
      bound_dev_ = st.st_dev;
      bound_ino_ = st.st_ino;
    }
    local_address_ = local.text;
  } else {
    sockaddr_in bound{};
    socklen_t len = sizeof(bound);
    if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
      return Annotate(ErrnoToStatus(errno, "getsockname"), ctx);
    }
    local_address_ = InetText(bound);
  }

  auto client = std::make_unique<Client>(name(), std::move(fd), remote, is_unix);
  Client* c = client.get();
  clients_.push_back(std::move(client));
  absl::Status s;
  OnLoop([&] { s = c->Start(loop()); });
  if (!s.ok()) {
    clients_.clear();  // never watched; the destructor removes the socket file
    return Annotate(s, ctx);
  }
  return absl::OkStatus();
}

VDEV_REGISTER_TYPE(Dgram);

}  // namespace vdev::net
