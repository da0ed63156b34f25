// VirtIODevice with its queues on an iothread (-device ...,iothread=io0): a notify on another
// thread only rings the queue's doorbell, the queue handler and its used-buffer notification run
// on the iothread, and reset and unrealize quiesce it: a reset waits for the handler in progress,
// a doorbell that raced a reset serves nothing, no buffer is completed twice or lost.
#include <atomic>
#include <cstring>
#include <set>
#include <thread>

#include "bus/virtio/virtio_device.h"
#include "bus/virtio/virtio_uapi.h"
#include "core/base/status_macros.h"
#include "core/loop/iothread.h"
#include "core/qdev/machine.h"
#include "core/qdev/sysbus.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/virtio_ring.h"

namespace vdev::virtio {
namespace {

using testing::GuestVring;

// A transport that records on which thread each queue notification came.
class ThreadedVirtioHost : public SysBusDevice, public VirtioTransport {
 public:
  static constexpr char kTypeName[] = "test-threaded-virtio-host";
  using Parent = SysBusDevice;
  ThreadedVirtioHost() : bus_(CreateChildBus<VirtioBus>("tvbus.0")) { bus_->set_transport(this); }
  void NotifyQueue(uint16_t index) override {
    absl::MutexLock l(&mu);
    notify_threads.push_back(std::this_thread::get_id());
  }
  void NotifyConfig() override {}
  const GuestMemory* dma_memory() const override { return mem; }

  VirtioBus* bus_;
  const GuestMemory* mem = nullptr;
  absl::Mutex mu;
  std::vector<std::thread::id> notify_threads ABSL_GUARDED_BY(mu);
};
VDEV_REGISTER_TYPE(ThreadedVirtioHost);

// Completes every buffer with 32 bytes written, recording the handler's thread; `slow` makes each
// handler take a while (so that resets land while one runs).
class ThreadedVirtioDevice : public VirtIODevice {
 public:
  static constexpr char kTypeName[] = "virtio-threaded-test-device";
  using Parent = VirtIODevice;
  static void ClassInit(VirtIODeviceClass& k) { k.device_id = 0x3e; }

  std::atomic<bool> slow{false};
  std::atomic<int> handled{0};
  std::thread::id handler_thread() {
    absl::MutexLock l(&mu_);
    return handler_thread_;
  }

 protected:
  absl::Status Realize() override {
    VDEV_RETURN_IF_ERROR(VirtIODevice::Realize());
    AddQueue(256);
    return absl::OkStatus();
  }
  void HandleQueue(uint16_t index) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    handler_thread_ = std::this_thread::get_id();
    handled.fetch_add(1);
    if (slow.load()) absl::SleepFor(absl::Microseconds(200));
    VirtQueue* vq = queue(index);
    VirtQueueElement e;
    while (vq->Pop(&e) == PopResult::kOk) {
      for (const iovec& v : e.in) std::memset(v.iov_base, 0xa5, v.iov_len);
      vq->Push(e, 32);
    }
    NotifyQueue(index);
  }

 private:
  std::thread::id handler_thread_ ABSL_GUARDED_BY(mu_);
};
VDEV_REGISTER_TYPE(ThreadedVirtioDevice);

constexpr uint8_t kDriverOk = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                              VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
constexpr absl::Duration kWait = absl::Seconds(10);

class VirtioIOThreadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    m_ = *Machine::Create("none");
    mem_ = *GuestMemory::Create();
    ASSERT_TRUE(mem_->AddRam(GuestAddr(0), 4 << 20, "ram").ok());
    auto io = m_->ObjectAdd("object", "iothread,id=io0");
    ASSERT_TRUE(io.ok()) << io.status();
    io_ = qom::DynamicCast<IOThread>(*io);
    io_->loop().RunAndWait([this] { io_thread_ = std::this_thread::get_id(); });
    auto host = m_->AddBoardDevice(qom::MakeChecked<ThreadedVirtioHost>(), &m_->sysbus(), "tvhost");
    ASSERT_TRUE(host.ok()) << host.status();
    host_ = static_cast<ThreadedVirtioHost*>(*host);
    host_->mem = mem_.get();
    auto d = m_->DeviceAdd("virtio-threaded-test-device,id=vd,bus=tvbus.0,iothread=io0");
    ASSERT_TRUE(d.ok()) << d.status();
    dev_ = static_cast<ThreadedVirtioDevice*>(*d);
  }
  // Driver initialisation with a fresh ring.
  void Init() {
    dev_->SetStatus(0);
    ring_ = std::make_unique<GuestVring>(*mem_, GuestAddr(0x10000), 256);
    dev_->SetStatus(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    dev_->WriteGuestFeatures(1, 1);  // VERSION_1
    dev_->SetStatus(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                    VIRTIO_CONFIG_S_FEATURES_OK);
    ASSERT_TRUE(dev_->WithQueue(0, [&](VirtQueue& q) {
      return q.SetSize(256) &&
             q.SetAddresses(ring_->desc_addr(), ring_->avail_addr(), ring_->used_addr()) &&
             q.SetEnabled(true);
    }));
    dev_->SetStatus(kDriverOk);
    ASSERT_EQ(dev_->status(), kDriverOk);
  }
  // Publishes `n` chains of one 32-byte writable buffer each.
  void Publish(int n) {
    for (int i = 0; i < n; ++i) {
      ring_->Publish(ring_->AddChain({{GuestAddr(0x100000 + 64 * (i % 256)), 32, true}}));
    }
  }
  // Waits for `n` used entries; returns them.
  std::vector<std::pair<uint16_t, uint32_t>> WaitUsed(size_t n) {
    std::vector<std::pair<uint16_t, uint32_t>> got;
    const absl::Time deadline = absl::Now() + kWait;
    while (got.size() < n && absl::Now() < deadline) {
      for (auto& u : ring_->TakeUsed()) got.push_back(u);
      if (got.size() < n) absl::SleepFor(absl::Microseconds(100));
    }
    return got;
  }

  std::unique_ptr<Machine> m_;
  std::unique_ptr<GuestMemory> mem_;
  IOThread* io_ = nullptr;
  std::thread::id io_thread_;
  ThreadedVirtioHost* host_ = nullptr;
  ThreadedVirtioDevice* dev_ = nullptr;
  std::unique_ptr<GuestVring> ring_;
};

