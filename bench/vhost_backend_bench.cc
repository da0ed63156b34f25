// vdev as a vhost-user backend against DPDK's own vhost PMD, both driven by DPDK's virtio-user
// driver (testpmd with net_virtio_user), in the same run, rounds alternating:
//
//   vhost-user-backend-<size>/into     the driver transmits (txonly) into the backend: ours is a
//                                      virtio-net-device on vhost-user-backend whose netdev drops
//                                      every frame (loopback,reflect=off); DPDK's is the vhost PMD
//                                      in rxonly. The figure is the driver's best Tx-pps second.
//   vhost-user-backend-<size>/out-of   the backend generates into the driver's receive ring
//                                      (rxonly): ours injects bursts of 32 frames into the netdev
//                                      as fast as the device takes them; DPDK's is the vhost PMD
//                                      in txonly (bursts of 32).
//                                      The figure is the driver's best Rx-pps second.
//
// Sizes 64 and 1500. The backends' busy thread (our machine's loop, which serves kicks and the
// receive path; testpmd's forwarding lcore) runs on CPU 0 and the driver's forwarding lcore on
// CPU 1. Medians over the rounds. Prints `BENCH <case> frames_per_s=<v> baseline=<v> ratio=<v>`.
//
// Usage: vhost_backend_bench [--rounds=N] [--seconds=S] [64|1500 ...]
#include <sched.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "core/qdev/machine.h"
#include "hw/virtio/vhost_user_backend.h"
#include "net/loopback.h"
#include "tests/testing/dpdk_testpmd.h"

namespace vdev::bench {
namespace {

using testing::TestPmd;

int rounds = 3;
double seconds = 4;
bool iothread = true;  // the device's queues and its netdev on an iothread that busy-polls

std::vector<uint8_t> Frame(size_t size) {
  std::vector<uint8_t> f(size, 0);
  const uint8_t dst[6] = {0x02, 0xbe, 0xbe, 0x00, 0x00, 0x01};
  const uint8_t src[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  std::memcpy(f.data(), dst, 6);
  std::memcpy(f.data() + 6, src, 6);
  f[12] = 0x88;
  f[13] = 0xb5;
  for (size_t i = 14; i < size; ++i) f[i] = static_cast<uint8_t>(i);
  return f;
}

void PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof(set), &set);
}

// Our backend in this process: its machine's threads start on CPU 0.
struct Ours {
  std::unique_ptr<Machine> m;
  net::Loopback* lo = nullptr;
  virtio::VhostUserBackend* vu = nullptr;

