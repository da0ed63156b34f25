// Network data-path benchmarks, each against a baseline measured in the same run, back to back:
//
//   tap-tx-64, tap-tx-1500   frames/s from the software guest through virtio-net-pci into a TAP
//                            vs the best raw method writing the same frames (vnet header + frame)
//                            from the same buffers: one writev per frame, io_uring batches of
//                            writev (the device's batch size), or either into a TAP opened with
//                            IFF_NAPI (and IFF_NAPI_FRAGS) where the kernel allows
//   tap-rx-64, tap-rx-1500   frames/s from a TAP into guest buffers (a burst injected with an
//                            AF_PACKET socket, drained by the device) vs the best raw method
//                            reading the same burst: one read per frame or io_uring batches of
//                            readv, from a plain and from an IFF_NAPI TAP
//   loop-tx-64               device overhead alone: the guest through virtio-net-pci into the
//                            `loopback` netdev vs the same guest loop on a bare virtqueue
//   loop-rx-64               its receive twin: the `loopback` injecting into the guest's buffers
//                            vs a bare virtqueue consumer copying header + frame into them
//   vhost-user-64            64-byte frames/s from the software guest through virtio-net-pci with
//                            -netdev vhost-user into DPDK testpmd (rxonly) vs DPDK's own virtio
//                            driver (net_virtio_user, txonly) into the same testpmd; both figures
//                            are the receiving testpmd's best Rx-pps second, median over rounds
//
// Prints `BENCH <case> frames_per_s=<v> baseline=<v> ratio=<v>` per case (the TAP cases add
// `raw=<method>`: the raw method that won, each method's figure on stderr). Each side runs
// `--rounds` times alternately; the best round of each counts (the machine is shared and noisy).
// The TAP cases need root (a TAP in a private network namespace); otherwise they are skipped with
// the reason on stderr.
//
// Usage: net_bench [--rounds=N] [--seconds=S] [CASE...]
#include "bench/net_bench.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/tap_raw.h"
#include "bus/pci/i440fx.h"
#include "bus/virtio/chain_io.h"
#include "bus/virtio/virtio_uapi.h"
#include "bus/virtio/virtqueue.h"
#include "core/loop/io_uring.h"
#include "core/qdev/machine.h"
#include "hw/net/virtio_net/pci.h"
#include "net/loopback.h"
#include "net/tap.h"
#include "net/virtio_net_uapi.h"
#include "tests/testing/dpdk_testpmd.h"
#include "tests/testing/pci_guest.h"
#include "tests/testing/virtio_pci_driver.h"
#include "tests/testing/virtio_ring.h"

