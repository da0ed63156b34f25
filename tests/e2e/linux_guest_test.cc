// End to end with a real Linux guest: Debian 12's cloud kernel in QEMU 7.2 (TCG), its own
// virtio-net driver on QEMU's virtio-net-pci with -netdev vhost-user, and vdev as the vhost-user
// backend (`vdev serve` with vhost-user-backend + virtio-net-device on a TAP). The TAP is in a
// private network namespace the test makes (and always removes) with an HTTP server on the host
// side; the guest pings it, fetches a random file and prints its sha256, which the test compares
// with the file's.
//
// Needs root, qemu-system-x86, busybox-static, python3 and the guest kernel that
// scripts/linux-guest-kernel fetches (scripts/setup runs it); skips with the reason otherwise.
#include "tests/testing/linux_guest.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/netns.h"

namespace vdev {
namespace {

using testing::GuestOptions;
using ::testing::HasSubstr;
using testing::HostTscKhz;
using testing::LinuxGuestInit;
using ::testing::Not;
using testing::Shell;
using testing::Slurp;
using testing::TestNetns;

// eth0 up, ping the host side, fetch the file and print its checksum.
constexpr char kNetBody[] = R"INIT(ip link set eth0 up
ip addr add 10.0.0.2/24 dev eth0
echo "GUEST-TRANSPORT $(basename $(readlink /sys/class/net/eth0/device/../driver))"
if ping -c 1 -W 5 10.0.0.1 >/dev/null; then echo GUEST-PING-OK; fi
if timeout 60 wget -q -O /blob http://10.0.0.1:8000/blob.bin; then
  echo "GUEST-SUM $(sha256sum /blob)"
fi
)INIT";

// Two queue pairs: which queues the kernel made, then four downloads at once, two on each vCPU.
constexpr char kMqBody[] = R"INIT(ip link set eth0 up
ip addr add 10.0.0.2/24 dev eth0
echo "GUEST-QUEUES $(ls /sys/class/net/eth0/queues | tr '\n' ' ')"
ping -c 1 -W 5 10.0.0.1 >/dev/null
for i in 0 1 2 3; do
  (taskset $((1 << (i % 2))) timeout 90 wget -q -O /blob$i http://10.0.0.1:8000/blob.bin &&
   echo "GUEST-SUM$i $(sha256sum /blob$i)") &
done
wait
)INIT";

// One download, announced before it starts; then what the kernel said about the NIC's rings.
constexpr char kReconnectBody[] = R"INIT(ip link set eth0 up
ip addr add 10.0.0.2/24 dev eth0
ping -c 1 -W 5 10.0.0.1 >/dev/null
echo GUEST-FETCHING
if timeout 90 wget -q -O /blob http://10.0.0.1:8000/blob.bin; then
  echo "GUEST-SUM $(sha256sum /blob)"
fi
dmesg | grep -i -E "not a head|bad ring|out of range|NETDEV WATCHDOG|timed out" |
  sed "s/^/GUEST-KERN /"
)INIT";

// Which hardware RNG the kernel uses, and 1 KiB read from it.
constexpr char kRngBody[] =
    R"INIT(echo "GUEST-RNG-CURRENT $(cat /sys/class/misc/hw_random/rng_current)"
echo "GUEST-RNG-BYTES $(timeout 30 dd if=/dev/hwrng bs=256 count=4 2>/dev/null | wc -c)"
)INIT";

class LinuxGuestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = testing::LinuxGuestSkipReason(); !why.empty()) GTEST_SKIP() << why;
    sock_ = dir_ + "/vu.sock";
    Shell("rm -rf " + dir_);
    ASSERT_EQ(mkdir(dir_.c_str(), 0755), 0);
  }
  // The namespace with its TAP (`queues` of them) and the HTTP server with a random file of 2 MB
  // and a bit.
  void MakeNetwork(int queues = 1) {
    ASSERT_TRUE(ns_.Create({.queues = queues}).ok());
    std::mt19937_64 rng(std::random_device{}());
    sum_ = testing::WriteRandomFile(dir_ + "/blob.bin", (2 << 20) + rng() % 65536);
    ASSERT_EQ(sum_.size(), 64u);
    ASSERT_TRUE(ns_.StartHttp(dir_).ok());
  }
  void TearDown() override {
    guest_.Kill();
    testing::KillAndReap(&vdev_pid_);
    if (!dir_.empty()) Shell("rm -rf " + dir_);
  }
  // Everything the three processes said, for a failure message.
  std::string Logs(const std::string& console) {
    return absl::StrCat("console:\n", console, "\nvdev:\n", Slurp(dir_ + "/vdev.log"),
                        Slurp(dir_ + "/vdev.out"), "\nqemu:\n", Slurp(dir_ + "/qemu.log"));
  }
  // SIGTERM to the backend: it must exit 0 and remove its socket. Returns what it printed (the
  // counters of its devices and netdev queues).
  std::string StopBackend(const std::string& logs) {
    EXPECT_EQ(kill(vdev_pid_, SIGTERM), 0);
    int status = 0;
    EXPECT_EQ(waitpid(vdev_pid_, &status, 0), vdev_pid_);
    vdev_pid_ = 0;
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << logs;
    EXPECT_FALSE(std::filesystem::exists(sock_));
    return Slurp(dir_ + "/vdev.out");
  }
  void BuildInitrd(const std::string& init) {
    absl::Status s = guest_.BuildInitrd(init);
    ASSERT_TRUE(s.ok()) << s;
  }
  // `vdev serve` in the namespace (it opens the TAP there), listening on the socket, with
  // `extra` options (the netdev and the device on the backend's bus).
  void StartBackend(const std::vector<std::string>& extra) {
    std::vector<std::string> argv = ns_.ExecArgv();
    for (const std::string& a :
         {std::string(VDEV_BINARY), std::string("serve"), std::string("-machine"),
          std::string("none"), std::string("-chardev"), "socket,id=c1,server=on,path=" + sock_,
          std::string("-device"), std::string("vhost-user-backend,id=vu0,chardev=c1")}) {
      argv.push_back(a);
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    vdev_pid_ = testing::Spawn(argv, dir_ + "/vdev.log", dir_ + "/vdev.out");
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (!std::filesystem::exists(sock_) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    ASSERT_TRUE(std::filesystem::exists(sock_)) << Slurp(dir_ + "/vdev.log");
  }
  // Boots the guest with `device` on the vhost-user chardev and waits for it to power off;
  // returns its console.
  std::string RunGuest(const std::vector<std::string>& device, GuestOptions o = {}) {
    o.socket = sock_;
    absl::StatusOr<std::string> console = guest_.Run(device, o);
    if (!console.ok()) {
      ADD_FAILURE() << console.status();
      return std::string(console.status().message());
    }
    return *console;
  }

  TestNetns ns_{"vdevlg", "vlg"};
  std::string dir_ = absl::StrCat(::testing::TempDir(), "/vdev_linux_", getpid());
  std::string sock_, sum_;
  pid_t vdev_pid_ = 0;
  testing::LinuxGuest guest_{dir_};
};

TEST_F(LinuxGuestTest, LinuxVirtioNetThroughOurVhostUserBackendFetchesAFileIntact) {
  MakeNetwork();
  BuildInitrd(LinuxGuestInit("failover net_failover virtio_net", kNetBody));
  StartBackend({"-netdev", "tap,id=n0,ifname=" + ns_.tap(), "-device",
                "virtio-net-device,bus=vu0.0,netdev=n0"});
  // vectors=0: with MSI-X, QEMU 7.2 under TCG crashes on a vhost-user NIC.
  const std::string console =
      RunGuest({"-netdev", "vhost-user,id=net0,chardev=vhu0", "-device",
                "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,vectors=0,romfile="});
  const std::string logs = Logs(console);
  EXPECT_THAT(console, HasSubstr("GUEST-TRANSPORT virtio-pci")) << logs;
  EXPECT_THAT(console, HasSubstr("GUEST-PING-OK")) << logs;
  EXPECT_THAT(console, HasSubstr("GUEST-SUM " + sum_)) << logs;
  EXPECT_THAT(console, HasSubstr("GUEST-DONE")) << logs;
  // The backend outlived its frontend and stops cleanly on SIGTERM, removing its socket.
  const std::string counters = StopBackend(logs);
  EXPECT_THAT(counters, HasSubstr("(virtio-net-device): ")) << counters;
}

// Two queue pairs: QEMU keeps the control queue, the guest (2 vCPUs) sets 2 pairs through it and
// QEMU enables the second pair's rings; our device follows the enables onto a 2-queue TAP. Four
// downloads at once, two pinned to each vCPU, go through both pairs: each TAP queue carries
// traffic both ways.
TEST_F(LinuxGuestTest, TwoQueuePairsBothCarryTheGuestsTraffic) {
  MakeNetwork(/*queues=*/2);
  BuildInitrd(LinuxGuestInit("failover net_failover virtio_net", kMqBody));
  StartBackend({"-netdev", "tap,id=n0,queues=2,ifname=" + ns_.tap(), "-device",
                "virtio-net-device,bus=vu0.0,netdev=n0,mq=on"});
  const std::string console =
      RunGuest({"-netdev", "vhost-user,id=net0,chardev=vhu0,queues=2", "-device",
                "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,vectors=0,romfile=,mq=on"},
               {.cpus = 2});
  const std::string logs = Logs(console);
  EXPECT_THAT(console, HasSubstr("GUEST-QUEUES rx-0 rx-1 tx-0 tx-1")) << logs;
  for (int i = 0; i < 4; ++i) {
    EXPECT_THAT(console, HasSubstr(absl::StrCat("GUEST-SUM", i, " ", sum_))) << logs;
  }
  EXPECT_THAT(console, HasSubstr("GUEST-DONE")) << logs;
  const std::string counters = StopBackend(logs);
  std::cout << counters;
  // Per queue: the TAP's queue i is queue pair i of the device.
  for (int q = 0; q < 2; ++q) {
    const std::string line = absl::StrCat("/netdevs/n0 queue ", q, ": ");
    const size_t at = counters.find(line);
    ASSERT_NE(at, std::string::npos) << counters << logs;
    const std::string row = counters.substr(at, counters.find('\n', at) - at);
    EXPECT_THAT(row, HasSubstr("rx_frames=")) << row;  // from the guest, out of the TAP
    EXPECT_THAT(row, HasSubstr("tx_frames=")) << row;  // into the guest
  }
}

// virtio-mmio: QEMU's microvm with a modern virtio-net-device (QEMU's virtio-mmio is legacy unless
// told otherwise) on the same backend. microvm has no HPET or PM timer: the guest is given the
// TSC's rate rather than left to calibrate it on a busy host. The backend's device and TAP run on
// an iothread.
TEST_F(LinuxGuestTest, MicrovmVirtioMmioThroughOurVhostUserBackendFetchesAFileIntact) {
  MakeNetwork();
  BuildInitrd(LinuxGuestInit("virtio_mmio failover net_failover virtio_net", kNetBody));
  // The device's queues on an iothread, the TAP on the same one.
  StartBackend({"-object", "iothread,id=io0", "-netdev",
                "tap,id=n0,iothread=io0,ifname=" + ns_.tap(), "-device",
                "virtio-net-device,bus=vu0.0,netdev=n0,iothread=io0"});
  const std::string console = RunGuest(
      {"-global", "virtio-mmio.force-legacy=false", "-netdev", "vhost-user,id=net0,chardev=vhu0",
       "-device", "virtio-net-device,netdev=net0,mac=52:54:00:12:34:56"},
      {.machine = "microvm",
       .append = absl::StrCat("tsc_early_khz=", HostTscKhz(), " tsc=reliable")});
  const std::string logs = Logs(console);
  EXPECT_THAT(console, HasSubstr("GUEST-TRANSPORT virtio-mmio")) << logs;
  EXPECT_THAT(console, HasSubstr("GUEST-PING-OK")) << logs;
  EXPECT_THAT(console, HasSubstr("GUEST-SUM " + sum_)) << logs;
  EXPECT_THAT(console, HasSubstr("GUEST-DONE")) << logs;
  const std::string counters = StopBackend(logs);
  EXPECT_THAT(counters, HasSubstr("(virtio-net-device): ")) << counters;
}

// QEMU as a client with reconnect=1; the backend is SIGKILLed mid-download (the TAP's egress is
// rate-limited so that the download takes seconds) and started again. QEMU replays the
// handshake with each ring's position (it could not ask the dead backend, so it takes the used
// index: exact for our device, which completes in order); the guest's TCP connection survives
// the outage and the file arrives intact, with no ring error in the guest's kernel log (a
// duplicated used entry is "id N is not a head", a skipped buffer a transmit timeout).
TEST_F(LinuxGuestTest, ABackendKilledMidDownloadAndRestartedTheDownloadCompletesIntact) {
  MakeNetwork();
  ASSERT_EQ(Shell(ns_.Exec("tc qdisc add dev " + ns_.tap() +
                           " root tbf rate 6mbit burst 16kb latency 400ms")),
            0);
  BuildInitrd(LinuxGuestInit("failover net_failover virtio_net", kReconnectBody));
  const std::vector<std::string> backend = {"-netdev", "tap,id=n0,ifname=" + ns_.tap(), "-device",
                                            "virtio-net-device,bus=vu0.0,netdev=n0"};
  StartBackend(backend);
  bool killed_mid_download = false;
  std::thread killer([&] {
    const absl::Time deadline = absl::Now() + absl::Seconds(120);
    while (Slurp(dir_ + "/console.log").find("GUEST-FETCHING") == std::string::npos &&
           absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    absl::SleepFor(absl::Milliseconds(800));
    killed_mid_download = Slurp(dir_ + "/console.log").find("GUEST-SUM") == std::string::npos;
    testing::KillAndReap(&vdev_pid_);
    std::rename((dir_ + "/vdev.log").c_str(), (dir_ + "/vdev.first.log").c_str());
    absl::SleepFor(absl::Milliseconds(300));
    StartBackend(backend);
  });
  const std::string console =
      RunGuest({"-netdev", "vhost-user,id=net0,chardev=vhu0", "-device",
                "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,vectors=0,romfile="},
               {.chardev = ",reconnect=1"});
  killer.join();
  const std::string logs = Logs(console) + "\nfirst vdev:\n" + Slurp(dir_ + "/vdev.first.log");
  EXPECT_TRUE(killed_mid_download) << logs;
  EXPECT_THAT(console, HasSubstr("GUEST-SUM " + sum_)) << logs;
  EXPECT_THAT(console, Not(HasSubstr("GUEST-KERN"))) << logs;
  EXPECT_THAT(console, HasSubstr("GUEST-DONE")) << logs;
  // The second backend served the rest: QEMU connected to it and it started the device.
  const std::string counters = StopBackend(logs);
  EXPECT_THAT(counters, HasSubstr("device_starts=")) << counters;
  EXPECT_THAT(counters, HasSubstr("rx_frames=")) << counters;
}

// The transport is generic: QEMU's vhost-user-rng-pci on a virtio-rng-device of ours (its queue
// on an iothread), the guest reading /dev/hwrng.
TEST_F(LinuxGuestTest, LinuxVirtioRngThroughOurVhostUserBackend) {
  ASSERT_TRUE(ns_.Create({.configure = false}).ok());  // `vdev serve` runs in a namespace
  BuildInitrd(LinuxGuestInit("virtio-rng", kRngBody));
  StartBackend(
      {"-object", "iothread,id=io0", "-device", "virtio-rng-device,bus=vu0.0,iothread=io0"});
  const std::string console = RunGuest({"-device", "vhost-user-rng-pci,chardev=vhu0"});
  const std::string logs =
      absl::StrCat("console:\n", console, "\nvdev:\n", Slurp(dir_ + "/vdev.log"), "\nqemu:\n",
                   Slurp(dir_ + "/qemu.log"));
  EXPECT_THAT(console, HasSubstr("GUEST-RNG-CURRENT virtio_rng.0")) << logs;
  EXPECT_THAT(console, HasSubstr("GUEST-RNG-BYTES 1024")) << logs;
  EXPECT_THAT(console, HasSubstr("GUEST-DONE")) << logs;
}

}  // namespace
}  // namespace vdev
