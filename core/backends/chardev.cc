#include "core/backends/chardev.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/base/status_macros.h"
#include "qom/property.h"

namespace vdev {
namespace {

absl::StatusOr<sockaddr_un> UnixAddress(const std::string& path, const std::string& who) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(a.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat(who, ": path must be 1..", sizeof(a.sun_path) - 1, " characters"));
  }
  std::memcpy(a.sun_path, path.data(), path.size());
  return a;
}

}  // namespace

bool Chardev::Claim() {
  if (claimed_) return false;
  claimed_ = true;
  return true;
}

void ChardevSocket::ClassInit(qom::ObjectClass& k) {
  k.description = "a unix stream socket (vhost-user's transport)";
  k.AddProperty(
      qom::Prop("path", &ChardevSocket::path_, std::string(""), "the socket's file name"));
  k.AddProperty(qom::Prop("server", &ChardevSocket::server_, false,
                          "listen on path (on) or connect to it (off)"));
  k.AddProperty(qom::Prop("reconnect", &ChardevSocket::reconnect_, uint32_t{0},
                          "client: the longest wait between reconnection attempts, in seconds"));
}

ChardevSocket::~ChardevSocket() {
  if (listen_.valid()) unlink(path_.c_str());
}

absl::Status ChardevSocket::Complete() {
  const std::string who = absl::StrCat("chardev '", name(), "'");
  VDEV_ASSIGN_OR_RETURN(sockaddr_un a, UnixAddress(path_, who));
  if (!server_) return absl::OkStatus();
  UniqueFd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s.valid()) return ErrnoToStatus(errno, "socket");
  // A socket file left by a previous run would make bind fail; anything else is not ours to
  // remove.
  struct stat st;
  if (lstat(path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path_.c_str());
  if (bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(who, ": cannot listen on '", path_, "': ", std::strerror(errno)));
  }
  if (listen(s.get(), 1) != 0) return ErrnoToStatus(errno, "listen");
  listen_ = std::move(s);
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> ChardevSocket::Open(absl::Duration timeout) {
  const std::string who = absl::StrCat("chardev '", name(), "'");
  if (server_) {
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      UniqueFd c(accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (c.valid()) return c;
      if (errno != EAGAIN && errno != EINTR) return ErrnoToStatus(errno, "accept4");
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        return absl::DeadlineExceededError(
            absl::StrCat(who, ": nobody connected to '", path_, "'"));
      }
      pollfd p{listen_.get(), POLLIN, 0};
      poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    }
  }
  VDEV_ASSIGN_OR_RETURN(sockaddr_un a, UnixAddress(path_, who));
  UniqueFd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s.valid()) return ErrnoToStatus(errno, "socket");
  if (connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    return absl::UnavailableError(
        absl::StrCat(who, ": cannot connect to '", path_, "': ", std::strerror(errno)));
  }
  return s;
}

VDEV_REGISTER_TYPE(Chardev);
VDEV_REGISTER_TYPE(ChardevSocket);

}  // namespace vdev
