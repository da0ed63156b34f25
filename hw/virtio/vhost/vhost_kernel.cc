#include "hw/virtio/vhost/vhost_kernel.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace vdev::vhost {

absl::StatusOr<std::vector<uint8_t>> BuildVhostMemory(const GuestMemory& mem) {
  const auto& regions = mem.regions();
  if (regions.empty()) return absl::InvalidArgumentError("vhost: the guest has no RAM to share");
  if (regions.size() > kVhostMaxMemRegions) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "vhost: %u RAM regions (the kernel takes at most %u)", regions.size(), kVhostMaxMemRegions));
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
      return absl::InvalidArgumentError(absl::StrFormat(
          "vhost: ring %u %s [%#x, +%#x) is not all in one RAM region", index, p.name, p.addr,
          p.len));
    }
    host[i] = reinterpret_cast<uint64_t>(h);
  }
  a.desc_user_addr = host[0];
  a.avail_user_addr = host[1];
  a.used_user_addr = host[2];
  return a;
}

}  // namespace vdev::vhost
