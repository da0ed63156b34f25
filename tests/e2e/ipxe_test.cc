// End to end with a real, unmodified guest: iPXE's virtio-net driver in QEMU 7.2 (TCG) drives our
// virtio-net-pci through `vdev serve-qemu` and x-pci-proxy-dev; traffic goes through our `tap`
// netdev into a private network namespace the test makes (and always removes), with an HTTP
// server on the host side. Needs root, qemu-system-x86, ipxe and python3 (dnsmasq-base for the
// DHCP case); scripts/setup installs them. Skips with the reason when something is missing.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/netns.h"

namespace vdev {
namespace {

using ::testing::HasSubstr;

using testing::Shell;
using testing::Slurp;

std::string SkipReason(bool dhcp) {
  if (std::string why = testing::NetnsSkipReason(); !why.empty()) return why;
  if (Shell("command -v qemu-system-x86_64") != 0) return "qemu-system-x86 is not installed";
  if (access("/boot/ipxe.lkrn", R_OK) != 0) return "ipxe is not installed (/boot/ipxe.lkrn)";
  if (dhcp && Shell("command -v dnsmasq") != 0) return "dnsmasq-base is not installed";
  return "";
}

class IpxeTest : public ::testing::Test {
 protected:
  void Setup(bool dhcp = false) {
    if (std::string why = SkipReason(dhcp); !why.empty()) GTEST_SKIP() << why;
    dir_ = absl::StrCat(::testing::TempDir(), "/vdev_ipxe_", getpid());
    tap_ = ns_.tap();
    Shell("rm -rf " + dir_);
    ASSERT_EQ(mkdir(dir_.c_str(), 0755), 0);
    // A persistent TAP, configured before the guest boots; vdev's tap netdev opens it by name.
    ASSERT_TRUE(ns_.Create().ok());
    // The files: a random blob of at least 1 MB and a second script with a random marker.
    std::mt19937_64 rng(std::random_device{}());
    size_ = (1 << 20) + rng() % 65536;
    marker_ = absl::StrFormat("MARKER-%016x", rng());
    ASSERT_FALSE(testing::WriteRandomFile(dir_ + "/blob.bin", size_).empty());
    std::ofstream(dir_ + "/second.ipxe") << "#!ipxe\necho second script says " << marker_ << "\n";
    ASSERT_TRUE(ns_.StartHttp(dir_).ok());
    if (dhcp) {
      ASSERT_EQ(Shell(Ns(absl::StrCat(
                    "dnsmasq --interface=", tap_,
                    " --bind-interfaces --port=0 --no-ping "
                    "--dhcp-range=10.0.0.50,10.0.0.60,1h --dhcp-option=encap:175,176,1b "
                    "--pid-file=",
                    dir_, "/dnsmasq.pid --dhcp-leasefile=", dir_, "/leases"))),
                0);
      made_dnsmasq_ = true;
    }
  }
  void TearDown() override {
    if (made_dnsmasq_) Shell(absl::StrCat("kill $(cat ", dir_, "/dnsmasq.pid)"));
    if (!dir_.empty()) Shell("rm -rf " + dir_);
  }
  std::string Ns(const std::string& cmd) { return ns_.Exec(cmd); }

  void WriteBootScript(bool dhcp) {
    std::ofstream f(dir_ + "/boot.ipxe");
    f << "#!ipxe\n";
    if (dhcp) {
      f << "ifconf --configurator dhcp net0 || goto fail\n";
    } else {
      f << "ifopen net0 || goto fail\nset net0/ip 10.0.0.2\nset net0/netmask 255.255.255.0\n";
    }
    f << "echo guest mac ${net0/mac} ip ${net0/ip}\n"
         "imgfetch http://10.0.0.1:8000/blob.bin || goto fail\n"
         "imgstat\n"
         "chain http://10.0.0.1:8000/second.ipxe || goto fail\n"
         "sleep 1\nreboot\n"
         ":fail\necho IPXE FAILED\nsleep 1\nreboot\n";
  }

  // Runs vdev serve-qemu with iPXE; returns vdev's exit status and its stdout in `out`.
  int RunGuest(const std::string& nic_opts, bool dhcp, std::string* out) {
    WriteBootScript(dhcp);
    const std::string cmd =
        absl::StrCat("cd ", dir_, " && timeout 120 ", Ns(VDEV_BINARY),
                     " serve-qemu -netdev tap,id=n0,ifname=", tap_,
                     ",script=no -device virtio-net-pci,id=nic0,netdev=n0,mac=52:54:00:12:34:56",
                     nic_opts, " -- qemu-system-x86_64 -name vdev-e2e-", getpid(),
                     " -accel tcg -m 256 -display none -no-reboot -nic none"
                     " -object memory-backend-memfd,id=mem,size=256M,share=on"
                     " -machine pc,memory-backend=mem,graphics=off -serial file:serial.log"
                     " -kernel /boot/ipxe.lkrn -initrd boot.ipxe"
                     " -device x-pci-proxy-dev,id=px0,fd=@FD:nic0@ 2>",
                     dir_, "/vdev.err");
    FILE* p = popen(cmd.c_str(), "r");
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out->append(buf, n);
    const int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  }

