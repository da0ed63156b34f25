// BARs, configuration mechanisms, capabilities, MSI-X and bridges, driven only through
// guest-visible accesses (the software guest), plus the hostile inputs of the "PCI config, BARs,
// MSI-X, access widths" and "DMA targets" sections of HOSTILE_INPUTS.md.
#include <atomic>
#include <thread>

#include "bus/pci/pci_bridge.h"
#include "bus/pci/pci_bus.h"
#include "bus/pci/pci_device.h"
#include "bus/pci/pci_regs.h"
#include "core/base/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hw/machine/pc.h"
#include "hw/misc/edu.h"
#include "tests/testing/pci_guest.h"

namespace vdev::pci {
namespace {

using testing::PciGuest;

// A function with every BAR kind and MSI-X in BAR 4, for these tests.
class BarTestDevice : public PCIDevice {
 public:
  static constexpr char kTypeName[] = "bar-test-device";
  using Parent = PCIDevice;
  static void ClassInit(PCIDeviceClass& k) {
    k.description = "a PCI function with every kind of BAR, for tests";
    k.vendor_id = 0x1b36;
    k.device_id = 0x00f1;
    k.interrupt_pin = 2;
    k.AddProperty(qom::Prop("loop-caps", &BarTestDevice::loop_caps_, false,
                            "make the capability list point back at itself"));
  }
  int reads = 0;

 protected:
  absl::Status Realize() override {
    VDEV_RETURN_IF_ERROR(PCIDevice::Realize());
    MemoryRegionOps ops;
    ops.read = [this](MmioOffset off, unsigned) -> uint64_t {
      ++reads;
      return 0xab00 | off.value();
    };
    ops.valid = {1, 8, false};
    for (int i = 0; i < 4; ++i) {
      regs_[i] = MemoryRegion::CreateIo("regs", 16, ops);
      regs_[i]->set_owner_counters(&counters());
    }
    RegisterBar(0, 0x1000, 0)->AddSubregion(0, regs_[0].get());          // mem32
    RegisterBar(1, 0x20, kBarSpaceIo)->AddSubregion(0, regs_[1].get());  // I/O
    RegisterBar(2, 0x4000, kBarMemType64 | kBarMemPrefetch)->AddSubregion(0, regs_[2].get());
    VDEV_RETURN_IF_ERROR(InitMsixExclusiveBar(3, 4));
    if (loop_caps_)
      config()[FindCapability(kCapIdMsix) + kCapListNext] = FindCapability(kCapIdMsix);
    return absl::OkStatus();
  }

 private:
  bool loop_caps_ = false;
  std::unique_ptr<MemoryRegion> regs_[4];
};
VDEV_REGISTER_TYPE(BarTestDevice);

// A PCI Express endpoint: 4 KiB of configuration space.
class ExpressTestDevice : public PCIDevice {
 public:
  static constexpr char kTypeName[] = "express-test-device";
  using Parent = PCIDevice;
  static void ClassInit(PCIDeviceClass& k) {
    k.vendor_id = 0x1b36;
    k.device_id = 0x00f2;
    k.is_express = true;
  }

 protected:
  absl::Status Realize() override {
    VDEV_RETURN_IF_ERROR(PCIDevice::Realize());
    config()[0x100] = 0x0b;  // an extended capability header (vendor-specific), read-only
    SetConfigWriteMask(0x104, 0xff);
    return absl::OkStatus();
  }
};
VDEV_REGISTER_TYPE(ExpressTestDevice);

class PciBarTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = Machine::Create("pc");
    ASSERT_TRUE(m.ok()) << m.status();
    m_ = std::move(*m);
    m_->irq().set_sink(&sink_);
    guest_ =
        std::make_unique<PciGuest>(m_->io_space(), m_->memory_space(), PciGuest::Mechanism::kPortIo,
                                   0xb0000000, &I440FXPciHost::RouteIntx);
  }
  PCIDevice* Add(absl::string_view opts) {
    auto d = m_->DeviceAdd(opts);
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? static_cast<PCIDevice*>(*d) : nullptr;
  }
  const PciGuest::Function* Enumerate(uint16_t device = 0x00f1) {
    guest_->Enumerate();
    return guest_->Find(0x1b36, device);
  }
  uint64_t Mem(uint64_t a, unsigned size = 4) { return m_->memory_space().ReadValue(a, size); }

  RecordingIrqSink sink_;
  std::unique_ptr<Machine> m_;
  std::unique_ptr<PciGuest> guest_;
};

