// The multi-process protocol (hw/remote/mpqemu.h) and the device server (pci_proxy_server.h),
// with the test playing QEMU on the other end of a real socketpair: config cycles, BAR sizing
// and programming, BAR accesses into QEMU's edu device, SYNC_SYSMEM with memfd RAM and DMA into
// it, SET_IRQFD, DEVICE_RESET; and the hostile rows: unknown commands, wrong sizes, wrong fd
// counts (every fd closed), regions past the end of their fd, overlapping or wrapping regions,
// config accesses past the space, a peer that hangs up.
#include "hw/remote/mpqemu.h"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hw/misc/edu.h"
#include "hw/remote/pci_proxy_server.h"
#include "tests/testing/open_fds.h"

namespace vdev::remote {
namespace {

using ::testing::HasSubstr;
using ::vdev::testing::OpenFdCount;

std::vector<uint8_t> CfgPayload(uint32_t addr, uint32_t val, int32_t len) {
  std::vector<uint8_t> p(12);
  std::memcpy(&p[0], &addr, 4);
  std::memcpy(&p[4], &val, 4);
  std::memcpy(&p[8], &len, 4);
  return p;
}

std::vector<uint8_t> BarPayload(uint64_t addr, uint64_t val, uint32_t size, bool memory) {
  std::vector<uint8_t> p(24, 0);
  std::memcpy(&p[0], &addr, 8);
  std::memcpy(&p[8], &val, 8);
  std::memcpy(&p[16], &size, 4);
  p[20] = memory;
  return p;
}

std::vector<uint8_t> SysmemPayload(const std::vector<std::array<uint64_t, 3>>& regions) {
  std::vector<uint8_t> p(192, 0);
  for (size_t i = 0; i < regions.size(); ++i) {
    std::memcpy(&p[8 * i], &regions[i][0], 8);
    std::memcpy(&p[64 + 8 * i], &regions[i][1], 8);
    std::memcpy(&p[128 + 8 * i], &regions[i][2], 8);
  }
  return p;
}

UniqueFd Memfd(size_t size) {
  UniqueFd fd(memfd_create("qemu-ram", MFD_CLOEXEC));
  EXPECT_EQ(ftruncate(fd.get(), static_cast<off_t>(size)), 0);
  return fd;
}

// QEMU's side of the connection.
class FakeQemu {
 public:
  explicit FakeQemu(int sock) : sock_(sock) {}
  uint64_t Call(MpqemuCmd cmd, const std::vector<uint8_t>& payload) {
    EXPECT_TRUE(SendMpqemuRaw(sock_, static_cast<int32_t>(cmd), payload, {}).ok());
    auto r = ReadMpqemuMessage(sock_);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return ~uint64_t{0};
    EXPECT_EQ(r->cmd, MpqemuCmd::kRet);
    return r->ret;
  }
  uint32_t CfgRead(uint32_t addr, int len) {
    return static_cast<uint32_t>(Call(MpqemuCmd::kPciCfgRead, CfgPayload(addr, 0, len)));
  }
  void CfgWrite(uint32_t addr, uint32_t val, int len) {
    Call(MpqemuCmd::kPciCfgWrite, CfgPayload(addr, val, len));
  }
  uint64_t BarRead(uint64_t addr, uint32_t size) {
    return Call(MpqemuCmd::kBarRead, BarPayload(addr, 0, size, true));
  }
  void BarWrite(uint64_t addr, uint64_t val, uint32_t size) {
    Call(MpqemuCmd::kBarWrite, BarPayload(addr, val, size, true));
  }

 private:
  int sock_;
};

class ProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    m_ = *Machine::Create("pc");
    auto d = m_->DeviceAdd("edu,id=e0,addr=4");
    ASSERT_TRUE(d.ok()) << d.status();
    edu_ = static_cast<pci::PCIDevice*>(*d);
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    qemu_sock_ = UniqueFd(sv[0]);
    server_ = std::make_unique<PciProxyServer>(*m_, *edu_, UniqueFd(sv[1]));
    thread_ = std::thread([this] { result_ = server_->Serve(); });
    qemu_ = std::make_unique<FakeQemu>(qemu_sock_.get());
  }
  void TearDown() override { (void)Hangup(); }
  // QEMU goes away: the server returns.
  absl::Status Hangup() {
    if (thread_.joinable()) {
      shutdown(qemu_sock_.get(), SHUT_RDWR);
      thread_.join();
    }
    return result_;
  }
  absl::Status WaitServer() {
    if (thread_.joinable()) thread_.join();
    return result_;
  }
  void Send(int32_t cmd, const std::vector<uint8_t>& payload, const std::vector<int>& fds = {}) {
    ASSERT_TRUE(SendMpqemuRaw(qemu_sock_.get(), cmd, payload, fds).ok());
  }

  std::unique_ptr<Machine> m_;
  pci::PCIDevice* edu_ = nullptr;
  UniqueFd qemu_sock_;
  std::unique_ptr<PciProxyServer> server_;
  std::thread thread_;
  absl::Status result_;
  std::unique_ptr<FakeQemu> qemu_;
};

