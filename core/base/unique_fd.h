// UniqueFd: sole owner of a file descriptor; closes it on destruction. Move-only.
//
// Example:
//   VDEV_ASSIGN_OR_RETURN(UniqueFd fd, UniqueFd::Open("/dev/net/tun", O_RDWR | O_CLOEXEC));
//   ioctl(fd.get(), TUNSETIFF, &ifr);
//   int raw = fd.Release();  // caller now owns `raw`
//
// Thread-safety: like an int; a single UniqueFd is not to be mutated from two threads.
#ifndef VDEV_CORE_BASE_UNIQUE_FD_H_
#define VDEV_CORE_BASE_UNIQUE_FD_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace vdev {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }
  ~UniqueFd() { Reset(); }

  // Opens `path`; O_CLOEXEC is always added.
  static absl::StatusOr<UniqueFd> Open(const char* path, int flags, int mode = 0);

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing.
  [[nodiscard]] int Release() { return std::exchange(fd_, -1); }
  // Closes the current fd (if any) and takes ownership of `fd`.
  void Reset(int fd = -1);
  // A new owner of a duplicate (F_DUPFD_CLOEXEC) of this fd.
  absl::StatusOr<UniqueFd> Dup() const;

 private:
  int fd_ = -1;
};

// Maps an errno value to a Status naming the failed call: "open(/dev/net/tun): No such file...".
absl::Status ErrnoToStatus(int err, absl::string_view call);

}  // namespace vdev

#endif  // VDEV_CORE_BASE_UNIQUE_FD_H_
