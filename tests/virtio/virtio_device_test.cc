// VirtIODevice through a test transport: status state machine, feature negotiation, config
// space, kicks, queue activation and DEVICE_NEEDS_RESET (the "virtio-pci transport and
// lifecycle" rows of HOSTILE_INPUTS.md that do not depend on a particular transport). The real
// transports (virtio-pci, virtio-mmio) are tested with their own drivers.
#include "bus/virtio/virtio_device.h"

#include "bus/virtio/virtio_uapi.h"
#include "core/base/status_macros.h"
#include "core/qdev/machine.h"
#include "core/qdev/sysbus.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/virtio_ring.h"

namespace vdev::virtio {
namespace {

using testing::GuestVring;

// A transport for tests: records notifications; its memory is the machine's RAM.
class TestVirtioHost : public SysBusDevice, public VirtioTransport {
 public:
  static constexpr char kTypeName[] = "test-virtio-host";
  using Parent = SysBusDevice;
  TestVirtioHost() : bus_(CreateChildBus<VirtioBus>("vbus.0")) { bus_->set_transport(this); }
  void NotifyQueue(uint16_t index) override { queue_notifications.push_back(index); }
  void NotifyConfig() override { ++config_notifications; }
  const GuestMemory* dma_memory() const override { return mem; }
  void DevicePlugged(VirtIODevice& d) override { plugged = &d; }
  void DeviceUnplugged(VirtIODevice& d) override { plugged = nullptr; }

  VirtioBus* bus_;
  const GuestMemory* mem = nullptr;
  std::vector<uint16_t> queue_notifications;
  int config_notifications = 0;
  VirtIODevice* plugged = nullptr;
};
VDEV_REGISTER_TYPE(TestVirtioHost);

// Fills every device-writable buffer with 0xa5, at most `budget` chains per kick; 8 bytes of
// config: a read-only u32 "magic" and a writable u32.
class TestVirtioDevice : public VirtIODevice {
 public:
  static constexpr char kTypeName[] = "virtio-test-device";
  using Parent = VirtIODevice;
  static void ClassInit(VirtIODeviceClass& k) {
    k.device_id = 0x3f;
    k.config_size = 8;
    k.AddProperty(qom::Prop("budget", &TestVirtioDevice::budget_, uint32_t{4}, "chains per kick"));
  }
  int starts = 0, stops = 0;

 protected:
  absl::Status Realize() override {
    VDEV_RETURN_IF_ERROR(VirtIODevice::Realize());
    AddQueue(16);
    AddQueue(16);
    return absl::OkStatus();
  }
  uint64_t DeviceFeatures() const override { return 1u << 0 | 1u << 1; }
  std::string CheckFeatures(uint64_t f) const override {
    return (f & 2) && !(f & 1) ? "feature 1 needs feature 0" : "";
  }
  void UpdateConfig(uint8_t* c) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    c[0] = 0xef;
    c[1] = 0xbe;
    c[2] = 0xad;
    c[3] = 0xde;
    std::memcpy(c + 4, &writable_, 4);
  }
  void WriteConfig(uint32_t offset, uint32_t value, int size) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (offset == 4 && size == 4) {
      writable_ = value;
      ConfigChanged();
      return;
    }
    VirtIODevice::WriteConfig(offset, value, size);
  }
  void HandleQueue(uint16_t index) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    VirtQueue* vq = queue(index);
    VirtQueueElement e;
    for (uint32_t n = 0; n < budget_; ++n) {
      if (vq->Pop(&e) != PopResult::kOk) break;
      uint32_t written = 0;
      for (const iovec& v : e.in) {
        std::memset(v.iov_base, 0xa5, v.iov_len);
        written += static_cast<uint32_t>(v.iov_len);
      }
      vq->Push(e, written);
    }
    NotifyQueue(index);
  }
  void Start() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { ++starts; }
  void Stop() override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { ++stops; }

 private:
  uint32_t budget_ = 4;
  uint32_t writable_ = 0;
};
VDEV_REGISTER_TYPE(TestVirtioDevice);

