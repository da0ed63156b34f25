// VirtioRegisters, the register model every transport decodes onto: feature windows, the queue
// selector (past the last queue: a queue that does not exist), addresses as 32-bit halves, the
// one-way enable bit, MSI-X vector range, freezing at DRIVER_OK, legacy PFN rings, reset. The
// transports' own tests (virtio_pci_test, virtio_mmio_test) drive the same rules through real
// register accesses.
#include "bus/virtio/virtio_regs.h"

#include "bus/virtio/virtio_uapi.h"
#include "core/base/status_macros.h"
#include "core/qdev/machine.h"
#include "core/qdev/sysbus.h"
#include "gtest/gtest.h"

namespace vdev::virtio {
namespace {

class RegsTestHost : public SysBusDevice, public VirtioTransport {
 public:
  static constexpr char kTypeName[] = "regs-test-host";
  using Parent = SysBusDevice;
  RegsTestHost() : bus_(CreateChildBus<VirtioBus>("rbus.0")) { bus_->set_transport(this); }
  void NotifyQueue(uint16_t) override {}
  void NotifyConfig() override {}
  const GuestMemory* dma_memory() const override { return mem; }
  VirtioBus* bus_;
  const GuestMemory* mem = nullptr;
};
VDEV_REGISTER_TYPE(RegsTestHost);

// Two queues of at most 64 entries; feature bit 3.
class RegsTestDevice : public VirtIODevice {
 public:
  static constexpr char kTypeName[] = "virtio-regs-test-device";
  using Parent = VirtIODevice;
  static void ClassInit(VirtIODeviceClass& k) { k.device_id = 0x3e; }

 protected:
  absl::Status Realize() override {
    VDEV_RETURN_IF_ERROR(VirtIODevice::Realize());
    AddQueue(64);
    AddQueue(64);
    return absl::OkStatus();
  }
  uint64_t DeviceFeatures() const override { return 1u << 3; }
};
VDEV_REGISTER_TYPE(RegsTestDevice);

class VirtioRegistersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    m_ = *Machine::Create("none");
    mem_ = *GuestMemory::Create();
    ASSERT_TRUE(mem_->AddRam(GuestAddr(0), 1 << 20, "ram").ok());
    auto host = m_->AddBoardDevice(qom::MakeChecked<RegsTestHost>(), &m_->sysbus(), "rhost");
    ASSERT_TRUE(host.ok()) << host.status();
    static_cast<RegsTestHost*>(*host)->mem = mem_.get();
    auto d = m_->DeviceAdd("virtio-regs-test-device,bus=rbus.0");
    ASSERT_TRUE(d.ok()) << d.status();
    dev_ = static_cast<VirtIODevice*>(*d);
    regs_.Configure(dev_->num_queues(), /*msix_vectors=*/4);
  }

  std::unique_ptr<Machine> m_;
  std::unique_ptr<GuestMemory> mem_;
  VirtIODevice* dev_ = nullptr;
  VirtioRegisters regs_;
};

TEST_F(VirtioRegistersTest, FeatureWindowsFollowTheirSelectors) {
  EXPECT_EQ(regs_.ReadDeviceFeatures(*dev_),
            1u << 3 | 1u << VIRTIO_RING_F_INDIRECT_DESC | 1u << VIRTIO_RING_F_EVENT_IDX);
  regs_.set_device_feature_select(1);
  EXPECT_EQ(regs_.ReadDeviceFeatures(*dev_), 1u);  // VERSION_1 is bit 32
  regs_.set_device_feature_select(9);
  EXPECT_EQ(regs_.ReadDeviceFeatures(*dev_), 0u);
  dev_->SetStatus(VirtIODevice::kAcknowledge | VirtIODevice::kDriver);
  regs_.set_driver_feature_select(1);
  regs_.WriteDriverFeatures(*dev_, 1);
  regs_.set_driver_feature_select(0);
  regs_.WriteDriverFeatures(*dev_, 1u << 3);
  EXPECT_EQ(dev_->guest_features(), uint64_t{1} << 32 | 1u << 3);
  EXPECT_EQ(regs_.ReadDriverFeatures(*dev_), 1u << 3);
}