namespace vdev::bench {
namespace {

int rounds = 3;
double seconds = 0.5;

constexpr uint64_t kFeatures = Bit(VIRTIO_F_VERSION_1) | Bit(VIRTIO_NET_F_MAC) |
                               Bit(VIRTIO_NET_F_MRG_RXBUF) | Bit(VIRTIO_RING_F_EVENT_IDX) |
                               Bit(VIRTIO_NET_F_CSUM) | Bit(VIRTIO_NET_F_GUEST_CSUM);

// Runs `batch_fn` (which moves `batch` frames) until `seconds` passed; returns frames per second.
template <typename Fn>
double Rate(uint64_t batch, Fn batch_fn) {
  uint64_t n = 0;
  const auto t0 = Clock::now();
  do {
    batch_fn();
    n += batch;
  } while (Seconds(t0, Clock::now()) < seconds);
  return n / Seconds(t0, Clock::now());
}

void Report(const std::string& name, double ours, double base, const std::string& raw = "") {
  printf("BENCH %s frames_per_s=%.0f baseline=%.0f ratio=%.3f%s\n", name.c_str(), ours, base,
         base > 0 ? ours / base : 0.0, raw.empty() ? "" : (" raw=" + raw).c_str());
  fflush(stdout);
}

void TapTx(size_t size) {
  const std::string name = absl::StrCat("tap-tx-", size);
  TapEnv env;
  if (std::string why = env.Setup(); !why.empty()) {
    fprintf(stderr, "net_bench: %s skipped: %s\n", name.c_str(), why.c_str());
    return;
  }
  const int id = getpid() % 100000;
  const std::string ours_if = absl::StrCat("vdbt", id);
  Guest g;
  if (!g.Build(absl::StrCat("tap,id=n0,ifname=", ours_if, ",script=no"), kFeatures)) return;
  if (!env.Adopt(ours_if)) {
    fprintf(stderr, "net_bench: %s skipped: cannot set up the TAP\n", name.c_str());
    return;
  }
  const auto frame = Frame(size);
  g.PrepareTx(frame);
  // The raw methods write the same frames, from the same guest buffers (header + frame), into
  // the TAP the device writes to; the NAPI ones into TAPs set up the same way with IFF_NAPI
  // (IFF_NAPI_FRAGS), which only a TAP's creation can ask for.
  const int tap_fd = static_cast<net::Tap*>(g.netdev())->fd(0);
  std::vector<iovec> slots(kRing);
  for (uint16_t i = 0; i < kRing; ++i) slots[i] = {g.TxHost(i, kHdr + size), kHdr + size};
  const uint64_t batch = 256 * 64;
  auto ring = IoUring::Create(2 * kUringBatch);
  if (!ring.ok()) fprintf(stderr, "net_bench: no io_uring: %s\n", ring.status().ToString().c_str());
  const int napi = ExtraTap(env, absl::StrCat("vdbn", id), IFF_NAPI, "IFF_NAPI");
  const int frags =
      ExtraTap(env, absl::StrCat("vdbf", id), IFF_NAPI | IFF_NAPI_FRAGS, "IFF_NAPI_FRAGS");
  RawMethods raw;
  auto add = [&](const std::string& method, int fd) {
    if (fd < 0) return;
    // A method whose write fails is not a baseline (a failed write would count as sent).
    if (writev(fd, &slots[0], 1) != static_cast<ssize_t>(slots[0].iov_len)) {
      fprintf(stderr, "net_bench: %s: %s writes fail: %s\n", name.c_str(), method.c_str(),
              strerror(errno));
      return;
    }
    raw.Add(method + "writev", [&, fd] {
      return Rate(batch, [&] {
        for (uint64_t i = 0; i < batch; ++i) (void)!writev(fd, &slots[i % kRing], 1);
      });
    });
    if (ring.ok()) {
      raw.Add(method + "io_uring",
              [&, fd] { return Rate(batch, [&] { UringWrites(**ring, fd, slots, batch); }); });
    }
  };
  add("", tap_fd);
  add("napi-", napi);
  add("napi-frags-", frags);
  double best_ours = 0;
  for (int r = 0; r < rounds; ++r) {
    raw.RunRound();
    best_ours = std::max(best_ours, Rate(batch, [&] { g.Transmit(batch); }));  // the device
  }
  const auto [base, which] = raw.Best(name);
  Report(name, best_ours, base, which);
  if (napi >= 0) close(napi);
  if (frags >= 0) close(frags);
}

void TapRx(size_t size) {
  const std::string name = absl::StrCat("tap-rx-", size);
  TapEnv env;
  if (std::string why = env.Setup(); !why.empty()) {
    fprintf(stderr, "net_bench: %s skipped: %s\n", name.c_str(), why.c_str());
    return;
  }
  const int id = getpid() % 100000;
  const std::string ours_if = absl::StrCat("vdbt", id);
  const std::string base_if = absl::StrCat("vdbb", id);
  const std::string napi_if = absl::StrCat("vdbn", id);
  Guest g;
  if (!g.Build(absl::StrCat("tap,id=n0,ifname=", ours_if, ",script=no"), kFeatures)) return;
  const int raw_fd = RawTap(base_if);
  if (raw_fd < 0 || !env.Adopt(ours_if) || !env.Adopt(base_if)) {
    fprintf(stderr, "net_bench: %s skipped: cannot set up the TAPs\n", name.c_str());
    return;
  }
  const int napi = ExtraTap(env, napi_if, IFF_NAPI, "IFF_NAPI");
  g.PrepareRx();
  const auto frame = Frame(size);
  const int burst = 16384;
  auto ring = IoUring::Create(2 * kUringBatch);
  if (!ring.ok()) fprintf(stderr, "net_bench: no io_uring: %s\n", ring.status().ToString().c_str());
  RawMethods raw;
  bool injected = true;
  // Each raw round: the burst queued at the TAP, then drained (a failed injection ends the case).
  auto add = [&](const std::string& method, const std::string& ifname, int fd) {
    if (fd < 0) return;
    raw.Add(method + "read", [&, ifname, fd] {
      injected = injected && env.Inject(ifname, frame, burst);
      return injected ? ReadBurst(fd, burst) : 0.0;
    });
    if (ring.ok()) {
      raw.Add(method + "io_uring", [&, ifname, fd] {
        injected = injected && env.Inject(ifname, frame, burst);
        return injected ? UringReadBurst(**ring, fd, burst) : 0.0;
      });
    }
  };
  add("", base_if, raw_fd);
  add("napi-", napi_if, napi);
  double best_ours = 0;
  for (int r = 0; r < rounds && injected; ++r) {
    raw.RunRound();
    // Ours: the device drains the same burst into guest buffers. Injected while the guest has
    // no buffers (the TAP holds the frames), timed from the first frame in.
    if (!env.Inject(ours_if, frame, burst)) injected = false;
    if (!injected) break;
    Clock::time_point first;
    const uint64_t got = g.Receive(burst - kRing, &first);
    best_ours = std::max(best_ours, got / Seconds(first, Clock::now()));
  }
  close(raw_fd);
  if (napi >= 0) close(napi);
  if (!injected) {
    fprintf(stderr, "net_bench: %s: injection failed\n", name.c_str());
    return;
  }
  if (getenv("NET_BENCH_COUNTERS")) {
    for (auto [k, v] : g.net()->counters().Snapshot())
      fprintf(stderr, "  nic %s=%lu\n", k.c_str(), v);
    for (auto [k, v] : g.netdev()->queue(0)->counters().Snapshot())
      fprintf(stderr, "  tap %s=%lu\n", k.c_str(), v);
    for (auto [k, v] : g.net()->nic(0)->counters().Snapshot())
      fprintf(stderr, "  nc %s=%lu\n", k.c_str(), v);
  }
  const auto [base, which] = raw.Best(name);
  Report(name, best_ours, base, which);
}

// A bare virtqueue over its own guest memory and ring, the loop cases' baseline.
struct BareRing {
  BareRing() : mem(*GuestMemory::Create()) {
    (void)mem->AddRam(GuestAddr(0), 64 << 20, "ram");
    ring = std::make_unique<GuestVring>(*mem, GuestAddr(kRingBase), kRing);
    vq.SetSize(kRing);
    vq.SetAddresses(ring->desc_addr(), ring->avail_addr(), ring->used_addr());
    vq.SetEnabled(true);
    vq.Freeze();
    vq.Activate(mem.get(), true, true);
  }
  std::unique_ptr<GuestMemory> mem;
  std::unique_ptr<GuestVring> ring;
  virtio::VirtQueue vq{1, kRing};
};

void LoopTx() {
  Guest g;
  if (!g.Build("loopback,id=n0,reflect=off", kFeatures)) return;
  const auto frame = Frame(64);
  g.PrepareTx(frame);
  // Baseline: the same guest loop on a bare virtqueue with a pop + fill consumer that publishes
  // its completions once per pass.
  BareRing bare;
  for (uint16_t i = 0; i < kRing; ++i) {
    bare.ring->WriteDesc(i, kBufBase + i * kBuf, kHdr + 64, 0, 0);
  }
  const uint64_t batch = 256 * 256;
  double best_ours = 0, best_base = 0;
  virtio::VirtQueueElement e;
  for (int r = 0; r < rounds; ++r) {
    best_base = std::max(best_base, Rate(batch, [&] {
                           for (uint64_t done = 0; done < batch;) {
                             for (uint16_t i = 0; i < kRing; ++i) bare.ring->Publish(i);
                             uint16_t k = 0;
                             while (bare.vq.Pop(&e) == virtio::PopResult::kOk)
                               bare.vq.Fill(e, 0, k++);
                             bare.vq.Flush(k);
                             done += bare.ring->TakeUsed().size();
                           }
                         }));
    best_ours = std::max(best_ours, Rate(batch, [&] { g.Transmit(batch); }));
  }
  Report("loop-tx-64", best_ours, best_base);
}

// The receive twin: the loopback injects 64-byte frames (a burst per ring of buffers) that the
// NIC writes into the guest's buffers; the baseline is a bare virtqueue whose consumer copies a
// header and the frame into each writable buffer and publishes once per pass.
void LoopRx() {
  Guest g;
  if (!g.Build("loopback,id=n0,reflect=off", kFeatures)) return;
  auto* lo = static_cast<net::Loopback*>(g.netdev());
  g.PrepareRx();
  const auto frame = Frame(64);
  BareRing bare;
  for (uint16_t i = 0; i < kRing; ++i) {
    bare.ring->WriteDesc(i, kBufBase + i * kBuf, kBuf, VRING_DESC_F_WRITE, 0);
  }
  virtio_net_hdr_mrg_rxbuf hdr{};
  hdr.num_buffers = 1;
  const uint64_t batch = 256 * 256;
  double best_ours = 0, best_base = 0;
  virtio::VirtQueueElement e;
  for (int r = 0; r < rounds; ++r) {
    if (getenv("NET_BENCH_OURS_ONLY") == nullptr) {
      best_base = std::max(best_base, Rate(batch, [&] {
                             for (uint64_t done = 0; done < batch;) {
                               for (uint16_t i = 0; i < kRing; ++i) bare.ring->Publish(i);
                               uint16_t k = 0;
                               while (bare.vq.Pop(&e) == virtio::PopResult::kOk) {
                                 virtio::CopyToSegments(e.in, 0, &hdr, kHdr);
                                 virtio::CopyToSegments(e.in, kHdr, frame.data(), frame.size());
                                 bare.vq.Fill(e, kHdr + 64, k++);
                               }
                               bare.vq.Flush(k);
                               done += bare.ring->TakeUsed().size();
                             }
                           }));
    }
    bool stalled = false;
    best_ours = std::max(
        best_ours, Rate(batch, [&] {
          stalled = stalled || !g.ReceiveFrom(batch, [&](int n) { lo->InjectBurst(frame, n); });
        }));
    if (stalled) {
      fprintf(stderr, "net_bench: loop-rx-64: the device stopped taking frames\n");
      return;
    }
  }
  Report("loop-rx-64", best_ours, best_base);
}

// The receiving testpmd prints Rx-pps once a second: the best second after the first.
double BestRxPps(const std::string& log) {
  double best = 0;
  int seen = 0;
  for (size_t at = log.find("Rx-pps:"); at != std::string::npos; at = log.find("Rx-pps:", at + 1)) {
    const double v = std::strtod(log.c_str() + at + 7, nullptr);
    if (++seen > 1) best = std::max(best, v);
  }
  return best;
}

void VhostUser64() {
  if (!testing::TestPmd::Available()) {
    fprintf(stderr, "net_bench: vhost-user-64 skipped: %s\n", testing::TestPmd::kMissing);
    return;
  }
  char tmpl[] = "/tmp/vdev-vhbench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return;
  const std::string dir = tmpl;
  const std::string sock = dir + "/vhost.sock";
  // Both frontends run their transmit loop on CPU 1, the backend's forwarding core on CPU 0.
  cpu_set_t cpu1;
  CPU_ZERO(&cpu1);
  CPU_SET(1, &cpu1);
  const double secs = std::max(3.0, seconds * 6);
  // Medians over the rounds: the backend's figure swings with where the two vCPUs land.
  std::vector<double> ours_rounds, base_rounds;
  for (int r = 0; r < rounds; ++r) {
    {
      auto backend = testing::TestPmd::StartVhostBackend(sock, "rxonly", false, "0@1,1@0");
      if (!backend.ok()) {
        fprintf(stderr, "net_bench: vhost-user-64: %s\n", backend.status().ToString().c_str());
        break;
      }
      uint64_t sent = 0;
      double own_rate = 0;
      std::thread guest([&] {
        sched_setaffinity(0, sizeof(cpu1), &cpu1);
        Guest g;
        if (!g.Build("vhost-user,id=n0,chardev=c0", kFeatures, "socket,id=c0,path=" + sock)) {
          return;
        }
        g.PrepareTx(Frame(64));
        const auto t0 = Clock::now();
        while (Seconds(t0, Clock::now()) < secs) {
          g.Transmit(256 * 64);
          sent += 256 * 64;
        }
        own_rate = sent / Seconds(t0, Clock::now());
      });
      guest.join();
      absl::SleepFor(absl::Milliseconds(1100));
      (*backend)->Stop();
      const double ours = BestRxPps((*backend)->Log());
      fprintf(stderr, "net_bench: vhost-user-64 round %d: ours %.0f (guest-side %.0f)\n", r, ours,
              own_rate);
      ours_rounds.push_back(ours);
    }
    {
      auto backend = testing::TestPmd::StartVhostBackend(sock, "rxonly", false, "0@1,1@0");
      if (!backend.ok()) break;
      auto driver = testing::TestPmd::StartVirtioUser(sock, "txonly", 64, "0@0,1@1");
      if (!driver.ok()) break;
      absl::SleepFor(absl::Seconds(secs + 1.5));
      (*driver)->Stop();
      absl::SleepFor(absl::Milliseconds(1100));
      (*backend)->Stop();
      const double base = BestRxPps((*backend)->Log());
      fprintf(stderr, "net_bench: vhost-user-64 round %d: DPDK virtio-user %.0f\n", r, base);
      base_rounds.push_back(base);
    }
  }
  std::filesystem::remove_all(dir);
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };
  if (!ours_rounds.empty() && ours_rounds.size() == base_rounds.size()) {
    Report("vhost-user-64", median(ours_rounds), median(base_rounds));
  }
}

}  // namespace
}  // namespace vdev::bench

