// The `tap` netdev: frames to and from a Linux TAP interface (QEMU's -netdev tap).
//
//   -netdev tap,id=n0,ifname=t0[,queues=N][,vnet_hdr=on|off|auto][,sndbuf=SIZE][,script=no]
//   -netdev tap,id=n0,fd=FD          a TAP fd opened by the caller (taken over and closed)
//
// The interface is opened IFF_TAP | IFF_NO_PI, with IFF_VNET_HDR unless vnet_hdr=off (auto: when
// the kernel offers it) and IFF_MULTI_QUEUE for queues > 1 (one fd, and one NetClientState, per
// queue). Helper scripts are not run: script/downscript must be empty or "no". vhost=on opens one
// /dev/vhost-net fd per queue (or takes vhostfd=N[:N...]); the NIC then hands its rings to the
// kernel (hw/virtio/vhost) and this netdev's own reading stays paused while it does.
//
// The NIC drives the header: UsingVnetHdr, SetVnetHdrLen (TUNSETVNETHDRSZ, 10 or 12) and
// SetOffload (TUNSETOFFLOAD) follow the guest's negotiated features. Each fd is non-blocking and
// served on the netdev's loop. Frames from the guest are written with writev straight from guest
// memory; a full TAP (EAGAIN) queues the frame, holds the NIC's transmit until the fd is writable
// again, then resumes it. Reading: straight into the NIC's guest buffers when it offers them
// (ReceiveDirect), otherwise into one bounce buffer; reading stops while the NIC cannot receive
// and resumes when it says it can (PeerReady) — no busy loop, no stall.
#ifndef VDEV_NET_TAP_H_
#define VDEV_NET_TAP_H_

#include <string>
#include <vector>

#include "core/base/unique_fd.h"
#include "net/netdev.h"
#include "qom/property.h"

namespace vdev::net {

class Tap : public Netdev {
 public:
  static constexpr char kTypeName[] = "netdev-tap";
  using Parent = Netdev;
  static void ClassInit(qom::ObjectClass& k);

  ~Tap() override;
  absl::Status Complete() override;

  // The interface name the kernel gave (ifname= or "tapN").
  const std::string& ifname() const { return actual_ifname_; }
  bool vnet_hdr() const { return vnet_hdr_enabled_; }
  int fd(size_t queue) const;
  // The vhost-net fd of `queue`, or -1 without vhost.
  int vhost_fd(size_t queue) const;

 private:
  absl::Status OpenQueues();
  absl::Status OpenVhost();

  // Properties.
  std::string ifname_;
  int32_t fd_ = -1;
  uint32_t queues_ = 1;
  qom::OnOffAuto vnet_hdr_ = qom::OnOffAuto::kAuto;
  std::string script_;
  std::string downscript_;
  qom::Size sndbuf_{0};
  qom::OnOffAuto vhost_ = qom::OnOffAuto::kOff;
  std::string vhostfd_;
  bool uring_ = true;

  std::vector<UniqueFd> vhost_fds_;
  std::string actual_ifname_;
  bool vnet_hdr_enabled_ = false;
  bool multi_queue_ = false;
};

}  // namespace vdev::net

#endif  // VDEV_NET_TAP_H_
