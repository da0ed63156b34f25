#include "net/vhost_net.h"

#include <fcntl.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace vdev::net {

absl::StatusOr<UniqueFd> OpenVhostNet(const std::string& path) {
  const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd >= 0) return UniqueFd(fd);
  const int err = errno;
  std::string hint;
  if (err == ENOENT) hint = " (no vhost-net on this machine: load vhost_net, or use vhost=off)";
  if (err == EACCES || err == EPERM) hint = " (no access to the device: use vhost=off)";
  return absl::Status(
      err == ENOENT ? absl::StatusCode::kNotFound : absl::StatusCode::kPermissionDenied,
      absl::StrCat("cannot open ", path, ": ", strerror(err), hint));
}

}  // namespace vdev::net
