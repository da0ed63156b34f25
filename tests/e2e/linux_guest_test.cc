// End to end with a real Linux guest: Debian 12's cloud kernel in QEMU 7.2 (TCG), its own
// virtio-net driver on QEMU's virtio-net-pci with -netdev vhost-user, and vdev as the vhost-user
// backend (`vdev serve` with vhost-user-backend + virtio-net-device on a TAP). The TAP is in a
// private network namespace the test makes (and always removes) with an HTTP server on the host
// side; the guest pings it, fetches a random file and prints its sha256, which the test compares
// with the file's.
//
// Needs root, qemu-system-x86, busybox-static, python3 and the guest kernel that
// scripts/linux-guest-kernel fetches (scripts/setup runs it); skips with the reason otherwise.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vdev {
namespace {

using ::testing::HasSubstr;

int Shell(const std::string& cmd) { return system(("(" + cmd + ") >/dev/null 2>&1").c_str()); }

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return absl::StrReplaceAll(s.str(), {{"\r", ""}});
}

std::string GuestDir() {
  const char* d = getenv("VDEV_LINUX_GUEST_DIR");
  return d != nullptr ? d : "/var/cache/vdev/linux-guest";
}

std::string SkipReason() {
  if (geteuid() != 0) return "needs root for a TAP and a network namespace";
  if (Shell("command -v qemu-system-x86_64") != 0) return "qemu-system-x86 is not installed";
  if (access("/bin/busybox", X_OK) != 0) return "busybox-static is not installed";
  if (Shell("command -v python3") != 0) return "python3 is not installed";
  if (access((GuestDir() + "/vmlinuz").c_str(), R_OK) != 0) {
    return "no guest kernel in " + GuestDir() + " (scripts/linux-guest-kernel fetches it)";
  }
  return "";
}

// The guest's /init: load virtio from the kernel's modules, run `body`, power off.
std::string Init(const std::string& modules, const std::string& body) {
  return absl::StrCat(R"(#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci )",
                      modules, R"(; do
  [ -f /mod/$m.ko ] && insmod /mod/$m.ko
done
)",
                      body, "echo GUEST-DONE\npoweroff -f\n");
}

// eth0 up, ping the host side, fetch the file and print its checksum.
constexpr char kNetBody[] = R"INIT(ip link set eth0 up
ip addr add 10.0.0.2/24 dev eth0
if ping -c 1 -W 5 10.0.0.1 >/dev/null; then echo GUEST-PING-OK; fi
if timeout 60 wget -q -O /blob http://10.0.0.1:8000/blob.bin; then
  echo "GUEST-SUM $(sha256sum /blob)"
fi
)INIT";

// Which hardware RNG the kernel uses, and 1 KiB read from it.
constexpr char kRngBody[] =
    R"INIT(echo "GUEST-RNG-CURRENT $(cat /sys/class/misc/hw_random/rng_current)"
echo "GUEST-RNG-BYTES $(timeout 30 dd if=/dev/hwrng bs=256 count=4 2>/dev/null | wc -c)"
)INIT";

class LinuxGuestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
    const int id = getpid() % 100000;
    ns_ = absl::StrCat("vdevlg", id);
    tap_ = absl::StrCat("vlg", id);
    dir_ = absl::StrCat(::testing::TempDir(), "/vdev_linux_", id);
    sock_ = dir_ + "/vu.sock";
    Shell("rm -rf " + dir_);
    ASSERT_EQ(mkdir(dir_.c_str(), 0755), 0);
    Shell("ip netns del " + ns_);
    ASSERT_EQ(Shell("ip netns add " + ns_), 0);
    made_ns_ = true;
    ASSERT_EQ(Shell(Ns("ip link set lo up")), 0);
    ASSERT_EQ(Shell(Ns(absl::StrCat("ip tuntap add dev ", tap_, " mode tap vnet_hdr"))), 0);
    ASSERT_EQ(Shell(Ns(absl::StrCat("ip addr add 10.0.0.1/24 dev ", tap_))), 0);
    ASSERT_EQ(Shell(Ns(absl::StrCat("ip link set ", tap_, " up"))), 0);
    // A random file of 2 MB and a bit, and its checksum.
    std::mt19937_64 rng(std::random_device{}());
    const size_t size = (2 << 20) + rng() % 65536;
    std::ofstream blob(dir_ + "/blob.bin", std::ios::binary);
    for (size_t i = 0; i < size; ++i) blob.put(static_cast<char>(rng()));
    blob.close();
    FILE* p = popen(("sha256sum " + dir_ + "/blob.bin").c_str(), "r");
    char sum[65] = {};
    ASSERT_EQ(fread(sum, 1, 64, p), 64u);
    pclose(p);
    sum_ = sum;
    http_pid_ = Spawn({"ip", "netns", "exec", ns_, "python3", "-m", "http.server", "8000", "--bind",
                       "10.0.0.1", "--directory", dir_});
    for (int i = 0; i < 100; ++i) {
      if (Shell(Ns(
              "python3 -c \"import socket; socket.create_connection(('10.0.0.1', 8000), 1)\"")) ==
          0) {
        break;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
  void TearDown() override {
    for (pid_t* pid : {&qemu_pid_, &vdev_pid_, &http_pid_}) {
      if (*pid > 0) {
        kill(*pid, SIGKILL);
        waitpid(*pid, nullptr, 0);
      }
    }
    if (made_ns_) Shell("ip netns del " + ns_);
    if (!dir_.empty()) Shell("rm -rf " + dir_);
  }
  std::string Ns(const std::string& cmd) { return absl::StrCat("ip netns exec ", ns_, " ", cmd); }
  static pid_t Spawn(std::vector<std::string> argv, const std::string& err_file = "",
                     const std::vector<std::string>& more = {}) {
    argv.insert(argv.end(), more.begin(), more.end());
    const pid_t pid = fork();
    if (pid == 0) {
      setsid();
      if (!err_file.empty()) freopen(err_file.c_str(), "w", stderr);
      freopen("/dev/null", "w", stdout);
      std::vector<char*> a;
      for (const std::string& s : argv) a.push_back(const_cast<char*>(s.c_str()));
      a.push_back(nullptr);
      execvp(a[0], a.data());
      _exit(127);
    }
    return pid;
  }
  void BuildInitrd(const std::string& init) {
    const std::string root = dir_ + "/root";
    ASSERT_EQ(Shell(absl::StrCat("mkdir -p ", root, "/bin ", root, "/mod ", root, "/proc ", root,
                                 "/sys ", root, "/dev")),
              0);
    ASSERT_EQ(Shell(absl::StrCat("cp /bin/busybox ", root, "/bin/busybox")), 0);
    ASSERT_EQ(Shell(absl::StrCat("cp ", GuestDir(), "/modules/*.ko ", root, "/mod/")), 0);
    std::ofstream(root + "/init") << init;
    ASSERT_EQ(chmod((root + "/init").c_str(), 0755), 0);
    ASSERT_EQ(
        Shell(absl::StrCat("cd ", root, " && find . | /bin/busybox cpio -o -H newc | gzip -1 > ",
                           dir_, "/initrd.gz")),
        0);
  }
  // `vdev serve` in the namespace (it opens the TAP there), listening on the socket, with
  // `extra` options (the netdev and the device on the backend's bus).
  void StartBackend(const std::vector<std::string>& extra) {
    vdev_pid_ = Spawn(
        {"ip", "netns", "exec", ns_, VDEV_BINARY, "serve", "-machine", "none", "-chardev",
         "socket,id=c1,server=on,path=" + sock_, "-device", "vhost-user-backend,id=vu0,chardev=c1"},
        dir_ + "/vdev.log", extra);
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (!std::filesystem::exists(sock_) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    ASSERT_TRUE(std::filesystem::exists(sock_)) << Slurp(dir_ + "/vdev.log");
  }
  // Boots the guest with `device` on the vhost-user chardev and waits for it to power off;
  // returns its console.
  std::string RunGuest(const std::vector<std::string>& device) {
    qemu_pid_ = Spawn({"qemu-system-x86_64",
                       "-nodefaults",
                       "-no-user-config",
                       "-display",
                       "none",
                       "-no-reboot",
                       "-accel",
                       "tcg",
                       "-M",
                       "pc,memory-backend=mem0",
                       "-smp",
                       "1",
                       "-m",
                       "256M",
                       "-object",
                       "memory-backend-memfd,id=mem0,size=256M,share=on",
                       "-kernel",
                       GuestDir() + "/vmlinuz",
                       "-initrd",
                       dir_ + "/initrd.gz",
                       "-append",
                       "console=ttyS0 panic=-1 quiet",
                       "-serial",
                       "file:" + dir_ + "/console.log",
                       "-chardev",
                       "socket,id=vhu0,path=" + sock_},
                      dir_ + "/qemu.log", device);
    const absl::Time deadline = absl::Now() + absl::Seconds(150);
    int status = 0;
    while (absl::Now() < deadline) {
      if (waitpid(qemu_pid_, &status, WNOHANG) == qemu_pid_) {
        qemu_pid_ = 0;
        break;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    EXPECT_EQ(qemu_pid_, 0) << "the guest did not power off in time";
    return Slurp(dir_ + "/console.log");
  }

  std::string ns_, tap_, dir_, sock_, sum_;
  bool made_ns_ = false;
  pid_t http_pid_ = 0, vdev_pid_ = 0, qemu_pid_ = 0;
};

TEST_F(LinuxGuestTest, LinuxVirtioNetThroughOurVhostUserBackendFetchesAFileIntact) {
  BuildInitrd(Init("failover net_failover virtio_net", kNetBody));
  StartBackend(
      {"-netdev", "tap,id=n0,ifname=" + tap_, "-device", "virtio-net-device,bus=vu0.0,netdev=n0"});
  // vectors=0: with MSI-X, QEMU 7.2 under TCG crashes on a vhost-user NIC.
  const std::string console =
      RunGuest({"-netdev", "vhost-user,id=net0,chardev=vhu0", "-device",
                "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,vectors=0,romfile="});
  const std::string logs =
      absl::StrCat("console:\n", console, "\nvdev:\n", Slurp(dir_ + "/vdev.log"), "\nqemu:\n",
                   Slurp(dir_ + "/qemu.log"));
  EXPECT_THAT(console, HasSubstr("GUEST-PING-OK")) << logs;
  EXPECT_THAT(console, HasSubstr("GUEST-SUM " + sum_)) << logs;
  EXPECT_THAT(console, HasSubstr("GUEST-DONE")) << logs;
  // The backend outlived its frontend and stops cleanly on SIGTERM, removing its socket.
  ASSERT_EQ(kill(vdev_pid_, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(waitpid(vdev_pid_, &status, 0), vdev_pid_);
  vdev_pid_ = 0;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << logs;
  EXPECT_FALSE(std::filesystem::exists(sock_));
}

// The transport is generic: QEMU's vhost-user-rng-pci on a virtio-rng-device of ours, the guest
// reading /dev/hwrng.
TEST_F(LinuxGuestTest, LinuxVirtioRngThroughOurVhostUserBackend) {
  BuildInitrd(Init("virtio-rng", kRngBody));
  StartBackend({"-device", "virtio-rng-device,bus=vu0.0"});
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
