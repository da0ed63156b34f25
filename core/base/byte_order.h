// Little-endian loads and stores on byte buffers (QEMU's ldl_le_p / stl_le_p): config spaces,
// register files and guest structures are little-endian whatever the host is. `p` need not be
// aligned.
//
//   StoreLe16(config + kVendorId, 0x1af4);
//   uint32_t bar = LoadLe32(config + kBar0);
//   uint64_t v = LoadLe(buf + off, size);       // size 1..8, e.g. a register access's width
//
// Thread-safety: none needed (pure functions on caller-owned bytes).
#ifndef VDEV_CORE_BASE_BYTE_ORDER_H_
#define VDEV_CORE_BASE_BYTE_ORDER_H_

#include <cstdint>
#include <cstring>

namespace vdev {

namespace byte_order_internal {
template <typename T>
constexpr T FromLe(T v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  if constexpr (sizeof(T) == 2) return __builtin_bswap16(v);
  if constexpr (sizeof(T) == 4) return __builtin_bswap32(v);
  if constexpr (sizeof(T) == 8) return __builtin_bswap64(v);
#endif
  return v;
}
template <typename T>
inline T Load(const void* p) {
  T v;
  std::memcpy(&v, p, sizeof(v));
  return FromLe(v);
}
template <typename T>
inline void Store(void* p, T v) {
  v = FromLe(v);  // the swap is its own inverse
  std::memcpy(p, &v, sizeof(v));
}
}  // namespace byte_order_internal

inline uint16_t LoadLe16(const void* p) { return byte_order_internal::Load<uint16_t>(p); }
inline uint32_t LoadLe32(const void* p) { return byte_order_internal::Load<uint32_t>(p); }
inline uint64_t LoadLe64(const void* p) { return byte_order_internal::Load<uint64_t>(p); }
inline void StoreLe16(void* p, uint16_t v) { byte_order_internal::Store(p, v); }
inline void StoreLe32(void* p, uint32_t v) { byte_order_internal::Store(p, v); }
inline void StoreLe64(void* p, uint64_t v) { byte_order_internal::Store(p, v); }

// The low `size` bytes (1..8) at `p` as a little-endian value.
inline uint64_t LoadLe(const void* p, unsigned size) {
  const auto* b = static_cast<const uint8_t*>(p);
  uint64_t v = 0;
  for (unsigned i = 0; i < size && i < 8; ++i) v |= uint64_t{b[i]} << (8 * i);
  return v;
}
// Stores the low `size` bytes (1..8) of `v` at `p`, little-endian.
inline void StoreLe(void* p, uint64_t v, unsigned size) {
  auto* b = static_cast<uint8_t*>(p);
  for (unsigned i = 0; i < size && i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Network byte order (big-endian), for frame headers.
inline uint16_t LoadBe16(const void* p) {
  const auto* b = static_cast<const uint8_t*>(p);
  return static_cast<uint16_t>(b[0] << 8 | b[1]);
}
inline void StoreBe16(void* p, uint16_t v) {
  auto* b = static_cast<uint8_t*>(p);
  b[0] = static_cast<uint8_t>(v >> 8);
  b[1] = static_cast<uint8_t>(v);
}

}  // namespace vdev

#endif  // VDEV_CORE_BASE_BYTE_ORDER_H_