constexpr uint64_t kBar = 0xfe000000;

TEST_F(ProxyTest, ConfigSpaceBarsAndRegistersAreServedFromTheDevice) {
  EXPECT_EQ(qemu_->CfgRead(0, 4), 0x11e81234u);
  // QEMU's BAR sizing at realize: all-ones, read back, restore.
  qemu_->CfgWrite(0x10, 0xffffffff, 4);
  EXPECT_EQ(qemu_->CfgRead(0x10, 4), 0xfff00000u);  // 1 MiB memory BAR
  qemu_->CfgWrite(0x10, static_cast<uint32_t>(kBar), 4);
  qemu_->CfgWrite(0x04, 0x6, 2);  // memory decode + bus master
  EXPECT_EQ(qemu_->CfgRead(0x10, 4), kBar);
  EXPECT_EQ(qemu_->BarRead(kBar + 0x00, 4), 0x010000edu);
  qemu_->BarWrite(kBar + 0x04, 0x12345678, 4);
  EXPECT_EQ(qemu_->BarRead(kBar + 0x04, 4), ~0x12345678u);
  qemu_->BarWrite(kBar + 0x08, 5, 4);
  uint64_t fact = 0;
  for (int i = 0; i < 1000 && (fact = qemu_->BarRead(kBar + 0x08, 4)) != 120; ++i) {
  }
  EXPECT_EQ(fact, 120u);
  // Outside every BAR, or an I/O access to a memory BAR: all-ones, counted.
  EXPECT_EQ(qemu_->BarRead(kBar + (1 << 20), 4), 0xffffffffu);
  EXPECT_EQ(qemu_->Call(MpqemuCmd::kBarRead, BarPayload(kBar, 0, 2, false)), 0xffffu);
  EXPECT_EQ(server_->counters().Value("bar_miss"), 2u);
  EXPECT_TRUE(Hangup().ok());
}

TEST_F(ProxyTest, SyncSysmemReplacesGuestRamAndDmaReachesIt) {
  qemu_->CfgWrite(0x10, static_cast<uint32_t>(kBar), 4);
  qemu_->CfgWrite(0x04, 0x6, 2);
  const size_t kRam = 4 << 20;
  UniqueFd ram = Memfd(2 * kRam);
  auto* host = static_cast<uint8_t*>(
      mmap(nullptr, 2 * kRam, PROT_READ | PROT_WRITE, MAP_SHARED, ram.get(), 0));
  ASSERT_NE(host, MAP_FAILED);
  // Two regions of one memfd, as QEMU sends them (below and above the VGA hole).
  for (int round = 0; round < 3; ++round) {  // repeated, as at boot: old fds must be closed
    const int before = OpenFdCount();
    UniqueFd dup1(dup(ram.get())), dup2(dup(ram.get()));
    Send(0, SysmemPayload({{0, 0xa0000, 0}, {0x100000, kRam - 0x100000, 0x100000}}),
         {dup1.get(), dup2.get()});
    dup1.Reset();
    dup2.Reset();
    // A round trip to know the server handled it.
    EXPECT_EQ(qemu_->CfgRead(0, 2), 0x1234u);
    if (round > 0) {
      EXPECT_EQ(OpenFdCount(), before) << "round " << round;
    }
  }
  EXPECT_EQ(m_->guest_memory().regions().size(), 2u);
  // edu DMA: RAM 0x200000 -> edu buffer -> RAM 0x300000.
  for (int i = 0; i < 64; ++i) host[0x200000 + i] = static_cast<uint8_t>(i * 3);
  qemu_->BarWrite(kBar + 0x80, 0x200000, 8);
  qemu_->BarWrite(kBar + 0x88, 0x40000, 8);
  qemu_->BarWrite(kBar + 0x90, 64, 8);
  qemu_->BarWrite(kBar + 0x98, 1, 8);
  for (int i = 0; i < 1000 && (qemu_->BarRead(kBar + 0x98, 8) & 1); ++i) {
  }
  qemu_->BarWrite(kBar + 0x80, 0x40000, 8);
  qemu_->BarWrite(kBar + 0x88, 0x300000, 8);
  qemu_->BarWrite(kBar + 0x90, 64, 8);
  qemu_->BarWrite(kBar + 0x98, 3, 8);
  for (int i = 0; i < 1000 && (qemu_->BarRead(kBar + 0x98, 8) & 1); ++i) {
  }
  EXPECT_EQ(std::memcmp(host + 0x200000, host + 0x300000, 64), 0);
  EXPECT_EQ(server_->counters().Value("sync_sysmem"), 3u);
  munmap(host, 2 * kRam);
}

TEST_F(ProxyTest, IrqfdCarriesTheIntxLevelAndResetAnswers) {
  UniqueFd irq(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)), resample(eventfd(0, EFD_CLOEXEC));
  Send(6, {}, {irq.get(), resample.get()});
  qemu_->CfgWrite(0x10, static_cast<uint32_t>(kBar), 4);
  qemu_->CfgWrite(0x04, 0x2, 2);
  qemu_->BarWrite(kBar + 0x60, 1, 4);  // edu raises its interrupt (INTx)
  uint64_t v = 0;
  EXPECT_EQ(read(irq.get(), &v, sizeof(v)), 8);
  EXPECT_EQ(v, 1u);
  EXPECT_EQ(qemu_->Call(MpqemuCmd::kDeviceReset, {}), 0u);
  EXPECT_EQ(qemu_->CfgRead(0x04, 2) & 0x2, 0u);  // command register back to power-on
}