TEST_F(PciBarTest, SizingReadsBackTheSizeMaskWithTypeBits) {
  Add("bar-test-device,id=t");
  const auto* f = Enumerate();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->bars[0].size, 0x1000u);
  EXPECT_TRUE(f->bars[1].io);
  EXPECT_EQ(f->bars[1].size, 0x20u);
  EXPECT_TRUE(f->bars[2].is64);
  EXPECT_TRUE(f->bars[2].prefetch);
  EXPECT_EQ(f->bars[2].size, 0x4000u);
  EXPECT_EQ(f->bars[3].size, 0u);  // upper half of BAR2
  // The raw sizing protocol on BAR0: all-ones in, size mask out, type bits kept.
  const uint32_t orig = guest_->ConfigRead(*f, kBar0, 4);
  guest_->ConfigWrite(*f, kBar0, 0xffffffff, 4);
  EXPECT_EQ(guest_->ConfigRead(*f, kBar0, 4), 0xfffff000u);
  guest_->ConfigWrite(*f, kBar0 + 8, 0xffffffff, 4);
  EXPECT_EQ(guest_->ConfigRead(*f, kBar0 + 8, 4), 0xffffc00cu);
  guest_->ConfigWrite(*f, kBar0, orig, 4);
}

TEST_F(PciBarTest, BarsAreReachableAtTheirAssignedAddresses) {
  Add("bar-test-device,id=t");
  const auto* f = Enumerate();
  EXPECT_EQ(guest_->BarRead(*f, 0, 0x4, 4), 0xab04u);
  EXPECT_EQ(guest_->BarRead(*f, 1, 0x2, 2), 0xab02u);
  EXPECT_GE(f->bars[2].addr, uint64_t{1} << 32);  // a 64-bit BAR above 4 GiB
  EXPECT_EQ(guest_->BarRead(*f, 2, 0x8, 8), 0xab08u);
}

TEST_F(PciBarTest, DecodeDisabledMeansUnmapped) {
  Add("bar-test-device,id=t");
  const auto* f = Enumerate();
  const uint32_t cmd = guest_->ConfigRead(*f, kCommand, 2);
  guest_->ConfigWrite(*f, kCommand, cmd & ~kCommandMemory, 2);
  EXPECT_EQ(guest_->BarRead(*f, 0, 0, 4), 0xffffffffu);
  EXPECT_EQ(guest_->BarRead(*f, 1, 0, 2), 0xab00u);  // I/O decode still on
  guest_->ConfigWrite(*f, kCommand, cmd & ~kCommandIo, 2);
  EXPECT_EQ(guest_->BarRead(*f, 0, 0, 4), 0xab00u);
  EXPECT_EQ(guest_->BarRead(*f, 1, 0, 2), 0xffffu);
}

TEST_F(PciBarTest, ReprogrammedBarMovesAndTheOldAddressGoesUnassigned) {
  Add("bar-test-device,id=t");
  const auto* f = Enumerate();
  const uint64_t old_addr = f->bars[0].addr;
  guest_->ConfigWrite(*f, kBar0, 0xd0000000, 4);
  EXPECT_EQ(Mem(0xd0000000), 0xab00u);
  EXPECT_EQ(Mem(old_addr), 0xffffffffu);
}

TEST_F(PciBarTest, ZeroWrappingAndTopOfSpaceAddressesAreUnmapped) {
  PCIDevice* d = Add("bar-test-device,id=t");
  const auto* f = Enumerate();
  guest_->ConfigWrite(*f, kBar0, 0, 4);
  EXPECT_EQ(d->bar(0).mapped_at, kBarUnmapped);
  guest_->ConfigWrite(*f, kBar0, 0xfffff000, 4);  // last byte at 4 GiB - 1: QEMU's "unmapped"
  EXPECT_EQ(d->bar(0).mapped_at, kBarUnmapped);
  // A 64-bit BAR at the very top would wrap.
  guest_->ConfigWrite(*f, kBar0 + 8, 0xffffc000, 4);
  guest_->ConfigWrite(*f, kBar0 + 12, 0xffffffff, 4);
  EXPECT_EQ(d->bar(2).mapped_at, kBarUnmapped);
  guest_->ConfigWrite(*f, kBar0, 0xd0000000, 4);
  EXPECT_EQ(d->bar(0).mapped_at, 0xd0000000u);
}

