// The `dgram` netdev: each frame is one datagram, with no header, between two sockets (QEMU 7.2's
// -netdev dgram). Two VMMs are linked without root, each naming the other as its remote:
//
//   -netdev dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=5000,
//                       remote.type=inet,remote.host=127.0.0.1,remote.port=5001
//   -netdev dgram,id=n0,local.type=unix,local.path=/tmp/a.sock,
//                       remote.type=unix,remote.path=/tmp/b.sock
//
// As in QEMU, local and remote are both required and of the same type (inet: IPv4, UDP; unix: a
// path). A multicast remote and local.type=fd are not supported. local.port=0 binds an ephemeral
// port (see local_address()). An inet socket is bound without SO_REUSEADDR, so a port in use is an
// error rather than a silent theft of the other user's traffic.
//
// Datagrams from any address but the remote, datagrams too large for a frame (kMaxFrameSize) and
// empty ones are dropped and counted on the queue's counters() (rx_unexpected_source,
// rx_truncated, rx_empty); tx_frames, rx_frames, tx_errors and rx_errors count the rest.
//
// A unix socket connects to its remote once the remote exists (from the next frame sent or
// received), because only a connected unix datagram socket reports writability truthfully when the
// peer's queue is full; while connected, the kernel itself refuses datagrams from other sockets.
// A stale socket file at local.path (one nobody is bound to) is removed before binding; a live
// one, or a file that is not a socket, is an error. The path is removed again on destruction.
//
// Flow control mirrors `tap`: a frame the socket cannot take now (EAGAIN) stays queued and holds
// the NIC until the socket is writable; reading pauses while the NIC cannot receive and resumes
// when it can (PeerReady), at most 256 datagrams per readiness event.
//
// Thread-safety: as every netdev (net/netdev.h); the socket is served on loop().
#ifndef VDEV_NET_DGRAM_H_
#define VDEV_NET_DGRAM_H_

#include <sys/types.h>

#include <optional>
#include <string>

#include "net/netdev.h"

namespace vdev::net {

class Dgram : public Netdev {
 public:
  static constexpr char kTypeName[] = "netdev-dgram";
  using Parent = Netdev;
  static void ClassInit(qom::ObjectClass& k);

  // The address family of an endpoint (`local.type` / `remote.type`).
  enum class AddrType { kNone = 0, kInet = 1, kUnix = 2 };

  ~Dgram() override;
  absl::Status Complete() override;
  // The socket is bound: its addresses no longer change.
  bool PropertiesFrozen() const override { return !clients_.empty(); }

  // The bound address: "127.0.0.1:5000" (the actual port for local.port=0) or the unix path.
  const std::string& local_address() const { return local_address_; }

 private:
  class Client;
  struct Endpoint;
  absl::Status Validate(bool remote, Endpoint* out) const;
  absl::Status PrepareUnixPath(const std::string& ctx, const std::string& path) const;

  // Properties ("local.host" etc.); an unset one is nullopt ("local.host=" is set and empty).
  AddrType local_type_ = AddrType::kNone;
  std::optional<std::string> local_host_;
  std::optional<std::string> local_port_;
  std::optional<std::string> local_path_;
  AddrType remote_type_ = AddrType::kNone;
  std::optional<std::string> remote_host_;
  std::optional<std::string> remote_port_;
  std::optional<std::string> remote_path_;

  std::string local_address_;
  // The socket file this netdev created, removed on destruction if it is still the same file.
  std::string bound_path_;
  dev_t bound_dev_ = 0;
  ino_t bound_ino_ = 0;
};

}  // namespace vdev::net

#endif  // VDEV_NET_DGRAM_H_
