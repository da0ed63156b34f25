// virtio-net-pci driven by the software guest's virtio-net driver over the in-memory `loopback`
// netdev: transmit and receive, mergeable buffers, filters, every control command, multiqueue,
// link status, and the "virtio-net data path" and "Control virtqueue" rows of HOSTILE_INPUTS.md.
#include <cstring>
#include <set>
#include <thread>

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
using testing::PciGuest;
using testing::VirtioNetDriver;
using testing::VirtioPciDriver;

constexpr uint64_t Bit(unsigned b) { return uint64_t{1} << b; }
constexpr uint64_t kVersion1 = Bit(VIRTIO_F_VERSION_1);
constexpr uint64_t kCtrlAll = Bit(VIRTIO_NET_F_CTRL_VQ) | Bit(VIRTIO_NET_F_CTRL_RX) |
                              Bit(VIRTIO_NET_F_CTRL_RX_EXTRA) | Bit(VIRTIO_NET_F_CTRL_VLAN) |
                              Bit(VIRTIO_NET_F_CTRL_MAC_ADDR) | Bit(VIRTIO_NET_F_GUEST_ANNOUNCE) |
                              Bit(VIRTIO_NET_F_STATUS) | Bit(VIRTIO_NET_F_MAC);
constexpr Mac kGuestMac = {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};
constexpr Mac kOtherMac = {0x52, 0x54, 0x00, 0x11, 0x22, 0x33};
constexpr Mac kPeerMac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
constexpr absl::Duration kWait = absl::Seconds(5);

