// Writes the seed corpus of the virtqueue fuzz target: the rings the unit tests build (a simple
// chain, a readable+writable chain, an indirect table, EVENT_IDX, 16-bit wrap, a chain across the
// hole), each as a header plus a RAM image. Usage: virtqueue_fuzz_seeds OUTDIR
#include <sys/stat.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bus/virtio/virtio_uapi.h"
#include "core/memory/guest_memory.h"
#include "tests/fuzz/virtqueue_fuzz_layout.h"
#include "tests/testing/virtio_ring.h"

using vdev::GuestAddr;
using vdev::testing::GuestVring;
using namespace vdev::fuzz;

namespace {

int Write(const std::string& dir, const std::string& name, uint8_t flags, uint16_t size,
          const std::function<void(vdev::GuestMemory&, GuestVring&)>& build) {
  auto mem = *vdev::GuestMemory::Create();
  if (!mem->AddRam(GuestAddr(0), kLowSize, "low").ok() ||
      !mem->AddRam(GuestAddr(kHighBase), kHighSize, "high").ok()) {
    return 1;
  }
  GuestVring ring(*mem, GuestAddr(0x1000), size);
  build(*mem, ring);
  FuzzHeader h{};
  for (uint16_t s = size; s > 1; s >>= 1) ++h.size_log2;
  h.flags = flags;
  h.desc = ring.desc_addr().value();
  h.avail = ring.avail_addr().value();
  h.used = ring.used_addr().value();
  std::vector<uint8_t> out(sizeof(h) + kLowSize + kHighSize);
  std::memcpy(out.data(), &h, sizeof(h));
  if (!mem->Read(GuestAddr(0), absl::MakeSpan(out.data() + sizeof(h), kLowSize)) ||
      !mem->Read(GuestAddr(kHighBase),
                 absl::MakeSpan(out.data() + sizeof(h) + kLowSize, kHighSize))) {
    return 1;
  }
  FILE* f = std::fopen((dir + "/" + name).c_str(), "wb");
  if (f == nullptr) return 1;
  const bool ok = std::fwrite(out.data(), 1, out.size(), f) == out.size();
  return std::fclose(f) == 0 && ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: virtqueue_fuzz_seeds OUTDIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  mkdir(dir.c_str(), 0755);
  const GuestAddr data(0x8000);
  int rc = 0;
  rc |= Write(dir, "simple", 0, 16, [&](auto&, GuestVring& r) {
    r.Publish(r.AddChain({{data, 64, true}}));
  });
  rc |= Write(dir, "out-in", 4, 16, [&](auto&, GuestVring& r) {
    r.Publish(r.AddChain({{data, 10, false}, {data + 0x100, 20, false}, {data + 0x200, 30, true}}));
    r.Publish(r.AddChain({{data + 0x300, 8, true}}));
  });
  rc |= Write(dir, "indirect", 2, 16, [&](auto&, GuestVring& r) {
    r.Publish(r.AddIndirect({{data, 10, false}, {data + 0x100, 30, true}}, GuestAddr(0x6000)));
  });
  rc |= Write(dir, "event-idx", 1 | 4, 8, [&](auto&, GuestVring& r) {
    r.SetUsedEvent(1);
    for (int i = 0; i < 3; ++i) r.Publish(r.AddChain({{data + 0x40 * i, 16, true}}));
  });
  rc |= Write(dir, "across-regions", 2, 16, [&](auto&, GuestVring& r) {
    r.Publish(r.AddChain({{GuestAddr(kLowSize - 8), 8, false}, {GuestAddr(kHighBase), 16, true}}));
  });
  rc |= Write(dir, "unpop", 8, 4, [&](auto&, GuestVring& r) {
    for (int i = 0; i < 4; ++i) r.Publish(r.AddChain({{data + 0x10 * i, 16, true}}));
  });
  return rc;
}