TEST_F(PciBarTest, OverlappingBarsAreBothUnmappedUntilOneMoves) {
  PCIDevice* a = Add("bar-test-device,id=a");
  PCIDevice* b = Add("bar-test-device,id=b");
  guest_->Enumerate();
  const auto* fa = guest_->Find(0x1b36, 0x00f1, 0);
  const auto* fb = guest_->Find(0x1b36, 0x00f1, 1);
  guest_->ConfigWrite(*fb, kBar0, static_cast<uint32_t>(fa->bars[0].addr), 4);
  EXPECT_EQ(a->bar(0).mapped_at, kBarUnmapped);
  EXPECT_EQ(b->bar(0).mapped_at, kBarUnmapped);
  EXPECT_EQ(Mem(fa->bars[0].addr), 0xffffffffu);
  EXPECT_GT(b->counters().Value("bar_overlap"), 0u);
  guest_->ConfigWrite(*fb, kBar0, 0xd0000000, 4);
  EXPECT_EQ(a->bar(0).mapped_at, fa->bars[0].addr);
  EXPECT_EQ(b->bar(0).mapped_at, 0xd0000000u);
}

TEST_F(PciBarTest, BarOverRamOrTheEcamWindowIsUnmapped) {
  PCIDevice* d = Add("bar-test-device,id=t");
  const auto* f = Enumerate();
  m_->guest_memory().WriteLe<uint32_t>(GuestAddr(0x100000), 0x600d);
  guest_->ConfigWrite(*f, kBar0, 0x100000, 4);  // inside RAM
  EXPECT_EQ(d->bar(0).mapped_at, kBarUnmapped);
  EXPECT_EQ(Mem(0x100000), 0x600du);              // RAM still answers
  guest_->ConfigWrite(*f, kBar0, 0xb0000000, 4);  // ECAM
  EXPECT_EQ(d->bar(0).mapped_at, kBarUnmapped);
  // An I/O BAR over the configuration ports.
  guest_->ConfigWrite(*f, kBar0 + 4, 0xcf0, 4);
  EXPECT_EQ(d->bar(1).mapped_at, kBarUnmapped);
}

TEST_F(PciBarTest, EcamAndPortIoSeeTheSameConfigSpace) {
  Add("bar-test-device,id=t,addr=7");
  PciGuest ecam(m_->io_space(), m_->memory_space(), PciGuest::Mechanism::kEcam);
  ecam.Enumerate();
  const auto* f = ecam.Find(0x1b36, 0x00f1);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->slot(), 7);
  EXPECT_EQ(guest_->ConfigRead(0, 7 << 3, kVendorId, 4), 0x00f11b36u);
  // Byte and word accesses through both mechanisms agree.
  for (uint16_t off : {0, 1, 2, 3, 8, 0x2c}) {
    EXPECT_EQ(ecam.ConfigRead(0, 7 << 3, off, 1), guest_->ConfigRead(0, 7 << 3, off, 1)) << off;
  }
  EXPECT_EQ(ecam.ConfigRead(0, 7 << 3, 2, 2), 0x00f1u);
}

TEST_F(PciBarTest, AbsentFunctionsAndExtendedSpaceOfAConventionalDeviceReadAllOnes) {
  Add("bar-test-device,id=t,addr=7");
  PciGuest ecam(m_->io_space(), m_->memory_space(), PciGuest::Mechanism::kEcam);
  EXPECT_EQ(guest_->ConfigRead(0, 9 << 3, kVendorId, 4), 0xffffffffu);
  EXPECT_EQ(guest_->ConfigRead(3, 0, kVendorId, 4), 0xffffffffu);  // no bus 3
  EXPECT_EQ(ecam.ConfigRead(0, 7 << 3, 0x100, 4), 0xffffffffu);
  // Function 1 of a slot whose function 0 is absent is invisible (PCI 3.0 §6.2.1).
  Add("bar-test-device,id=lonely,addr=8.1");
  EXPECT_EQ(guest_->ConfigRead(0, 8 << 3 | 1, kVendorId, 2), 0xffffu);
}