std::vector<uint8_t> Payload(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

std::vector<uint8_t> FrameTo(const Mac& dst, size_t payload, uint8_t seed = 1) {
  return testing::EthFrame(dst, kPeerMac, 0x88b5, Payload(payload, seed));
}

class VirtioNetTest : public ::testing::Test {
 protected:
  void Build(const std::string& netdev, const std::string& device,
             VirtioPciDriver::Mode mode = VirtioPciDriver::Mode::kModern) {
    m_ = *Machine::Create("pc");
    m_->irq().set_sink(&sink_);
    auto nd = m_->ObjectAdd("netdev", netdev);
    ASSERT_TRUE(nd.ok()) << nd.status();
    lo_ = qom::DynamicCast<net::Loopback>(*nd);
    ASSERT_NE(lo_, nullptr);
    auto d = m_->DeviceAdd(device);
    ASSERT_TRUE(d.ok()) << d.status();
    proxy_ = static_cast<VirtIONetPCI*>(*d);
    testing::PcVirtioFunction f;
    ASSERT_TRUE(testing::ProbePcVirtio(*m_, proxy_->device_id(), &f, mode));
    guest_ = std::move(f.guest);
    fn_ = f.fn;
    pci_ = std::move(f.driver);
    drv_ = std::make_unique<VirtioNetDriver>(*pci_, m_->guest_memory(), GuestAddr(0x1000000));
  }
  void Standard(uint64_t extra = 0, const std::string& netdev_opts = "",
                const std::string& dev_opts = "") {
    Build("loopback,id=n0,reflect=off" + netdev_opts,
          "virtio-net-pci,id=nic0,netdev=n0,mac=52:54:00:ab:cd:ef" + dev_opts);
    ASSERT_TRUE(drv_->Init(kVersion1 | Bit(VIRTIO_NET_F_MRG_RXBUF) | kCtrlAll | extra));
    lo_->SetCapture(true);
  }
  VirtIONet* net() { return proxy_->net(); }
  uint64_t counter(const char* name) { return net()->counters().Value(name); }

  std::vector<VirtioNetDriver::RxFrame> InjectAndCollect(const std::vector<uint8_t>& frame,
                                                         size_t expect = 1) {
    lo_->Inject(frame);
    return drv_->WaitRx(0, expect, expect ? kWait : absl::Milliseconds(100));
  }
  // Whether `frame` gets through the receive filter.
  bool Passes(const std::vector<uint8_t>& frame) {
    const uint64_t before = counter("rx_filtered");
    lo_->Inject(frame);
    auto got = drv_->WaitRx(0, 1, absl::Milliseconds(300));
    if (!got.empty()) return true;
    EXPECT_EQ(counter("rx_filtered"), before + 1);
    return false;
  }

  RecordingIrqSink sink_;
  std::unique_ptr<Machine> m_;
  net::Loopback* lo_ = nullptr;
  VirtIONetPCI* proxy_ = nullptr;
  std::unique_ptr<PciGuest> guest_;
  const PciGuest::Function* fn_ = nullptr;
  std::unique_ptr<VirtioPciDriver> pci_;
  std::unique_ptr<VirtioNetDriver> drv_;
};

TEST_F(VirtioNetTest, IdentityFeaturesAndConfig) {
  Build("loopback,id=n0", "virtio-net-pci,netdev=n0,mac=52:54:00:ab:cd:ef,host_mtu=1400");
  EXPECT_EQ(fn_->device, 0x1041);
  EXPECT_EQ(guest_->ConfigRead(*fn_, pci::kClassDevice, 2), 0x0200u);
  ASSERT_TRUE(drv_->Init(kVersion1 | kCtrlAll | Bit(VIRTIO_NET_F_MTU) | Bit(VIRTIO_NET_F_CSUM)));
  EXPECT_TRUE(drv_->Has(VIRTIO_NET_F_MAC));
  EXPECT_TRUE(drv_->Has(VIRTIO_NET_F_MTU));
  // The loopback takes no vnet header: no offloads are offered.
  EXPECT_FALSE(drv_->Has(VIRTIO_NET_F_CSUM));
  EXPECT_EQ(drv_->ConfigMac(), kGuestMac);
  EXPECT_EQ(drv_->ConfigStatus() & VIRTIO_NET_S_LINK_UP, VIRTIO_NET_S_LINK_UP);
  EXPECT_EQ(pci_->DeviceConfigRead(offsetof(virtio_net_config, mtu), 2), 1400u);
  EXPECT_EQ(pci_->NumQueues(), 3);  // rx, tx, ctrl
}

TEST_F(VirtioNetTest, TransmitReachesTheBackendWithoutTheHeader) {
  Standard();
  std::vector<std::vector<uint8_t>> sent;
  for (size_t size : {60, 64, 128, 1000, 1514}) {
    sent.push_back(FrameTo(kOtherMac, size - 14, static_cast<uint8_t>(size)));
    ASSERT_TRUE(drv_->Send(0, sent.back()));
  }
  ASSERT_TRUE(lo_->WaitCaptured(sent.size(), kWait));
  EXPECT_EQ(lo_->TakeCaptured(), sent);
  EXPECT_TRUE(drv_->WaitTx(0, kWait));
  EXPECT_EQ(counter("tx_frames"), sent.size());
}

TEST_F(VirtioNetTest, ReceiveFillsGuestBuffersWithAHeader) {
  Standard();
  drv_->FillRx(0, 16);
  const auto frame = FrameTo(kGuestMac, 500);
  auto got = InjectAndCollect(frame);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data, frame);
  EXPECT_EQ(got[0].buffers, 1);
  EXPECT_EQ(got[0].hdr.hdr.gso_type, VIRTIO_NET_HDR_GSO_NONE);
  EXPECT_EQ(got[0].hdr.hdr.flags, 0);
}

TEST_F(VirtioNetTest, LargeFrameSpansMergeableBuffers) {
  Build("loopback,id=n0,reflect=off", "virtio-net-pci,netdev=n0,mac=52:54:00:ab:cd:ef");
  ASSERT_TRUE(drv_->Init(kVersion1 | Bit(VIRTIO_NET_F_MRG_RXBUF), 1, 1, 256, /*rx_buf=*/512));
  drv_->FillRx(0, 32);
  const auto frame = FrameTo(kGuestMac, 1500);
  auto got = InjectAndCollect(frame);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].buffers, 3);  // 12 + 1514 bytes in 512-byte buffers
  EXPECT_EQ(got[0].data, frame);
}

TEST_F(VirtioNetTest, LegacyHeaderWithoutMergeableBuffers) {
  Build("loopback,id=n0,reflect=on",
        "virtio-net-pci,netdev=n0,mac=52:54:00:ab:cd:ef,disable-legacy=off,disable-modern=on",
        VirtioPciDriver::Mode::kLegacy);
  ASSERT_TRUE(drv_->Init(Bit(VIRTIO_NET_F_MAC)));
  EXPECT_EQ(drv_->hdr_len(), 10);
  drv_->FillRx(0, 8);
  const auto frame = FrameTo(kGuestMac, 300);
  ASSERT_TRUE(drv_->Send(0, frame));  // reflected back to us
  auto got = drv_->WaitRx(0, 1, kWait);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data, frame);
}

