#include "hw/virtio/vhost/vhost_kernel.h"

#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"

namespace vdev::vhost {

absl::StatusOr<std::vector<uint8_t>> BuildVhostMemory(const GuestMemory& mem) {
  const auto& regions = mem.regions();
  if (regions.empty()) return absl::InvalidArgumentError("vhost: the guest has no RAM to share");
  if (regions.size() > kVhostMaxMemRegions) {
    return absl::InvalidArgumentError(
        absl::StrFormat("vhost: %u RAM regions (the kernel takes at most %u)", regions.size(),
                        kVhostMaxMemRegions));
  }
  std::vector<uint8_t> buf(sizeof(vhost_memory) + regions.size() * sizeof(vhost_memory_region), 0);
  auto* table = reinterpret_cast<vhost_memory*>(buf.data());
  table->nregions = static_cast<uint32_t>(regions.size());
  for (size_t i = 0; i < regions.size(); ++i) {
    vhost_memory_region& r = table->regions[i];
    r.guest_phys_addr = regions[i].gpa.value();
    r.memory_size = regions[i].size;
    r.userspace_addr = reinterpret_cast<uint64_t>(regions[i].host);
  }
  return buf;
}

absl::StatusOr<vhost_vring_addr> BuildVringAddr(const GuestMemory& mem, unsigned index,
                                                uint16_t size, uint64_t desc, uint64_t avail,
                                                uint64_t used) {
  if (size == 0 || (size & (size - 1)) != 0 || size > 32768) {
    return absl::InvalidArgumentError(absl::StrFormat("vhost: ring %u size %u", index, size));
  }
  struct Part {
    const char* name;
    uint64_t addr;
    uint64_t len;
    uint64_t align;
  };
  const Part parts[3] = {{"descriptor table", desc, 16ull * size, 16},
                         {"available ring", avail, 6 + 2ull * size, 2},
                         {"used ring", used, 6 + 8ull * size, 4}};
  vhost_vring_addr a{};
  a.index = index;
  uint64_t host[3];
  for (int i = 0; i < 3; ++i) {
    const Part& p = parts[i];
    if (p.addr % p.align != 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "vhost: ring %u %s at %#x is not %u-byte aligned", index, p.name, p.addr, p.align));
    }
    uint8_t* h = mem.HostPointer(GuestAddr(p.addr), p.len, /*write=*/i == 2);
    if (h == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrFormat("vhost: ring %u %s [%#x, +%#x) is not all in one RAM region", index,
                          p.name, p.addr, p.len));
    }
    host[i] = reinterpret_cast<uint64_t>(h);
  }
  a.desc_user_addr = host[0];
  a.avail_user_addr = host[1];
  a.used_user_addr = host[2];
  return a;
}

absl::StatusOr<std::unique_ptr<VhostKernelNet>> VhostKernelNet::Create(std::vector<int> vhost_fds,
                                                                       std::vector<int> tap_fds,
                                                                       bool tap_vnet_hdr,
                                                                       Ioctl ioctl_fn) {
  if (vhost_fds.empty() || vhost_fds.size() != tap_fds.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("vhost-net: %u vhost fds for %u TAP queues (one per queue pair)",
                        vhost_fds.size(), tap_fds.size()));
  }
  auto b = std::unique_ptr<VhostKernelNet>(new VhostKernelNet);
  b->ioctl_ = ioctl_fn ? std::move(ioctl_fn) : [](int fd, unsigned long request, void* arg) {
    return ioctl(fd, request, arg);
  };
  b->vhost_fds_ = std::move(vhost_fds);
  b->tap_fds_ = std::move(tap_fds);
  b->tap_vnet_hdr_ = tap_vnet_hdr;
  uint64_t features = ~uint64_t{0};
  for (size_t i = 0; i < b->vhost_fds_.size(); ++i) {
    const uint32_t ring = static_cast<uint32_t>(2 * i);
    VDEV_RETURN_IF_ERROR(
        b->Call(b->vhost_fds_[i], VHOST_SET_OWNER, nullptr, "VHOST_SET_OWNER", ring));
    uint64_t f = 0;
    VDEV_RETURN_IF_ERROR(
        b->Call(b->vhost_fds_[i], VHOST_GET_FEATURES, &f, "VHOST_GET_FEATURES", ring));
    features &= f;
  }
  b->features_ = features;
  return b;
}

VhostKernelNet::~VhostKernelNet() {
  for (size_t i = 0; i < vhost_fds_.size(); ++i) {
    (void)Call(vhost_fds_[i], VHOST_RESET_OWNER, nullptr, "VHOST_RESET_OWNER",
               static_cast<uint32_t>(2 * i));
  }
}

absl::Status VhostKernelNet::Call(int fd, unsigned long request, void* arg, const char* what,
                                  uint32_t ring) {
  if (ioctl_(fd, request, arg) == 0) return absl::OkStatus();
  const int err = errno;
  return absl::InternalError(
      absl::StrFormat("vhost-net: %s (ring %u): %s", what, ring, std::strerror(err)));
}