TEST_F(PciBarTest, ExpressDeviceHasFourKilobytesOfConfigSpaceThroughEcam) {
  PCIDevice* d = Add("express-test-device,id=x,addr=6");
  PciGuest ecam(m_->io_space(), m_->memory_space(), PciGuest::Mechanism::kEcam);
  EXPECT_EQ(d->config_size(), 4096u);
  EXPECT_EQ(ecam.ConfigRead(0, 6 << 3, 0x100, 4), 0x0bu);
  ecam.ConfigWrite(0, 6 << 3, 0x100, 0xffffffff, 4);  // read-only
  EXPECT_EQ(ecam.ConfigRead(0, 6 << 3, 0x100, 4), 0x0bu);
  ecam.ConfigWrite(0, 6 << 3, 0x104, 0x1234, 2);
  EXPECT_EQ(ecam.ConfigRead(0, 6 << 3, 0x104, 2), 0x34u);  // only the writable byte took
  EXPECT_EQ(ecam.ConfigRead(0, 6 << 3, 0xffc, 4), 0u);
  // Mechanism #1 reaches only the first 256 bytes.
  EXPECT_EQ(guest_->ConfigRead(0, 6 << 3, kVendorId, 4), 0x00f21b36u);
}

TEST_F(PciBarTest, IdPropertiesOverrideTheClassIds) {
  Add("bar-test-device,id=t,addr=7,x-pci-vendor-id=0x8086,x-pci-device-id=0x10d3,"
      "x-pci-sub-vendor-id=0x1af4,x-pci-sub-device-id=0x1100");
  EXPECT_EQ(guest_->ConfigRead(0, 7 << 3, kVendorId, 4), 0x10d38086u);
  EXPECT_EQ(guest_->ConfigRead(0, 7 << 3, kSubsystemVendorId, 4), 0x11001af4u);
  auto bad = m_->DeviceAdd("bar-test-device,id=u,x-pci-vendor-id=0x10000");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "bar-test-device 'u': property 'x-pci-vendor-id' expects an ID in [0, 0xffff], got "
            "0x10000");
}

TEST_F(PciBarTest, ConfigDisabledAddressRegisterReadsAllOnes) {
  Add("bar-test-device,id=t,addr=7");
  m_->io_space().Write(0xcf8, 7 << 11, 4);  // enable bit clear
  EXPECT_EQ(m_->io_space().ReadValue(0xcfc, 4), 0xffffffffu);
}

TEST_F(PciBarTest, ReadOnlyAndW1cBitsHoldAgainstGuestWrites) {
  PCIDevice* d = Add("bar-test-device,id=t,addr=7");
  guest_->ConfigWrite(0, 7 << 3, kVendorId, 0xdeadbeef, 4);
  EXPECT_EQ(guest_->ConfigRead(0, 7 << 3, kVendorId, 4), 0x00f11b36u);
  guest_->ConfigWrite(0, 7 << 3, kInterruptPin, 4, 1);
  EXPECT_EQ(guest_->ConfigRead(0, 7 << 3, kInterruptPin, 1), 2u);
  d->config()[kStatus + 1] = 0x20;                     // received master abort (W1C)
  guest_->ConfigWrite(0, 7 << 3, kStatus, 0x0000, 2);  // writing 0 changes nothing
  EXPECT_EQ(guest_->ConfigRead(0, 7 << 3, kStatus + 1, 1) & 0x20, 0x20u);
  guest_->ConfigWrite(0, 7 << 3, kStatus, 0x2000, 2);
  EXPECT_EQ(guest_->ConfigRead(0, 7 << 3, kStatus + 1, 1) & 0x20, 0u);
  EXPECT_TRUE(guest_->ConfigRead(0, 7 << 3, kStatus, 2) & kStatusCapList);  // RO bit stays
}

TEST_F(PciBarTest, BadConfigWidthsAreRefusedCentrally) {
  PCIDevice* d = Add("bar-test-device,id=t,addr=7");
  AddressSpace& io = m_->io_space();
  io.Write(0xcf8, 0x80000000u | 7 << 11, 4);
  uint64_t v = 0;
  EXPECT_EQ(io.Read(0xcfd, 2, &v), MemTxResult::kRejected);  // unaligned word
  EXPECT_EQ(v, 0xffffu);
  EXPECT_EQ(io.Read(0xcfc, 8, &v), MemTxResult::kRejected);  // 8 bytes
  EXPECT_EQ(io.Write(0xcf8, 0, 2), MemTxResult::kRejected);  // the address register is dword
  EXPECT_EQ(io.Read(0xcfc, 3, &v), MemTxResult::kRejected);
  EXPECT_GE(io.counters().Value("invalid_access"), 4u);
  // Straight into the device: odd widths and out-of-range offsets are counted there.
  EXPECT_EQ(d->ConfigRead(0xff, 2), 0xffffffffu);
  d->ConfigWrite(0x100, 1, 1);
  EXPECT_EQ(d->counters().Value("bad_config_access"), 2u);
}