TEST_F(VirtioNetTest, ReflectedTrafficComesBackInOrder) {
  Build("loopback,id=n0,reflect=on", "virtio-net-pci,netdev=n0,mac=52:54:00:ab:cd:ef");
  ASSERT_TRUE(drv_->Init(kVersion1 | Bit(VIRTIO_NET_F_MRG_RXBUF)));
  drv_->FillRx(0, 256);
  std::vector<std::vector<uint8_t>> sent;
  for (int i = 0; i < 200; ++i) {
    sent.push_back(FrameTo(kGuestMac, 46 + (i * 37) % 1400, static_cast<uint8_t>(i)));
    while (!drv_->Send(0, sent.back())) drv_->ReclaimTx(0);
  }
  auto got = drv_->WaitRx(0, sent.size(), kWait);
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(got[i].data, sent[i]) << i;
}

TEST_F(VirtioNetTest, WithoutBuffersFramesWaitAndComeOnTheNextKick) {
  Standard();
  const auto a = FrameTo(kGuestMac, 100, 1), b = FrameTo(kGuestMac, 200, 2);
  EXPECT_EQ(lo_->Inject(a), 0);  // held: no buffers
  EXPECT_EQ(lo_->Inject(b), 0);  // behind it, in order
  EXPECT_TRUE(drv_->TakeRx(0, false).empty());
  EXPECT_GE(counter("rx_no_buffers"), 1u);
  drv_->FillRx(0, 4);  // the kick brings them in
  auto got = drv_->WaitRx(0, 2, kWait);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].data, a);
  EXPECT_EQ(got[1].data, b);
}

// A loopback burst goes straight into the guest's buffers, a batch per call (as a TAP reads):
// in order, each with a blank header and num_buffers, counted once the completions are out;
// a frame too big for the batched path (above one Ethernet frame) comes by copy, spanning
// mergeable buffers; what does not fit waits for buffers and comes on the next kick.
TEST_F(VirtioNetTest, ABurstFillsTheGuestsBuffersInBatchesAndTheRestWaits) {
  Build("loopback,id=n0,reflect=off", "virtio-net-pci,netdev=n0,mac=52:54:00:ab:cd:ef");
  ASSERT_TRUE(drv_->Init(kVersion1 | Bit(VIRTIO_NET_F_MRG_RXBUF), 1, 1, 256, /*rx_buf=*/2048));
  drv_->FillRx(0, 100);
  const auto frame = FrameTo(kGuestMac, 64, 7);
  EXPECT_EQ(lo_->InjectBurst(frame, 100), 100);
  auto got = drv_->WaitRx(0, 100, kWait, /*refill=*/false);
  ASSERT_EQ(got.size(), 100u);
  for (const auto& f : got) {
    EXPECT_EQ(f.data, frame);
    EXPECT_EQ(f.buffers, 1);
    EXPECT_EQ(f.hdr.hdr.flags, 0);
    EXPECT_EQ(f.hdr.hdr.gso_type, VIRTIO_NET_HDR_GSO_NONE);
  }
  EXPECT_EQ(counter("rx_frames"), 100u);
  EXPECT_EQ(counter("rx_bytes"), 100u * frame.size());
  // No buffers left: the first frame waits at the NIC, the burst stops there.
  EXPECT_EQ(lo_->InjectBurst(frame, 10), 0);
  const auto big = FrameTo(kGuestMac, 4000, 9);  // a GSO-sized frame: the copy path
  drv_->FillRx(0, 8);                            // the kick brings the waiting one in
  ASSERT_EQ(drv_->WaitRx(0, 1, kWait, false).size(), 1u);
  EXPECT_EQ(lo_->InjectBurst(big, 1), 1);
  got = drv_->WaitRx(0, 1, kWait, false);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data, big);
  EXPECT_EQ(got[0].buffers, 2);  // 12 + 4014 bytes in 2048-byte buffers
}

// ---- filters and control commands ----