absl::Status VhostKernelNet::Ring(uint32_t index, int* fd, unsigned* local) const {
  if (index / 2 >= vhost_fds_.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("vhost-net: ring %u of %u queue pairs", index, vhost_fds_.size()));
  }
  *fd = vhost_fds_[index / 2];
  *local = index % 2;
  return absl::OkStatus();
}

absl::Status VhostKernelNet::SetFeatures(uint64_t features) {
  // Bit 27 is VHOST_NET_F_VIRTIO_NET_HDR to vhost-net (VIRTIO_F_ANY_LAYOUT to a guest): set only
  // when the TAP has no header, so that vhost adds and strips it.
  constexpr uint64_t kNetHdr = uint64_t{1} << VHOST_NET_F_VIRTIO_NET_HDR;
  uint64_t f = features & features_ & ~kNetHdr;
  if (!tap_vnet_hdr_) f |= features_ & kNetHdr;
  for (size_t i = 0; i < vhost_fds_.size(); ++i) {
    VDEV_RETURN_IF_ERROR(Call(vhost_fds_[i], VHOST_SET_FEATURES, &f, "VHOST_SET_FEATURES",
                              static_cast<uint32_t>(2 * i)));
  }
  return absl::OkStatus();
}

absl::Status VhostKernelNet::SetMemTable(const GuestMemory& mem) {
  VDEV_ASSIGN_OR_RETURN(std::vector<uint8_t> table, BuildVhostMemory(mem));
  for (size_t i = 0; i < vhost_fds_.size(); ++i) {
    VDEV_RETURN_IF_ERROR(Call(vhost_fds_[i], VHOST_SET_MEM_TABLE, table.data(),
                              "VHOST_SET_MEM_TABLE", static_cast<uint32_t>(2 * i)));
  }
  return absl::OkStatus();
}

absl::Status VhostKernelNet::SetupRing(uint32_t index, const VringSetup& r) {
  int fd;
  unsigned local;
  VDEV_RETURN_IF_ERROR(Ring(index, &fd, &local));
  vhost_vring_state num{local, r.num};
  VDEV_RETURN_IF_ERROR(Call(fd, VHOST_SET_VRING_NUM, &num, "VHOST_SET_VRING_NUM", index));
  vhost_vring_state base{local, r.base};
  VDEV_RETURN_IF_ERROR(Call(fd, VHOST_SET_VRING_BASE, &base, "VHOST_SET_VRING_BASE", index));
  vhost_vring_addr a{};
  a.index = local;
  a.desc_user_addr = r.addr.desc;
  a.avail_user_addr = r.addr.avail;
  a.used_user_addr = r.addr.used;
  VDEV_RETURN_IF_ERROR(Call(fd, VHOST_SET_VRING_ADDR, &a, "VHOST_SET_VRING_ADDR", index));
  VDEV_RETURN_IF_ERROR(SetVringFile(index, VHOST_SET_VRING_KICK, r.kick, "VHOST_SET_VRING_KICK"));
  VDEV_RETURN_IF_ERROR(SetVringFile(index, VHOST_SET_VRING_CALL, r.call, "VHOST_SET_VRING_CALL"));
  return SetVringFile(index, VHOST_SET_VRING_ERR, r.err, "VHOST_SET_VRING_ERR");
}

absl::Status VhostKernelNet::SetVringFile(uint32_t index, unsigned long request, int file,
                                          const char* what) {
  int fd;
  unsigned local;
  VDEV_RETURN_IF_ERROR(Ring(index, &fd, &local));
  vhost_vring_file f{local, file};
  return Call(fd, request, &f, what, index);
}

absl::Status VhostKernelNet::SetVringEnable(uint32_t index, bool enable) {
  const int tap = enable && index / 2 < tap_fds_.size() ? tap_fds_[index / 2] : -1;
  return SetVringFile(index, VHOST_NET_SET_BACKEND, tap, "VHOST_NET_SET_BACKEND");
}

absl::StatusOr<uint32_t> VhostKernelNet::GetVringBase(uint32_t index) {
  int fd;
  unsigned local;
  VDEV_RETURN_IF_ERROR(Ring(index, &fd, &local));
  // Detached first: the kernel stops touching the ring before we read where it got to.
  VDEV_RETURN_IF_ERROR(SetVringEnable(index, false));
  vhost_vring_state s{local, 0};
  VDEV_RETURN_IF_ERROR(Call(fd, VHOST_GET_VRING_BASE, &s, "VHOST_GET_VRING_BASE", index));
  if (s.num > 0xffff) {
    return absl::InternalError(
        absl::StrFormat("vhost-net: ring %u base %u is not 16-bit", index, s.num));
  }
  return s.num;
}

}  // namespace vdev::vhost