TEST_F(PciBarTest, CapabilityWalkTerminatesOnALoop) {
  PCIDevice* d = Add("bar-test-device,id=t,loop-caps=on");
  const auto* f = Enumerate();
  EXPECT_EQ(f->caps.size(), static_cast<size_t>(kMaxCapabilities));  // bounded
  EXPECT_NE(d->FindCapability(kCapIdMsix), 0);
  EXPECT_EQ(d->FindCapability(kCapIdMsi), 0);
}

TEST_F(PciBarTest, MsixDeliversProgrammedVectors) {
  Add("bar-test-device,id=t");
  const auto* f = Enumerate();
  ASSERT_TRUE(guest_->EnableMsix(*f, {{0xfee00000, 0x20}, {0xfee01000, 0x21}, {0xfee02000, 0x22}}));
  static_cast<PCIDevice*>(m_->FindDevice("t"))->MsixNotify(2);
  static_cast<PCIDevice*>(m_->FindDevice("t"))->MsixNotify(0);
  EXPECT_THAT(sink_.msis(),
              ::testing::ElementsAre(MsiMessage{0xfee02000, 0x22}, MsiMessage{0xfee00000, 0x20}));
}

TEST_F(PciBarTest, MaskedVectorBecomesPendingAndFiresOnUnmask) {
  auto* d = Add("bar-test-device,id=t");
  const auto* f = Enumerate();
  ASSERT_TRUE(guest_->EnableMsix(*f, {{0xfee00000, 0x20}, {0xfee00000, 0x21}}));
  const uint64_t e1 = guest_->MsixEntryAddress(*f, 1);
  m_->memory_space().Write(e1 + kMsixEntryVectorCtrl, 1, 4);  // mask vector 1
  d->MsixNotify(1);
  EXPECT_TRUE(sink_.msis().empty());
  EXPECT_EQ(Mem(guest_->MsixPbaAddress(*f), 8), 0x2u);
  m_->memory_space().Write(e1 + kMsixEntryVectorCtrl, 0, 4);
  EXPECT_THAT(sink_.msis(), ::testing::ElementsAre(MsiMessage{0xfee00000, 0x21}));
  EXPECT_EQ(Mem(guest_->MsixPbaAddress(*f), 8), 0u);
}

TEST_F(PciBarTest, FunctionMaskHoldsEveryVector) {
  auto* d = Add("bar-test-device,id=t");
  const auto* f = Enumerate();
  ASSERT_TRUE(guest_->EnableMsix(*f, {{0xfee00000, 0x20}}));
  const uint8_t cap = guest_->FindCapability(*f, kCapIdMsix);
  const uint32_t flags = guest_->ConfigRead(*f, cap + kMsixFlags, 2);
  guest_->ConfigWrite(*f, cap + kMsixFlags, flags | kMsixFlagsMaskAll, 2);
  d->MsixNotify(0);
  EXPECT_TRUE(sink_.msis().empty());
  EXPECT_TRUE(d->MsixPending(0));
  guest_->ConfigWrite(*f, cap + kMsixFlags, flags, 2);
  EXPECT_EQ(sink_.msis().size(), 1u);
}

TEST_F(PciBarTest, MsixVectorOutOfRangeIsCountedAndIgnored) {
  auto* d = Add("bar-test-device,id=t");
  const auto* f = Enumerate();
  ASSERT_TRUE(guest_->EnableMsix(*f, {{0xfee00000, 0x20}}));
  d->MsixNotify(3);
  d->MsixNotify(100000);
  EXPECT_TRUE(sink_.msis().empty());
  EXPECT_EQ(d->counters().Value("msix_bad_vector"), 2u);
}

TEST_F(PciBarTest, MsixPbaWritesAndBadTableAccessesAreIgnored) {
  auto* d = Add("bar-test-device,id=t");
  const auto* f = Enumerate();
  ASSERT_TRUE(guest_->EnableMsix(*f, {{0xfee00000, 0x20}}));
  const uint64_t pba = guest_->MsixPbaAddress(*f);
  m_->memory_space().Write(pba, ~uint64_t{0}, 8);
  EXPECT_EQ(Mem(pba, 8), 0u);
  EXPECT_EQ(d->counters().Value("msix_pba_write"), 1u);
  const uint64_t e0 = guest_->MsixEntryAddress(*f, 0);
  uint64_t v;
  EXPECT_EQ(m_->memory_space().Read(e0, 2, &v), MemTxResult::kRejected);      // word access
  EXPECT_EQ(m_->memory_space().Write(e0 + 1, 0, 4), MemTxResult::kRejected);  // unaligned
  // Past the 3-entry table, inside the BAR: nothing there.
  EXPECT_EQ(m_->memory_space().Read(e0 + 3 * kMsixEntrySize, 4, &v), MemTxResult::kUnassigned);
  // Reserved vector-control bits do not stick.
  m_->memory_space().Write(e0 + kMsixEntryVectorCtrl, 0xfffffffe, 4);
  EXPECT_EQ(Mem(e0 + kMsixEntryVectorCtrl), 0u);
  EXPECT_GE(d->counters().Value("bad_access"), 2u);
}

