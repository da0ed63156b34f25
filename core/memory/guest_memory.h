// GuestMemory: the guest's RAM, as a set of regions, and the only code that turns a guest
// physical address into a host pointer.
//
// Each region has a guest address, a size, a host mapping and, when fd-backed, the fd and the
// offset of the mapping in it. GuestMemory allocates memfd-backed RAM itself (the default, so the
// same pages can be handed to a vhost-user backend or to QEMU) or adopts regions from fds handed
// in by a peer (QEMU's SYNC_SYSMEM, a VMM's own RAM).
//
// Translation goes region by region with overflow-safe checks: a range is usable only when every
// byte of it is RAM (a range across a hole or past the end is rejected as a whole: DPDK
// CVE-2018-1059). Callers get iovec segments or copy through Read/Write; nothing keeps a host
// pointer past the operation that asked for it.
//
// Example:
//   VDEV_ASSIGN_OR_RETURN(std::unique_ptr<GuestMemory> mem, GuestMemory::Create());
//   VDEV_RETURN_IF_ERROR(mem->AddRam(GuestAddr(0), 128 << 20, "pc.ram"));
//   mem->WriteLe<uint32_t>(GuestAddr(0x1000), 0xdeadbeef);
//   std::optional<uint32_t> v = mem->ReadLe<uint32_t>(GuestAddr(0x1000));
//   std::vector<iovec> iov;
//   if (!mem->Translate(GuestAddr(0x2000), 1500, true, &iov)) { /* not all RAM */ }
//
// Thread-safety: lookups (Translate, Read, Write, IsRam) are thread-safe with each other. Adding
// and removing regions is a control-plane operation that must not race with lookups: the VMM
// quiesces its data planes first (as QEMU does under its memory-map lock).
#ifndef VDEV_CORE_MEMORY_GUEST_MEMORY_H_
#define VDEV_CORE_MEMORY_GUEST_MEMORY_H_

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/base/byte_order.h"
#include "core/base/strong_types.h"
#include "core/base/unique_fd.h"

namespace vdev {

// One RAM region. `fd` is -1 for memory that is not fd-backed.
struct GuestRamRegion {
  GuestAddr gpa;
  uint64_t size = 0;
  uint8_t* host = nullptr;
  int fd = -1;
  uint64_t fd_offset = 0;  // offset of `host` in `fd`
  bool read_only = false;
  std::string name;
};

class GuestMemory {
 public:
  // An empty guest memory (no regions).
  static absl::StatusOr<std::unique_ptr<GuestMemory>> Create();
  ~GuestMemory();
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  // Allocates `size` bytes of memfd-backed RAM (zero-filled, MAP_SHARED) at `gpa`.
  // InvalidArgument for a zero size or a range that wraps; AlreadyExists when it overlaps a region.
  absl::Status AddRam(GuestAddr gpa, uint64_t size, std::string name);
  // Maps `size` bytes of `fd` from `offset` at `gpa` (MAP_SHARED) and keeps the fd. The fd must be
  // large enough (fstat is checked). Used for RAM handed in by a peer.
  absl::Status AdoptRegion(GuestAddr gpa, uint64_t size, UniqueFd fd, uint64_t offset,
                           std::string name, bool read_only = false);
  // Adds memory the caller owns and keeps mapped for the lifetime of this object (no fd).
  absl::Status AddHostMemory(GuestAddr gpa, uint64_t size, void* host, std::string name);
  // Unmaps and closes every region (full replacement of a peer's memory map starts with this).
  void Clear();

  // The regions, sorted by guest address.
  const std::vector<GuestRamRegion>& regions() const { return regions_; }
  // Changes whenever a region is added or removed: users that cache host pointers (virtqueues)
  // re-translate when it moves.
  uint64_t generation() const { return generation_; }
  uint64_t total_size() const;

  // Appends host segments covering [gpa, gpa + len) to `out`, one per region crossed. False (and
  // `out` unchanged) when any byte is not RAM, the range wraps, or `write` and a region is
  // read-only. A zero length is valid for any address and appends nothing.
  bool Translate(GuestAddr gpa, uint64_t len, bool write, std::vector<iovec>* out) const;
  // The host pointer for [gpa, gpa + len) when the range lies in one region; nullptr otherwise.
  uint8_t* HostPointer(GuestAddr gpa, uint64_t len, bool write) const;
  // True when every byte of [gpa, gpa + len) is RAM.
  bool IsRam(GuestAddr gpa, uint64_t len) const;

  // Copies between guest memory and a host buffer; false (nothing copied) when not all RAM.
  bool Read(GuestAddr gpa, absl::Span<uint8_t> dst) const;
  bool Write(GuestAddr gpa, absl::Span<const uint8_t> src) const;

  // Little-endian typed access. nullopt / false when not RAM.
  template <typename T>
  std::optional<T> ReadLe(GuestAddr gpa) const {
    static_assert(std::is_unsigned_v<T>);
    uint8_t b[sizeof(T)];
    if (!Read(gpa, absl::MakeSpan(b, sizeof(T)))) return std::nullopt;
    return static_cast<T>(LoadLe(b, sizeof(T)));
  }
  template <typename T>
  bool WriteLe(GuestAddr gpa, T v) const {
    static_assert(std::is_unsigned_v<T>);
    uint8_t b[sizeof(T)];
    StoreLe(b, v, sizeof(T));
    return Write(gpa, absl::MakeConstSpan(b, sizeof(T)));
  }

 private:
  GuestMemory() = default;
  // Index of the region containing `addr`, or -1.
  int FindRegion(uint64_t addr) const;
  absl::Status Insert(GuestRamRegion r, bool owned_mapping);

  std::vector<GuestRamRegion> regions_;  // sorted by gpa, non-overlapping
  // The region of the last successful lookup, tried first (a data plane mostly touches one).
  mutable std::atomic<uint32_t> hint_{0};
  std::vector<bool> owns_mapping_;  // parallel to regions_: munmap on removal
  uint64_t generation_ = 0;
};

}  // namespace vdev

#endif  // VDEV_CORE_MEMORY_GUEST_MEMORY_H_