int main(int argc, char** argv) {
  // Debian's Abseil is built without NDEBUG: its Mutex checks lock order on every acquisition.
  // The tests keep that check; a running machine does not pay for it (docs/performance.md).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  using namespace vdev::bench;
  std::vector<std::string> cases;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--rounds=", 0) == 0) {
      rounds = std::max(1, atoi(a.c_str() + 9));
    } else if (a.rfind("--seconds=", 0) == 0) {
      seconds = atof(a.c_str() + 10);
    } else {
      cases.push_back(a);
    }
  }
  if (cases.empty())
    cases = {"tap-tx-64", "tap-tx-1500", "tap-rx-64", "tap-rx-1500", "loop-tx-64", "loop-rx-64"};
  for (const std::string& c : cases) {
    if (c == "tap-tx-64")
      TapTx(64);
    else if (c == "tap-tx-1500")
      TapTx(1500);
    else if (c == "tap-rx-64")
      TapRx(64);
    else if (c == "tap-rx-1500")
      TapRx(1500);
    else if (c == "loop-tx-64")
      LoopTx();
    else if (c == "loop-rx-64")
      LoopRx();
    else if (c == "vhost-user-64")
      VhostUser64();
    else {
      fprintf(stderr,
              "net_bench: unknown case '%s' (known: tap-tx-64 tap-tx-1500 tap-rx-64 "
              "tap-rx-1500 loop-tx-64 loop-rx-64 vhost-user-64)\n",
              c.c_str());
      return 1;
    }
  }
  return 0;
}
