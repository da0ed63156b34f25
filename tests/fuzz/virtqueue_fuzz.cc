// libFuzzer target for the split-virtqueue parser (bus/virtio/virtqueue.cc).
//
// The input is a queue configuration header followed by an image of guest RAM: the fuzzer owns
// the descriptor table, the available ring, indirect tables and every index. Guest memory is two
// RAM regions with a hole between them, so chains cross regions and holes. The "device" pops
// until empty or broken, pushes each element back with a fuzzer-chosen length, and exercises
// notification suppression. Whatever the input: no crash, no hang, no out-of-bounds access, no
// leak, in-flight never above the queue size.
//
//   build (clang): cmake -DVDEV_BUILD_FUZZ=ON ...; run: virtqueue_fuzz -max_total_time=60 CORPUS
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "bus/virtio/virtqueue.h"
#include "core/memory/guest_memory.h"
#include "tests/fuzz/virtqueue_fuzz_layout.h"

using vdev::GuestAddr;
using vdev::GuestMemory;
using namespace vdev::virtio;
using namespace vdev::fuzz;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < sizeof(FuzzHeader)) return 0;
  FuzzHeader h;
  std::memcpy(&h, data, sizeof(h));
  data += sizeof(h);
  size -= sizeof(h);

  static GuestMemory* mem = [] {
    auto m = GuestMemory::Create();
    GuestMemory* g = m->release();
    if (!g->AddRam(GuestAddr(0), kLowSize, "low").ok() ||
        !g->AddRam(GuestAddr(kHighBase), kHighSize, "high").ok()) {
      std::abort();
    }
    return g;
  }();
  // Load the image: low region first, then the high one; the rest stays zero.
  uint8_t* low = mem->HostPointer(GuestAddr(0), kLowSize, true);
  uint8_t* high = mem->HostPointer(GuestAddr(kHighBase), kHighSize, true);
  std::memset(low, 0, kLowSize);
  std::memset(high, 0, kHighSize);
  const size_t n_low = size < kLowSize ? size : kLowSize;
  std::memcpy(low, data, n_low);
  if (size > n_low)
    std::memcpy(high, data + n_low, size - n_low < kHighSize ? size - n_low : kHighSize);

  VirtQueue vq(0, 256);
  vq.SetSize(static_cast<uint16_t>(1u << (h.size_log2 % 10)));  // may be refused: fine
  vq.SetAddresses(GuestAddr(h.desc), GuestAddr(h.avail), GuestAddr(h.used));
  vq.SetEnabled(true);
  vq.SetRingPositions(h.last_avail, h.used_idx);
  vq.Freeze();
  if (!vq.Activate(mem, h.flags & 1, h.flags & 2)) return 0;
  vq.SetNotification(h.flags & 4);
  VirtQueueElement e;
  for (int i = 0; i < 4 * 256 + 4; ++i) {
    const PopResult r = vq.Pop(&e);
    if (r != PopResult::kOk) break;
    if (vq.in_flight() > vq.size()) std::abort();
    // Touch every segment: they must all be inside guest RAM.
    for (const iovec& v : e.out) {
      volatile uint8_t sink = static_cast<const uint8_t*>(v.iov_base)[v.iov_len - 1];
      (void)sink;
    }
    for (const iovec& v : e.in) std::memset(v.iov_base, 0x5a, v.iov_len);
    if ((h.flags & 8) && (i & 1)) {
      vq.Unpop(e);
      if (vq.Pop(&e) != PopResult::kOk) break;
    }
    vq.Push(e, static_cast<uint32_t>(e.in_len) ^ h.len_xor);
    vq.ShouldNotify();
  }
  vq.SetNotification(true);
  vq.Empty();
  return 0;
}
