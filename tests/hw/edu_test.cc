// edu, driven only through the software guest: config cycles on CF8/CFC, MMIO through the
// machine's memory address space, interrupts observed at the VMM's sink.
#include "hw/misc/edu.h"

#include "bus/pci/pci_regs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hw/machine/pc.h"
#include "tests/testing/pci_guest.h"

namespace vdev::misc {
namespace {

using testing::PciGuest;

class EduTest : public ::testing::Test {
 protected:
  void Build(absl::string_view edu_opts = "edu,id=edu0") {
    auto m = Machine::Create("pc");
    ASSERT_TRUE(m.ok()) << m.status();
    m_ = std::move(*m);
    m_->irq().set_sink(&sink_);
    auto d = m_->DeviceAdd(edu_opts);
    ASSERT_TRUE(d.ok()) << d.status();
    dev_ = *d;
    guest_ =
        std::make_unique<PciGuest>(m_->io_space(), m_->memory_space(), PciGuest::Mechanism::kPortIo,
                                   0xb0000000, &pci::I440FXPciHost::RouteIntx);
    guest_->Enumerate();
    edu_ = guest_->Find(0x1234, 0x11e8);
    ASSERT_NE(edu_, nullptr);
  }
  void SetUp() override { Build(); }
  uint64_t Rd(uint64_t off, unsigned size = 4) { return guest_->BarRead(*edu_, 0, off, size); }
  void Wr(uint64_t off, uint64_t v, unsigned size = 4) { guest_->BarWrite(*edu_, 0, off, v, size); }
  GuestMemory& ram() { return m_->guest_memory(); }

