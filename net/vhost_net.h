// Opening the kernel's vhost-net device, for `-netdev tap,vhost=on` (the ioctl arguments are built
// in hw/virtio/vhost/vhost_kernel.h).
#ifndef VDEV_NET_VHOST_NET_H_
#define VDEV_NET_VHOST_NET_H_

#include <string>

#include "absl/status/statusor.h"
#include "core/base/unique_fd.h"

namespace vdev::net {

// Opens `path` (default /dev/vhost-net) read-write. NotFound / PermissionDenied with one line
// naming the device and what to do instead.
absl::StatusOr<UniqueFd> OpenVhostNet(const std::string& path = "/dev/vhost-net");

}  // namespace vdev::net

#endif  // VDEV_NET_VHOST_NET_H_
