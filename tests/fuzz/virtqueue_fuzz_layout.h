// The input layout shared by the virtqueue fuzz target and its seed generator.
#ifndef VDEV_TESTS_FUZZ_VIRTQUEUE_FUZZ_LAYOUT_H_
#define VDEV_TESTS_FUZZ_VIRTQUEUE_FUZZ_LAYOUT_H_

#include <cstdint>

namespace vdev::fuzz {

inline constexpr uint64_t kLowSize = 0x10000;   // RAM [0, 64 KiB)
inline constexpr uint64_t kHighBase = 0x11000;  // a 4 KiB hole, then RAM [0x11000, 0x13000)
inline constexpr uint64_t kHighSize = 0x2000;

#pragma pack(push, 1)
struct FuzzHeader {
  uint8_t size_log2;  // queue size = 1 << (size_log2 % 10)
  uint8_t flags;      // 1: EVENT_IDX, 2: INDIRECT_DESC, 4: kicks wanted, 8: unpop every other
  uint16_t last_avail;
  uint16_t used_idx;
  uint32_t len_xor;  // pushed length = writable bytes ^ len_xor
  uint64_t desc, avail, used;
};
#pragma pack(pop)

}  // namespace vdev::fuzz

#endif  // VDEV_TESTS_FUZZ_VIRTQUEUE_FUZZ_LAYOUT_H_