TEST_F(PciBarTest, ResetUnmapsBarsAndMasksMsix) {
  auto* d = Add("bar-test-device,id=t");
  const auto* f = Enumerate();
  ASSERT_TRUE(guest_->EnableMsix(*f, {{0xfee00000, 0x20}}));
  m_->Reset();
  EXPECT_EQ(d->bar(0).mapped_at, kBarUnmapped);
  EXPECT_FALSE(d->msix_enabled());
  guest_->Enumerate();
  EXPECT_EQ(Mem(guest_->MsixEntryAddress(*f, 0) + kMsixEntryVectorCtrl), 1u);  // masked again
}

TEST_F(PciBarTest, SharedIntxLineStaysHighWhileAnyDeviceAssertsIt) {
  // Slots 1 and 5 with pin B: PIRQ (1 + 1 + 3) & 3 = 1 and (1 + 5 + 3) & 3 = 1 -> both IRQ 10.
  auto* a = Add("bar-test-device,id=a,addr=1");
  auto* b = Add("bar-test-device,id=b,addr=5");
  Enumerate();
  a->SetIrq(true);
  b->SetIrq(true);
  a->SetIrq(false);
  EXPECT_TRUE(sink_.level(10));
  b->SetIrq(false);
  EXPECT_FALSE(sink_.level(10));
  EXPECT_EQ(sink_.raised_count(10), 1);
}

TEST_F(PciBarTest, DeviceBehindABridgeIsNumberedWindowedAndSwizzled) {
  Add("pci-bridge,id=br0,addr=3");
  auto* d = Add("bar-test-device,id=t,bus=br0,addr=2");
  guest_->Enumerate();
  const auto* f = guest_->Find(0x1b36, 0x00f1);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->bus, 1);
  EXPECT_EQ(guest_->BarRead(*f, 0, 0, 4), 0xab00u);
  EXPECT_EQ(guest_->BarRead(*f, 2, 0, 4), 0xab00u);  // 64-bit BAR placed in the 32-bit window
  // Pin B (1) at slot 2 behind the bridge in slot 3: swizzled to pin (1 + 2) % 4 = D at slot 3.
  EXPECT_EQ(f->irq_line, I440FXPciHost::RouteIntx(3, 3));
  d->SetIrq(true);
  EXPECT_TRUE(sink_.level(f->irq_line));
  d->SetIrq(false);
  // The bridge stops forwarding when its memory decode is off, or when the BAR leaves its window.
  const auto* br = guest_->Find(0x1b36, 0x0001);
  const uint32_t cmd = guest_->ConfigRead(*br, kCommand, 2);
  guest_->ConfigWrite(*br, kCommand, cmd & ~kCommandMemory, 2);
  EXPECT_EQ(d->bar(0).mapped_at, kBarUnmapped);
  guest_->ConfigWrite(*br, kCommand, cmd, 2);
  EXPECT_EQ(d->bar(0).mapped_at, f->bars[0].addr);
  guest_->ConfigWrite(*f, kBar0, 0xd0000000, 4);  // outside the bridge's window
  EXPECT_EQ(d->bar(0).mapped_at, kBarUnmapped);
}

TEST_F(PciBarTest, UnpluggedDeviceLeavesTheAddressSpaces) {
  Add("bar-test-device,id=t");
  const auto* f = Enumerate();
  const uint64_t a = f->bars[0].addr;
  EXPECT_EQ(Mem(a), 0xab00u);
  ASSERT_TRUE(m_->DeviceDel("t").ok());
  EXPECT_EQ(Mem(a), 0xffffffffu);
  EXPECT_EQ(guest_->ConfigRead(f->bus, f->devfn, kVendorId, 4), 0xffffffffu);
}