  bool Start(const std::string& sock) {
    PinTo(0);  // threads made from here on inherit it
    auto m_or = Machine::Create("none");
    if (!m_or.ok()) return false;
    m = std::move(*m_or);
    auto c = m->ObjectAdd("chardev", "socket,id=c1,server=on,path=" + sock);
    if (iothread && !m->ObjectAdd("object", "iothread,id=io0").ok()) return false;
    const std::string io = iothread ? ",iothread=io0" : "";
    auto nd = m->ObjectAdd("netdev", "loopback,id=l0,reflect=off" + io);
    auto d = m->DeviceAdd("vhost-user-backend,id=vu0,chardev=c1");
    auto n = m->DeviceAdd("virtio-net-device,bus=vu0.0,netdev=l0" + io);
    PinTo(1);
    if (!c.ok() || !nd.ok() || !d.ok() || !n.ok()) {
      fprintf(stderr, "vhost_backend_bench: cannot build the backend\n");
      return false;
    }
    lo = static_cast<net::Loopback*>(*nd);
    vu = static_cast<virtio::VhostUserBackend*>(*d);
    return true;
  }
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

void Report(const std::string& name, double ours, double base) {
  printf("BENCH %s frames_per_s=%.0f baseline=%.0f ratio=%.3f\n", name.c_str(), ours, base,
         base > 0 ? ours / base : 0.0);
  fflush(stdout);
}

// The driver transmits into the backend.
double IntoOurs(const std::string& sock, int size) {
  Ours ours;
  if (!ours.Start(sock)) return 0;
  auto driver = TestPmd::StartVirtioUser(sock, "txonly", size, "0@0,1@1");
  if (!driver.ok()) return 0;
  absl::SleepFor(absl::Seconds(seconds + 1.5));
  (*driver)->Stop();
  return (*driver)->BestPps("Tx-pps:");
}

double IntoDpdk(const std::string& sock, int size) {
  auto backend = TestPmd::StartVhostBackend(sock, "rxonly", false, "0@1,1@0");
  if (!backend.ok()) return 0;
  auto driver = TestPmd::StartVirtioUser(sock, "txonly", size, "0@0,1@1");
  if (!driver.ok()) return 0;
  absl::SleepFor(absl::Seconds(seconds + 1.5));
  (*driver)->Stop();
  (*backend)->Stop();
  return (*driver)->BestPps("Tx-pps:");
}

// The backend generates into the driver's receive ring.
double OutOfOurs(const std::string& sock, int size) {
  Ours ours;
  if (!ours.Start(sock)) return 0;
  auto driver = TestPmd::StartVirtioUser(sock, "rxonly", size, "0@0,1@1");
  if (!driver.ok()) return 0;
  std::atomic<bool> stop{false};
  std::thread gen([&] {
    PinTo(0);
    const std::vector<uint8_t> f = Frame(size);
    while (!stop.load(std::memory_order_relaxed)) {
      // Bursts of 32, as testpmd's txonly: short when the driver's ring is full (the frame that
      // did not fit waits at the device) or the device is not running yet.
      if (ours.lo->InjectBurst(f, 32) < 32) sched_yield();
    }
  });
  absl::SleepFor(absl::Seconds(seconds + 1.5));
  stop = true;
  gen.join();
  (*driver)->Stop();
  return (*driver)->BestPps("Rx-pps:");
}

double OutOfDpdk(const std::string& sock, int size) {
  auto backend = TestPmd::StartVhostBackend(sock, "txonly", false, "0@1,1@0", 1, size);
  if (!backend.ok()) return 0;
  auto driver = TestPmd::StartVirtioUser(sock, "rxonly", size, "0@0,1@1");
  if (!driver.ok()) return 0;
  absl::SleepFor(absl::Seconds(seconds + 1.5));
  (*driver)->Stop();
  (*backend)->Stop();
  return (*driver)->BestPps("Rx-pps:");
}

void Case(int size) {
  char tmpl[] = "/tmp/vdev-vubench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return;
  const std::string dir = tmpl;
  const std::string sock = dir + "/vu.sock";
  std::vector<double> into_ours, into_dpdk, out_ours, out_dpdk;
  for (int r = 0; r < rounds; ++r) {
    into_ours.push_back(IntoOurs(sock, size));
    into_dpdk.push_back(IntoDpdk(sock, size));
    out_ours.push_back(OutOfOurs(sock, size));
    out_dpdk.push_back(OutOfDpdk(sock, size));
    fprintf(stderr,
            "vhost_backend_bench: %d B round %d: into ours %.0f dpdk %.0f; out of ours %.0f dpdk "
            "%.0f\n",
            size, r, into_ours.back(), into_dpdk.back(), out_ours.back(), out_dpdk.back());
  }
  std::filesystem::remove_all(dir);
  const std::string name = absl::StrCat("vhost-user-backend-", size);
  Report(name + "/into", Median(into_ours), Median(into_dpdk));
  Report(name + "/out-of", Median(out_ours), Median(out_dpdk));
}

}  // namespace
}  // namespace vdev::bench

int main(int argc, char** argv) {
  // Debian's Abseil is built without NDEBUG: its Mutex checks lock order on every acquisition.
  // The tests keep that check; a running machine does not pay for it (docs/performance.md).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::vector<int> sizes;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--rounds=", 0) == 0) {
      vdev::bench::rounds = std::max(1, atoi(a.c_str() + 9));
    } else if (a.rfind("--seconds=", 0) == 0) {
      vdev::bench::seconds = std::max(0.05, atof(a.c_str() + 10));
    } else if (a == "--no-iothread") {
      vdev::bench::iothread = false;
    } else if (a == "64" || a == "1500") {
      sizes.push_back(atoi(a.c_str()));
    } else {
      fprintf(stderr,
              "vhost_backend_bench: unknown argument '%s' (64 1500 --rounds=N --seconds=S "
              "--no-iothread)\n",
              argv[i]);
      return 1;
    }
  }
  if (!vdev::testing::TestPmd::Available()) {
    fprintf(stderr, "vhost_backend_bench: skipped: %s\n", vdev::testing::TestPmd::kMissing);
    return 0;
  }
  if (sizes.empty()) sizes = {64, 1500};
  for (int s : sizes) vdev::bench::Case(s);
  return 0;
}