constexpr uint8_t kAck = VIRTIO_CONFIG_S_ACKNOWLEDGE, kDrv = VIRTIO_CONFIG_S_DRIVER,
                  kFOk = VIRTIO_CONFIG_S_FEATURES_OK, kDOk = VIRTIO_CONFIG_S_DRIVER_OK;

class VirtioDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override { Build("virtio-test-device,id=vd,bus=vbus.0"); }
  void Build(const std::string& opts) {
    m_ = *Machine::Create("none");
    mem_ = *GuestMemory::Create();
    ASSERT_TRUE(mem_->AddRam(GuestAddr(0), 1 << 20, "ram").ok());
    auto host = m_->AddBoardDevice(qom::MakeChecked<TestVirtioHost>(), &m_->sysbus(), "vhost");
    ASSERT_TRUE(host.ok()) << host.status();
    host_ = static_cast<TestVirtioHost*>(*host);
    host_->mem = mem_.get();
    auto d = m_->DeviceAdd(opts);
    ASSERT_TRUE(d.ok()) << d.status();
    dev_ = static_cast<TestVirtioDevice*>(*d);
    ring_ = std::make_unique<GuestVring>(*mem_, GuestAddr(0x10000), 16);
  }
  // The spec's initialisation sequence (§3.1.1) with `features` accepted.
  void Init(uint64_t features = uint64_t{1} << VIRTIO_F_VERSION_1, bool configure_queue = true) {
    dev_->SetStatus(0);
    dev_->SetStatus(kAck);
    dev_->SetStatus(kAck | kDrv);
    dev_->WriteGuestFeatures(0, static_cast<uint32_t>(features));
    dev_->WriteGuestFeatures(1, static_cast<uint32_t>(features >> 32));
    dev_->SetStatus(kAck | kDrv | kFOk);
    ASSERT_TRUE(dev_->status() & kFOk);
    if (configure_queue) {
      VirtQueue* q = dev_->queue(0);
      ASSERT_TRUE(q->SetSize(16));
      ASSERT_TRUE(q->SetAddresses(ring_->desc_addr(), ring_->avail_addr(), ring_->used_addr()));
      ASSERT_TRUE(q->SetEnabled(true));
    }
    dev_->SetStatus(kAck | kDrv | kFOk | kDOk);
  }

  std::unique_ptr<Machine> m_;
  std::unique_ptr<GuestMemory> mem_;
  TestVirtioHost* host_ = nullptr;
  TestVirtioDevice* dev_ = nullptr;
  std::unique_ptr<GuestVring> ring_;
};

TEST_F(VirtioDeviceTest, PlugsIntoTheTransportsBus) {
  EXPECT_EQ(host_->plugged, dev_);
  EXPECT_EQ(host_->bus_->device(), dev_);
  EXPECT_EQ(dev_->num_queues(), 2u);
  auto second = m_->DeviceAdd("virtio-test-device,bus=vbus.0");
  EXPECT_FALSE(second.ok());  // one device per virtio bus
}

TEST_F(VirtioDeviceTest, OffersDeviceAndRingFeaturesAndVersion1) {
  const uint64_t f = dev_->host_features();
  EXPECT_EQ(f & 3, 3u);
  EXPECT_TRUE(f >> VIRTIO_F_VERSION_1 & 1);
  EXPECT_TRUE(f >> VIRTIO_RING_F_INDIRECT_DESC & 1);
  EXPECT_TRUE(f >> VIRTIO_RING_F_EVENT_IDX & 1);
  EXPECT_EQ(dev_->ReadHostFeatures(1), 1u);  // VERSION_1 is bit 32
  EXPECT_EQ(dev_->ReadHostFeatures(7), 0u);
}

