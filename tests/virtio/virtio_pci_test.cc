// virtio-rng-pci driven by the software guest's virtio-pci driver: enumeration, capabilities,
// entropy over modern MSI-X, modern INTx and the legacy interface, the pci-cfg window, and the
// "virtio-pci transport and lifecycle" rows of HOSTILE_INPUTS.md.
#include <fcntl.h>
#include <linux/virtio_pci.h>
#include <unistd.h>

#include "bus/pci/pci_regs.h"
#include "bus/virtio/virtio_uapi.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hw/machine/pc.h"
#include "hw/virtio/virtio_rng.h"
#include "tests/testing/pci_guest.h"
#include "tests/testing/virtio_pci_driver.h"

namespace vdev::virtio {
namespace {

using testing::GuestVring;
using testing::PciGuest;
using testing::VirtioPciDriver;

constexpr uint64_t kVersion1 = uint64_t{1} << VIRTIO_F_VERSION_1;
constexpr GuestAddr kRing(0x100000);
constexpr GuestAddr kBuf(0x200000);

class VirtioPciTest : public ::testing::Test {
 protected:
  void Build(const std::string& device, VirtioPciDriver::Mode mode = VirtioPciDriver::Mode::kModern,
             const std::string& objects = "") {
    m_ = *Machine::Create("pc");
    m_->irq().set_sink(&sink_);
    if (!objects.empty()) {
      ASSERT_TRUE(m_->ObjectAdd("object", objects).ok());
    }
    auto d = m_->DeviceAdd(device);
    ASSERT_TRUE(d.ok()) << d.status();
    proxy_ = static_cast<VirtIOPCIProxy*>(*d);
    guest_ =
        std::make_unique<PciGuest>(m_->io_space(), m_->memory_space(), PciGuest::Mechanism::kPortIo,
                                   0xb0000000, &pci::I440FXPciHost::RouteIntx);
    guest_->Enumerate();
    fn_ = guest_->Find(0x1af4, proxy_->vendor_id() == 0x1af4 ? proxy_->device_id() : 0);
    ASSERT_NE(fn_, nullptr);
    drv_ = std::make_unique<VirtioPciDriver>(*guest_, *fn_, m_->memory_space(), m_->io_space(),
                                             m_->guest_memory(), mode);
    ASSERT_TRUE(drv_->Probe());
  }
  // Negotiates VERSION_1 (modern), sets up the request queue, DRIVER_OK.
  GuestVring* Start(uint16_t vector = 0xffff) {
    EXPECT_TRUE(drv_->Negotiate(kVersion1).has_value());
    GuestVring* vq = drv_->SetupQueue(0, kRing, 64, vector);
    EXPECT_NE(vq, nullptr);
    drv_->DriverOk();
    return vq;
  }
  std::vector<uint8_t> Buf(size_t n) {
    std::vector<uint8_t> b(n);
    EXPECT_TRUE(m_->guest_memory().Read(kBuf, absl::MakeSpan(b)));
    return b;
  }
  Counters& dev_counters() { return proxy_->vdev()->counters(); }

  RecordingIrqSink sink_;
  std::unique_ptr<Machine> m_;
  VirtIOPCIProxy* proxy_ = nullptr;
  std::unique_ptr<PciGuest> guest_;
  const PciGuest::Function* fn_ = nullptr;
  std::unique_ptr<VirtioPciDriver> drv_;
};

bool NotAllZero(const std::vector<uint8_t>& b) {
  for (uint8_t x : b) {
    if (x != 0) return true;
  }
  return false;
}

TEST_F(VirtioPciTest, ModernDeviceIdentityAndCapabilities) {
  Build("virtio-rng-pci,id=rng");
  EXPECT_EQ(fn_->device, 0x1044);
  EXPECT_EQ(guest_->ConfigRead(*fn_, pci::kRevisionId, 1), 1u);
  EXPECT_EQ(guest_->ConfigRead(*fn_, pci::kSubsystemVendorId, 4), 0x00041af4u);
  for (uint8_t t : {VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_CAP_ISR_CFG,
                    VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_CAP_PCI_CFG}) {
    EXPECT_NE(drv_->cap(t), 0) << int{t};
  }
  EXPECT_NE(guest_->FindCapability(*fn_, pci::kCapIdMsix), 0);
  EXPECT_FALSE(fn_->bars[4].io);
  EXPECT_FALSE(fn_->bars[4].is64);   // QEMU's proxy needs 32-bit BARs
  EXPECT_EQ(fn_->bars[0].size, 0u);  // no legacy BAR
  EXPECT_EQ(drv_->NumQueues(), 1);
}

TEST_F(VirtioPciTest, EntropyOverModernWithMsix) {
  Build("virtio-rng-pci,id=rng");
  ASSERT_TRUE(guest_->EnableMsix(*fn_, {{0xfee00000, 0x30}, {0xfee00000, 0x31}}));
  GuestVring* vq = Start(/*vector=*/1);
  drv_->SetConfigVector(0);
  vq->Publish(vq->AddChain({{kBuf, 64, true}}));
  drv_->Kick(0);
  auto used = vq->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].second, 64u);
  EXPECT_TRUE(NotAllZero(Buf(64)));
  EXPECT_THAT(sink_.msis(), ::testing::ElementsAre(MsiMessage{0xfee00000, 0x31}));
  EXPECT_EQ(dev_counters().Value("entropy_bytes"), 64u);
}

