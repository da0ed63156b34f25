// A Linux guest's download through our vhost-user backend vs through DPDK's, in the same run,
// rounds alternating. The guest is Debian 12's cloud kernel in QEMU 7.2 under TCG on
// virtio-net-pci with -netdev vhost-user (tests/testing/linux_guest.h); it fetches a random file
// from an HTTP server on a kernel TAP in a private network namespace and times the fetch itself
// (/proc/uptime around wget); the file's sha256 must match, or the round fails.
//
//   ours      `vdev serve` with vhost-user-backend + virtio-net-device on -netdev tap (the
//             device's offloads and a vnet-header TAP, as a user runs it); and again on a TAP
//             without a vnet header, as the baseline's (no offloads through the TAP);
//   baseline  dpdk-testpmd: the vhost PMD (net_vhost0) forwarding (io) to DPDK's TAP PMD
//             (net_tap0) on a TAP of the same kind in the same kind of namespace, its
//             forwarding lcore busy-polling.
//
// Prints `BENCH linux-download-<M>M seconds=<ours> baseline=<dpdk> ratio=<ours/dpdk>` and the
// same for `linux-download-<M>M-no-vnet-hdr` (medians; lower is better; MB/s alongside).
//
// Usage: linux_download_bench [--rounds=N] [--megabytes=M]
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "core/base/status_macros.h"
#include "tests/testing/dpdk_testpmd.h"
#include "tests/testing/linux_guest.h"
#include "tests/testing/netns.h"

namespace vdev::bench {
namespace {

using testing::LinuxGuest;
using testing::TestNetns;
using testing::TestPmd;

int rounds = 5;
int megabytes = 64;

// eth0 up, one ping, then the timed fetch and the checksum.
constexpr char kBody[] = R"INIT(ip link set eth0 up
ip addr add 10.0.0.2/24 dev eth0
ping -c 1 -W 5 10.0.0.1 >/dev/null
t0=$(cut -d' ' -f1 /proc/uptime)
if timeout 120 wget -q -O /blob http://10.0.0.1:8000/blob.bin; then
  t1=$(cut -d' ' -f1 /proc/uptime)
  echo "GUEST-TIME $t0 $t1"
  echo "GUEST-SUM $(sha256sum /blob)"
fi
)INIT";

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// The guest's fetch time from its console, after checking the checksum.
absl::StatusOr<double> FetchSeconds(const std::string& console, const std::string& sum) {
  if (console.find("GUEST-SUM " + sum) == std::string::npos) {
    return absl::DataLossError("the file did not arrive intact:\n" + console);
  }
  const size_t at = console.find("GUEST-TIME ");
  if (at == std::string::npos) return absl::InternalError("no GUEST-TIME:\n" + console);
  std::vector<std::string> f =
      absl::StrSplit(console.substr(at + 11, console.find('\n', at) - at - 11), ' ');
  double t0, t1;
  if (f.size() != 2 || !absl::SimpleAtod(f[0], &t0) || !absl::SimpleAtod(f[1], &t1)) {
    return absl::InternalError("bad GUEST-TIME:\n" + console);
  }
  return std::max(t1 - t0, 0.01);
}

class Bench {
 public:
  explicit Bench(std::string dir) : dir_(std::move(dir)), sock_(dir_ + "/vu.sock"), guest_(dir_) {}
  ~Bench() { testing::KillAndReap(&vdev_pid_); }

  absl::Status Prepare() {
    sum_ = testing::WriteRandomFile(dir_ + "/blob.bin", static_cast<size_t>(megabytes) << 20);
    if (sum_.size() != 64) return absl::InternalError("cannot write the file");
    return guest_.BuildInitrd(testing::LinuxGuestInit("failover net_failover virtio_net", kBody));
  }

