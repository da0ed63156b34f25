// libFuzzer target for the vhost-user frontend's reply reader (hw/virtio/vhost/vhost_user.h): the
// input is what a hostile backend sends back, plus a few fds riding on its first message. The
// frontend runs the requests of a handshake and a ring stop against it; every reply is read and
// validated until the stream ends. The target checks that no fd is left open afterwards.
//   input[0] % 9   how many eventfds ride on the first sendmsg
//   input[1]       bit 0: REPLY_ACK on (every set-request reads an ack)
//   input[2..]     the stream (the first 12 bytes carry the fds)
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/base/fd_passing.h"
#include "hw/virtio/vhost/vhost_user.h"
#include "tests/testing/open_fds.h"

using vdev::vhost::VhostUserClient;
using vdev::vhost::VhostUserRequest;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2 + 12 || size > 65536) return 0;
  const int before = vdev::testing::OpenFdCount();
  {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
    vdev::UniqueFd ours(sv[0]), theirs(sv[1]);
    int buf = 1 << 20;  // neither side's writes ever block
    setsockopt(theirs.get(), SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    setsockopt(theirs.get(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    setsockopt(ours.get(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    const int nfds = data[0] % 9;
    std::vector<vdev::UniqueFd> fds;
    std::vector<int> raw;
    for (int i = 0; i < nfds; ++i) {
      fds.emplace_back(eventfd(0, EFD_CLOEXEC));
      raw.push_back(fds.back().get());
    }
    iovec first{const_cast<uint8_t*>(data + 2), 12};
    if (!vdev::SendWithFds(theirs.get(), &first, 1, raw).ok()) return 0;
    fds.clear();  // the receiver owns its copies now
    const size_t rest = size - 2 - 12;
    if (rest > 0 &&
        send(theirs.get(), data + 14, rest, MSG_NOSIGNAL) != static_cast<ssize_t>(rest)) {
      return 0;
    }
    shutdown(theirs.get(), SHUT_WR);  // end of the backend's stream; our requests still go in
    VhostUserClient c(std::move(ours), absl::Milliseconds(50));
    c.set_reply_ack(data[1] & 1);
    vdev::UniqueFd kick(eventfd(0, EFD_CLOEXEC));
    for (int round = 0; round < 8; ++round) {
      absl::Status last = c.GetU64(VhostUserRequest::kGetFeatures).status();
      if (last.ok()) last = c.GetU64(VhostUserRequest::kGetProtocolFeatures).status();
      if (last.ok()) last = c.SetOwner();
      if (last.ok()) last = c.GetU64(VhostUserRequest::kGetQueueNum).status();
      if (last.ok()) last = c.SetVringNum(0, 256);
      if (last.ok()) last = c.SetVringFd(VhostUserRequest::kSetVringKick, 0, kick.get());
      if (last.ok()) last = c.GetVringBase(0).status();
      if (last.code() == absl::StatusCode::kUnavailable ||
          last.code() == absl::StatusCode::kDeadlineExceeded) {
        break;
      }
    }
  }
  if (vdev::testing::OpenFdCount() != before) abort();  // a backend's fd was leaked
  return 0;
}