TEST_F(VirtioNetTest, PromiscuousByDefaultThenUnicastFilter) {
  Standard();
  drv_->FillRx(0, 64);
  EXPECT_TRUE(Passes(FrameTo(kOtherMac, 60)));  // promiscuous after reset, as QEMU
  EXPECT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, {0}), VIRTIO_NET_OK);
  EXPECT_FALSE(Passes(FrameTo(kOtherMac, 60)));
  EXPECT_TRUE(Passes(FrameTo(kGuestMac, 60)));
  EXPECT_TRUE(Passes(FrameTo(testing::kBroadcastMac, 60)));
  EXPECT_FALSE(Passes(FrameTo({0x01, 0x00, 0x5e, 0, 0, 1}, 60)));  // multicast, not in the table
  EXPECT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, {1}), VIRTIO_NET_OK);
  EXPECT_TRUE(Passes(FrameTo({0x01, 0x00, 0x5e, 0, 0, 1}, 60)));
  EXPECT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_NOBCAST, {1}), VIRTIO_NET_OK);
  EXPECT_FALSE(Passes(FrameTo(testing::kBroadcastMac, 60)));
  EXPECT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_NOMULTI, {1}), VIRTIO_NET_OK);
  EXPECT_FALSE(Passes(FrameTo({0x01, 0x00, 0x5e, 0, 0, 1}, 60)));
  EXPECT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLUNI, {1}), VIRTIO_NET_OK);
  EXPECT_TRUE(Passes(FrameTo(kOtherMac, 60)));
  EXPECT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_NOUNI, {1}), VIRTIO_NET_OK);
  EXPECT_FALSE(Passes(FrameTo(kGuestMac, 60)));
  const VirtIONet::RxFilter f = net()->rx_filter();
  EXPECT_FALSE(f.promisc);
  EXPECT_TRUE(f.allmulti && f.alluni && f.nomulti && f.nouni && f.nobcast);
}

std::vector<uint8_t> MacTable(const std::vector<Mac>& uni, const std::vector<Mac>& multi) {
  std::vector<uint8_t> d;
  for (const auto* t : {&uni, &multi}) {
    const uint32_t n = static_cast<uint32_t>(t->size());
    d.insert(d.end(), reinterpret_cast<const uint8_t*>(&n),
             reinterpret_cast<const uint8_t*>(&n) + 4);
    for (const Mac& m : *t) d.insert(d.end(), m.begin(), m.end());
  }
  return d;
}

TEST_F(VirtioNetTest, MacTableAndItsOverflow) {
  Standard();
  drv_->FillRx(0, 64);
  ASSERT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, {0}), VIRTIO_NET_OK);
  const Mac mcast = {0x01, 0x00, 0x5e, 0x00, 0x00, 0x07};
  EXPECT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET,
                       MacTable({kOtherMac}, {mcast})),
            VIRTIO_NET_OK);
  EXPECT_TRUE(Passes(FrameTo(kOtherMac, 60)));
  EXPECT_TRUE(Passes(FrameTo(mcast, 60)));
  EXPECT_FALSE(Passes(FrameTo({0x52, 0x54, 0, 0, 0, 9}, 60)));
  // 65 unicast entries overflow the table: every unicast frame passes, nothing is copied.
  std::vector<Mac> many(65, Mac{0x52, 0x54, 0, 0, 1, 0});
  for (size_t i = 0; i < many.size(); ++i) many[i][5] = static_cast<uint8_t>(i);
  EXPECT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, MacTable(many, {})),
            VIRTIO_NET_OK);
  const auto f = net()->rx_filter();
  EXPECT_TRUE(f.uni_overflow);
  EXPECT_TRUE(f.uni.empty());
  EXPECT_TRUE(Passes(FrameTo({0x52, 0x54, 0, 0, 0, 9}, 60)));
  EXPECT_FALSE(Passes(FrameTo(mcast, 60)));  // the multicast table was replaced (empty)
}

TEST_F(VirtioNetTest, VlanTable) {
  Standard();
  drv_->FillRx(0, 64);
  const auto tagged = testing::VlanFrame(kGuestMac, kPeerMac, 5, 0x88b5, Payload(50, 3));
  ASSERT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, {0}), VIRTIO_NET_OK);
  EXPECT_FALSE(Passes(tagged));  // CTRL_VLAN negotiated: no VLAN until added
  EXPECT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_VLAN, VIRTIO_NET_CTRL_VLAN_ADD, {5, 0}), VIRTIO_NET_OK);
  EXPECT_TRUE(Passes(tagged));
  EXPECT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_VLAN, VIRTIO_NET_CTRL_VLAN_DEL, {5, 0}), VIRTIO_NET_OK);
  EXPECT_FALSE(Passes(tagged));
  EXPECT_TRUE(Passes(FrameTo(kGuestMac, 60)));  // untagged frames are not VLAN-filtered
}

