// Sending and receiving file descriptors over unix sockets (SCM_RIGHTS), for the protocols that
// carry them (QEMU's multi-process protocol, vhost-user).
//
// Every fd received is owned by a UniqueFd the moment recvmsg returns, so a caller that refuses
// the message closes them all by returning.
#ifndef VDEV_CORE_BASE_FD_PASSING_H_
#define VDEV_CORE_BASE_FD_PASSING_H_

#include <sys/types.h>
#include <sys/uio.h>

#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/base/unique_fd.h"

namespace vdev {

inline constexpr int kMaxPassedFds = 8;

// sendmsg of `iov` with `fds` (at most kMaxPassedFds) as one SCM_RIGHTS message; MSG_NOSIGNAL,
// retried on EINTR. Returns the bytes sent.
absl::StatusOr<size_t> SendWithFds(int sock, const iovec* iov, int niov, absl::Span<const int> fds);

struct Received {
  size_t bytes = 0;           // 0: the peer closed the connection
  std::vector<UniqueFd> fds;  // owned
  bool bad_control = false;   // truncated control data, or something other than SCM_RIGHTS
};
// recvmsg into `buf` with room for kMaxPassedFds fds (MSG_CMSG_CLOEXEC | `flags`), retried on
// EINTR.
absl::StatusOr<Received> ReceiveWithFds(int sock, void* buf, size_t len, int flags = 0);

}  // namespace vdev

#endif  // VDEV_CORE_BASE_FD_PASSING_H_
