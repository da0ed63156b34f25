// QOM and qdev micro-benchmarks, each next to a baseline measured in the same run:
//   type lookup by name          vs  absl::flat_hash_map<std::string, int> lookup
//   DynamicCast (hit / miss)     vs  C++ dynamic_cast on the same objects
//   property set from string     vs  std::from_chars into the same field type
//   create+realize+destroy of 1000 small devices through device_add/device_del
//                                vs  new/delete of 1000 objects of the same C++ class
// Targets (issue #2): cast <= 10 ns; lifecycle of 1000 devices <= 50 ms.
#include <charconv>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "bus/pci/pci_device.h"
#include "core/base/status_macros.h"
#include "core/qdev/bus.h"
#include "core/qdev/machine.h"
#include "core/qdev/sysbus.h"
#include "qom/object.h"

namespace vdev::bench {
namespace {

class BenchBus : public BusState {
 public:
  static constexpr char kTypeName[] = "bench-bus";
  using Parent = BusState;
};

class BenchBusHost : public SysBusDevice {
 public:
  static constexpr char kTypeName[] = "bench-bus-host";
  using Parent = SysBusDevice;
  BenchBusHost() : bus_(CreateChildBus<BenchBus>("bench.0")) {}
  BenchBus* bus_;
};

// A small device: two properties, a realize that does a little work.
class BenchDevice : public DeviceState {
 public:
  static constexpr char kTypeName[] = "bench-device";
  using Parent = DeviceState;
  static void ClassInit(DeviceClass& k) {
    k.bus_type = BenchBus::kTypeName;
    k.AddProperty(qom::Prop("queues", &BenchDevice::queues, uint32_t{1}, "queues"));
    k.AddProperty(qom::Prop("on", &BenchDevice::on, true, "on"));
  }
  uint32_t queues = 1;
  bool on = true;
  std::vector<uint64_t> state;

 protected:
  absl::Status Realize() override {
    state.assign(queues, 0);
    return DeviceState::Realize();
  }
  void Unrealize() override { state.clear(); }
};

class BenchMachine : public Machine {
 public:
  static constexpr char kTypeName[] = "bench-machine";
  using Parent = Machine;

 protected:
  absl::Status Init() override {
    VDEV_RETURN_IF_ERROR(Machine::Init());
    return AddBoardDevice(qom::MakeChecked<BenchBusHost>(), &sysbus(), "bench-host").status();
  }
};

VDEV_REGISTER_TYPE(BenchBus);
VDEV_REGISTER_TYPE(BenchBusHost);
VDEV_REGISTER_TYPE(BenchDevice);
VDEV_REGISTER_TYPE(BenchMachine);

// ---- type lookup ----

void BM_TypeLookup(benchmark::State& state) {
  qom::TypeRegistry& r = qom::TypeRegistry::Global();
  for (auto _ : state) benchmark::DoNotOptimize(r.Find("bench-device"));
}
BENCHMARK(BM_TypeLookup);

void BM_Baseline_HashMapLookup(benchmark::State& state) {
  absl::flat_hash_map<std::string, int> m;
  for (int i = 0; i < 40; ++i) m[absl::StrCat("type-", i)] = i;
  m["bench-device"] = 1;
  for (auto _ : state) benchmark::DoNotOptimize(m.find("bench-device"));
}
BENCHMARK(BM_Baseline_HashMapLookup);

// ---- casts ----

std::unique_ptr<qom::Object> MakeObject(const char* type) {
  return std::move(*qom::TypeRegistry::Global().Create(type));
}

void BM_DynamicCastHit(benchmark::State& state) {
  auto obj = MakeObject("i440FX");
  qom::Object* o = obj.get();
  for (auto _ : state) {
    benchmark::DoNotOptimize(o);
    benchmark::DoNotOptimize(qom::DynamicCast<pci::PCIDevice>(o));
  }
}
BENCHMARK(BM_DynamicCastHit);

void BM_DynamicCastMiss(benchmark::State& state) {
  auto obj = MakeObject("i440FX");
  qom::Object* o = obj.get();
  for (auto _ : state) {
    benchmark::DoNotOptimize(o);
    benchmark::DoNotOptimize(qom::DynamicCast<BusState>(o));
  }
}
BENCHMARK(BM_DynamicCastMiss);

void BM_DynamicCastInterfaceMiss(benchmark::State& state) {
  auto obj = MakeObject("i440FX");
  qom::Object* o = obj.get();
  for (auto _ : state) {
    benchmark::DoNotOptimize(o);
    benchmark::DoNotOptimize(qom::DynamicCast<HotplugHandler>(o));
  }
}
BENCHMARK(BM_DynamicCastInterfaceMiss);

void BM_Baseline_CxxDynamicCastHit(benchmark::State& state) {
  auto obj = MakeObject("i440FX");
  qom::Object* o = obj.get();
  for (auto _ : state) {
    benchmark::DoNotOptimize(o);
    benchmark::DoNotOptimize(dynamic_cast<pci::PCIDevice*>(o));
  }
}
BENCHMARK(BM_Baseline_CxxDynamicCastHit);

// ---- property set from string ----

void BM_PropertySetFromString(benchmark::State& state) {
  auto obj = MakeObject("bench-device");
  for (auto _ : state) benchmark::DoNotOptimize(obj->SetProperty("queues", "8"));
}
BENCHMARK(BM_PropertySetFromString);

void BM_Baseline_FromChars(benchmark::State& state) {
  auto obj = MakeObject("bench-device");
  auto* dev = static_cast<BenchDevice*>(obj.get());
  const std::string text = "8";
  for (auto _ : state) {
    benchmark::DoNotOptimize(std::from_chars(text.data(), text.data() + text.size(), dev->queues));
  }
}
BENCHMARK(BM_Baseline_FromChars);

// ---- lifecycle of 1000 devices ----

constexpr int kDevices = 1000;

void BM_Lifecycle1000Devices(benchmark::State& state) {
  auto m = Machine::Create("bench-machine");
  if (!m.ok()) {
    state.SkipWithError(std::string(m.status().message()).c_str());
    return;
  }
  std::vector<std::string> add(kDevices), ids(kDevices);
  for (int i = 0; i < kDevices; ++i) {
    ids[static_cast<size_t>(i)] = absl::StrCat("d", i);
    add[static_cast<size_t>(i)] = absl::StrCat("bench-device,id=d", i, ",queues=2");
  }
  for (auto _ : state) {
    for (int i = 0; i < kDevices; ++i) {
      auto d = (*m)->DeviceAdd(add[static_cast<size_t>(i)]);
      if (!d.ok()) state.SkipWithError(std::string(d.status().message()).c_str());
    }
    for (int i = kDevices - 1; i >= 0; --i) {
      if (!(*m)->DeviceDel(ids[static_cast<size_t>(i)]).ok()) state.SkipWithError("device_del");
    }
  }
  state.SetItemsProcessed(state.iterations() * kDevices);
}
BENCHMARK(BM_Lifecycle1000Devices)->Unit(benchmark::kMillisecond);

void BM_Baseline_NewDelete1000(benchmark::State& state) {
  std::vector<std::unique_ptr<BenchDevice>> devs(kDevices);
  for (auto _ : state) {
    for (auto& d : devs) d = std::make_unique<BenchDevice>();
    for (auto& d : devs) d.reset();
  }
  state.SetItemsProcessed(state.iterations() * kDevices);
}
BENCHMARK(BM_Baseline_NewDelete1000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace vdev::bench

BENCHMARK_MAIN();
