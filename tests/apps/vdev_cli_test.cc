// Runs the real `vdev` binary and checks its output and exit status.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct RunResult {
  int status;
  std::string out;  // stdout
  std::string err;  // stderr
};

RunResult RunVdev(const std::string& args) {
  static int calls = 0;
  std::string errfile = ::testing::TempDir() + "/vdev_cli_stderr." + std::to_string(getpid()) +
                        "." + std::to_string(calls++);
  std::string cmd = std::string(VDEV_BINARY) + " " + args + " 2>" + errfile;
  FILE* p = popen(cmd.c_str(), "r");
  RunResult r{-1, "", ""};
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  if (FILE* e = fopen(errfile.c_str(), "r")) {
    while ((n = fread(buf, 1, sizeof(buf), e)) > 0) r.err.append(buf, n);
    fclose(e);
  }
  std::remove(errfile.c_str());
  return r;
}

int Lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

TEST(VdevCliTest, PrintPciShowsEduWithItsBarAndIrqPin) {
  RunResult r = RunVdev("-device edu,id=edu0,addr=4 --print pci");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Bus  0, device   4, function 0:"));
  EXPECT_THAT(r.out, HasSubstr("PCI device 1234:11e8"));
  EXPECT_THAT(r.out, HasSubstr("IRQ 0, pin A"));
  EXPECT_THAT(r.out, HasSubstr("BAR0: 32 bit memory at 0xffffffffffffffff [0x000ffffe]."));
  EXPECT_THAT(r.out, HasSubstr("id \"edu0\""));
  EXPECT_THAT(r.out, HasSubstr("Host bridge: PCI device 8086:1237"));
}

TEST(VdevCliTest, PrintMtreeShowsRamEcamAndConfigPorts) {
  RunResult r = RunVdev("-machine pc,ram-size=256M --print mtree");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("0000000000000000-000000000fffffff (ram): pc.ram"));
  EXPECT_THAT(r.out, HasSubstr("00000000b0000000-00000000bfffffff (i/o): pcie-mmcfg"));
  EXPECT_THAT(r.out, HasSubstr("0000000000000cf8-0000000000000cfb (i/o): pci-conf-idx"));
}

TEST(VdevCliTest, PrintPciOnAMachineWithoutPciIsOneLineError) {
  RunResult r = RunVdev("-machine none --print pci");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "vdev: --print pci: this machine has no PCI bus 'pci.0'\n");
}

TEST(VdevCliTest, PrintPciShowsVirtioRngPciWithItsCapabilities) {
  RunResult r = RunVdev("-device virtio-rng-pci --print pci");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("PCI device 1af4:1044"));
  EXPECT_THAT(r.out, HasSubstr("MSI-X, 2 vectors"));
  EXPECT_THAT(r.out, HasSubstr("virtio common config (type 1), BAR4+0x0"));
  EXPECT_THAT(r.out, HasSubstr("virtio notify (type 2)"));
  EXPECT_THAT(r.out, HasSubstr("virtio ISR (type 3)"));
  EXPECT_THAT(r.out, HasSubstr("virtio device config (type 4)"));
  EXPECT_THAT(r.out, HasSubstr("virtio PCI config access (type 5)"));
}

TEST(VdevCliTest, DumpDtbWritesADeviceTreeForVirt) {
  const std::string path = ::testing::TempDir() + "/vdev_cli_" + std::to_string(getpid()) + ".dtb";
  RunResult r = RunVdev("-machine virt -device virtio-rng-device --dump-dtb " + path);
  EXPECT_EQ(r.status, 0) << r.err;
  FILE* f = fopen(path.c_str(), "rb");
  ASSERT_NE(f, nullptr);
  unsigned char magic[4] = {};
  EXPECT_EQ(fread(magic, 1, 4, f), 4u);
  fclose(f);
  std::remove(path.c_str());
  EXPECT_EQ(magic[0], 0xd0);  // FDT magic 0xd00dfeed, big-endian
  EXPECT_EQ(magic[3], 0xed);
}

TEST(VdevCliTest, DumpDtbOnPcIsOneLineError) {
  RunResult r = RunVdev("--dump-dtb /tmp/never.dtb");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err,
            "vdev: --dump-dtb /tmp/never.dtb: machine 'pc' has no device tree (-machine "
            "virt has one)\n");
}

TEST(VdevCliTest, DefaultMachinePrintsTreeAndQomTree) {
  RunResult r = RunVdev("--print qtree --print qom-tree");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("bus: main-system-bus"));
  EXPECT_THAT(r.out, HasSubstr("bus: pci.0"));
  EXPECT_THAT(r.out, HasSubstr("/machine (pc)"));
  EXPECT_EQ(r.err, "");
}

