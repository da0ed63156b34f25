#include "core/base/unique_fd.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"

namespace vdev {

absl::StatusOr<UniqueFd> UniqueFd::Open(const char* path, int flags, int mode) {
  int fd;
  do {
    fd = ::open(path, flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open(", path, ")"));
  return UniqueFd(fd);
}

void UniqueFd::Reset(int fd) {
  if (fd_ >= 0 && fd_ != fd) {
    // close() must not be retried on EINTR on Linux: the fd is gone either way.
    ::close(fd_);
  }
  fd_ = fd;
}

absl::StatusOr<UniqueFd> UniqueFd::Dup() const {
  if (fd_ < 0) return absl::FailedPreconditionError("dup of an empty UniqueFd");
  int fd = ::fcntl(fd_, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return ErrnoToStatus(errno, "fcntl(F_DUPFD_CLOEXEC)");
  return UniqueFd(fd);
}

absl::Status ErrnoToStatus(int err, absl::string_view call) {
  char buf[128];
  const char* msg = strerror_r(err, buf, sizeof(buf));
  std::string text = absl::StrCat(call, ": ", msg);
  switch (err) {
    case ENOENT:
    case ENODEV:
    case ENXIO:
      return absl::NotFoundError(text);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(text);
    case EEXIST:
    case EBUSY:
      return absl::AlreadyExistsError(text);
    case EINVAL:
    case E2BIG:
      return absl::InvalidArgumentError(text);
    case ENOMEM:
    case ENOSPC:
    case EMFILE:
    case ENFILE:
      return absl::ResourceExhaustedError(text);
    case EAGAIN:
      return absl::UnavailableError(text);
    case ENOSYS:
    case EOPNOTSUPP:
      return absl::UnimplementedError(text);
    default:
      return absl::InternalError(text);
  }
}

}  // namespace vdev