TEST_F(VirtioPciTest, VmmCanLearnNotifyAddressesAndInterruptRoutes) {
  Build("virtio-rng-pci,id=rng");
  ASSERT_TRUE(guest_->EnableMsix(*fn_, {{0xfee00000, 0x30}, {0xfee01000, 0x31}}));
  Start(/*vector=*/1);
  drv_->SetConfigVector(0);  // after the reset that initialisation starts with
  // ioeventfd: where the guest's notification for queue 0 lands.
  EXPECT_EQ(proxy_->QueueNotifyAddress(0), fn_->bars[4].addr + VirtIOPCIProxy::kNotifyOffset);
  EXPECT_EQ(proxy_->QueueNotifyAddress(1), std::nullopt);
  // irqfd: the vector and message of queue 0 and of config changes.
  auto q = proxy_->InterruptRoute(0);
  ASSERT_TRUE(q.has_value());
  EXPECT_EQ(q->first, 1);
  EXPECT_EQ(q->second, (MsiMessage{0xfee01000, 0x31}));
  auto c = proxy_->InterruptRoute(VirtIOPCIProxy::kConfigVector);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->second, (MsiMessage{0xfee00000, 0x30}));
  EXPECT_EQ(proxy_->InterruptRoute(5), std::nullopt);
}

TEST_F(VirtioPciTest, EntropyOverModernWithIntxAndIsr) {
  Build("virtio-rng-pci,id=rng,vectors=0");
  EXPECT_EQ(guest_->FindCapability(*fn_, pci::kCapIdMsix), 0);
  GuestVring* vq = Start();
  vq->Publish(vq->AddChain({{kBuf, 32, true}}));
  drv_->Kick(0);
  EXPECT_TRUE(sink_.level(fn_->irq_line));
  EXPECT_EQ(drv_->ReadIsr(), 1);  // queue interrupt; read-to-clear
  EXPECT_FALSE(sink_.level(fn_->irq_line));
  EXPECT_EQ(drv_->ReadIsr(), 0);
  EXPECT_EQ(vq->TakeUsed().size(), 1u);
}

TEST_F(VirtioPciTest, EntropyOverTheLegacyInterface) {
  Build("virtio-rng-pci,id=rng,disable-legacy=off,disable-modern=on,vectors=0",
        VirtioPciDriver::Mode::kLegacy);
  EXPECT_EQ(fn_->device, 0x1005);
  EXPECT_EQ(guest_->ConfigRead(*fn_, pci::kRevisionId, 1), 0u);
  EXPECT_TRUE(fn_->bars[0].io);
  EXPECT_EQ(fn_->bars[4].size, 0u);
  auto f = drv_->Negotiate(uint64_t{1} << VIRTIO_RING_F_INDIRECT_DESC | kVersion1);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(*f, uint64_t{1} << VIRTIO_RING_F_INDIRECT_DESC);  // no VERSION_1 for legacy
  GuestVring* vq = drv_->SetupQueue(0, kRing, 64);
  ASSERT_NE(vq, nullptr);
  EXPECT_EQ(vq->size(), VirtIORNG::kQueueSize);
  drv_->DriverOk();
  EXPECT_EQ(drv_->status() & VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_DRIVER_OK);
  vq->Publish(vq->AddIndirect({{kBuf, 16, true}, {kBuf + 16, 16, true}}, GuestAddr(0x300000)));
  drv_->Kick(0);
  EXPECT_TRUE(sink_.level(fn_->irq_line));
  EXPECT_EQ(drv_->ReadIsr(), 1);
  auto used = vq->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].second, 32u);
}

