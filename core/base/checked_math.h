// Overflow-checked arithmetic for values that come from a guest, a peer or a user.
// Every size or address computed from untrusted input goes through these.
//
// Example:
//   std::optional<uint64_t> end = CheckedAdd(addr, len);
//   if (!end || *end > limit) return RejectAccess();
#ifndef VDEV_CORE_BASE_CHECKED_MATH_H_
#define VDEV_CORE_BASE_CHECKED_MATH_H_

#include <concepts>
#include <cstdint>
#include <optional>

namespace vdev {

template <std::integral T>
constexpr std::optional<T> CheckedAdd(T a, T b) {
  T r;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

template <std::integral T>
constexpr std::optional<T> CheckedSub(T a, T b) {
  T r;
  if (__builtin_sub_overflow(a, b, &r)) return std::nullopt;
  return r;
}

template <std::integral T>
constexpr std::optional<T> CheckedMul(T a, T b) {
  T r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// True when [start, start + len) lies inside [base, base + size) without any wrap-around.
// A zero-length range is inside when start lies in [base, base + size].
constexpr bool RangeWithin(uint64_t start, uint64_t len, uint64_t base, uint64_t size) {
  if (start < base) return false;
  const uint64_t off = start - base;
  if (off > size) return false;
  return len <= size - off;
}

// True when [a, a + alen) and [b, b + blen) share at least one byte. Lengths of zero never overlap.
constexpr bool RangesOverlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
  if (alen == 0 || blen == 0) return false;
  // Compare using the last byte so that ranges ending at 2^64 do not wrap.
  const uint64_t a_last = a + (alen - 1);
  const uint64_t b_last = b + (blen - 1);
  if (a_last < a || b_last < b) {
    // Wrapping ranges are invalid input; treat as overlapping everything to stay safe.
    return true;
  }
  return a <= b_last && b <= a_last;
}

constexpr bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// Rounds `v` up to a multiple of `align` (a power of two); nullopt on overflow.
constexpr std::optional<uint64_t> AlignUp(uint64_t v, uint64_t align) {
  if (!IsPowerOfTwo(align)) return std::nullopt;
  auto r = CheckedAdd<uint64_t>(v, align - 1);
  if (!r) return std::nullopt;
  return *r & ~(align - 1);
}

}  // namespace vdev

#endif  // VDEV_CORE_BASE_CHECKED_MATH_H_