TEST_F(VirtioNetTest, MacAddressSetAndAnnounce) {
  Standard();
  EXPECT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET,
                       {kOtherMac.begin(), kOtherMac.end()}),
            VIRTIO_NET_OK);
  EXPECT_EQ(drv_->ConfigMac(), kOtherMac);
  net()->Announce();
  EXPECT_TRUE(drv_->ConfigStatus() & VIRTIO_NET_S_ANNOUNCE);
  EXPECT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, {}), VIRTIO_NET_OK);
  EXPECT_FALSE(drv_->ConfigStatus() & VIRTIO_NET_S_ANNOUNCE);
  // A reset restores the configured address.
  pci_->SetStatus(0);
  EXPECT_EQ(drv_->ConfigMac(), kGuestMac);
}

TEST_F(VirtioNetTest, LinkDownIsSeenByTheGuestWithAConfigInterrupt) {
  Build("loopback,id=n0", "virtio-net-pci,netdev=n0,vectors=4");
  ASSERT_TRUE(guest_->EnableMsix(
      *fn_, {{0xfee00000, 0x40}, {0xfee00000, 0x41}, {0xfee00000, 0x42}, {0xfee00000, 0x43}}));
  ASSERT_TRUE(drv_->Init(kVersion1 | kCtrlAll, 1, 1, 256, 2048, /*msix=*/true));
  pci_->SetConfigVector(0);
  sink_.TakeMsis();
  lo_->client().SetLinkDown(true);
  EXPECT_FALSE(net()->link_up());
  EXPECT_EQ(drv_->ConfigStatus() & VIRTIO_NET_S_LINK_UP, 0);
  EXPECT_THAT(sink_.TakeMsis(), ::testing::ElementsAre(MsiMessage{0xfee00000, 0x40}));
  // Frames sent while the link is down are dropped, not queued.
  ASSERT_TRUE(drv_->Send(0, FrameTo(kOtherMac, 60)));
  EXPECT_TRUE(drv_->WaitTx(0, kWait));
  EXPECT_EQ(lo_->frames(), 0u);
  lo_->client().SetLinkDown(false);
  EXPECT_TRUE(drv_->ConfigStatus() & VIRTIO_NET_S_LINK_UP);
}

TEST_F(VirtioNetTest, MultiqueueOnePeerQueuePerPair) {
  Build("loopback,id=n0,reflect=off,queues=3", "virtio-net-pci,netdev=n0,mq=on,vectors=8");
  EXPECT_EQ(pci_->NumQueues(), 7);
  ASSERT_TRUE(drv_->Init(kVersion1 | kCtrlAll | Bit(VIRTIO_NET_F_MQ), 3, 3));
  ASSERT_TRUE(drv_->Has(VIRTIO_NET_F_MQ));
  EXPECT_EQ(drv_->ConfigMaxPairs(), 3);
  lo_->SetCapture(true);
  // Only pair 0 is active until the driver says otherwise.
  ASSERT_TRUE(drv_->Send(2, FrameTo(kOtherMac, 60, 9)));
  EXPECT_EQ(counter("inactive_queue_notify"), 1u);
  EXPECT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, {3, 0}), VIRTIO_NET_OK);
  EXPECT_EQ(net()->curr_queue_pairs(), 3u);
  for (uint16_t p = 0; p < 3; ++p) ASSERT_TRUE(drv_->Send(p, FrameTo(kOtherMac, 60, uint8_t(p))));
  ASSERT_TRUE(lo_->WaitCaptured(4, kWait));  // pair 2's earlier frame goes out on its next kick
  std::vector<size_t> queues;
  auto frames = lo_->TakeCaptured(&queues);
  ASSERT_EQ(frames.size(), 4u);
  std::multiset<size_t> qs(queues.begin(), queues.end());
  EXPECT_EQ(qs.count(0), 1u);
  EXPECT_EQ(qs.count(1), 1u);
  EXPECT_EQ(qs.count(2), 2u);
  // Receive on each pair from its own backend queue.
  for (uint16_t p = 0; p < 3; ++p) {
    drv_->FillRx(p, 8);
    lo_->Inject(FrameTo(kOtherMac, 70, uint8_t(10 + p)), p);
    auto got = drv_->WaitRx(p, 1, kWait);
    ASSERT_EQ(got.size(), 1u) << p;
    EXPECT_EQ(got[0].data, FrameTo(kOtherMac, 70, uint8_t(10 + p)));
  }
  // Pair counts of 0 or above the maximum are refused.
  EXPECT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, {0, 0}),
            VIRTIO_NET_ERR);
  EXPECT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, {4, 0}),
            VIRTIO_NET_ERR);
  EXPECT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, {1, 0}), VIRTIO_NET_OK);
  EXPECT_EQ(net()->curr_queue_pairs(), 1u);
}