TEST_F(VirtioPciTest, TransitionalDeviceServesAModernDriver) {
  Build("virtio-rng-pci,id=rng,disable-legacy=off");
  EXPECT_EQ(fn_->device, 0x1005);
  EXPECT_TRUE(fn_->bars[0].io);
  GuestVring* vq = Start();
  vq->Publish(vq->AddChain({{kBuf, 8, true}}));
  drv_->Kick(0);
  EXPECT_EQ(vq->TakeUsed().size(), 1u);
}

TEST_F(VirtioPciTest, EntropyComesFromTheLinkedBackend) {
  char path[] = "/tmp/vdev-rng-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> content(64, 0x42);
  ASSERT_EQ(write(fd, content.data(), content.size()), 64);
  close(fd);
  Build("virtio-rng-pci,id=rng,rng=rng0", VirtioPciDriver::Mode::kModern,
        std::string("rng-random,id=rng0,filename=") + path);
  unlink(path);
  GuestVring* vq = Start();
  vq->Publish(vq->AddChain({{kBuf, 100, true}}));
  drv_->Kick(0);
  auto used = vq->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].second, 64u);  // the file had 64 bytes
  auto b = Buf(64);
  EXPECT_EQ(b, content);
}

TEST_F(VirtioPciTest, PciCfgWindowReachesTheCommonConfiguration) {
  Build("virtio-rng-pci,id=rng");
  const uint8_t c = drv_->cap(VIRTIO_PCI_CAP_PCI_CFG);
  guest_->ConfigWrite(*fn_, c + VIRTIO_PCI_CAP_BAR, 4, 1);
  guest_->ConfigWrite(*fn_, c + VIRTIO_PCI_CAP_OFFSET, VIRTIO_PCI_COMMON_NUMQ, 4);
  guest_->ConfigWrite(*fn_, c + VIRTIO_PCI_CAP_LENGTH, 2, 4);
  EXPECT_EQ(guest_->ConfigRead(*fn_, c + 16, 4) & 0xffff, 1u);  // num_queues through the window
  // A write through the window: device_feature_select = 1, then device_feature reads page 1.
  guest_->ConfigWrite(*fn_, c + VIRTIO_PCI_CAP_OFFSET, VIRTIO_PCI_COMMON_DFSELECT, 4);
  guest_->ConfigWrite(*fn_, c + VIRTIO_PCI_CAP_LENGTH, 4, 4);
  guest_->ConfigWrite(*fn_, c + 16, 1, 4);
  EXPECT_EQ(drv_->CommonRead(VIRTIO_PCI_COMMON_DF, 4), 1u);  // VERSION_1 is bit 32
}

TEST_F(VirtioPciTest, PciCfgWindowWithABadBarOffsetOrLengthIsRefused) {
  Build("virtio-rng-pci,id=rng");
  const uint8_t c = drv_->cap(VIRTIO_PCI_CAP_PCI_CFG);
  auto window = [&](uint8_t bar, uint32_t off, uint32_t len) {
    guest_->ConfigWrite(*fn_, c + VIRTIO_PCI_CAP_BAR, bar, 1);
    guest_->ConfigWrite(*fn_, c + VIRTIO_PCI_CAP_OFFSET, off, 4);
    guest_->ConfigWrite(*fn_, c + VIRTIO_PCI_CAP_LENGTH, len, 4);
    guest_->ConfigWrite(*fn_, c + 16, 0xffffffff, 4);
    return guest_->ConfigRead(*fn_, c + 16, 4);
  };
  window(1, 0, 4);           // the MSI-X BAR: not a virtio structure
  window(4, 0, 3);           // a width that does not exist
  window(4, 2, 4);           // unaligned
  window(4, 0x4000, 4);      // past the BAR
  window(4, 0xfffffffc, 4);  // wraps
  EXPECT_EQ(proxy_->counters().Value("bad_pci_cfg_access"), 10u);  // each write and read
  EXPECT_EQ(drv_->CommonRead(VIRTIO_PCI_COMMON_DFSELECT, 4), 0u);  // nothing reached the device
}

// ---- hostile: transport and lifecycle ----

