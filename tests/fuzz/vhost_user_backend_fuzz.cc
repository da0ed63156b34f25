// libFuzzer target for the vhost-user backend's request handling (hw/virtio/vhost/
// vhost_user_backend.h): the input is what a hostile frontend sends, message by message, each
// with up to two fds (a 64 KiB memfd for memory tables, or an eventfd for rings). The session
// handles them like a connection; a refused request ends the connection (Close) and the next
// bytes are a new frontend. A fake device touches every ring it is given through the mapped
// memory (ASan checks the translation), and no fd may be left open at the end.
//   per message: 12-byte header {request, flags, size}, 1 byte fd mask (bit 0: memfd, bit 1:
//   eventfd), then min(size, 512) payload bytes
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "hw/virtio/vhost/vhost_user_backend.h"
#include "tests/testing/open_fds.h"

namespace {

using vdev::GuestMemory;
using vdev::vhost::BackendRing;

class FuzzDevice : public vdev::vhost::VhostUserBackendDevice {
 public:
  uint64_t DeviceFeatures() const override { return ~uint64_t{0} >> 2; }
  absl::Status SetFeatures(uint64_t) override { return absl::OkStatus(); }
  absl::Status StartRing(uint32_t, const BackendRing& ring, const GuestMemory& mem) override {
    // Every byte of the three areas the session vouched for must be mapped.
    const struct {
      vdev::GuestAddr at;
      uint64_t len;
    } areas[] = {{ring.desc, 16ull * ring.num},
                 {ring.avail, 6 + 2ull * ring.num},
                 {ring.used, 6 + 8ull * ring.num}};
    for (const auto& a : areas) {
      std::vector<iovec> iov;
      if (!mem.Translate(a.at, a.len, false, &iov)) continue;  // the device would refuse it
      for (const iovec& v : iov) {
        uint8_t x = 0;
        for (size_t i = 0; i < v.iov_len; i += 512) x ^= static_cast<uint8_t*>(v.iov_base)[i];
        x ^= static_cast<uint8_t*>(v.iov_base)[v.iov_len - 1];
        touched_ += x;
      }
    }
    return absl::OkStatus();
  }
  uint32_t StopRing(uint32_t) override { return 0; }
  uint64_t touched_ = 0;  // keeps the reads
};

vdev::UniqueFd MakeMemfd() {
  vdev::UniqueFd fd(memfd_create("fuzz", MFD_CLOEXEC));
  if (fd.valid() && ftruncate(fd.get(), 64 * 1024) != 0) fd.Reset();
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 65536) return 0;
  const int before = vdev::testing::OpenFdCount();
  {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
    vdev::UniqueFd ours(sv[0]), theirs(sv[1]);
    int buf = 1 << 20;
    setsockopt(ours.get(), SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    setsockopt(theirs.get(), SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    FuzzDevice dev;
    auto session = std::make_unique<vdev::vhost::VhostUserBackendSession>(
        &dev, vdev::vhost::BackendLimits{.num_rings = 3, .max_ring_size = 256});
    size_t pos = 0;
    while (pos + 13 <= size) {
      vdev::vhost::VhostUserMessage m;
      uint32_t len;
      std::memcpy(&m.request, data + pos, 4);
      std::memcpy(&m.flags, data + pos + 4, 4);
      std::memcpy(&len, data + pos + 8, 4);
      const uint8_t fd_mask = data[pos + 12];
      pos += 13;
      len = std::min<uint32_t>({len, 512, static_cast<uint32_t>(size - pos)});
      m.payload.assign(data + pos, data + pos + len);
      pos += len;
      if (fd_mask & 1) m.fds.push_back(MakeMemfd());
      if (fd_mask & 2) m.fds.emplace_back(eventfd(0, EFD_CLOEXEC));
      if (!session->Handle(ours.get(), std::move(m)).ok()) {
        session->Close();  // the connection drops; the next bytes are a new frontend
      }
      // Drain replies so the socket never fills.
      uint8_t sink[4096];
      while (recv(theirs.get(), sink, sizeof(sink), MSG_DONTWAIT) > 0) {
      }
    }
    session->Close();
  }
  if (vdev::testing::OpenFdCount() != before) abort();  // an fd leaked
  return 0;
}
