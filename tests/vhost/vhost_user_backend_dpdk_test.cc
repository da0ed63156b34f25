// DPDK's own virtio driver (testpmd with net_virtio_user) drives our vhost-user backend: testpmd
// sends a first burst of 64-byte frames into our virtio-net-device (--tx-first), whose loopback
// netdev reflects them; our VirtIONet puts them into testpmd's receive ring, testpmd swaps their
// MACs and sends them back (macswap), and so on: both directions, continuously. Then testpmd is
// killed mid-traffic and started again: the backend serves the new one.
//
// Skips (with the reason) when dpdk-testpmd is not installed; scripts/setup installs it.
#include <unistd.h>

#include <filesystem>

#include "core/qdev/machine.h"
#include "gtest/gtest.h"
#include "hw/net/virtio_net/virtio_net.h"
#include "hw/virtio/vhost_user_backend.h"
#include "tests/testing/dpdk_testpmd.h"

namespace vdev::virtio {
namespace {

using testing::TestPmd;

// The last "RX-packets: N" in testpmd's log (its final statistics after Stop).
uint64_t LastRxPackets(const std::string& log) {
  const size_t at = log.rfind("RX-packets: ");
  return at == std::string::npos ? 0 : std::stoull(log.substr(at + 12));
}

class VhostUserBackendDpdkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!TestPmd::Available()) GTEST_SKIP() << TestPmd::kMissing;
    char tmpl[] = "/tmp/vdev-vubd-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    sock_ = dir_ + "/vu.sock";
    m_ = *Machine::Create("none");
    ASSERT_TRUE(m_->ObjectAdd("chardev", "socket,id=c1,server=on,path=" + sock_).ok());
    ASSERT_TRUE(m_->ObjectAdd("netdev", "loopback,id=l0,reflect=on").ok());
    auto vu = m_->DeviceAdd("vhost-user-backend,id=vu0,chardev=c1");
    ASSERT_TRUE(vu.ok()) << vu.status();
    backend_ = static_cast<VhostUserBackend*>(*vu);
    auto net = m_->DeviceAdd("virtio-net-device,bus=vu0.0,netdev=l0");
    ASSERT_TRUE(net.ok()) << net.status();
    net_ = static_cast<VirtIONet*>(*net);
  }
  void TearDown() override {
    pmd_.reset();
    m_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  uint64_t Counter(const char* name) { return net_->counters().Value(name); }
  // Waits until both directions moved at least `n` more frames than `base_tx`/`base_rx`.
  bool WaitFrames(uint64_t base_tx, uint64_t base_rx, uint64_t n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      if (Counter("tx_frames") >= base_tx + n && Counter("rx_frames") >= base_rx + n) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  std::string dir_, sock_;
  std::unique_ptr<Machine> m_;
  VhostUserBackend* backend_ = nullptr;
  VirtIONet* net_ = nullptr;
  std::unique_ptr<TestPmd> pmd_;
};

TEST_F(VhostUserBackendDpdkTest, DpdksVirtioUserPassesFramesBothWaysAndCanBeRestarted) {
  auto pmd = TestPmd::StartVirtioUser(sock_, "macswap", 64, "0@0,1@1", /*tx_first=*/true);
  ASSERT_TRUE(pmd.ok()) << pmd.status();
  pmd_ = std::move(*pmd);
  ASSERT_TRUE(WaitFrames(0, 0, 10000))
      << "tx " << Counter("tx_frames") << " rx " << Counter("rx_frames") << "\n"
      << pmd_->Log();
  EXPECT_EQ(backend_->connections(), 1u);
  // testpmd saw the reflected frames on its receive ring.
  pmd_->Stop();
  EXPECT_GE(LastRxPackets(pmd_->Log()), 10000u) << pmd_->Log();
  // Killed mid-traffic, started again: the backend takes the next one.
  pmd = TestPmd::StartVirtioUser(sock_, "macswap", 64, "0@0,1@1", /*tx_first=*/true);
  ASSERT_TRUE(pmd.ok()) << pmd.status();
  pmd_ = std::move(*pmd);
  uint64_t tx = Counter("tx_frames"), rx = Counter("rx_frames");
  ASSERT_TRUE(WaitFrames(tx, rx, 1000)) << pmd_->Log();
  pmd_->Kill();
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (backend_->connected() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_FALSE(backend_->connected());
  pmd = TestPmd::StartVirtioUser(sock_, "macswap", 64, "0@0,1@1", /*tx_first=*/true);
  ASSERT_TRUE(pmd.ok()) << pmd.status();
  pmd_ = std::move(*pmd);
  tx = Counter("tx_frames");
  rx = Counter("rx_frames");
  ASSERT_TRUE(WaitFrames(tx, rx, 1000)) << pmd_->Log();
  EXPECT_EQ(backend_->connections(), 3u);
}

}  // namespace
}  // namespace vdev::virtio
