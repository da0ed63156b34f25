// libFuzzer target for the multi-process protocol reader (hw/remote/mpqemu.h): the input is a
// byte stream QEMU could send, plus a few fds riding on its first message. Every message is read
// until the stream ends or is refused; the target checks that no fd is left open afterwards.
//   input[0] % 9   how many memfds ride on the first sendmsg
//   input[1..8]    their sizes, in pages
//   input[9..]     the stream
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "hw/remote/mpqemu.h"
#include "tests/testing/open_fds.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 9 + 16 || size > 65536) return 0;
  const int before = vdev::testing::OpenFdCount();
  {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
    vdev::UniqueFd ours(sv[0]), theirs(sv[1]);
    // Big enough for the whole input: the writes below never block.
    int buf = 1 << 20;
    setsockopt(theirs.get(), SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    setsockopt(ours.get(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    const int nfds = data[0] % 9;
    std::vector<vdev::UniqueFd> fds;
    std::vector<int> raw;
    for (int i = 0; i < nfds; ++i) {
      fds.emplace_back(memfd_create("fuzz", MFD_CLOEXEC));
      if (ftruncate(fds.back().get(), static_cast<off_t>(data[1 + i]) * 4096) != 0) return 0;
      raw.push_back(fds.back().get());
    }
    // The first 16 bytes go out as a header carrying the fds; the rest as plain bytes.
    int32_t cmd;
    std::memcpy(&cmd, data + 9, 4);
    const uint8_t* rest = data + 9 + 16;
    const size_t rest_len = size - 9 - 16;
    std::vector<uint8_t> first(data + 9, data + 9 + 16);
    {
      iovec iov{first.data(), first.size()};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)] = {};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      if (!raw.empty()) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * raw.size());
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * raw.size());
        std::memcpy(CMSG_DATA(c), raw.data(), sizeof(int) * raw.size());
      }
      if (sendmsg(theirs.get(), &msg, MSG_NOSIGNAL) != 16) return 0;
    }
    fds.clear();  // the receiver owns its copies now
    if (rest_len > 0 &&
        send(theirs.get(), rest, rest_len, MSG_NOSIGNAL) != static_cast<ssize_t>(rest_len)) {
      return 0;
    }
    theirs.Reset();  // end of stream
    for (int i = 0; i < 64; ++i) {
      auto m = vdev::remote::ReadMpqemuMessage(ours.get());
      if (!m.ok()) break;
    }
  }
  if (vdev::testing::OpenFdCount() != before) abort();  // an fd from the peer was leaked
  return 0;
}
