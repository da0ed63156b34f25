// virtio-net-pci with its queues on an iothread (-object iothread,id=io0 -device
// virtio-net-pci,...,iothread=io0), driven by the software guest over `loopback`: the guest's
// notify only signals (nothing is transmitted while the iothread is held), traffic comes back in
// order with the netdev on the main loop or on the same iothread, a transmit burst bounded per
// kick continues on the iothread, and hot-unplug under traffic quiesces it.
#include <atomic>

#include "absl/synchronization/notification.h"
#include "bus/virtio/virtio_uapi.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hw/machine/pc.h"
#include "hw/net/virtio_net/pci.h"
#include "net/loopback.h"
#include "tests/testing/net_frames.h"
#include "tests/testing/pci_guest.h"
#include "tests/testing/virtio_net_driver.h"
#include "tests/testing/virtio_pci_driver.h"

namespace vdev::virtio {
namespace {

using testing::GuestVring;
using testing::Mac;
using testing::VirtioNetDriver;
using testing::VirtioPciDriver;

constexpr uint64_t Bit(unsigned b) { return uint64_t{1} << b; }
constexpr uint64_t kVersion1 = Bit(VIRTIO_F_VERSION_1);
constexpr Mac kGuestMac = {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};
constexpr Mac kOtherMac = {0x52, 0x54, 0x00, 0x11, 0x22, 0x33};
constexpr Mac kPeerMac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
constexpr absl::Duration kWait = absl::Seconds(5);

std::vector<uint8_t> FrameTo(const Mac& dst, size_t payload, uint8_t seed = 1) {
  std::vector<uint8_t> p(payload);
  for (size_t i = 0; i < payload; ++i) p[i] = static_cast<uint8_t>(seed + i * 7);
  return testing::EthFrame(dst, kPeerMac, 0x88b5, p);
}

class VirtioNetIOThreadTest : public ::testing::Test {
 protected:
  void Build(const std::string& netdev, const std::string& device,
             const std::string& iothread = "iothread,id=io0,poll-max-ns=0") {
    m_ = *Machine::Create("pc");
    m_->irq().set_sink(&sink_);
    auto io = m_->ObjectAdd("object", iothread);
    ASSERT_TRUE(io.ok()) << io.status();
    io_ = qom::DynamicCast<IOThread>(*io);
    auto nd = m_->ObjectAdd("netdev", netdev);
    ASSERT_TRUE(nd.ok()) << nd.status();
    lo_ = qom::DynamicCast<net::Loopback>(*nd);
    auto d = m_->DeviceAdd(device);
    ASSERT_TRUE(d.ok()) << d.status();
    proxy_ = static_cast<VirtIONetPCI*>(*d);
    testing::PcVirtioFunction f;
    ASSERT_TRUE(testing::ProbePcVirtio(*m_, proxy_->device_id(), &f));
    guest_ = std::move(f.guest);
    pci_ = std::move(f.driver);
    drv_ = std::make_unique<VirtioNetDriver>(*pci_, m_->guest_memory(), GuestAddr(0x1000000));
  }
  // Reflected frames come back in order (receive buffers posted first unless `fill` is false).
  void RoundTrip(int frames, bool fill = true) {
    if (fill) drv_->FillRx(0, 256);
    std::vector<std::vector<uint8_t>> sent;
    for (int i = 0; i < frames; ++i) {
      sent.push_back(FrameTo(kGuestMac, 46 + (i * 37) % 1400, static_cast<uint8_t>(i)));
      while (!drv_->Send(0, sent.back())) drv_->ReclaimTx(0);
    }
    auto got = drv_->WaitRx(0, sent.size(), kWait);
    ASSERT_EQ(got.size(), sent.size());
    for (size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(got[i].data, sent[i]) << i;
  }

  RecordingIrqSink sink_;
  std::unique_ptr<Machine> m_;
  IOThread* io_ = nullptr;
  net::Loopback* lo_ = nullptr;
  VirtIONetPCI* proxy_ = nullptr;
  VirtIONet* net() { return proxy_->net(); }
  std::unique_ptr<testing::PciGuest> guest_;
  std::unique_ptr<VirtioPciDriver> pci_;
  std::unique_ptr<VirtioNetDriver> drv_;
};

TEST_F(VirtioNetIOThreadTest, TheGuestsNotifyOnlySignalsTheIOThreadServesTheQueue) {
  Build("loopback,id=n0,reflect=off", "virtio-net-pci,netdev=n0,iothread=io0");
  ASSERT_TRUE(drv_->Init(kVersion1));
  lo_->SetCapture(true);
  // Hold the iothread: a notify served on the notifying thread would transmit anyway.
  absl::Notification held, release;
  io_->loop().Post([&] {
    held.Notify();
    release.WaitForNotification();
  });
  held.WaitForNotification();
  ASSERT_TRUE(drv_->Send(0, FrameTo(kOtherMac, 60)));
  EXPECT_FALSE(lo_->WaitCaptured(1, absl::Milliseconds(200)));
  release.Notify();
  EXPECT_TRUE(lo_->WaitCaptured(1, kWait));
  EXPECT_TRUE(drv_->WaitTx(0, kWait));
}

TEST_F(VirtioNetIOThreadTest, ReflectedTrafficComesBackInOrderWithTheNetdevOnTheMainLoop) {
  Build("loopback,id=n0,reflect=on", "virtio-net-pci,netdev=n0,iothread=io0");
  ASSERT_TRUE(drv_->Init(kVersion1 | Bit(VIRTIO_NET_F_MRG_RXBUF)));
  RoundTrip(300);
}

TEST_F(VirtioNetIOThreadTest, ReflectedTrafficComesBackInOrderWithTheNetdevOnTheSameIOThread) {
  Build("loopback,id=n0,reflect=on,iothread=io0", "virtio-net-pci,netdev=n0,iothread=io0");
  ASSERT_TRUE(drv_->Init(kVersion1 | Bit(VIRTIO_NET_F_MRG_RXBUF)));
  RoundTrip(300);
}

// poll-max-ns: while the iothread polls, the transmit ring tells the driver not to kick
// (VRING_USED_F_NO_NOTIFY) and frames queued without a kick still go out; without polling a
// frame queued without a kick waits for one. The iothread may already be polling when the
// driver sets the rings up (the window opens when the queues are added): the flag is written
// when the ring comes to life.
TEST_F(VirtioNetIOThreadTest, APollingIOThreadSendsWithoutAKickAndSuppressesKicks) {
  Build("loopback,id=n0,reflect=off", "virtio-net-pci,netdev=n0,iothread=io0",
        "iothread,id=io0,poll-max-ns=10000000000");  // 10 s windows
  ASSERT_TRUE(drv_->Init(kVersion1));                // no EVENT_IDX: the flag says it
  lo_->SetCapture(true);
  ASSERT_TRUE(drv_->Send(0, FrameTo(kOtherMac, 60)));  // a kick wakes the iothread; it polls on
  ASSERT_TRUE(lo_->WaitCaptured(1, kWait));
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(drv_->ring(1)->used_flags() & VRING_USED_F_NO_NOTIFY, VRING_USED_F_NO_NOTIFY);
    ASSERT_TRUE(drv_->Send(0, FrameTo(kOtherMac, 60, static_cast<uint8_t>(i)), {}, false));
    ASSERT_TRUE(lo_->WaitCaptured(2 + i, kWait)) << i;
  }
  EXPECT_TRUE(drv_->WaitTx(0, kWait));
}

TEST_F(VirtioNetIOThreadTest, WithoutPollingAFrameQueuedWithoutAKickWaitsForOne) {
  Build("loopback,id=n0,reflect=off", "virtio-net-pci,netdev=n0,iothread=io0");
  ASSERT_TRUE(drv_->Init(kVersion1));
  lo_->SetCapture(true);
  ASSERT_TRUE(drv_->Send(0, FrameTo(kOtherMac, 60), {}, false));
  EXPECT_FALSE(lo_->WaitCaptured(1, absl::Milliseconds(200)));
  EXPECT_EQ(drv_->ring(1)->used_flags() & VRING_USED_F_NO_NOTIFY, 0);
  pci_->Kick(1);
  EXPECT_TRUE(lo_->WaitCaptured(1, kWait));
}

TEST_F(VirtioNetIOThreadTest, TransmitBoundedPerKickContinuesOnTheIOThread) {
  Build("loopback,id=n0,reflect=off", "virtio-net-pci,netdev=n0,x-txburst=8,iothread=io0");
  ASSERT_TRUE(drv_->Init(kVersion1));
  lo_->SetCapture(true);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(drv_->Send(0, FrameTo(kOtherMac, 60), {}, false));
  pci_->Kick(1);  // one kick for all of them
  EXPECT_TRUE(lo_->WaitCaptured(100, kWait));
  EXPECT_TRUE(drv_->WaitTx(0, kWait));
}

// The poller is a guest-input path like a kick: a transmit ring whose available index jumps
// more than a ring ahead, with no kick, gets DEVICE_NEEDS_RESET from the polling iothread (no
// crash, no spin), and after a reset the same iothread serves a good ring again.
TEST_F(VirtioNetIOThreadTest, AHostileRingFoundByThePollerNeedsAReset) {
  Build("loopback,id=n0,reflect=off", "virtio-net-pci,netdev=n0,iothread=io0",
        "iothread,id=io0,poll-max-ns=10000000000");  // 10 s windows
  ASSERT_TRUE(drv_->Init(kVersion1));
  lo_->SetCapture(true);
  ASSERT_TRUE(drv_->Send(0, FrameTo(kOtherMac, 60)));
  ASSERT_TRUE(lo_->WaitCaptured(1, kWait));
  GuestVring* tx = drv_->ring(1);
  tx->SetAvailIdx(static_cast<uint16_t>(tx->avail_idx() + 1000));  // no kick: the poller sees it
  const absl::Time deadline = absl::Now() + kWait;
  while (!(pci_->status() & VIRTIO_CONFIG_S_NEEDS_RESET) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_TRUE(pci_->status() & VIRTIO_CONFIG_S_NEEDS_RESET);
  EXPECT_GE(net()->counters().Value("needs_reset"), 1u);
  EXPECT_EQ(lo_->TakeCaptured().size(), 1u);  // nothing of the bogus ring went out
  pci_->SetStatus(0);
  drv_ = std::make_unique<VirtioNetDriver>(*pci_, m_->guest_memory(), GuestAddr(0x1000000));
  ASSERT_TRUE(drv_->Init(kVersion1));
  ASSERT_TRUE(drv_->Send(0, FrameTo(kOtherMac, 60, 2), {}, false));  // polled again, no kick
  EXPECT_TRUE(lo_->WaitCaptured(1, kWait));
}

TEST_F(VirtioNetIOThreadTest, ResetAndHotUnplugWhileTrafficFlowsQuiesceTheIOThread) {
  Build("loopback,id=n0,reflect=on", "virtio-net-pci,id=nic0,netdev=n0,iothread=io0");
  for (int round = 0; round < 5; ++round) {
    ASSERT_TRUE(drv_->Init(kVersion1 | Bit(VIRTIO_NET_F_MRG_RXBUF)));
    drv_->FillRx(0, 128);
    for (int i = 0; i < 100; ++i) drv_->Send(0, FrameTo(kGuestMac, 100), {}, i % 10 == 9);
    pci_->SetStatus(0);  // a reset with the iothread mid-burst
    drv_ = std::make_unique<VirtioNetDriver>(*pci_, m_->guest_memory(), GuestAddr(0x1000000));
  }
  ASSERT_TRUE(drv_->Init(kVersion1 | Bit(VIRTIO_NET_F_MRG_RXBUF)));
  // Frames the loopback reflected while the guest had no buffers wait there, as in any net
  // queue, and come to the new driver first: take them, then check a fresh round trip.
  drv_->FillRx(0, 256);
  drv_->WaitRx(0, 100000, absl::Milliseconds(300));
  RoundTrip(50, /*fill=*/false);
  drv_->FillRx(0, 128);
  for (int i = 0; i < 100; ++i) drv_->Send(0, FrameTo(kGuestMac, 100), {}, i % 10 == 9);
  ASSERT_TRUE(m_->DeviceDel("nic0").ok());
  // The iothread serves the next NIC, and goes once nothing uses it.
  auto again = m_->DeviceAdd("virtio-net-pci,id=nic1,netdev=n0,iothread=io0");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(m_->ObjectDel("object", "io0").ok());
  ASSERT_TRUE(m_->DeviceDel("nic1").ok());
  EXPECT_TRUE(m_->ObjectDel("object", "io0").ok());
}

}  // namespace
}  // namespace vdev::virtio