TEST_F(PciBarTest, ClosingABridgeWindowUnmapsWhatIsBehindIt) {
  Add("pci-bridge,id=br0,addr=3");
  auto* d = Add("bar-test-device,id=t,bus=br0,addr=2");
  guest_->Enumerate();
  const auto* f = guest_->Find(0x1b36, 0x00f1);
  const auto* br = guest_->Find(0x1b36, 0x0001);
  EXPECT_EQ(d->bar(1).mapped_at, f->bars[1].addr);
  // Closed the way firmware does it: base above limit.
  guest_->ConfigWrite(*br, kIoBase, 0xf0, 1);
  guest_->ConfigWrite(*br, kIoLimit, 0x00, 1);
  EXPECT_EQ(d->bar(1).mapped_at, kBarUnmapped);
  EXPECT_EQ(guest_->BarRead(*f, 1, 0, 2), 0xffffu);
  // An I/O BAR at 0xf000 is not inside a closed window either.
  guest_->ConfigWrite(*f, kBar0 + 4, 0xf000, 4);
  EXPECT_EQ(d->bar(1).mapped_at, kBarUnmapped);
  // Re-opening the window around it maps it again.
  guest_->ConfigWrite(*br, kIoBase, 0xf0, 1);
  guest_->ConfigWrite(*br, kIoLimit, 0xf0, 1);
  EXPECT_EQ(d->bar(1).mapped_at, 0xf000u);
}

TEST_F(PciBarTest, EnablingMsiDropsALatchedIntxLevel) {
  Add("edu,id=e");
  guest_->Enumerate();
  const auto* f = guest_->Find(0x1234, 0x11e8);
  guest_->BarWrite(*f, 0, 0x60, 0x1, 4);  // INTx raised
  EXPECT_TRUE(sink_.level(f->irq_line));
  guest_->EnableMsi(*f, 0xfee00000, 0x41);
  EXPECT_FALSE(sink_.level(f->irq_line));
  guest_->BarWrite(*f, 0, 0x64, 0x1, 4);
  // Back to INTx (MSI off): nothing is left asserted.
  const uint8_t cap = guest_->FindCapability(*f, kCapIdMsi);
  guest_->ConfigWrite(*f, cap + kMsiFlags, 0, 2);
  EXPECT_FALSE(sink_.level(f->irq_line));
}

TEST_F(PciBarTest, UnplugWhileAGuestHammersConfigAndBarsIsSafe) {
  // Another "vCPU" reads config space through ECAM, reads the BAR and writes the MSI-X table of
  // a function that is unplugged and plugged again underneath it (ASan/UBSan builds check it).
  PciGuest ecam(m_->io_space(), m_->memory_space(), PciGuest::Mechanism::kEcam);
  Add("bar-test-device,id=t,addr=6");
  ecam.Enumerate();
  const PciGuest::Function f = *ecam.Find(0x1b36, 0x00f1);
  const uint64_t table = ecam.MsixEntryAddress(f, 0);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> seen{0};
  std::thread vcpu([&] {
    AddressSpace& mem = m_->memory_space();
    while (!stop.load()) {
      const uint64_t id = mem.ReadValue(0xb0000000 + (6 << 15), 4);
      EXPECT_TRUE(id == 0x00f11b36u || id == 0xffffffffu) << id;
      mem.ReadValue(f.bars[0].addr, 4);
      mem.Write(table + kMsixEntryVectorCtrl, 0, 4);
      mem.Write(0xb0000000 + (6 << 15) + kCommand, kCommandMemory, 2);
      seen.fetch_add(1);
    }
  });
  // Until the other thread has been through its loop many times (bounded in any case).
  for (int i = 0; i < 20000 && (i < 200 || seen.load() < 2000); ++i) {
    ASSERT_TRUE(m_->DeviceDel("t").ok());
    ASSERT_NE(Add("bar-test-device,id=t,addr=6"), nullptr);
    // Program BAR0 and the MSI-X BAR where the other thread looks, as the guest did before.
    m_->memory_space().Write(0xb0000000 + (6 << 15) + kBar0, f.bars[0].addr, 4);
    m_->memory_space().Write(0xb0000000 + (6 << 15) + kBar0 + 16, f.bars[4].addr, 4);
  }
  stop = true;
  vcpu.join();
  EXPECT_GE(seen.load(), 2000u);
}

// ---- DMA targets ----