  void CheckRun(const std::string& nic_opts, bool dhcp) {
    std::string out;
    const int status = RunGuest(nic_opts, dhcp, &out);
    const std::string serial = Slurp(dir_ + "/serial.log");
    EXPECT_EQ(status, 0) << Slurp(dir_ + "/vdev.err");
    EXPECT_THAT(serial, HasSubstr("guest mac 52:54:00:12:34:56"));  // the guest sees our MAC
    EXPECT_THAT(serial, HasSubstr(absl::StrCat("blob.bin : ", size_, " bytes")));
    EXPECT_THAT(serial, HasSubstr(absl::StrCat("second script says ", marker_)));
    EXPECT_THAT(serial, Not(HasSubstr("IPXE FAILED"))) << serial;
    // Our counters match the traffic: at least the file came in through the device.
    const size_t at = out.find("rx_bytes=");
    ASSERT_NE(at, std::string::npos) << out;
    EXPECT_GE(std::stoull(out.substr(at + 9)), size_) << out;
    EXPECT_THAT(out, HasSubstr("tx_frames="));
  }

  testing::TestNetns ns_{"vdevipxe", "vdi"};
  std::string tap_, dir_, marker_;
  size_t size_ = 0;
  bool made_dnsmasq_ = false;
};

TEST_F(IpxeTest, ModernDeviceStaticAddressFetchesAFileAndChainsAScript) {
  Setup();
  CheckRun("", false);
}

TEST_F(IpxeTest, TransitionalDeviceForcedToLegacy) {
  Setup();
  CheckRun(",disable-legacy=off,disable-modern=on", false);
}

TEST_F(IpxeTest, AddressFromDhcp) {
  Setup(/*dhcp=*/true);
  CheckRun("", true);
  EXPECT_THAT(Slurp(dir_ + "/serial.log"), HasSubstr("ip 10.0.0.5"));
}

TEST_F(IpxeTest, KillingQemuMidRunEndsVdevAndLeavesNoProcess) {
  Setup();
  std::ofstream(dir_ + "/boot.ipxe") << "#!ipxe\nifopen net0\nsleep 60\n";
  const std::string name = absl::StrCat("vdev-e2e-kill-", getpid());
  const std::string cmd = absl::StrCat(
      "cd ", dir_, " && timeout 60 ", Ns(VDEV_BINARY),
      " serve-qemu -netdev tap,id=n0,ifname=", tap_,
      ",script=no -device virtio-net-pci,id=nic0,netdev=n0 -- qemu-system-x86_64 -name ", name,
      " -accel tcg -m 256 -display none -no-reboot -nic none"
      " -object memory-backend-memfd,id=mem,size=256M,share=on"
      " -machine pc,memory-backend=mem,graphics=off -serial file:serial.log"
      " -kernel /boot/ipxe.lkrn -initrd boot.ipxe -device x-pci-proxy-dev,id=px0,fd=@FD:nic0@"
      " >/dev/null 2>",
      dir_, "/vdev.err");
  std::thread killer([&] {
    // (Anchored: the shell running vdev has the same words in its command line.)
    for (int i = 0; i < 100 && Shell("pgrep -f '^qemu-system-x86_64 -name " + name + "'") != 0;
         ++i) {
      usleep(50000);
    }
    sleep(2);  // mid-run: the guest has the device open
    Shell("pkill -KILL -f '^qemu-system-x86_64 -name " + name + "'");
  });
  const int st = system(cmd.c_str());
  killer.join();
  EXPECT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 128 + SIGKILL) << Slurp(dir_ + "/vdev.err");
  EXPECT_THAT(Slurp(dir_ + "/vdev.err"), HasSubstr("QEMU was killed by signal 9"));
  EXPECT_NE(Shell("pgrep -f '^qemu-system-x86_64 -name " + name + "'"), 0)
      << "QEMU was left behind";
  EXPECT_NE(Shell("pgrep -f '^" + std::string(VDEV_BINARY) + " serve-qemu'"), 0)
      << "vdev was left behind";
}

}  // namespace
}  // namespace vdev
