// The kernel's vhost (`/dev/vhost-net`): what a frontend hands to the ioctls, built and checked
// here. The memory table is the guest's RAM as our process maps it (struct vhost_memory); a ring's
// addresses are translated to our mapping only when every byte of each part is RAM and aligned as
// the spec requires, so the kernel never gets a guest-chosen pointer it could trip on.
//
// Example:
//   VDEV_ASSIGN_OR_RETURN(UniqueFd vhost, net::OpenVhostNet());   // one clear line when missing
//   VDEV_ASSIGN_OR_RETURN(std::vector<uint8_t> table, BuildVhostMemory(mem));
//   ioctl(vhost.get(), VHOST_SET_MEM_TABLE, table.data());
//   VDEV_ASSIGN_OR_RETURN(vhost_vring_addr a, BuildVringAddr(mem, 0, 256, desc, avail, used));
//
// VhostKernelNet is the VhostBackend over vhost-net fds (one per queue pair, as the kernel serves
// two rings per fd): `-netdev tap,vhost=on` gives virtio-net its rings' data plane in the kernel.
// Ring q of the device is ring q % 2 of fd q / 2; "enabling" a ring attaches the pair's TAP fd to
// it (VHOST_NET_SET_BACKEND), and a ring is detached before its base is read back. Every ioctl
// failure is a status naming the ioctl and the ring; the device then falls back to its userspace
// data path.
#ifndef VDEV_HW_VIRTIO_VHOST_VHOST_KERNEL_H_
#define VDEV_HW_VIRTIO_VHOST_VHOST_KERNEL_H_

// virtio_uapi.h before linux/vhost.h: it defines VIRTIO_RING_NO_LEGACY before virtio_ring.h comes.
#include "bus/virtio/virtio_uapi.h"
// (the order above matters)
#include <linux/vhost.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/unique_fd.h"
#include "core/memory/guest_memory.h"
#include "hw/virtio/vhost/vhost_dev.h"
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

class VhostKernelNet : public VhostBackend {
 public:
  // The ioctl(2) to use (tests pass a recorder; the default is the system call).
  using Ioctl = std::function<int(int fd, unsigned long request, void* arg)>;
  // Borrows `vhost_fds[i]` and `tap_fds[i]` (queue pair i; they outlive this object), takes
  // ownership of each vhost fd (VHOST_SET_OWNER) and reads its features. `tap_vnet_hdr`: the TAP
  // carries virtio-net headers itself (else vhost adds and strips them).
  static absl::StatusOr<std::unique_ptr<VhostKernelNet>> Create(std::vector<int> vhost_fds,
                                                                std::vector<int> tap_fds,
                                                                bool tap_vnet_hdr,
                                                                Ioctl ioctl_fn = nullptr);
  // VHOST_RESET_OWNER: the fds can be owned again (a NIC re-created on the same netdev).
  ~VhostKernelNet() override;

  uint64_t features() const override { return features_; }
  bool decides_offloads() const override { return false; }
  bool userspace_fallback() const override { return true; }
  absl::Status SetFeatures(uint64_t features) override;
  absl::Status SetMemTable(const GuestMemory& mem) override;
  absl::Status SetupRing(uint32_t index, const VringSetup& ring) override;
  absl::Status SetVringEnable(uint32_t index, bool enable) override;
  absl::StatusOr<uint32_t> GetVringBase(uint32_t index) override;

 private:
  VhostKernelNet() = default;
  // The fd serving device ring `index`, and the ring's index on it; InvalidArgument when out of
  // range.
  absl::Status Ring(uint32_t index, int* fd, unsigned* local) const;
  absl::Status Call(int fd, unsigned long request, void* arg, const char* what, uint32_t ring);
  absl::Status SetVringFile(uint32_t index, unsigned long request, int file, const char* what);

  Ioctl ioctl_;
  std::vector<int> vhost_fds_, tap_fds_;
  bool tap_vnet_hdr_ = true;
  uint64_t features_ = 0;
};

}  // namespace vdev::vhost

#endif  // VDEV_HW_VIRTIO_VHOST_VHOST_KERNEL_H_