TEST_F(PciBarTest, DmaAimedAtMmioIsRefused) {
  Add("edu,id=e");
  guest_->Enumerate();
  const auto* f = guest_->Find(0x1234, 0x11e8);
  DeviceState* e = m_->FindDevice("e");
  // edu copies from "RAM" at its own BAR (its registers) into its buffer: not RAM, refused.
  const uint64_t bar = f->bars[0].addr;
  guest_->BarWrite(*f, 0, 0x80, bar, 8);
  guest_->BarWrite(*f, 0, 0x88, misc::EduDevice::kDmaStart, 8);
  guest_->BarWrite(*f, 0, 0x90, 8, 8);
  guest_->BarWrite(*f, 0, 0x98, 1, 8);
  // The dma_mask (28 bits) clamps the BAR address into RAM range; with the mask widened the BAR
  // itself is the target.
  EXPECT_EQ(e->counters().Value("dma_error") + e->counters().Value("dma_clamped"), 1u);
  ASSERT_TRUE(m_->DeviceDel("e").ok());
  Add("edu,id=e2,dma_mask=0xffffffffffffffff");
  guest_->Enumerate();
  f = guest_->Find(0x1234, 0x11e8);
  DeviceState* e2 = m_->FindDevice("e2");
  guest_->BarWrite(*f, 0, 0x80, f->bars[0].addr, 8);
  guest_->BarWrite(*f, 0, 0x88, misc::EduDevice::kDmaStart, 8);
  guest_->BarWrite(*f, 0, 0x90, 8, 8);
  guest_->BarWrite(*f, 0, 0x98, 1, 8);
  EXPECT_EQ(e2->counters().Value("dma_error"), 1u);
  EXPECT_EQ(e2->counters().Value("dma_bytes"), 0u);
  EXPECT_EQ(guest_->BarRead(*f, 0, 0x00, 4), 0x010000edu);  // still answering
}

TEST_F(PciBarTest, DmaOutsideRamOrBufferOrWithoutBusMasterDoesNothing) {
  Add("edu,id=e,dma_mask=0xffffffffffffffff");
  guest_->Enumerate();
  const auto* f = guest_->Find(0x1234, 0x11e8);
  DeviceState* e = m_->FindDevice("e");
  auto dma = [&](uint64_t src, uint64_t dst, uint64_t n, uint64_t cmd) {
    guest_->BarWrite(*f, 0, 0x80, src, 8);
    guest_->BarWrite(*f, 0, 0x88, dst, 8);
    guest_->BarWrite(*f, 0, 0x90, n, 8);
    guest_->BarWrite(*f, 0, 0x98, cmd, 8);
  };
  dma(0x7fff800, misc::EduDevice::kDmaStart, 0x1000, 1);     // RAM ends at 128 MiB: crosses the end
  dma(~uint64_t{0} - 4, misc::EduDevice::kDmaStart, 16, 1);  // wraps
  dma(0x1000, misc::EduDevice::kDmaStart + 0xff0, 0x20, 1);  // runs off the device buffer
  dma(0x1000, 0x0, 0x10, 1);                                 // not the device buffer at all
  dma(0x1000, misc::EduDevice::kDmaStart, ~uint64_t{0}, 1);  // huge count
  EXPECT_EQ(e->counters().Value("dma_error"), 2u);
  EXPECT_EQ(e->counters().Value("dma_bad_range"), 3u);
  const uint32_t cmd = guest_->ConfigRead(*f, kCommand, 2);
  guest_->ConfigWrite(*f, kCommand, cmd & ~kCommandMaster, 2);
  dma(0x1000, misc::EduDevice::kDmaStart, 0x10, 1);
  EXPECT_EQ(e->counters().Value("dma_error"), 3u);
  EXPECT_EQ(e->counters().Value("dma_bytes"), 0u);
}

TEST_F(PciBarTest, EduRefusesBadWidthsAndKeepsWorking) {
  auto* e = Add("edu,id=e");
  guest_->Enumerate();
  const auto* f = guest_->Find(0x1234, 0x11e8);
  EXPECT_EQ(guest_->BarRead(*f, 0, 0x00, 1), 0xffu);
  EXPECT_EQ(guest_->BarRead(*f, 0, 0x00, 8), ~uint64_t{0});
  EXPECT_EQ(guest_->BarWrite(*f, 0, 0x04, 1, 2), MemTxResult::kRejected);
  EXPECT_EQ(guest_->BarRead(*f, 0, 0x02, 4), 0xffffffffu);  // unaligned
  EXPECT_GE(e->counters().Value("bad_access"), 3u);
  EXPECT_EQ(guest_->BarRead(*f, 0, 0x00, 4), 0x010000edu);
}

}  // namespace
}  // namespace vdev::pci