  RecordingIrqSink sink_;
  std::unique_ptr<Machine> m_;
  DeviceState* dev_ = nullptr;
  std::unique_ptr<PciGuest> guest_;
  const PciGuest::Function* edu_ = nullptr;
};

TEST_F(EduTest, EnumeratedWithItsIdsClassAndOneMegabyteBar) {
  EXPECT_EQ(edu_->class_code >> 8, 0x00ffu);
  EXPECT_EQ(guest_->ConfigRead(*edu_, pci::kRevisionId, 1), 0x10u);
  EXPECT_EQ(guest_->ConfigRead(*edu_, pci::kSubsystemVendorId, 4), 0x11001af4u);
  EXPECT_EQ(edu_->bars[0].size, 1u << 20);
  EXPECT_FALSE(edu_->bars[0].io);
  EXPECT_FALSE(edu_->bars[0].is64);
  EXPECT_EQ(edu_->irq_pin, 1);
  EXPECT_EQ(edu_->irq_line, pci::I440FXPciHost::RouteIntx(edu_->slot(), 0));
  ASSERT_EQ(edu_->caps.size(), 1u);
  EXPECT_EQ(edu_->caps[0].first, pci::kCapIdMsi);
}

TEST_F(EduTest, IdentificationAndLiveness) {
  EXPECT_EQ(Rd(0x00), 0x010000edu);
  Wr(0x04, 0x12345678);
  EXPECT_EQ(Rd(0x04), ~0x12345678u);
}

TEST_F(EduTest, Factorial) {
  Wr(0x08, 5);
  EXPECT_EQ(Rd(0x20) & 1, 0u);  // done
  EXPECT_EQ(Rd(0x08), 120u);
  Wr(0x08, 12);
  EXPECT_EQ(Rd(0x08), 479001600u);
  Wr(0x08, 0);
  EXPECT_EQ(Rd(0x08), 1u);
}

TEST_F(EduTest, HugeFactorialIsBoundedWork) {
  // 0xffffffff! would be four billion multiplications in QEMU's loop; it is 0 mod 2^32.
  Wr(0x08, 0xffffffff);
  EXPECT_EQ(Rd(0x08), 0u);
  Wr(0x08, 33);
  EXPECT_EQ(Rd(0x08), 2147483648u);  // 33! = 2^31 * odd (mod 2^32)
}

TEST_F(EduTest, IntxRaiseAndAcknowledge) {
  const uint32_t gsi = edu_->irq_line;
  Wr(0x60, 0x5);
  EXPECT_TRUE(sink_.level(gsi));
  EXPECT_EQ(Rd(0x24), 0x5u);
  EXPECT_TRUE(guest_->ConfigRead(*edu_, pci::kStatus, 2) & pci::kStatusInterrupt);
  Wr(0x64, 0x1);
  EXPECT_TRUE(sink_.level(gsi));  // 0x4 still pending
  Wr(0x64, 0x4);
  EXPECT_FALSE(sink_.level(gsi));
  EXPECT_FALSE(guest_->ConfigRead(*edu_, pci::kStatus, 2) & pci::kStatusInterrupt);
}

TEST_F(EduTest, IntxDisableHoldsTheLineLowButKeepsTheStatusBit) {
  const uint32_t gsi = edu_->irq_line;
  const uint32_t cmd = guest_->ConfigRead(*edu_, pci::kCommand, 2);
  guest_->ConfigWrite(*edu_, pci::kCommand, cmd | pci::kCommandIntxDisable, 2);
  Wr(0x60, 0x1);
  EXPECT_FALSE(sink_.level(gsi));
  EXPECT_TRUE(guest_->ConfigRead(*edu_, pci::kStatus, 2) & pci::kStatusInterrupt);
  guest_->ConfigWrite(*edu_, pci::kCommand, cmd, 2);
  EXPECT_TRUE(sink_.level(gsi));
}

TEST_F(EduTest, FactorialRaisesInterruptWhenAsked) {
  Wr(0x20, 0x80);
  Wr(0x08, 4);
  EXPECT_EQ(Rd(0x24), EduDevice::kFactorialIrq);
  EXPECT_TRUE(sink_.level(edu_->irq_line));
}

TEST_F(EduTest, MsiIsUsedOnceEnabled) {
  guest_->EnableMsi(*edu_, 0xfee01000, 0x4041);
  Wr(0x60, 0x1);
  EXPECT_THAT(sink_.msis(), ::testing::ElementsAre(MsiMessage{0xfee01000, 0x4041}));
  EXPECT_FALSE(sink_.level(edu_->irq_line));
  Wr(0x64, 0x1);
}

TEST_F(EduTest, DmaRoundTripThroughTheDeviceBuffer) {
  std::vector<uint8_t> pattern(256);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<uint8_t>(i * 7 + 1);
  ASSERT_TRUE(ram().Write(GuestAddr(0x10000), pattern));
  // RAM -> edu buffer, with the completion interrupt.
  Wr(0x80, 0x10000, 8);
  Wr(0x88, EduDevice::kDmaStart + 0x100, 8);
  Wr(0x90, pattern.size(), 8);
  Wr(0x98, 0x1 | 0x4, 8);
  EXPECT_EQ(Rd(0x98, 8) & 1, 0u);
  EXPECT_EQ(Rd(0x24), EduDevice::kDmaIrq);
  Wr(0x64, EduDevice::kDmaIrq);
  // edu buffer -> another RAM address.
  Wr(0x80, EduDevice::kDmaStart + 0x100, 8);
  Wr(0x88, 0x20000, 8);
  Wr(0x98, 0x1 | 0x2, 8);
  std::vector<uint8_t> back(pattern.size());
  ASSERT_TRUE(ram().Read(GuestAddr(0x20000), absl::MakeSpan(back)));
  EXPECT_EQ(back, pattern);
  EXPECT_EQ(dev_->counters().Value("dma_bytes"), 2 * pattern.size());
}

TEST_F(EduTest, WithMsixInterruptsGoThroughVectorZero) {
  Build("edu,id=edu1,msix-vectors=4");
  ASSERT_TRUE(guest_->EnableMsix(*edu_, {{0xfee00000, 0x31}, {0xfee00000, 0x32}}));
  Wr(0x60, 0x1);
  EXPECT_THAT(sink_.msis(), ::testing::ElementsAre(MsiMessage{0xfee00000, 0x31}));
}

}  // namespace
}  // namespace vdev::misc