TEST(VdevCliTest, DeviceHelpListsBuiltinDevices) {
  RunResult r = RunVdev("-device help");
  EXPECT_EQ(r.status, 0);
  EXPECT_THAT(r.out, HasSubstr("Controller/Bridge/Hub devices:\n"
                               "name \"pci-bridge\", bus PCI, desc \"Standard PCI Bridge\""));
}

TEST(VdevCliTest, NestedBusesFromDeviceStrings) {
  RunResult r = RunVdev("-plugin " VDEV_EXAMPLE_PLUGIN
                        " -device pci-bridge,id=br0,addr=3 -device example-pci,id=ex,bus=br0"
                        " --print qtree");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("bus: br0\n"));
  EXPECT_THAT(r.out, HasSubstr("dev: example-pci, id \"ex\""));
}

TEST(VdevCliTest, DeviceHelpListsDevices) {
  RunResult r = RunVdev("-plugin " VDEV_EXAMPLE_PLUGIN " -device help");
  EXPECT_EQ(r.status, 0);
  EXPECT_THAT(r.out, HasSubstr("Misc devices:\nname \"edu\", bus PCI"));
  EXPECT_THAT(r.out, HasSubstr("\nname \"example-pci\", bus PCI"));
}

TEST(VdevCliTest, DeviceTypeHelpListsProperties) {
  RunResult r = RunVdev("-plugin " VDEV_EXAMPLE_PLUGIN " -device example-pci,help");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("example-pci options:"));
  EXPECT_THAT(r.out, HasSubstr("rev=<uint8>"));
  EXPECT_THAT(r.out, HasSubstr("(default: 1)"));
}

TEST(VdevCliTest, PluginDeviceIsCreatedFromDeviceString) {
  RunResult r = RunVdev("-plugin " VDEV_EXAMPLE_PLUGIN
                        " -device example-pci,id=ex0,serial=SN1,rev=3,addr=5 --print qtree");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("dev: example-pci, id \"ex0\""));
  EXPECT_THAT(r.out, HasSubstr("serial = \"SN1\""));
  EXPECT_THAT(r.out, HasSubstr("addr 00:05.0, pci id 1b36:00f0"));
}

TEST(VdevCliTest, UnknownDriverIsOneLineError) {
  RunResult r = RunVdev("-device nope");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "vdev: -device nope: 'nope' is not a valid device model name\n");
  EXPECT_EQ(r.out, "");
}

TEST(VdevCliTest, UnknownPropertyIsOneLineError) {
  RunResult r = RunVdev("-plugin " VDEV_EXAMPLE_PLUGIN " -device example-pci,macc=1");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "vdev: -device example-pci,macc=1: Property 'example-pci.macc' not found\n");
}

TEST(VdevCliTest, BadValueIsOneLineError) {
  RunResult r = RunVdev("-plugin " VDEV_EXAMPLE_PLUGIN " -device example-pci,rev=x");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err,
            "vdev: -device example-pci,rev=x: Parameter 'rev' expects an integer, got 'x'\n");
}

TEST(VdevCliTest, DuplicateIdIsOneLineError) {
  RunResult r = RunVdev("-plugin " VDEV_EXAMPLE_PLUGIN
                        " -device example-pci,id=nic0 -device example-pci,id=nic0");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "vdev: -device example-pci,id=nic0: Duplicate ID 'nic0' for device\n");
}

TEST(VdevCliTest, UnknownBusIsOneLineError) {
  RunResult r = RunVdev("-plugin " VDEV_EXAMPLE_PLUGIN " -device example-pci,bus=pci.9");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "vdev: -device example-pci,bus=pci.9: Bus 'pci.9' not found\n");
}

TEST(VdevCliTest, MachineHelpAndUnknownMachine) {
  RunResult h = RunVdev("-machine help");
  EXPECT_EQ(h.status, 0);
  EXPECT_THAT(h.out, HasSubstr("pc "));
  RunResult bad = RunVdev("-machine q35");
  EXPECT_EQ(bad.status, 1);
  EXPECT_EQ(Lines(bad.err), 1);
  EXPECT_THAT(bad.err, HasSubstr("unsupported machine type 'q35'"));
}

TEST(VdevCliTest, UnknownNetdevBackendIsOneLineError) {
  RunResult r = RunVdev("-netdev user,id=n0");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(
      r.err,
      "vdev: -netdev user,id=n0: Parameter 'type' expects a netdev backend type, got 'user'\n");
  RunResult h = RunVdev("-netdev help");
  EXPECT_EQ(h.status, 0);
  for (const char* t : {"tap", "dgram", "hubport", "loopback"}) EXPECT_THAT(h.out, HasSubstr(t));
}