TEST_F(VirtioDeviceTest, PropertiesWithdrawRingFeatures) {
  Build("virtio-test-device,id=vd2,bus=vbus.0,indirect_desc=off,event_idx=off");
  EXPECT_FALSE(dev_->host_features() >> VIRTIO_RING_F_INDIRECT_DESC & 1);
  EXPECT_FALSE(dev_->host_features() >> VIRTIO_RING_F_EVENT_IDX & 1);
}

TEST_F(VirtioDeviceTest, InitialisationSequenceStartsTheDeviceAndItServesTheQueue) {
  Init();
  EXPECT_EQ(dev_->status(), kAck | kDrv | kFOk | kDOk);
  EXPECT_EQ(dev_->starts, 1);
  ring_->Publish(ring_->AddChain({{GuestAddr(0x40000), 32, true}}));
  dev_->Kick(0);
  auto used = ring_->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].second, 32u);
  EXPECT_EQ(mem_->ReadLe<uint8_t>(GuestAddr(0x40000 + 31)), 0xa5);
  EXPECT_THAT(host_->queue_notifications, ::testing::ElementsAre(0));
}

TEST_F(VirtioDeviceTest, UnofferedFeatureBitsAreDroppedAndCounted) {
  dev_->SetStatus(kAck | kDrv);
  dev_->WriteGuestFeatures(0, 0xffffffff);
  EXPECT_EQ(dev_->ReadGuestFeatures(0), static_cast<uint32_t>(dev_->host_features()));
  dev_->WriteGuestFeatures(5, 1);
  EXPECT_EQ(dev_->counters().Value("features_unoffered"), 2u);
}

TEST_F(VirtioDeviceTest, FeatureWritesAfterFeaturesOkAreIgnored) {
  Init(uint64_t{1} << VIRTIO_F_VERSION_1);
  dev_->WriteGuestFeatures(0, 1);
  EXPECT_EQ(dev_->ReadGuestFeatures(0), 0u);
  EXPECT_EQ(dev_->counters().Value("features_write_late"), 1u);
}

TEST_F(VirtioDeviceTest, FeaturesOkIsRefusedWithoutVersion1OrWithBrokenDependencies) {
  dev_->SetStatus(kAck | kDrv);
  dev_->SetStatus(kAck | kDrv | kFOk);  // VERSION_1 not accepted
  EXPECT_FALSE(dev_->status() & kFOk);
  dev_->SetStatus(0);
  dev_->SetStatus(kAck | kDrv);
  dev_->WriteGuestFeatures(0, 2);  // bit 1 without bit 0
  dev_->WriteGuestFeatures(1, 1);
  dev_->SetStatus(kAck | kDrv | kFOk);
  EXPECT_FALSE(dev_->status() & kFOk);
  EXPECT_EQ(dev_->counters().Value("features_refused"), 2u);
}

TEST_F(VirtioDeviceTest, StatusStepsCannotBeSkippedOrCleared) {
  dev_->SetStatus(kAck | kDrv | kDOk);  // DRIVER_OK without FEATURES_OK
  EXPECT_EQ(dev_->status(), 0);
  dev_->SetStatus(kDrv);  // DRIVER without ACKNOWLEDGE
  EXPECT_EQ(dev_->status(), 0);
  Init();
  dev_->SetStatus(kAck);  // clears bits without a reset
  EXPECT_EQ(dev_->status(), kAck | kDrv | kFOk | kDOk);
  EXPECT_EQ(dev_->counters().Value("bad_status"), 3u);
}

TEST_F(VirtioDeviceTest, DriverOkTwiceIsHarmless) {
  Init();
  dev_->SetStatus(kAck | kDrv | kFOk | kDOk);
  EXPECT_EQ(dev_->starts, 1);
  EXPECT_EQ(dev_->status(), kAck | kDrv | kFOk | kDOk);
}

TEST_F(VirtioDeviceTest, LegacyDriversSkipFeaturesOk) {
  dev_->SetLegacy(true);
  EXPECT_EQ(dev_->ReadHostFeatures(1), 0u);  // no VERSION_1 for a legacy driver
  dev_->SetStatus(kAck | kDrv);
  dev_->SetStatus(kAck | kDrv | kDOk);
  EXPECT_EQ(dev_->status(), kAck | kDrv | kDOk);
}

