// The NetClientState of one TAP queue, shared by tap.cc (which opens the fds) and tap_queue.cc
// (which serves one). Not installed.
#ifndef VDEV_NET_TAP_QUEUE_INTERNAL_H_
#define VDEV_NET_TAP_QUEUE_INTERNAL_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "core/base/unique_fd.h"
#include "core/loop/event_loop.h"
#include "net/net.h"

namespace vdev::net {

class TapQueue : public NetClientState {
 public:
  explicit TapQueue(std::string name) : NetClientState("tap", std::move(name)) {}
  virtual int fd() const = 0;
  // Batches writes and reads through io_uring; only with an unlimited send buffer (a limited one
  // must push back frame by frame).
  virtual void EnableBatching(bool unlimited_sndbuf) = 0;
  // Registers the fd on `loop` (borrowed; outlives the queue's Stop).
  virtual absl::Status Start(EventLoop& loop) = 0;
  // On the loop thread.
  virtual void Stop() = 0;
};

// A queue serving `fd` (non-blocking, of interface `ifname`; `has_vnet_hdr`: opened with
// IFF_VNET_HDR; `multi_queue`: IFF_MULTI_QUEUE, so TUNSETQUEUE follows the NIC's queue pairs).
std::unique_ptr<TapQueue> NewTapQueue(std::string name, std::string ifname, bool multi_queue,
                                      UniqueFd fd, bool has_vnet_hdr);

}  // namespace vdev::net

#endif  // VDEV_NET_TAP_QUEUE_INTERNAL_H_