TEST(VdevCliTest, NetdevTapHelpAndVirtioNetPciHelp) {
  RunResult r = RunVdev("-netdev tap,help");
  EXPECT_EQ(r.status, 0);
  EXPECT_THAT(r.out, HasSubstr("vnet_hdr=<enum>"));
  // As the check: a device's help with a netdev on the line lists its properties.
  RunResult d = RunVdev("-netdev loopback,id=n0 -device virtio-net-pci,netdev=n0,help");
  EXPECT_EQ(d.status, 0);
  for (const char* p : {"mac=<macaddr>", "netdev=<link<netdev>>", "mq=<bool>", "mrg_rxbuf=<bool>",
                        "host_mtu=<uint16>", "ctrl_guest_offloads=<bool>", "rx_queue_size=<uint16>",
                        "vectors=<uint32>", "event_idx=<bool>", "indirect_desc=<bool>"}) {
    EXPECT_THAT(d.out, HasSubstr(p));
  }
}

TEST(VdevCliTest, TapWithVhostIsRefusedInOneLine) {
  RunResult r = RunVdev("-netdev tap,id=n0,ifname=vdevclitap,vhost=on");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(Lines(r.err), 1) << r.err;
  if (access("/dev/vhost-net", F_OK) != 0) {
    // The check: one line naming the missing device.
    EXPECT_EQ(r.err,
              "vdev: -netdev tap,id=n0,ifname=vdevclitap,vhost=on: tap 'n0': vhost=on: cannot open "
              "/dev/vhost-net: No such file or directory (no vhost-net on this machine: load "
              "vhost_net, or use vhost=off)\n");
  } else {
    EXPECT_THAT(r.err, HasSubstr("vhost=on"));
  }
}

TEST(VdevCliTest, FilterObjectsComeAfterTheirNetdev) {
  const std::string pcap = ::testing::TempDir() + "/vdev_cli_dump.pcap";
  RunResult r = RunVdev("-object filter-dump,id=f0,netdev=n0,file=" + pcap +
                        " -netdev loopback,id=n0 -device virtio-net-pci,netdev=n0");
  EXPECT_EQ(r.status, 0) << r.err;
  std::remove(pcap.c_str());
}

TEST(VdevCliTest, MalformedOptionStringIsOneLineError) {
  RunResult r = RunVdev("'-device' 'x,id=a,id=b'");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err, "vdev: -device x,id=a,id=b: Parameter 'id' given more than once\n");
}

TEST(VdevCliTest, BadPluginIsOneLineError) {
  RunResult r = RunVdev("-plugin /nonexistent.so -device help");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(Lines(r.err), 1);
  EXPECT_THAT(r.err, HasSubstr("vdev: -plugin /nonexistent.so: plugin '/nonexistent.so': "));
}

TEST(VdevCliTest, PluginOptionTakesQemuSpelling) {
  RunResult ok = RunVdev("-plugin file=" VDEV_EXAMPLE_PLUGIN " -device example-pci,help");
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("example-pci options:"));
  RunResult bad = RunVdev("-plugin file=" VDEV_EXAMPLE_PLUGIN ",arg=1 -device help");
  EXPECT_EQ(bad.status, 1);
  EXPECT_THAT(bad.err, HasSubstr(": Invalid parameter 'arg'\n"));
}

TEST(VdevCliTest, UsageErrors) {
  RunResult unknown = RunVdev("-frobnicate x");
  EXPECT_EQ(unknown.status, 1);
  EXPECT_THAT(unknown.err, HasSubstr("unknown option '-frobnicate'"));
  RunResult missing = RunVdev("-device");
  EXPECT_EQ(missing.status, 1);
  EXPECT_EQ(missing.err, "vdev: -device: option needs a value\n");
  RunResult print = RunVdev("--print everything");
  EXPECT_EQ(print.status, 1);
  RunResult help = RunVdev("--help");
  EXPECT_EQ(help.status, 0);
  EXPECT_THAT(help.out, HasSubstr("usage: vdev"));
}

TEST(VdevCliTest, TypesAndPluginsListings) {
  RunResult r = RunVdev("-plugin " VDEV_EXAMPLE_PLUGIN " --print types --print plugins");
  EXPECT_EQ(r.status, 0);
  EXPECT_THAT(r.out, HasSubstr("example-pci: pci-device\n"));
  EXPECT_THAT(r.out, HasSubstr("example ("));
  EXPECT_THAT(r.out, Not(HasSubstr("test-device")));  // test types live only in test binaries
}

}  // namespace