TEST_F(VirtioDeviceTest, ResetWorksFromAnyStateAndTheDeviceWorksAgain) {
  Init();
  dev_->SetStatus(0);
  EXPECT_EQ(dev_->status(), 0);
  EXPECT_EQ(dev_->stops, 1);
  EXPECT_EQ(dev_->ReadGuestFeatures(0), 0u);
  EXPECT_FALSE(dev_->queue(0)->frozen());
  dev_->SetStatus(0);  // back-to-back resets
  ring_ = std::make_unique<GuestVring>(*mem_, GuestAddr(0x10000), 16);
  Init();
  ring_->Publish(ring_->AddChain({{GuestAddr(0x40000), 8, true}}));
  dev_->Kick(0);
  EXPECT_EQ(ring_->TakeUsed().size(), 1u);
}

TEST_F(VirtioDeviceTest, KicksBeforeDriverOkOrOutOfRangeOrAfterFailedAreIgnored) {
  ring_->Publish(ring_->AddChain({{GuestAddr(0x40000), 8, true}}));
  dev_->Kick(0);  // before DRIVER_OK
  Init();
  dev_->Kick(2);  // no such queue
  dev_->Kick(0xffff);
  EXPECT_EQ(ring_->used_idx(), 0);
  dev_->SetStatus(kAck | kDrv | kFOk | kDOk | VIRTIO_CONFIG_S_FAILED);
  EXPECT_EQ(dev_->stops, 1);
  dev_->Kick(0);
  EXPECT_EQ(ring_->used_idx(), 0);
  EXPECT_EQ(dev_->counters().Value("bad_queue_notify"), 2u);
  EXPECT_EQ(dev_->counters().Value("notify_not_running"), 2u);
}

