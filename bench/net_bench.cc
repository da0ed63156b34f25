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

using testing::GuestVring;
using testing::PciGuest;
using testing::VirtioPciDriver;
using Clock = std::chrono::steady_clock;

constexpr uint64_t Bit(unsigned b) { return uint64_t{1} << b; }
constexpr uint16_t kRing = 256;
constexpr uint32_t kBuf = 2048;
constexpr int kHdr = sizeof(virtio_net_hdr_mrg_rxbuf);
constexpr uint64_t kRingBase = 0x1000000;
constexpr uint64_t kBufBase = 0x2000000;

int rounds = 3;
double seconds = 0.5;

int Shell(const std::string& cmd) { return system((cmd + " >/dev/null 2>&1").c_str()); }

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::vector<uint8_t> Frame(size_t size) {
  std::vector<uint8_t> f(size, 0);
  const uint8_t dst[6] = {0x02, 0xbe, 0xbe, 0x00, 0x00, 0x01};  // nobody's: dropped by the stack
  const uint8_t src[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  std::memcpy(f.data(), dst, 6);
  std::memcpy(f.data() + 6, src, 6);
  f[12] = 0x88;  // local experimental ethertype
  f[13] = 0xb5;
  for (size_t i = 14; i < size; ++i) f[i] = static_cast<uint8_t>(i);
  return f;
}

// A machine with one virtio-net-pci driven by a lean software guest: each ring slot has a fixed
// buffer, so recycling a buffer is publishing its descriptor again.
class Guest {
 public:
  bool Build(const std::string& netdev, uint64_t features, const std::string& chardev = "") {
    m_ = *Machine::Create("pc");
    if (!chardev.empty()) {
      if (auto c = m_->ObjectAdd("chardev", chardev); !c.ok()) {
        fprintf(stderr, "net_bench: %s\n", std::string(c.status().message()).c_str());
        return false;
      }
    }
    auto nd = m_->ObjectAdd("netdev", netdev);
    if (!nd.ok()) {
      fprintf(stderr, "net_bench: %s\n", std::string(nd.status().message()).c_str());
      return false;
    }
    netdev_ = qom::DynamicCast<net::Netdev>(*nd);
    auto d = m_->DeviceAdd("virtio-net-pci,id=nic0,netdev=n0,mac=52:54:00:12:34:56");
    if (!d.ok()) return false;
    proxy_ = static_cast<virtio::VirtIONetPCI*>(*d);
    testing::PcVirtioFunction f;
    if (!testing::ProbePcVirtio(*m_, proxy_->device_id(), &f)) return false;
    pci_guest_ = std::move(f.guest);
    fn_ = f.fn;
    drv_ = std::move(f.driver);
    if (!drv_->Negotiate(features)) return false;
    for (uint16_t q = 0; q < 2; ++q) {
      rings_[q] = drv_->SetupQueue(q, GuestAddr(kRingBase + q * 0x10000), kRing);
    }
    drv_->DriverOk();
    return true;
  }
  GuestAddr Buf(uint16_t q, uint16_t slot) const {
    return GuestAddr(kBufBase + q * 0x100000 + uint64_t{slot} * kBuf);
  }
  // Writes the descriptors once: slot i -> buffer i.
  void PrepareTx(const std::vector<uint8_t>& frame) {
    std::vector<uint8_t> b(kHdr + frame.size(), 0);
    std::memcpy(b.data() + kHdr, frame.data(), frame.size());
    for (uint16_t i = 0; i < kRing; ++i) {
      m_->guest_memory().Write(Buf(1, i), absl::MakeConstSpan(b));
      rings_[1]->WriteDesc(i, Buf(1, i).value(), static_cast<uint32_t>(b.size()), 0, 0);
    }
  }
  void PrepareRx() {
    for (uint16_t i = 0; i < kRing; ++i) {
      rings_[0]->WriteDesc(i, Buf(0, i).value(), kBuf, VRING_DESC_F_WRITE, 0);
    }
  }
  // Sends `n` frames (whole rings at a time, one kick per batch).
  void Transmit(uint64_t n) {
    GuestVring* r = rings_[1];
    uint64_t done = 0;
    uint16_t next = 0, free = kRing;
    while (done < n) {
      while (free > 0) {
        r->Publish(next);
        next = static_cast<uint16_t>((next + 1) % kRing);
        --free;
      }
      drv_->Kick(1);
      const size_t used = r->TakeUsed().size();
      free = static_cast<uint16_t>(free + used);
      done += used;
      if (used == 0) std::this_thread::yield();  // the backend holds the queue
    }
  }
  // Posts every receive buffer, once.
  void PostRx() {
    if (rx_posted_) return;
    for (uint16_t i = 0; i < kRing; ++i) rings_[0]->Publish(i);
    drv_->Kick(0);
    rx_posted_ = true;
  }
  // Gives the used receive buffers back, kicking only when the device asked (EVENT_IDX).
  template <typename Used>
  void Recycle(const Used& used) {
    GuestVring* r = rings_[0];
    const uint16_t old = r->avail_idx();
    for (const auto& u : used) r->Publish(static_cast<uint16_t>(u.first));
    const uint16_t ev = r->avail_event();
    const uint16_t now = r->avail_idx();
    if (static_cast<uint16_t>(now - ev - 1) < static_cast<uint16_t>(now - old)) drv_->Kick(0);
  }
  // Keeps the receive ring full until `n` more frames arrived after the first batch (which may
  // have been waiting in buffers posted earlier); returns the frames counted, timed from the first
  // batch. Gives up after 10 s without progress.
  uint64_t Receive(uint64_t n, Clock::time_point* start) {
    GuestVring* r = rings_[0];
    PostRx();
    uint64_t got = 0;
    bool started = false;
    auto last = Clock::now();
    while (got < n) {
      auto used = r->TakeUsed();
      if (used.empty()) {
        if (Seconds(last, Clock::now()) > 10) break;
        std::this_thread::yield();
        continue;
      }
      last = Clock::now();
      if (!started) {
        *start = last;
        started = true;
      } else {
        got += used.size();
      }
      Recycle(used);
    }
    return got;
  }
  // Moves `n` frames in through `inject(count)` (which offers the NIC up to `count` frames),
  // recycling each buffer as soon as the device used it, kicking when EVENT_IDX asks. Gives up
  // (false) after 10 s without progress.
  bool ReceiveFrom(uint64_t n, const std::function<void(int)>& inject) {
    GuestVring* r = rings_[0];
    PostRx();
    uint64_t done = 0;
    int free = kRing;
    auto last = Clock::now();
    while (done < n) {
      inject(free);
      auto used = r->TakeUsed();
      done += used.size();
      free = static_cast<int>(used.size());
      Recycle(used);
      if (!used.empty()) {
        last = Clock::now();
      } else {
        free = kRing;  // the NIC held frames back: offer more once it took them
        if (Seconds(last, Clock::now()) > 10) return false;
        std::this_thread::yield();
      }
    }
    return true;
  }
  // Host view of transmit slot `slot` (header + frame), for the baseline.
  uint8_t* TxHost(uint16_t slot, size_t len) {
    return m_->guest_memory().HostPointer(Buf(1, slot), len, false);
  }
  net::Netdev* netdev() { return netdev_; }
  virtio::VirtIONet* net() { return proxy_->net(); }

 private:
  std::unique_ptr<Machine> m_;
  net::Netdev* netdev_ = nullptr;
  virtio::VirtIONetPCI* proxy_ = nullptr;
  std::unique_ptr<PciGuest> pci_guest_;
  const PciGuest::Function* fn_ = nullptr;
  std::unique_ptr<VirtioPciDriver> drv_;
  GuestVring* rings_[2] = {nullptr, nullptr};
  bool rx_posted_ = false;
};

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

// The raw methods of a TAP case: each keeps its best round; the best of them is the baseline.
class RawMethods {
 public:
  void Add(std::string name, std::function<double()> round) {
    methods_.push_back({std::move(name), std::move(round), 0});
  }
  void RunRound() {
    if (getenv("NET_BENCH_OURS_ONLY") != nullptr) return;  // for profiling the device alone
    for (Method& m : methods_) m.best = std::max(m.best, m.round());
  }
  // The winner's figure and name; every method's figure goes to stderr.
  std::pair<double, std::string> Best(const std::string& name) const {
    std::pair<double, std::string> best{0, ""};
    for (const Method& m : methods_) {
      fprintf(stderr, "net_bench: %s raw %s %.0f\n", name.c_str(), m.name.c_str(), m.best);
      if (m.best > best.first) best = {m.best, m.name};
    }
    return best;
  }

 private:
  struct Method {
    std::string name;
    std::function<double()> round;
    double best;
  };
  std::vector<Method> methods_;
};

// The device's TAP batch (net/tap_queue.cc): the io_uring baselines submit the same number.
constexpr unsigned kUringBatch = 64;

// io_uring batches of one writev per frame, `kUringBatch` per submission, over `slots`
// round-robin; `n` frames in all. False when a submission failed.
bool UringWrites(IoUring& ring, int fd, const std::vector<iovec>& slots, uint64_t n) {
  for (uint64_t i = 0; i < n;) {
    unsigned k = 0;
    for (; k < kUringBatch && i < n; ++k, ++i) ring.PrepWritev(fd, &slots[i % slots.size()], 1, i);
    if (!ring.SubmitAndWait(k).ok()) return false;
    ring.Reap([](uint64_t, int32_t) {});
  }
  return true;
}

// ---- TAP environment: a private namespace holding the TAPs ----

class TapEnv {
 public:
  ~TapEnv() {
    if (!netns_.empty()) Shell("ip netns del " + netns_);
  }
  std::string Setup() {
    if (geteuid() != 0) return "needs root for a TAP and a network namespace";
    if (access("/dev/net/tun", R_OK | W_OK) != 0) return "/dev/net/tun is not available";
    netns_ = absl::StrCat("vdevbench", getpid());
    if (Shell("ip netns add " + netns_) != 0) return "cannot create a network namespace (ip netns)";
    return "";
  }
  // Moves `ifname` into the namespace, up, with a long queue and no IPv6 chatter.
  bool Adopt(const std::string& ifname) {
    const std::string ns = "ip netns exec " + netns_ + " ";
    return Shell(absl::StrCat("ip link set ", ifname, " netns ", netns_)) == 0 &&
           Shell(ns + "sysctl -w net.ipv6.conf.all.disable_ipv6=1") == 0 &&
           Shell(ns + "ip link set " + ifname + " txqueuelen 20000") == 0 &&
           Shell(ns + "ip link set " + ifname + " up") == 0;
  }
  // Sends `n` copies of `frame` out of `ifname` (so they queue at the TAP's reader).
  bool Inject(const std::string& ifname, const std::vector<uint8_t>& frame, int n) {
    bool ok = false;
    std::thread t([&] {
      const int nsfd = open(("/var/run/netns/" + netns_).c_str(), O_RDONLY | O_CLOEXEC);
      if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) return;
      close(nsfd);
      const int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
      if (s < 0) return;
      int one = 1;
      setsockopt(s, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
      sockaddr_ll a{};
      a.sll_family = AF_PACKET;
      a.sll_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
      a.sll_halen = 6;
      std::memcpy(a.sll_addr, frame.data(), 6);
      int sent = 0;
      for (int i = 0; i < n; ++i) {
        if (sendto(s, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof(a)) ==
            static_cast<ssize_t>(frame.size())) {
          ++sent;
        }
      }
      close(s);
      ok = sent == n;
    });
    t.join();
    return ok;
  }

 private:
  std::string netns_;
};

// A TAP opened the way the tap netdev opens one, for the baselines; `extra`: IFF_NAPI,
// IFF_NAPI_FRAGS.
int RawTap(const std::string& name, short extra = 0) {
  const int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return -1;
  ifreq ifr{};
  ifr.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | extra);
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  int len = kHdr;
  int sndbuf = 0x7fffffff;
  if (ioctl(fd, TUNSETIFF, &ifr) != 0 || ioctl(fd, TUNSETVNETHDRSZ, &len) != 0 ||
      ioctl(fd, TUNSETSNDBUF, &sndbuf) != 0 || ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Opens a raw TAP with `extra` flags and moves it into the namespace; -1 (and why on stderr)
// when the kernel refuses.
int ExtraTap(TapEnv& env, const std::string& ifname, short extra, const char* what) {
  const int fd = RawTap(ifname, extra);
  if (fd < 0 || !env.Adopt(ifname)) {
    fprintf(stderr, "net_bench: no %s TAP here: %s\n", what, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
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

// Drains `burst` frames from `fd` with one read per frame; frames/s.
double ReadBurst(int fd, int burst) {
  std::vector<uint8_t> buf(65536 + kHdr);
  int n = 0;
  const auto t0 = Clock::now();
  while (n < burst && Seconds(t0, Clock::now()) < 10) {
    if (read(fd, buf.data(), buf.size()) > 0) ++n;
  }
  return n / Seconds(t0, Clock::now());
}

// Drains `burst` frames from `fd` with io_uring batches of `kUringBatch` readv; frames/s.
double UringReadBurst(IoUring& ring, int fd, int burst) {
  std::vector<uint8_t> bufs(kUringBatch * kBuf);
  std::vector<iovec> iov(kUringBatch);
  for (unsigned k = 0; k < kUringBatch; ++k) iov[k] = {bufs.data() + k * kBuf, kBuf};
  int n = 0;
  const auto t0 = Clock::now();
  while (n < burst && Seconds(t0, Clock::now()) < 10) {
    const unsigned want = std::min<unsigned>(kUringBatch, burst - n);
    for (unsigned k = 0; k < want; ++k) ring.PrepReadv(fd, &iov[k], 1, k);
    if (!ring.SubmitAndWait(want).ok()) break;
    ring.Reap([&n](uint64_t, int32_t res) {
      if (res > 0) ++n;
    });
  }
  return n / Seconds(t0, Clock::now());
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
