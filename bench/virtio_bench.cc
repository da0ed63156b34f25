// Split-virtqueue micro-benchmarks, each next to a baseline measured in the same run:
//   pop + push of a 1-descriptor, 2-descriptor and indirect (2-entry) chain, without and with
//   EVENT_IDX (ShouldNotify included)  vs  an unchecked consumer of the same ring that trusts
//   the driver (no validation, no bounds or RAM checks): the price of safety.
// The "driver" part (publishing the head) is the same two stores in both.
// Target (issue #4): <= 25 ns per 1-descriptor pop + push.
#include <cstring>
#include <memory>

#include "benchmark/benchmark.h"
#include "bus/virtio/virtio_uapi.h"
#include "bus/virtio/virtqueue.h"
#include "core/memory/guest_memory.h"
#include "tests/testing/virtio_ring.h"

namespace vdev::bench {
namespace {

using testing::GuestVring;
using virtio::PopResult;
using virtio::VirtQueue;
using virtio::VirtQueueElement;

constexpr uint16_t kSize = 256;

struct Ring {
  std::unique_ptr<GuestMemory> mem = *GuestMemory::Create();
  std::unique_ptr<GuestVring> ring;
  VirtQueue vq{0, kSize};
  uint8_t* avail = nullptr;  // host view of the available ring, for the driver side
  uint16_t avail_idx = 0;
  uint16_t head = 0;

  // kind: 1 = one descriptor, 2 = two, 3 = indirect with two entries.
  Ring(int kind, bool event_idx) {
    (void)mem->AddRam(GuestAddr(0), 16 << 20, "ram");
    ring = std::make_unique<GuestVring>(*mem, GuestAddr(0x10000), kSize);
    const GuestAddr data(0x100000);
    if (kind == 1) head = ring->AddChain({{data, 1500, true}});
    if (kind == 2) head = ring->AddChain({{data, 12, false}, {data + 0x1000, 1500, true}});
    if (kind == 3) {
      head =
          ring->AddIndirect({{data, 12, false}, {data + 0x1000, 1500, true}}, GuestAddr(0x200000));
    }
    vq.SetSize(kSize);
    vq.SetAddresses(ring->desc_addr(), ring->avail_addr(), ring->used_addr());
    vq.SetEnabled(true);
    vq.Freeze();
    vq.Activate(mem.get(), event_idx, true);
    avail = mem->HostPointer(ring->avail_addr(), 4 + 2 * kSize, true);
  }
  void Publish() {
    std::memcpy(avail + 4 + 2 * (avail_idx % kSize), &head, 2);
    ++avail_idx;
    __atomic_store_n(reinterpret_cast<uint16_t*>(avail + 2), avail_idx, __ATOMIC_RELEASE);
  }
};

void PopPush(benchmark::State& state) {
  Ring r(static_cast<int>(state.range(0)), state.range(1) != 0);
  VirtQueueElement e;
  for (auto _ : state) {
    r.Publish();
    if (r.vq.Pop(&e) != PopResult::kOk) state.SkipWithError("pop failed");
    r.vq.Push(e, 100);
    benchmark::DoNotOptimize(r.vq.ShouldNotify());
  }
}
BENCHMARK(PopPush)
    ->Name("BM_PopPush")
    ->ArgNames({"descs", "event_idx"})
    ->Args({1, 0})
    ->Args({2, 0})
    ->Args({3, 0})
    ->Args({1, 1})
    ->Args({2, 1})
    ->Args({3, 1});

// The same work with every check left out: trust the indices, the head, the descriptors and the
// addresses; one region, host pointer = base + address.
void BM_Baseline_UncheckedPopPush(benchmark::State& state) {
  Ring r(1, false);
  uint8_t* base = r.mem->HostPointer(GuestAddr(0), 16 << 20, true);
  uint8_t* desc = base + r.ring->desc_addr().value();
  uint8_t* used = base + r.ring->used_addr().value();
  uint16_t last = 0, used_idx = 0;
  iovec iov[4];
  for (auto _ : state) {
    r.Publish();
    const uint16_t idx =
        __atomic_load_n(reinterpret_cast<uint16_t*>(r.avail + 2), __ATOMIC_ACQUIRE);
    if (idx == last) continue;
    uint16_t head;
    std::memcpy(&head, r.avail + 4 + 2 * (last % kSize), 2);
    ++last;
    uint64_t addr;
    uint32_t len;
    std::memcpy(&addr, desc + 16 * head, 8);
    std::memcpy(&len, desc + 16 * head + 8, 4);
    iov[0] = iovec{base + addr, len};
    benchmark::DoNotOptimize(iov);
    const uint32_t id = head, written = 100;
    std::memcpy(used + 4 + 8 * (used_idx % kSize), &id, 4);
    std::memcpy(used + 8 + 8 * (used_idx % kSize), &written, 4);
    ++used_idx;
    __atomic_store_n(reinterpret_cast<uint16_t*>(used + 2), used_idx, __ATOMIC_RELEASE);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    benchmark::DoNotOptimize(r.avail[0] & VRING_AVAIL_F_NO_INTERRUPT);
  }
}
BENCHMARK(BM_Baseline_UncheckedPopPush);

}  // namespace
}  // namespace vdev::bench

BENCHMARK_MAIN();
