// net_bench's raw TAP methods, the baselines of the TAP cases: a private network namespace for
// the TAPs, raw TAPs opened as the tap netdev opens them (optionally IFF_NAPI / IFF_NAPI_FRAGS),
// per-frame and io_uring-batched writes and reads, and the best-of bookkeeping.
#ifndef VDEV_BENCH_TAP_RAW_H_
#define VDEV_BENCH_TAP_RAW_H_

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
#include <cerrno>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/net_bench.h"
#include "core/loop/io_uring.h"

namespace vdev::bench {

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
inline constexpr unsigned kUringBatch = 64;

// io_uring batches of one writev per frame, `kUringBatch` per submission, over `slots`
// round-robin; `n` frames in all. False when a submission failed.
inline bool UringWrites(IoUring& ring, int fd, const std::vector<iovec>& slots, uint64_t n) {
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
inline int RawTap(const std::string& name, short extra = 0) {
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
inline int ExtraTap(TapEnv& env, const std::string& ifname, short extra, const char* what) {
  const int fd = RawTap(ifname, extra);
  if (fd < 0 || !env.Adopt(ifname)) {
    fprintf(stderr, "net_bench: no %s TAP here: %s\n", what, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

// Drains `burst` frames from `fd` with one read per frame; frames/s.
inline double ReadBurst(int fd, int burst) {
  std::vector<uint8_t> buf(65536 + kHdr);
  int n = 0;
  const auto t0 = Clock::now();
  while (n < burst && Seconds(t0, Clock::now()) < 10) {
    if (read(fd, buf.data(), buf.size()) > 0) ++n;
  }
  return n / Seconds(t0, Clock::now());
}

// Drains `burst` frames from `fd` with io_uring batches of `kUringBatch` readv; frames/s.
inline double UringReadBurst(IoUring& ring, int fd, int burst) {
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

}  // namespace vdev::bench

#endif  // VDEV_BENCH_TAP_RAW_H_