// ---- hostile control requests ----

TEST_F(VirtioNetTest, ControlRequestsAreValidated) {
  Standard();
  auto ctrl = [&](uint8_t c, uint8_t m, std::vector<uint8_t> d) { return drv_->Ctrl(c, m, d); };
  EXPECT_EQ(ctrl(99, 0, {}), VIRTIO_NET_ERR);                    // unknown class
  EXPECT_EQ(ctrl(VIRTIO_NET_CTRL_RX, 77, {1}), VIRTIO_NET_ERR);  // unknown cmd
  EXPECT_EQ(ctrl(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, {}), VIRTIO_NET_ERR);
  EXPECT_EQ(ctrl(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, {1, 1}), VIRTIO_NET_ERR);
  EXPECT_EQ(ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, {1, 2, 3, 4, 5}),
            VIRTIO_NET_ERR);
  EXPECT_EQ(ctrl(VIRTIO_NET_CTRL_VLAN, VIRTIO_NET_CTRL_VLAN_ADD, {5}), VIRTIO_NET_ERR);
  EXPECT_EQ(ctrl(VIRTIO_NET_CTRL_VLAN, VIRTIO_NET_CTRL_VLAN_ADD, {0x00, 0x10}), VIRTIO_NET_ERR);
  EXPECT_EQ(ctrl(VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, {0}), VIRTIO_NET_ERR);
  // MQ and guest offloads were not negotiated (one pair; no vnet header on the loopback).
  EXPECT_EQ(ctrl(VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, {1, 0}), VIRTIO_NET_ERR);
  EXPECT_EQ(ctrl(VIRTIO_NET_CTRL_GUEST_OFFLOADS, VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET,
                 std::vector<uint8_t>(8, 0)),
            VIRTIO_NET_ERR);
  // MAC tables: a count whose size overflows, a count past the data, trailing bytes.
  std::vector<uint8_t> huge = {0xff, 0xff, 0xff, 0xff};
  EXPECT_EQ(ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, huge), VIRTIO_NET_ERR);
  auto table = MacTable({kOtherMac}, {});
  table[0] = 2;
  EXPECT_EQ(ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, table), VIRTIO_NET_ERR);
  table = MacTable({kOtherMac}, {});
  table.push_back(0);
  EXPECT_EQ(ctrl(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, table), VIRTIO_NET_ERR);
  // A refused command changes nothing.
  EXPECT_TRUE(net()->rx_filter().promisc);
  EXPECT_TRUE(net()->rx_filter().uni.empty());
  EXPECT_GE(counter("ctrl_err"), 13u);
  EXPECT_EQ(ctrl(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, {0}), VIRTIO_NET_OK);
}

TEST_F(VirtioNetTest, ControlRequestWithoutHeaderOrWritableAckIsCountedNotAnswered) {
  Standard();
  GuestVring* vq = drv_->ring(drv_->ctrl_index());
  const GuestAddr buf = drv_->BufferAddr(drv_->ctrl_index(), 4);
  // Only one byte of header.
  vq->Publish(vq->AddChain({{buf, 1, false}, {GuestAddr(buf.value() + 64), 1, true}}));
  // No writable ack byte.
  vq->Publish(vq->AddChain({{buf, 3, false}}));
  pci_->Kick(drv_->ctrl_index());
  auto used = vq->TakeUsed();
  ASSERT_EQ(used.size(), 2u);
  EXPECT_EQ(used[0].second, 0u);
  EXPECT_EQ(used[1].second, 0u);
  EXPECT_EQ(counter("ctrl_bad_request"), 2u);
  EXPECT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, {0}), VIRTIO_NET_OK);
}

// ---- hostile transmit buffers ----

