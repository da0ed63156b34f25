// Strong integer types for addresses and offsets, so a guest physical address cannot be passed
// where an MMIO offset or an I/O port is expected.
//
// Example:
//   GuestAddr ring = GuestAddr(0x10000);
//   MmioOffset off = MmioOffset(0x14);
//   uint64_t raw = ring.value();
#ifndef VDEV_CORE_BASE_STRONG_TYPES_H_
#define VDEV_CORE_BASE_STRONG_TYPES_H_

#include <compare>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/strings/str_format.h"

namespace vdev {

// A tagged wrapper over an unsigned integer. Explicit construction, explicit `.value()`,
// comparison, and addition of a raw offset. No implicit conversions in either direction.
template <typename Tag, typename Rep>
class StrongInt {
 public:
  using rep_type = Rep;
  constexpr StrongInt() = default;
  constexpr explicit StrongInt(Rep v) : v_(v) {}
  constexpr Rep value() const { return v_; }
  constexpr auto operator<=>(const StrongInt&) const = default;
  constexpr StrongInt operator+(Rep off) const { return StrongInt(static_cast<Rep>(v_ + off)); }
  constexpr Rep operator-(StrongInt other) const { return static_cast<Rep>(v_ - other.v_); }

  template <typename H>
  friend H AbslHashValue(H h, StrongInt s) {
    return H::combine(std::move(h), s.v_);
  }
  friend std::string ToString(StrongInt s) { return absl::StrFormat("0x%x", s.v_); }

 private:
  Rep v_ = 0;
};

struct GuestAddrTag {};
struct MmioOffsetTag {};
struct IoPortTag {};

using GuestAddr = StrongInt<GuestAddrTag, uint64_t>;    // guest physical address
using MmioOffset = StrongInt<MmioOffsetTag, uint64_t>;  // offset inside a memory region
using IoPort = StrongInt<IoPortTag, uint16_t>;          // x86 port I/O address

}  // namespace vdev

#endif  // VDEV_CORE_BASE_STRONG_TYPES_H_