TEST_F(VirtioPciTest, QueueSelectPastTheLastQueue) {
  Build("virtio-rng-pci,id=rng");
  drv_->CommonWrite(VIRTIO_PCI_COMMON_Q_SELECT, 5, 2);
  EXPECT_EQ(drv_->CommonRead(VIRTIO_PCI_COMMON_Q_SIZE, 2), 0u);
  EXPECT_EQ(drv_->CommonRead(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0u);
  EXPECT_EQ(drv_->CommonRead(VIRTIO_PCI_COMMON_Q_MSIX, 2), 0xffffu);
  EXPECT_EQ(drv_->CommonRead(VIRTIO_PCI_COMMON_Q_DESCLO, 4), 0u);
  drv_->CommonWrite(VIRTIO_PCI_COMMON_Q_SIZE, 8, 2);
  drv_->CommonWrite(VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
  drv_->CommonWrite(VIRTIO_PCI_COMMON_Q_DESCLO, 0x1000, 4);
  drv_->CommonWrite(VIRTIO_PCI_COMMON_Q_MSIX, 0, 2);
  EXPECT_EQ(proxy_->counters().Value("bad_queue_select"), 4u);
}

TEST_F(VirtioPciTest, FeatureSelectPastTheLastPageReadsZero) {
  Build("virtio-rng-pci,id=rng");
  drv_->CommonWrite(VIRTIO_PCI_COMMON_DFSELECT, 0x1234, 4);
  EXPECT_EQ(drv_->CommonRead(VIRTIO_PCI_COMMON_DF, 4), 0u);
}

TEST_F(VirtioPciTest, BadWidthsAndReadOnlyFieldsInCommonConfig) {
  Build("virtio-rng-pci,id=rng");
  drv_->CommonWrite(VIRTIO_PCI_COMMON_Q_SELECT, 0, 1);  // 1 byte of a 2-byte field
  drv_->CommonWrite(VIRTIO_PCI_COMMON_NUMQ, 9, 2);      // read-only
  drv_->CommonWrite(VIRTIO_PCI_COMMON_Q_NOFF, 9, 2);    // read-only
  EXPECT_EQ(drv_->CommonWrite(VIRTIO_PCI_COMMON_Q_DESCLO, 0, 8), MemTxResult::kRejected);
  EXPECT_EQ(proxy_->counters().Value("bad_common_access"), 3u);
  EXPECT_EQ(drv_->NumQueues(), 1);
}

TEST_F(VirtioPciTest, VectorsPastTheTableReadBackAsNoVector) {
  Build("virtio-rng-pci,id=rng,vectors=2");
  drv_->SetConfigVector(7);
  EXPECT_EQ(drv_->CommonRead(VIRTIO_PCI_COMMON_MSIX, 2), 0xffffu);
  drv_->CommonWrite(VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
  drv_->CommonWrite(VIRTIO_PCI_COMMON_Q_MSIX, 2, 2);
  EXPECT_EQ(drv_->CommonRead(VIRTIO_PCI_COMMON_Q_MSIX, 2), 0xffffu);
}

TEST_F(VirtioPciTest, QueueConfigurationIsFrozenAtDriverOk) {
  Build("virtio-rng-pci,id=rng");
  Start();
  drv_->CommonWrite(VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
  drv_->CommonWrite(VIRTIO_PCI_COMMON_Q_SIZE, 8, 2);
  drv_->CommonWrite(VIRTIO_PCI_COMMON_Q_DESCLO, 0x5000, 4);
  EXPECT_EQ(drv_->CommonRead(VIRTIO_PCI_COMMON_Q_SIZE, 2), 64u);
  EXPECT_EQ(drv_->CommonRead(VIRTIO_PCI_COMMON_Q_DESCLO, 4), kRing.value());
  EXPECT_EQ(proxy_->counters().Value("bad_queue_config"), 2u);
}

TEST_F(VirtioPciTest, DeviceConfigPastItsLengthReadsAllOnes) {
  Build("virtio-rng-pci,id=rng");  // virtio-rng has no device configuration at all
  EXPECT_EQ(drv_->DeviceConfigRead(0, 4), 0xffffffffu);
  EXPECT_EQ(dev_counters().Value("bad_config_access"), 1u);
}

TEST_F(VirtioPciTest, NotifyOfANonexistentQueueOrBeforeDriverOkIsIgnored) {
  Build("virtio-rng-pci,id=rng");
  drv_->Kick(0);  // before DRIVER_OK
  EXPECT_EQ(dev_counters().Value("notify_not_running"), 1u);
  GuestVring* vq = Start();
  vq->Publish(vq->AddChain({{kBuf, 8, true}}));
  drv_->NotifyAt(5 * 4, 5);       // queue 5's slot: there is no queue 5 (CVE-2011-2512)
  drv_->NotifyAt(0xffc, 0xffff);  // the last slot of the notify region
  EXPECT_EQ(dev_counters().Value("bad_queue_notify"), 2u);
  EXPECT_EQ(drv_->NotifyAt(1, 0), MemTxResult::kRejected);  // unaligned
  EXPECT_EQ(vq->used_idx(), 0);
  drv_->Kick(0);  // and the real queue still works
  EXPECT_EQ(vq->TakeUsed().size(), 1u);
}

TEST_F(VirtioPciTest, RingPointingAtTheDevicesOwnBarIsRefused) {
  Build("virtio-rng-pci,id=rng");
  ASSERT_TRUE(drv_->Negotiate(kVersion1).has_value());
  drv_->CommonWrite(VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
  const uint64_t bar = fn_->bars[4].addr;  // MMIO, not RAM (DMA re-entrancy, CVE-2021-3929)
  for (uint32_t off :
       {VIRTIO_PCI_COMMON_Q_DESCLO, VIRTIO_PCI_COMMON_Q_AVAILLO, VIRTIO_PCI_COMMON_Q_USEDLO}) {
    drv_->CommonWrite(off, static_cast<uint32_t>(bar + 0x1000 * (off - 32) / 8), 4);
  }
  drv_->CommonWrite(VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
  drv_->DriverOk();
  EXPECT_TRUE(drv_->status() & VIRTIO_CONFIG_S_NEEDS_RESET);
  EXPECT_EQ(dev_counters().Value("needs_reset"), 1u);
  // A reset brings it back.
  GuestVring* vq = Start();
  vq->Publish(vq->AddChain({{kBuf, 8, true}}));
  drv_->Kick(0);
  EXPECT_EQ(vq->TakeUsed().size(), 1u);
}

TEST_F(VirtioPciTest, BrokenRingRaisesAConfigInterruptWithNeedsReset) {
  Build("virtio-rng-pci,id=rng,vectors=0");
  GuestVring* vq = Start();
  vq->Publish(200);  // head past the ring
  drv_->Kick(0);
  EXPECT_TRUE(drv_->status() & VIRTIO_CONFIG_S_NEEDS_RESET);
  EXPECT_EQ(drv_->ReadIsr() & VIRTIO_PCI_ISR_CONFIG, VIRTIO_PCI_ISR_CONFIG);
}

TEST_F(VirtioPciTest, ReadOnlyRequestIsReturnedEmptyAndCounted) {
  Build("virtio-rng-pci,id=rng");
  GuestVring* vq = Start();
  vq->Publish(vq->AddChain({{kBuf, 16, false}}));  // the device cannot write into it
  drv_->Kick(0);
  auto used = vq->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].second, 0u);
  EXPECT_EQ(dev_counters().Value("bad_request"), 1u);
}

TEST_F(VirtioPciTest, WithoutBusMasteringTheDeviceLeavesGuestMemoryAlone) {
  Build("virtio-rng-pci,id=rng");
  GuestVring* vq = Start();
  const uint32_t cmd = guest_->ConfigRead(*fn_, pci::kCommand, 2);
  guest_->ConfigWrite(*fn_, pci::kCommand, cmd & ~pci::kCommandMaster, 2);  // e.g. kexec
  vq->Publish(vq->AddChain({{kBuf, 8, true}}));
  drv_->Kick(0);
  EXPECT_EQ(vq->used_idx(), 0);
  EXPECT_EQ(dev_counters().Value("notify_without_dma"), 1u);
  guest_->ConfigWrite(*fn_, pci::kCommand, cmd, 2);
  drv_->Kick(0);
  EXPECT_EQ(vq->TakeUsed().size(), 1u);
  // And DRIVER_OK without bus mastering cannot start the rings.
  guest_->ConfigWrite(*fn_, pci::kCommand, cmd & ~pci::kCommandMaster, 2);
  Start();
  EXPECT_TRUE(drv_->status() & VIRTIO_CONFIG_S_NEEDS_RESET);
}

TEST_F(VirtioPciTest, StatusBitsCannotBeClearedWithoutAReset) {
  Build("virtio-rng-pci,id=rng");
  Start();
  drv_->SetStatus(VIRTIO_CONFIG_S_ACKNOWLEDGE);
  EXPECT_TRUE(drv_->status() & VIRTIO_CONFIG_S_DRIVER_OK);
  drv_->SetStatus(0);
  EXPECT_EQ(drv_->status(), 0);
}

TEST_F(VirtioPciTest, UnpluggingTheProxyTakesTheBackendWithIt) {
  Build("virtio-rng-pci,id=rng");
  Start();
  ASSERT_TRUE(m_->DeviceDel("rng").ok());
  EXPECT_EQ(m_->root().Resolve("/machine/peripheral/rng/virtio-backend").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace vdev::virtio
