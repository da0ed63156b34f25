// Memory-dispatch and PCI micro-benchmarks, each next to a baseline measured in the same run:
//   MMIO dispatch through an AddressSpace with 10 and 1000 regions (lookups spread over all the
//   regions)                      vs  calling the same handler directly (no lookup, no checks)
//   a config read through CF8/CFC (address write + data read, the way a guest does it)
//                                 vs  PCIDevice::ConfigRead on the same device
//   GuestMemory::Translate of a 1500-byte buffer (8 RAM regions)
//                                 vs  base + offset pointer arithmetic with no checks
// Target (issue #3): dispatch <= 25 ns per access with 1000 regions.
#include <memory>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "bus/pci/pci_device.h"
#include "bus/pci/pci_regs.h"
#include "core/memory/guest_memory.h"
#include "core/memory/memory.h"
#include "core/qdev/machine.h"

namespace vdev::bench {
namespace {

uint64_t Handler(MmioOffset off, unsigned size) { return off.value() + size; }

struct Regions {
  std::unique_ptr<MemoryRegion> root = MemoryRegion::CreateContainer("root", ~uint64_t{0});
  std::vector<std::unique_ptr<MemoryRegion>> regs;
  std::unique_ptr<AddressSpace> as;
  std::vector<uint64_t> addrs;  // access pattern: a shuffled walk over every region

  explicit Regions(int n) {
    {
      MemoryTransaction t;
      for (int i = 0; i < n; ++i) {
        MemoryRegionOps ops;
        ops.read = &Handler;
        ops.valid = {4, 4, false};
        regs.push_back(MemoryRegion::CreateIo("r", 0x1000, std::move(ops)));
        root->AddSubregion(0xc0000000 + uint64_t(i) * 0x2000, regs.back().get());
      }
    }
    as = std::make_unique<AddressSpace>("bench", root.get());
    std::mt19937_64 rng(42);
    for (int i = 0; i < 4096; ++i) {
      addrs.push_back(0xc0000000 + (rng() % n) * 0x2000 + (rng() % 0x400) * 4);
    }
  }
};

void MmioDispatch(benchmark::State& state) {
  Regions r(static_cast<int>(state.range(0)));
  size_t i = 0;
  for (auto _ : state) {
    uint64_t v;
    r.as->Read(r.addrs[i++ & 4095], 4, &v);
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(MmioDispatch)->Name("BM_MmioDispatch")->Arg(10)->Arg(1000);

void BM_Baseline_DirectHandlerCall(benchmark::State& state) {
  Regions r(10);
  const MemoryRegionOps& ops = r.regs[0]->ops();
  size_t i = 0;
  for (auto _ : state) {
    uint64_t v = ops.read(MmioOffset(r.addrs[i++ & 4095] & 0xfff), 4);
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_Baseline_DirectHandlerCall);

class BenchPciFunction : public pci::PCIDevice {
 public:
  static constexpr char kTypeName[] = "bench-pci-function";
  using Parent = pci::PCIDevice;
  static void ClassInit(pci::PCIDeviceClass& k) {
    k.vendor_id = 0x1234;
    k.device_id = 0x5678;
  }
};
VDEV_REGISTER_TYPE(BenchPciFunction);

struct PcWithDevice {
  std::unique_ptr<Machine> m;
  pci::PCIDevice* dev;
  PcWithDevice() {
    m = *Machine::Create("pc");
    dev = static_cast<pci::PCIDevice*>(*m->DeviceAdd("bench-pci-function,addr=5"));
  }
};

void BM_ConfigReadCf8Cfc(benchmark::State& state) {
  PcWithDevice pc;
  AddressSpace& io = pc.m->io_space();
  for (auto _ : state) {
    io.Write(0xcf8, 0x80000000u | (5u << 11) | pci::kVendorId, 4);
    uint64_t v = io.ReadValue(0xcfc, 4);
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_ConfigReadCf8Cfc);

void BM_Baseline_DirectConfigRead(benchmark::State& state) {
  PcWithDevice pc;
  for (auto _ : state) {
    uint32_t v = pc.dev->ConfigRead(pci::kVendorId, 4);
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_Baseline_DirectConfigRead);

struct Ram {
  std::unique_ptr<GuestMemory> mem = *GuestMemory::Create();
  std::vector<uint64_t> addrs;
  Ram() {
    for (int i = 0; i < 8; ++i) {
      (void)mem->AddRam(GuestAddr(uint64_t(i) << 28), 64 << 20, "ram");
    }
    std::mt19937_64 rng(7);
    for (int i = 0; i < 4096; ++i) addrs.push_back(((rng() % 8) << 28) + rng() % (60 << 20));
  }
};

void BM_GuestMemoryTranslate(benchmark::State& state) {
  Ram ram;
  std::vector<iovec> iov;
  iov.reserve(4);
  size_t i = 0;
  for (auto _ : state) {
    iov.clear();
    bool ok = ram.mem->Translate(GuestAddr(ram.addrs[i++ & 4095]), 1500, false, &iov);
    benchmark::DoNotOptimize(ok);
    benchmark::DoNotOptimize(iov.data());
  }
}
BENCHMARK(BM_GuestMemoryTranslate);

void BM_Baseline_UncheckedPointer(benchmark::State& state) {
  Ram ram;
  std::vector<iovec> iov;
  iov.reserve(4);
  uint8_t* bases[8];
  for (int r = 0; r < 8; ++r) bases[r] = ram.mem->regions()[static_cast<size_t>(r)].host;
  size_t i = 0;
  for (auto _ : state) {
    iov.clear();
    const uint64_t a = ram.addrs[i++ & 4095];
    iov.push_back(iovec{bases[a >> 28] + (a & ((1 << 28) - 1)), 1500});
    benchmark::DoNotOptimize(iov.data());
  }
}
BENCHMARK(BM_Baseline_UncheckedPointer);

}  // namespace
}  // namespace vdev::bench

BENCHMARK_MAIN();