  // One download through our backend; without `vnet_hdr`, on a TAP with no vnet header (as DPDK's
  // TAP PMD uses it: no offloads between the TAP and the device).
  absl::StatusOr<double> Ours(bool vnet_hdr) {
    TestNetns ns("vdevdl", "vdl");
    VDEV_RETURN_IF_ERROR(ns.Create({.vnet_hdr = vnet_hdr}));
    VDEV_RETURN_IF_ERROR(ns.StartHttp(dir_));
    std::vector<std::string> argv = ns.ExecArgv();
    for (const char* a : {VDEV_BINARY, "serve", "-machine", "none", "-chardev"}) argv.push_back(a);
    argv.push_back("socket,id=c1,server=on,path=" + sock_);
    for (const char* a : {"-device", "vhost-user-backend,id=vu0,chardev=c1", "-netdev"}) {
      argv.push_back(a);
    }
    argv.push_back(absl::StrCat("tap,id=n0,ifname=", ns.tap(), vnet_hdr ? "" : ",vnet_hdr=off"));
    argv.push_back("-device");
    argv.push_back("virtio-net-device,bus=vu0.0,netdev=n0");
    unlink(sock_.c_str());
    vdev_pid_ = testing::Spawn(argv, dir_ + "/vdev.log", dir_ + "/vdev.out");
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (!std::filesystem::exists(sock_) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    if (!std::filesystem::exists(sock_)) {
      return absl::InternalError("vdev serve did not listen:\n" +
                                 testing::Slurp(dir_ + "/vdev.log"));
    }
    absl::StatusOr<double> t = Fetch();
    testing::KillAndReap(&vdev_pid_);
    return t;
  }

  // One download through testpmd's vhost PMD and TAP PMD.
  absl::StatusOr<double> Dpdk() {
    TestNetns ns("vdevdl", "vdl");
    // DPDK's TAP PMD opens its TAP multiqueue and without a vnet header.
    VDEV_RETURN_IF_ERROR(ns.Create({.queues = 2, .vnet_hdr = false}));
    VDEV_RETURN_IF_ERROR(ns.StartHttp(dir_));
    absl::StatusOr<std::unique_ptr<TestPmd>> pmd =
        TestPmd::StartVhostToTap(sock_, ns.tap(), ns.name());
    if (!pmd.ok()) return pmd.status();
    absl::StatusOr<double> t = Fetch();
    (*pmd)->Kill();
    return t;
  }

 private:
  // Boots the guest on the socket; its fetch time.
  absl::StatusOr<double> Fetch() {
    absl::StatusOr<std::string> console =
        guest_.Run({"-netdev", "vhost-user,id=net0,chardev=vhu0", "-device",
                    "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,vectors=0,romfile="},
                   {.socket = sock_});
    if (!console.ok()) return console.status();
    return FetchSeconds(*console, sum_);
  }

  std::string dir_, sock_, sum_;
  LinuxGuest guest_;
  pid_t vdev_pid_ = 0;
};

int Run() {
  if (std::string why = testing::LinuxGuestSkipReason(); !why.empty()) {
    fprintf(stderr, "linux_download_bench: skipped: %s\n", why.c_str());
    return 0;
  }
  if (!TestPmd::Available()) {
    fprintf(stderr, "linux_download_bench: skipped: %s\n", TestPmd::kMissing);
    return 0;
  }
  char tmpl[] = "/tmp/vdev-dlbench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return 1;
  const std::string dir = tmpl;
  int status = 0;
  {
    Bench b(dir);
    std::vector<double> ours, plain, dpdk;
    if (absl::Status s = b.Prepare(); !s.ok()) {
      fprintf(stderr, "linux_download_bench: %s\n", std::string(s.message()).c_str());
      status = 1;
    }
    for (int r = 0; r < rounds && status == 0; ++r) {
      absl::StatusOr<double> o = b.Ours(true);
      absl::StatusOr<double> p = b.Ours(false);
      absl::StatusOr<double> d = b.Dpdk();
      for (const absl::Status& s : {o.status(), p.status(), d.status()}) {
        if (!s.ok()) {
          fprintf(stderr, "linux_download_bench: round %d: %s\n", r,
                  std::string(s.message()).c_str());
          status = 1;
        }
      }
      if (status != 0) break;
      fprintf(stderr, "round %d: ours %.2f s, ours without vnet header %.2f s, dpdk %.2f s\n", r,
              *o, *p, *d);
      ours.push_back(*o);
      plain.push_back(*p);
      dpdk.push_back(*d);
    }
    if (status == 0) {
      const double d = Median(dpdk);
      for (const auto& [suffix, v] :
           {std::pair<const char*, std::vector<double>*>{"", &ours}, {"-no-vnet-hdr", &plain}}) {
        const double o = Median(*v);
        printf(
            "BENCH linux-download-%dM%s seconds=%.3f baseline=%.3f ratio=%.3f mb_per_s=%.1f "
            "baseline_mb_per_s=%.1f\n",
            megabytes, suffix, o, d, o / d, megabytes / o, megabytes / d);
      }
    }
  }
  std::filesystem::remove_all(dir);
  return status;
}

}  // namespace
}  // namespace vdev::bench

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--rounds=", 0) == 0) {
      vdev::bench::rounds = std::max(1, atoi(a.c_str() + 9));
    } else if (a.rfind("--megabytes=", 0) == 0) {
      vdev::bench::megabytes = std::max(1, atoi(a.c_str() + 12));
    } else {
      fprintf(stderr, "usage: linux_download_bench [--rounds=N] [--megabytes=M]\n");
      return 2;
    }
  }
  return vdev::bench::Run();
}