// ---- hostile peers: each ends the connection with one clear error, and leaks nothing ----

struct Hostile {
  const char* name;
  int32_t cmd;
  std::vector<uint8_t> payload;
  int fds;
  const char* error;
};

class ProxyHostileTest : public ProxyTest, public ::testing::WithParamInterface<Hostile> {};

TEST_P(ProxyHostileTest, EndsTheConnectionWithOneErrorAndClosesEveryFd) {
  const Hostile& h = GetParam();
  const int before = OpenFdCount();
  {
    std::vector<UniqueFd> fds;
    std::vector<int> raw;
    for (int i = 0; i < h.fds; ++i) {
      fds.push_back(Memfd(4096));
      raw.push_back(fds.back().get());
    }
    Send(h.cmd, h.payload, raw);
  }
  absl::Status s = WaitServer();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr(h.error));
  EXPECT_EQ(OpenFdCount(), before) << "an fd the peer sent was not closed";
}

INSTANTIATE_TEST_SUITE_P(
    Rows, ProxyHostileTest,
    ::testing::Values(
        Hostile{"UnknownCommand", 9, {}, 0, "unknown command 9"},
        Hostile{"NegativeCommand", -1, {}, 0, "unknown command -1"},
        Hostile{"CfgReadWrongSize", 3, std::vector<uint8_t>(8), 0,
                "PCI_CFGREAD with a 8-byte payload"},
        Hostile{"BarWriteWithAnFd", 4, BarPayload(kBar, 0, 4, true), 1, "BAR_WRITE with 1 fds"},
        Hostile{"IrqfdWithOneFd", 6, {}, 1, "SET_IRQFD with 1 fds"},
        Hostile{"ResetWithFds", 7, {}, 3, "DEVICE_RESET with 3 fds"},
        Hostile{"CfgPastTheSpace", 3, CfgPayload(0xfe, 0, 4), 0, "past the config space"},
        Hostile{"CfgBadWidth", 2, CfgPayload(0x10, 0, 3), 0, "of width 3"},
        Hostile{"BarBadWidth", 5, BarPayload(kBar, 0, 3, true), 0, "of width 3"},
        Hostile{"RetFromThePeer", 1, std::vector<uint8_t>(8), 0, "unexpected RET"},
        Hostile{"SysmemWithoutFds", 0, SysmemPayload({{0, 4096, 0}}), 0, "with 0 fds"},
        Hostile{"SysmemPastTheFd", 0, SysmemPayload({{0, 8192, 0}}), 1, "past the end of its fd"},
        Hostile{"SysmemOffsetPastTheFd", 0, SysmemPayload({{0, 4096, 4096}}), 1,
                "past the end of its fd"},
        Hostile{"SysmemWraps", 0, SysmemPayload({{~uint64_t{0} - 10, 4096, 0}}), 1, "wraps"},
        Hostile{"SysmemOverlap", 0, SysmemPayload({{0, 4096, 0}, {0x800, 2048, 0}}), 2, "overlap"},
        Hostile{"SysmemMoreFdsThanRegions", 0, SysmemPayload({{0, 4096, 0}}), 3,
                "more fds than regions"},
        Hostile{"SysmemNegativeOffset", 0, SysmemPayload({{0, 4096, ~uint64_t{0}}}), 1,
                "offset -1"}),
    [](const ::testing::TestParamInfo<Hostile>& i) { return std::string(i.param.name); });

TEST_F(ProxyTest, OversizedPayloadIsRefusedUnread) {
  std::vector<uint8_t> header(16, 0);
  const uint64_t size = uint64_t{1} << 40;
  std::memcpy(&header[8], &size, 8);
  ASSERT_EQ(send(qemu_sock_.get(), header.data(), header.size(), 0), 16);
  absl::Status s = WaitServer();
  EXPECT_THAT(std::string(s.message()), HasSubstr("at most 4096"));
}

TEST_F(ProxyTest, TruncatedMessageIsAnError) {
  std::vector<uint8_t> header(16, 0);
  const int32_t cmd = 3;
  const uint64_t size = 12;
  std::memcpy(&header[0], &cmd, 4);
  std::memcpy(&header[8], &size, 8);
  ASSERT_EQ(send(qemu_sock_.get(), header.data(), header.size(), 0), 16);
  ASSERT_EQ(send(qemu_sock_.get(), "abcd", 4, 0), 4);
  shutdown(qemu_sock_.get(), SHUT_WR);
  absl::Status s = WaitServer();
  EXPECT_THAT(std::string(s.message()), HasSubstr("connection closed inside a message"));
}

TEST_F(ProxyTest, PeerHangingUpEndsServingCleanly) { EXPECT_TRUE(Hangup().ok()); }

}  // namespace
}  // namespace vdev::remote