TEST_F(VirtioIOThreadTest, AKickFromAnotherThreadIsServedAndNotifiedOnTheIOThread) {
  Init();
  Publish(3);
  dev_->Kick(0);  // this thread plays the vCPU: it only rings the doorbell
  const auto used = WaitUsed(3);
  ASSERT_EQ(used.size(), 3u);
  for (const auto& u : used) EXPECT_EQ(u.second, 32u);
  EXPECT_EQ(dev_->handler_thread(), io_thread_);
  EXPECT_NE(io_thread_, std::this_thread::get_id());
  absl::MutexLock l(&host_->mu);
  ASSERT_FALSE(host_->notify_threads.empty());
  for (std::thread::id t : host_->notify_threads) EXPECT_EQ(t, io_thread_);
}

TEST_F(VirtioIOThreadTest, TheIOThreadCannotBeDeletedWhileADeviceUsesIt) {
  EXPECT_FALSE(m_->ObjectDel("object", "io0").ok());
  ASSERT_TRUE(m_->DeviceDel("vd").ok());
  EXPECT_TRUE(m_->ObjectDel("object", "io0").ok());
}

// A "vCPU" thread keeps notifying while the driver resets and re-initialises the device 50 times,
// each time completing a batch: every buffer of every batch is completed exactly once, kicks that
// raced a reset count as nothing, and the device never needs a reset.
TEST_F(VirtioIOThreadTest, ResetsWhileDoorbellsRingQuiesceTheIOThread) {
  dev_->slow.store(true);
  std::atomic<bool> stop{false};
  std::thread vcpu([&] {
    while (!stop.load()) {
      dev_->Kick(0);
      absl::SleepFor(absl::Microseconds(50));
    }
  });
  for (int round = 0; round < 50; ++round) {
    Init();
    Publish(16);
    dev_->Kick(0);
    const auto used = WaitUsed(16);
    ASSERT_EQ(used.size(), 16u) << "round " << round;
    std::set<uint16_t> heads;
    for (const auto& u : used) heads.insert(u.first);
    EXPECT_EQ(heads.size(), 16u) << "a buffer completed twice in round " << round;
    // Nothing more arrives: no duplicate behind the batch.
    absl::SleepFor(absl::Microseconds(300));
    EXPECT_TRUE(ring_->TakeUsed().empty()) << "round " << round;
    dev_->SetStatus(0);  // waits for a handler in progress
  }
  stop.store(true);
  vcpu.join();
  EXPECT_EQ(dev_->status() & VirtIODevice::kNeedsReset, 0);
  EXPECT_EQ(dev_->counters().Value("notify_not_running"), 0u);
  EXPECT_GT(dev_->handled.load(), 50);
}

// Unrealize with doorbells pending: the handler in progress finishes, none runs after, and the
// iothread serves the next device.
TEST_F(VirtioIOThreadTest, UnrealizeWithDoorbellsPendingLeavesTheIOThreadUsable) {
  dev_->slow.store(true);
  Init();
  Publish(8);
  for (int i = 0; i < 20; ++i) dev_->Kick(0);
  ASSERT_TRUE(m_->DeviceDel("vd").ok());
  auto d = m_->DeviceAdd("virtio-threaded-test-device,id=vd2,bus=tvbus.0,iothread=io0");
  ASSERT_TRUE(d.ok()) << d.status();
  dev_ = static_cast<ThreadedVirtioDevice*>(*d);
  Init();
  Publish(4);
  dev_->Kick(0);
  EXPECT_EQ(WaitUsed(4).size(), 4u);
  EXPECT_EQ(dev_->handler_thread(), io_thread_);
}

TEST_F(VirtioIOThreadTest, WithoutAnIOThreadTheKickingThreadServesTheQueue) {
  ASSERT_TRUE(m_->DeviceDel("vd").ok());
  auto d = m_->DeviceAdd("virtio-threaded-test-device,id=vd3,bus=tvbus.0");
  ASSERT_TRUE(d.ok()) << d.status();
  dev_ = static_cast<ThreadedVirtioDevice*>(*d);
  Init();
  Publish(1);
  dev_->Kick(0);
  EXPECT_EQ(ring_->TakeUsed().size(), 1u);  // synchronously
  EXPECT_EQ(dev_->handler_thread(), std::this_thread::get_id());
}

TEST_F(VirtioIOThreadTest, AnUnknownIOThreadIsRefusedWithItsName) {
  ASSERT_TRUE(m_->DeviceDel("vd").ok());
  auto d = m_->DeviceAdd("virtio-threaded-test-device,id=vd4,bus=tvbus.0,iothread=nope");
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), ::testing::HasSubstr("nope"));
}

}  // namespace
}  // namespace vdev::virtio
