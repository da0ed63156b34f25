// The kernel's vhost (`/dev/vhost-net`): what a frontend hands to the ioctls, built and checked
// here. The memory table is the guest's RAM as our process maps it (struct vhost_memory); a ring's
// addresses are translated to our mapping only when every byte of each part is RAM and aligned as
// the spec requires, so the kernel never gets a guest-chosen pointer it could trip on.
//
// Example:
//   VDEV_ASSIGN_OR_RETURN(UniqueFd vhost, OpenVhostNet());   // one clear line when missing
//   VDEV_ASSIGN_OR_RETURN(std::vector<uint8_t> table, BuildVhostMemory(mem));
//   ioctl(vhost.get(), VHOST_SET_MEM_TABLE, table.data());
//   VDEV_ASSIGN_OR_RETURN(vhost_vring_addr a, BuildVringAddr(mem, 0, 256, desc, avail, used));
//
// The vhost-net data path of virtio-net (start at DRIVER_OK, stop on reset) is not wired yet.
#ifndef VDEV_HW_VIRTIO_VHOST_VHOST_KERNEL_H_
#define VDEV_HW_VIRTIO_VHOST_VHOST_KERNEL_H_

#include "bus/virtio/virtio_uapi.h"  // before linux/vhost.h (VIRTIO_RING_NO_LEGACY)

#include <linux/vhost.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/unique_fd.h"
#include "core/guest_memory.h"
#include "net/vhost_net.h"  // OpenVhostNet

namespace vdev::vhost {

// vhost_net's default max_mem_regions.
inline constexpr size_t kVhostMaxMemRegions = 64;

// struct vhost_memory with one region per RAM region of `mem` (guest address, size, our mapping).
absl::StatusOr<std::vector<uint8_t>> BuildVhostMemory(const GuestMemory& mem);

// struct vhost_vring_addr for ring `index` of `size` entries at the guest addresses given
// (split ring layout). InvalidArgument when a part is misaligned or not entirely RAM.
absl::StatusOr<vhost_vring_addr> BuildVringAddr(const GuestMemory& mem, unsigned index,
                                                uint16_t size, uint64_t desc, uint64_t avail,
                                                uint64_t used);

}  // namespace vdev::vhost

#endif  // VDEV_HW_VIRTIO_VHOST_VHOST_KERNEL_H_