TEST_F(VirtioNetTest, BadTransmitBuffersAreDroppedAndCounted) {
  Standard();
  GuestVring* vq = drv_->ring(1);
  const GuestAddr buf = drv_->BufferAddr(1, 100);
  std::vector<uint8_t> junk(70000, 0);
  m_->guest_memory().Write(buf, absl::MakeConstSpan(junk));
  // Shorter than the header; a header alone; over 64 KiB; a device-writable part.
  vq->Publish(vq->AddChain({{buf, 6, false}}));
  vq->Publish(vq->AddChain({{buf, 12, false}}));
  vq->Publish(vq->AddChain({{buf, 12 + 65536 + 100, false}}));
  vq->Publish(vq->AddChain({{buf, 80, false}, {GuestAddr(buf.value() + 100), 10, true}}));
  pci_->Kick(1);
  EXPECT_EQ(counter("tx_bad_frame"), 4u);
  // Headers asking for offloads that were not negotiated, or with bogus fields.
  virtio_net_hdr gso{};
  gso.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  gso.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
  gso.gso_size = 1000;
  EXPECT_TRUE(drv_->Send(0, FrameTo(kOtherMac, 100), gso));
  virtio_net_hdr csum{};
  csum.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  csum.csum_start = 100;
  csum.csum_offset = 60000;
  EXPECT_TRUE(drv_->Send(0, FrameTo(kOtherMac, 100), csum));
  virtio_net_hdr bad_type{};
  bad_type.gso_type = 9;
  EXPECT_TRUE(drv_->Send(0, FrameTo(kOtherMac, 100), bad_type));
  EXPECT_EQ(counter("tx_bad_header"), 3u);
  EXPECT_EQ(lo_->frames(), 0u);
  // Every buffer came back, and the queue still works.
  drv_->ReclaimTx(0);
  ASSERT_TRUE(drv_->Send(0, FrameTo(kOtherMac, 100)));
  EXPECT_TRUE(lo_->WaitCaptured(1, kWait));
  EXPECT_EQ(pci_->status() & VirtIODevice::kNeedsReset, 0);
}

TEST_F(VirtioNetTest, TransmitIsBoundedPerKickAndContinuesFromTheLoop) {
  Build("loopback,id=n0,reflect=off", "virtio-net-pci,netdev=n0,x-txburst=8");
  ASSERT_TRUE(drv_->Init(kVersion1));
  lo_->SetCapture(true);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(drv_->Send(0, FrameTo(kOtherMac, 60), {}, false));
  pci_->Kick(1);  // one kick for all of them
  EXPECT_TRUE(lo_->WaitCaptured(100, kWait));
  EXPECT_TRUE(drv_->WaitTx(0, kWait));
}

TEST_F(VirtioNetTest, ReceiveBufferThatIsNotWritableSetsNeedsReset) {
  Standard();
  GuestVring* vq = drv_->ring(0);
  vq->Publish(vq->AddChain({{drv_->BufferAddr(0, 0), 2048, false}}));
  pci_->Kick(0);
  lo_->Inject(FrameTo(kGuestMac, 100));
  for (int i = 0; i < 100 && !(pci_->status() & VirtIODevice::kNeedsReset); ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(pci_->status() & VirtIODevice::kNeedsReset);
  // After a reset the device works again.
  ASSERT_TRUE(
      (drv_ = std::make_unique<VirtioNetDriver>(*pci_, m_->guest_memory(), GuestAddr(0x1000000)))
          ->Init(kVersion1 | Bit(VIRTIO_NET_F_MRG_RXBUF)));
  drv_->FillRx(0, 8);
  lo_->Inject(FrameTo(kGuestMac, 100));
  EXPECT_EQ(drv_->WaitRx(0, 1, kWait).size(), 1u);
}

TEST_F(VirtioNetTest, SmallBufferWithoutMergeableBuffersSetsNeedsReset) {
  Build("loopback,id=n0,reflect=off", "virtio-net-pci,netdev=n0,mac=52:54:00:ab:cd:ef");
  ASSERT_TRUE(drv_->Init(kVersion1, 1, 1, 256, /*rx_buf=*/256));
  drv_->FillRx(0, 4);
  lo_->Inject(FrameTo(kGuestMac, 1000));
  for (int i = 0; i < 100 && !(pci_->status() & VirtIODevice::kNeedsReset); ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(pci_->status() & VirtIODevice::kNeedsReset);
}

TEST_F(VirtioNetTest, FeatureDependenciesAreEnforced) {
  Build("loopback,id=n0", "virtio-net-pci,netdev=n0");
  // CTRL_RX without CTRL_VQ: FEATURES_OK does not stick.
  EXPECT_FALSE(pci_->Negotiate(kVersion1 | Bit(VIRTIO_NET_F_CTRL_RX)).has_value());
}

TEST_F(VirtioNetTest, HotUnplugWhileTrafficFlows) {
  Build("loopback,id=n0,reflect=on", "virtio-net-pci,id=nic0,netdev=n0,mac=52:54:00:ab:cd:ef");
  ASSERT_TRUE(drv_->Init(kVersion1 | Bit(VIRTIO_NET_F_MRG_RXBUF)));
  drv_->FillRx(0, 128);
  for (int i = 0; i < 100; ++i) drv_->Send(0, FrameTo(kGuestMac, 100), {}, i % 10 == 9);
  ASSERT_TRUE(m_->DeviceDel("nic0").ok());
  // The backend survives and can serve a new NIC.
  auto again = m_->DeviceAdd("virtio-net-pci,id=nic1,netdev=n0");
  ASSERT_TRUE(again.ok()) << again.status();
}

}  // namespace
}  // namespace vdev::virtio