TEST_F(VirtioRegistersTest, AddressesAreWrittenAsHalves) {
  regs_.set_queue_select(1);
  ASSERT_TRUE(regs_.WriteQueue(*dev_, QueueField::kDescLow, 0x1000));
  ASSERT_TRUE(regs_.WriteQueue(*dev_, QueueField::kDescHigh, 0x2));
  ASSERT_TRUE(regs_.WriteQueue(*dev_, QueueField::kDriverLow, 0x3000));
  ASSERT_TRUE(regs_.WriteQueue(*dev_, QueueField::kDeviceHigh, 0xabcd));
  EXPECT_EQ(dev_->queue(1)->desc_addr().value(), 0x2'0000'1000u);
  EXPECT_EQ(dev_->queue(1)->avail_addr().value(), 0x3000u);
  EXPECT_EQ(dev_->queue(1)->used_addr().value(), uint64_t{0xabcd} << 32);
  EXPECT_EQ(regs_.ReadQueue(*dev_, QueueField::kDescLow), 0x1000u);
  EXPECT_EQ(regs_.ReadQueue(*dev_, QueueField::kDescHigh), 0x2u);
  EXPECT_EQ(regs_.ReadQueue(*dev_, QueueField::kDeviceLow), 0u);
  EXPECT_EQ(regs_.ReadQueue(*dev_, QueueField::kDeviceHigh), 0xabcdu);
  // Queue 0 is untouched.
  EXPECT_EQ(dev_->queue(0)->desc_addr().value(), 0u);
}

TEST_F(VirtioRegistersTest, ASelectorPastTheLastQueueReadsNothingAndRefusesWrites) {
  for (uint32_t sel : {2u, 0xffffu, 0x10000u, 0xffffffffu}) {
    regs_.set_queue_select(sel);
    EXPECT_FALSE(regs_.QueueExists(*dev_)) << sel;
    EXPECT_EQ(regs_.ReadQueue(*dev_, QueueField::kMaxSize), 0u);
    EXPECT_EQ(regs_.ReadQueue(*dev_, QueueField::kSize), 0u);
    EXPECT_EQ(regs_.ReadQueue(*dev_, QueueField::kVector), kNoVector);
    EXPECT_FALSE(regs_.WriteQueue(*dev_, QueueField::kSize, 16));
    EXPECT_FALSE(regs_.WriteQueue(*dev_, QueueField::kVector, 1));
    EXPECT_FALSE(regs_.WriteLegacyPfn(*dev_, 0x10, 4096, true));
  }
  // 0x10000 does not alias queue 0.
  EXPECT_EQ(dev_->queue(0)->size(), 64u);
}

TEST_F(VirtioRegistersTest, SizeMustBeAPowerOfTwoWithinTheMaximum) {
  EXPECT_EQ(regs_.ReadQueue(*dev_, QueueField::kMaxSize), 64u);
  EXPECT_TRUE(regs_.WriteQueue(*dev_, QueueField::kSize, 32));
  for (uint64_t bad : {0ull, 3ull, 128ull, 0x10020ull}) {
    EXPECT_FALSE(regs_.WriteQueue(*dev_, QueueField::kSize, bad)) << bad;
  }
  EXPECT_EQ(regs_.ReadQueue(*dev_, QueueField::kSize), 32u);
  EXPECT_FALSE(regs_.WriteQueue(*dev_, QueueField::kMaxSize, 16));
}

TEST_F(VirtioRegistersTest, EnableIsOneWayAndVectorsOutsideTheTableReadNoVector) {
  EXPECT_FALSE(regs_.WriteQueue(*dev_, QueueField::kEnable, 0));
  EXPECT_FALSE(regs_.WriteQueue(*dev_, QueueField::kEnable, 2));
  EXPECT_TRUE(regs_.WriteQueue(*dev_, QueueField::kEnable, 1));
  EXPECT_EQ(regs_.ReadQueue(*dev_, QueueField::kEnable), 1u);
  EXPECT_TRUE(regs_.WriteQueue(*dev_, QueueField::kVector, 3));
  EXPECT_EQ(regs_.queue_vector(0), 3u);
  EXPECT_TRUE(regs_.WriteQueue(*dev_, QueueField::kVector, 4));  // accepted, reads NO_VECTOR
  EXPECT_EQ(regs_.ReadQueue(*dev_, QueueField::kVector), kNoVector);
  regs_.SetConfigVector(2);
  EXPECT_EQ(regs_.config_vector(), 2u);
  regs_.SetConfigVector(0x10002);
  EXPECT_EQ(regs_.config_vector(), kNoVector);
  EXPECT_EQ(regs_.queue_vector(7), kNoVector);
}