TEST_F(VirtioDeviceTest, KickOnAnEmptyRingDoesNothing) {
  Init();
  dev_->Kick(0);
  EXPECT_EQ(ring_->used_idx(), 0);
  EXPECT_EQ(dev_->status() & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
}

// The test device's budget (4) is below what is available: the rest waits for the next kick.
TEST_F(VirtioDeviceTest, WorkPerKickIsBounded) {
  Init();
  for (int i = 0; i < 10; ++i) ring_->Publish(ring_->AddChain({{GuestAddr(0x40000), 8, true}}));
  dev_->Kick(0);
  EXPECT_EQ(ring_->used_idx(), 4);  // the budget, not the whole ring
  dev_->Kick(0);
  dev_->Kick(0);
  EXPECT_EQ(ring_->used_idx(), 10);
}

TEST_F(VirtioDeviceTest, BrokenRingSetsNeedsResetAndNotifiesTheDriver) {
  Init();
  ring_->Publish(99);  // head out of range
  dev_->Kick(0);
  EXPECT_TRUE(dev_->status() & VIRTIO_CONFIG_S_NEEDS_RESET);
  EXPECT_EQ(host_->config_notifications, 1);
  EXPECT_EQ(dev_->stops, 1);
  dev_->Kick(0);  // ignored now
  EXPECT_EQ(dev_->counters().Value("notify_not_running"), 1u);
  // The driver cannot clear NEEDS_RESET by writing status; a reset does.
  dev_->SetStatus(kAck | kDrv | kFOk | kDOk);
  EXPECT_TRUE(dev_->status() & VIRTIO_CONFIG_S_NEEDS_RESET);
  dev_->SetStatus(0);
  EXPECT_EQ(dev_->status(), 0);
}

TEST_F(VirtioDeviceTest, UnusableRingAtDriverOkSetsNeedsReset) {
  dev_->SetStatus(kAck);
  dev_->SetStatus(kAck | kDrv);
  dev_->WriteGuestFeatures(1, 1);
  dev_->SetStatus(kAck | kDrv | kFOk);
  VirtQueue* q = dev_->queue(0);
  ASSERT_TRUE(q->SetAddresses(GuestAddr(0x10001), ring_->avail_addr(), ring_->used_addr()));
  ASSERT_TRUE(q->SetEnabled(true));
  dev_->SetStatus(kAck | kDrv | kFOk | kDOk);
  EXPECT_TRUE(dev_->status() & VIRTIO_CONFIG_S_NEEDS_RESET);
  EXPECT_EQ(dev_->starts, 0);
  EXPECT_EQ(dev_->stops, 0);  // never started, so never stopped
  dev_->SetStatus(0);
  EXPECT_EQ(dev_->stops, 0);
}

TEST_F(VirtioDeviceTest, FeaturesOkAndDriverOkInOneWriteWithBadFeaturesStartsNothing) {
  dev_->SetStatus(kAck | kDrv);
  dev_->WriteGuestFeatures(0, 2);  // bit 1 without bit 0
  dev_->WriteGuestFeatures(1, 1);
  dev_->SetStatus(kAck | kDrv | kFOk | kDOk);
  EXPECT_EQ(dev_->status() & (kFOk | kDOk), 0);
  EXPECT_EQ(dev_->starts, 0);
}

TEST_F(VirtioDeviceTest, InterfaceChoiceHoldsUntilReset) {
  dev_->SetStatus(kAck);
  dev_->SetLegacy(true);  // too late: the driver already started as a modern one
  EXPECT_FALSE(dev_->legacy());
  dev_->SetStatus(0);
  dev_->SetLegacy(true);
  EXPECT_TRUE(dev_->legacy());
}

TEST_F(VirtioDeviceTest, LegacyDriverWithBadFeaturesGetsNeedsResetAtDriverOk) {
  dev_->SetLegacy(true);
  dev_->SetStatus(kAck | kDrv);
  dev_->WriteGuestFeatures(0, 2);
  dev_->SetStatus(kAck | kDrv | kDOk);
  EXPECT_TRUE(dev_->status() & VIRTIO_CONFIG_S_NEEDS_RESET);
  EXPECT_EQ(dev_->starts, 0);
}

TEST_F(VirtioDeviceTest, QueueConfigurationIsFrozenAfterDriverOk) {
  Init();
  EXPECT_FALSE(dev_->queue(0)->SetSize(4));
  EXPECT_FALSE(dev_->queue(1)->SetEnabled(true));  // even a queue the driver left off
}

TEST_F(VirtioDeviceTest, ConfigSpaceReadsAndBounds) {
  EXPECT_EQ(dev_->ConfigRead(0, 4), 0xdeadbeefu);
  EXPECT_EQ(dev_->ConfigRead(1, 2), 0xadbeu);
  EXPECT_EQ(dev_->ConfigRead(6, 4), 0xffffffffu);  // runs past the end
  EXPECT_EQ(dev_->ConfigRead(0, 3), 0xffffffffu);
  EXPECT_EQ(dev_->ConfigRead(0xfffffffe, 4), 0xffffffffu);
  dev_->ConfigWrite(0, 1, 4);  // read-only field
  EXPECT_EQ(dev_->ConfigRead(0, 4), 0xdeadbeefu);
  EXPECT_EQ(dev_->counters().Value("bad_config_access"), 3u);
  EXPECT_EQ(dev_->counters().Value("config_write_ro"), 1u);
}

TEST_F(VirtioDeviceTest, ConfigChangeBumpsTheGenerationAndInterrupts) {
  const uint32_t gen = dev_->config_generation();
  dev_->ConfigWrite(4, 42, 4);
  EXPECT_EQ(dev_->ConfigRead(4, 4), 42u);
  EXPECT_EQ(dev_->config_generation(), gen + 1);
  EXPECT_EQ(host_->config_notifications, 1);
}

TEST_F(VirtioDeviceTest, UnplugTellsTheTransport) {
  ASSERT_TRUE(m_->DeviceDel("vd").ok());
  EXPECT_EQ(host_->plugged, nullptr);
}

}  // namespace
}  // namespace vdev::virtio