namespace vdev::virtio {
namespace {

// Two NICs on one hub transmitting at the same time (each from its own "vCPU" thread): frames
// cross over, and neither device waits on the other's lock.
TEST(VirtioNetHubTest, TwoNicsOnAHubExchangeFramesConcurrently) {
  auto m = *Machine::Create("pc");
  ASSERT_TRUE(m->ObjectAdd("netdev", "hubport,id=p0,hubid=1").ok());
  ASSERT_TRUE(m->ObjectAdd("netdev", "hubport,id=p1,hubid=1").ok());
  ASSERT_TRUE(m->DeviceAdd("virtio-net-pci,id=a,netdev=p0,mac=52:54:00:00:00:0a,addr=4").ok());
  ASSERT_TRUE(m->DeviceAdd("virtio-net-pci,id=b,netdev=p1,mac=52:54:00:00:00:0b,addr=5").ok());
  PciGuest guest(m->io_space(), m->memory_space(), PciGuest::Mechanism::kPortIo, 0xb0000000,
                 &pci::I440FXPciHost::RouteIntx);
  const auto& fns = guest.Enumerate();
  std::vector<const PciGuest::Function*> nics;
  for (const auto& f : fns) {
    if (f.vendor == 0x1af4 && f.device == 0x1041) nics.push_back(&f);
  }
  ASSERT_EQ(nics.size(), 2u);
  std::vector<std::unique_ptr<VirtioPciDriver>> pci;
  std::vector<std::unique_ptr<VirtioNetDriver>> drv;
  for (int i = 0; i < 2; ++i) {
    pci.push_back(std::make_unique<VirtioPciDriver>(guest, *nics[i], m->memory_space(),
                                                    m->io_space(), m->guest_memory()));
    ASSERT_TRUE(pci[i]->Probe());
    drv.push_back(std::make_unique<VirtioNetDriver>(*pci[i], m->guest_memory(),
                                                    GuestAddr(0x1000000 + i * 0x2000000)));
    ASSERT_TRUE(drv[i]->Init(kVersion1 | Bit(VIRTIO_NET_F_MRG_RXBUF)));
    drv[i]->FillRx(0, 256);
  }
  constexpr int kFrames = 300;
  const Mac macs[2] = {{0x52, 0x54, 0, 0, 0, 0x0a}, {0x52, 0x54, 0, 0, 0, 0x0b}};
  std::vector<std::thread> vcpus;
  for (int i = 0; i < 2; ++i) {
    vcpus.emplace_back([&, i] {
      for (int k = 0; k < kFrames; ++k) {
        while (!drv[i]->Send(0, testing::EthFrame(macs[1 - i], macs[i], 0x88b5, Payload(80, k)))) {
          drv[i]->ReclaimTx(0);
        }
      }
      drv[i]->WaitTx(0, kWait);
    });
  }
  for (auto& t : vcpus) t.join();
  // Each side got the other's frames (the receivers keep refilling their buffers).
  for (int i = 0; i < 2; ++i) {
    auto got = drv[i]->WaitRx(0, kFrames, kWait);
    EXPECT_EQ(got.size(), static_cast<size_t>(kFrames)) << "nic " << i;
  }
}

}  // namespace
}  // namespace vdev::virtio