TEST_F(VirtioRegistersTest, QueueFieldsFreezeAtDriverOk) {
  ASSERT_TRUE(regs_.WriteQueue(*dev_, QueueField::kSize, 16));
  ASSERT_TRUE(regs_.WriteQueue(*dev_, QueueField::kDescLow, 0x10000));
  ASSERT_TRUE(regs_.WriteQueue(*dev_, QueueField::kDriverLow, 0x11000));
  ASSERT_TRUE(regs_.WriteQueue(*dev_, QueueField::kDeviceLow, 0x12000));
  ASSERT_TRUE(regs_.WriteQueue(*dev_, QueueField::kEnable, 1));
  dev_->SetStatus(VirtIODevice::kAcknowledge);
  dev_->SetStatus(VirtIODevice::kAcknowledge | VirtIODevice::kDriver);
  regs_.set_driver_feature_select(1);
  regs_.WriteDriverFeatures(*dev_, 1);
  dev_->SetStatus(VirtIODevice::kAcknowledge | VirtIODevice::kDriver | VirtIODevice::kFeaturesOk);
  dev_->SetStatus(VirtIODevice::kAcknowledge | VirtIODevice::kDriver | VirtIODevice::kFeaturesOk |
                  VirtIODevice::kDriverOk);
  ASSERT_TRUE(dev_->status() & VirtIODevice::kDriverOk);
  EXPECT_FALSE(regs_.WriteQueue(*dev_, QueueField::kSize, 32));
  EXPECT_FALSE(regs_.WriteQueue(*dev_, QueueField::kDescHigh, 1));
  EXPECT_FALSE(regs_.WriteQueue(*dev_, QueueField::kVector, 1));
  EXPECT_FALSE(regs_.WriteLegacyPfn(*dev_, 0x20, 4096, true));
  EXPECT_EQ(regs_.ReadQueue(*dev_, QueueField::kSize), 16u);
  EXPECT_EQ(regs_.ReadQueue(*dev_, QueueField::kDescLow), 0x10000u);
  EXPECT_EQ(regs_.ReadQueue(*dev_, QueueField::kDescHigh), 0u);
}

TEST_F(VirtioRegistersTest, LegacyPfnLaysOutTheThreePartsAndZeroReleases) {
  regs_.set_queue_select(1);
  ASSERT_TRUE(regs_.WriteLegacyPfn(*dev_, 0x20, 4096, /*use_max_size=*/true));
  const VirtQueue& q = *dev_->queue(1);
  EXPECT_EQ(q.size(), 64u);
  EXPECT_EQ(q.desc_addr().value(), 0x20000u);
  EXPECT_EQ(q.avail_addr().value(), 0x20000u + 16 * 64);
  EXPECT_EQ(q.used_addr().value() % 4096, 0u);
  EXPECT_TRUE(q.enabled());
  EXPECT_EQ(regs_.ReadLegacyPfn(*dev_), 0x20u);
  ASSERT_TRUE(regs_.WriteLegacyPfn(*dev_, 0, 4096, true));
  EXPECT_FALSE(q.enabled());
  EXPECT_EQ(regs_.ReadLegacyPfn(*dev_), 0u);
}

TEST_F(VirtioRegistersTest, ResetClearsSelectorsAndVectors) {
  regs_.set_device_feature_select(1);
  regs_.set_driver_feature_select(1);
  regs_.set_queue_select(1);
  regs_.SetConfigVector(1);
  ASSERT_TRUE(regs_.WriteQueue(*dev_, QueueField::kVector, 2));
  regs_.ResetVectors();
  EXPECT_EQ(regs_.config_vector(), kNoVector);
  EXPECT_EQ(regs_.queue_vector(1), kNoVector);
  EXPECT_EQ(regs_.queue_select(), 1u);
  regs_.Reset();
  EXPECT_EQ(regs_.device_feature_select(), 0u);
  EXPECT_EQ(regs_.driver_feature_select(), 0u);
  EXPECT_EQ(regs_.queue_select(), 0u);
}

}  // namespace
}  // namespace vdev::virtio
