// VirtQueue against well-formed and hostile rings: the "Split virtqueue" and "Indirect
// descriptors" sections of HOSTILE_INPUTS.md, one behaviour per test.
#include "bus/virtio/virtqueue.h"

#include "bus/virtio/virtio_uapi.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/virtio_ring.h"

namespace vdev::virtio {
namespace {

using testing::GuestVring;
using Buf = GuestVring::Buf;

constexpr uint64_t kRamSize = 16 << 20;
constexpr GuestAddr kRing(0x10000);
constexpr GuestAddr kData(0x100000);

class VirtQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mem_ = *GuestMemory::Create();
    ASSERT_TRUE(mem_->AddRam(GuestAddr(0), kRamSize, "ram").ok());
    ring_ = std::make_unique<GuestVring>(*mem_, kRing, 16);
    vq_ = std::make_unique<VirtQueue>(0, 256);
    ASSERT_TRUE(vq_->SetSize(16));
    ASSERT_TRUE(vq_->SetAddresses(ring_->desc_addr(), ring_->avail_addr(), ring_->used_addr()));
    ASSERT_TRUE(vq_->SetEnabled(true));
  }
  void Activate(bool event_idx = false, bool indirect = true) {
    vq_->Freeze();
    ASSERT_TRUE(vq_->Activate(mem_.get(), event_idx, indirect)) << vq_->broken_reason();
  }
  PopResult Pop() { return vq_->Pop(&elem_); }

  std::unique_ptr<GuestMemory> mem_;
  std::unique_ptr<GuestVring> ring_;
  std::unique_ptr<VirtQueue> vq_;
  VirtQueueElement elem_;
};

// ---- well-formed rings ----

TEST_F(VirtQueueTest, PopReturnsReadableThenWritableBuffers) {
  Activate();
  ring_->Publish(ring_->AddChain({{kData, 10, false}, {kData + 0x1000, 20, true}}));
  ASSERT_EQ(Pop(), PopResult::kOk);
  EXPECT_EQ(elem_.out_len, 10u);
  EXPECT_EQ(elem_.in_len, 20u);
  ASSERT_EQ(elem_.out.size(), 1u);
  EXPECT_EQ(elem_.out[0].iov_base, mem_->HostPointer(kData, 10, false));
  EXPECT_EQ(vq_->in_flight(), 1);
  EXPECT_EQ(Pop(), PopResult::kEmpty);
}

TEST_F(VirtQueueTest, PushPublishesIdAndLength) {
  Activate();
  const uint16_t head = ring_->AddChain({{kData, 64, true}});
  ring_->Publish(head);
  ASSERT_EQ(Pop(), PopResult::kOk);
  vq_->Push(elem_, 48);
  EXPECT_THAT(ring_->TakeUsed(), ::testing::ElementsAre(std::make_pair(uint32_t{head}, 48u)));
  EXPECT_EQ(vq_->in_flight(), 0);
}

TEST_F(VirtQueueTest, PushedLengthIsCappedByTheWritableBytes) {
  Activate();
  ring_->Publish(ring_->AddChain({{kData, 8, true}}));
  ASSERT_EQ(Pop(), PopResult::kOk);
  vq_->Push(elem_, 1000);
  EXPECT_EQ(ring_->TakeUsed()[0].second, 8u);
}

TEST_F(VirtQueueTest, FillAndFlushPublishABatchInOrder) {
  Activate();
  for (int i = 0; i < 3; ++i) ring_->Publish(ring_->AddChain({{kData + 0x100 * i, 4, true}}));
  std::vector<VirtQueueElement> e(3);
  for (auto& x : e) ASSERT_EQ(vq_->Pop(&x), PopResult::kOk);
  for (uint16_t i = 0; i < 3; ++i) vq_->Fill(e[i], i, i);
  EXPECT_EQ(ring_->used_idx(), 0);  // nothing visible before the flush
  vq_->Flush(3);
  EXPECT_EQ(ring_->TakeUsed().size(), 3u);
}

TEST_F(VirtQueueTest, IndirectChainIsFollowed) {
  Activate();
  ring_->Publish(
      ring_->AddIndirect({{kData, 10, false}, {kData + 0x100, 30, true}}, GuestAddr(0x30000)));
  ASSERT_EQ(Pop(), PopResult::kOk);
  EXPECT_EQ(elem_.out_len, 10u);
  EXPECT_EQ(elem_.in_len, 30u);
}

TEST_F(VirtQueueTest, UnpopMakesTheChainAvailableAgain) {
  Activate();
  ring_->Publish(ring_->AddChain({{kData, 4, true}}));
  ASSERT_EQ(Pop(), PopResult::kOk);
  vq_->Unpop(elem_);
  EXPECT_EQ(vq_->in_flight(), 0);
  EXPECT_EQ(Pop(), PopResult::kOk);
}

TEST_F(VirtQueueTest, IndicesWrapAt16Bits) {
  Activate();
  vq_->SetRingPositions(0xfffe, 0xfffe);
  ring_->SetAvailIdx(0xfffe);
  // Reach the used index the device starts from.
  mem_->WriteLe<uint16_t>(ring_->used_addr() + 2, 0xfffe);
  for (int i = 0; i < 4; ++i) {
    ring_->Publish(ring_->AddChain({{kData, 4, true}}));
    ASSERT_EQ(Pop(), PopResult::kOk) << i;
    vq_->Push(elem_, 4);
  }
  EXPECT_EQ(ring_->used_idx(), 2);
  EXPECT_EQ(Pop(), PopResult::kEmpty);
}

TEST_F(VirtQueueTest, ZeroLengthDescriptorIsSkippedNotLooped) {
  Activate();
  ring_->Publish(ring_->AddChain({{kData, 0, false}, {kData, 0, true}, {kData, 4, true}}));
  ASSERT_EQ(Pop(), PopResult::kOk);
  EXPECT_TRUE(elem_.out.empty());
  EXPECT_EQ(elem_.in.size(), 1u);
}

TEST_F(VirtQueueTest, BufferAcrossAdjacentRegionsIsTwoSegments) {
  ASSERT_TRUE(mem_->AddRam(GuestAddr(kRamSize), 0x10000, "more").ok());
  Activate();
  ring_->Publish(ring_->AddChain({{GuestAddr(kRamSize - 8), 16, true}}));
  ASSERT_EQ(Pop(), PopResult::kOk);
  EXPECT_EQ(elem_.in.size(), 2u);
}

// ---- notification suppression ----

TEST_F(VirtQueueTest, NoInterruptFlagSuppressesNotification) {
  Activate();
  ring_->Publish(ring_->AddChain({{kData, 4, true}}));
  ASSERT_EQ(Pop(), PopResult::kOk);
  vq_->Push(elem_, 4);
  EXPECT_TRUE(vq_->ShouldNotify());
  ring_->SetAvailFlags(VRING_AVAIL_F_NO_INTERRUPT);
  EXPECT_FALSE(vq_->ShouldNotify());
}

TEST_F(VirtQueueTest, UsedEventDecidesWithEventIdx) {
  Activate(/*event_idx=*/true);
  ring_->SetUsedEvent(2);  // interrupt once the used index passes 2
  for (int i = 0; i < 4; ++i) ring_->Publish(ring_->AddChain({{kData, 4, true}}));
  std::vector<bool> notify;
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(Pop(), PopResult::kOk);
    vq_->Push(elem_, 4);
    notify.push_back(vq_->ShouldNotify());
  }
  // The first is always notified (nothing signalled yet); then only the crossing of 2 -> 3.
  EXPECT_THAT(notify, ::testing::ElementsAre(true, false, true, false));
}

TEST_F(VirtQueueTest, PoisonedUsedEventOnlySuppressesInterrupts) {
  Activate(/*event_idx=*/true);
  ring_->SetUsedEvent(0xbeef);  // an index the used ring is nowhere near
  std::vector<bool> notify;
  for (int i = 0; i < 3; ++i) {
    ring_->Publish(ring_->AddChain({{kData, 4, true}}));
    ASSERT_EQ(Pop(), PopResult::kOk);
    vq_->Push(elem_, 4);
    notify.push_back(vq_->ShouldNotify());
  }
  // The first notification always goes (nothing signalled yet); then the driver asked for none.
  EXPECT_THAT(notify, ::testing::ElementsAre(true, false, false));
  EXPECT_EQ(ring_->used_idx(), 3);  // the ring itself works on
  EXPECT_FALSE(vq_->broken());
}

TEST_F(VirtQueueTest, SuppressingKicksSetsTheUsedFlag) {
  Activate();
  vq_->SetNotification(false);
  EXPECT_EQ(ring_->used_flags() & VRING_USED_F_NO_NOTIFY, VRING_USED_F_NO_NOTIFY);
  vq_->SetNotification(true);
  EXPECT_EQ(ring_->used_flags() & VRING_USED_F_NO_NOTIFY, 0);
}

TEST_F(VirtQueueTest, WithEventIdxKicksAreAskedForThroughAvailEvent) {
  Activate(/*event_idx=*/true);
  for (int i = 0; i < 2; ++i) ring_->Publish(ring_->AddChain({{kData, 4, true}}));
  vq_->SetNotification(false);  // polling: avail_event is left alone
  ASSERT_EQ(Pop(), PopResult::kOk);
  EXPECT_EQ(ring_->avail_event(), 0);
  vq_->SetNotification(true);  // asks for a kick past what was seen
  EXPECT_EQ(ring_->avail_event(), 2);
  ASSERT_EQ(Pop(), PopResult::kOk);
  EXPECT_EQ(Pop(), PopResult::kEmpty);
  EXPECT_EQ(ring_->avail_event(), 2);  // published before the ring was called empty
  EXPECT_EQ(ring_->used_flags() & VRING_USED_F_NO_NOTIFY, 0);  // flags are not used with it
}

TEST_F(VirtQueueTest, AvailEventFollowsConsumptionWithEventIdx) {
  Activate(/*event_idx=*/true);
  for (int i = 0; i < 3; ++i) ring_->Publish(ring_->AddChain({{kData, 4, true}}));
  for (int i = 0; i < 3; ++i) ASSERT_EQ(Pop(), PopResult::kOk);
  EXPECT_EQ(ring_->avail_event(), 3);
}

// ---- hostile: chains ----

TEST_F(VirtQueueTest, DescriptorLoopBreaksTheQueue) {
  Activate();
  ring_->WriteDesc(0, kData.value(), 4, VRING_DESC_F_NEXT, 1);
  ring_->WriteDesc(1, kData.value(), 4, VRING_DESC_F_NEXT, 0);
  ring_->Publish(0);
  EXPECT_EQ(Pop(), PopResult::kBroken);
  EXPECT_THAT(vq_->broken_reason(), ::testing::HasSubstr("loops"));
  EXPECT_EQ(Pop(), PopResult::kBroken);  // stays broken until reset
}

TEST_F(VirtQueueTest, SelfLoopOfZeroLengthDescriptorsTerminates) {
  Activate();
  ring_->WriteDesc(3, kData.value(), 0, VRING_DESC_F_NEXT, 3);  // CVE-2016-6490's shape
  ring_->Publish(3);
  EXPECT_EQ(Pop(), PopResult::kBroken);
}

TEST_F(VirtQueueTest, NextOutOfRangeBreaks) {
  Activate();
  ring_->WriteDesc(0, kData.value(), 4, VRING_DESC_F_NEXT, 16);
  ring_->Publish(0);
  EXPECT_EQ(Pop(), PopResult::kBroken);
}

TEST_F(VirtQueueTest, HeadOutOfRangeBreaks) {
  Activate();
  ring_->Publish(16);
  EXPECT_EQ(Pop(), PopResult::kBroken);
}

TEST_F(VirtQueueTest, ChainOver4GiBBreaks) {
  // 3 GiB of (sparse, never touched) RAM so that each 2 GiB descriptor is RAM by itself: only
  // the total is wrong.
  ASSERT_TRUE(mem_->AddRam(GuestAddr(1ull << 32), 3ull << 30, "big").ok());
  Activate();
  ring_->WriteDesc(0, 1ull << 32, 0x80000000u, VRING_DESC_F_NEXT, 1);
  ring_->WriteDesc(1, 1ull << 32, 0x80000000u, VRING_DESC_F_NEXT, 2);
  ring_->WriteDesc(2, 1ull << 32, 0x80000000u, 0, 0);
  ring_->Publish(0);
  EXPECT_EQ(Pop(), PopResult::kBroken);
  EXPECT_THAT(vq_->broken_reason(), ::testing::HasSubstr("4 GiB"));
}

TEST_F(VirtQueueTest, AvailIndexTooFarAheadBreaks) {
  Activate();
  ring_->SetAvailIdx(17);  // 17 entries in a 16-entry ring (CVE-2016-5403)
  EXPECT_EQ(Pop(), PopResult::kBroken);
}

TEST_F(VirtQueueTest, AvailIndexGoingBackwardsBreaks) {
  Activate();
  for (int i = 0; i < 2; ++i) ring_->Publish(ring_->AddChain({{kData, 4, true}}));
  ASSERT_EQ(Pop(), PopResult::kOk);
  ASSERT_EQ(Pop(), PopResult::kOk);
  ring_->SetAvailIdx(1);  // behind what was consumed: looks like 65535 new entries
  EXPECT_EQ(Pop(), PopResult::kBroken);
}

TEST_F(VirtQueueTest, SameHeadTwiceWhileInFlightBreaks) {
  Activate();
  const uint16_t head = ring_->AddChain({{kData, 4, true}});
  ring_->Publish(head);
  ring_->Publish(head);
  ASSERT_EQ(Pop(), PopResult::kOk);
  EXPECT_EQ(Pop(), PopResult::kBroken);
  EXPECT_LE(vq_->in_flight(), vq_->size());
}

TEST_F(VirtQueueTest, InFlightNeverExceedsTheQueueSize) {
  Activate();
  for (int i = 0; i < 16; ++i) ring_->Publish(ring_->AddChain({{kData, 4, true}}));
  for (int i = 0; i < 16; ++i) ASSERT_EQ(Pop(), PopResult::kOk);
  EXPECT_EQ(vq_->in_flight(), 16);
  ring_->Publish(0);  // a 17th while all 16 are in flight
  EXPECT_EQ(Pop(), PopResult::kBroken);
}

TEST_F(VirtQueueTest, UnmappableOrWrappingBuffersBreak) {
  for (auto [addr, len] : {std::pair<uint64_t, uint32_t>{kRamSize - 4, 8},  // off the end
                           {~uint64_t{0} - 2, 8},                           // wraps 64 bits
                           {0x7fffffff0000, 16},                            // nowhere
                           {0, 0xffffffff}}) {                              // huge
    SetUp();
    Activate();
    ring_->WriteDesc(0, addr, len, VRING_DESC_F_WRITE, 0);
    ring_->Publish(0);
    EXPECT_EQ(Pop(), PopResult::kBroken) << std::hex << addr;
  }
}

TEST_F(VirtQueueTest, BufferAcrossAHoleBreaks) {
  ASSERT_TRUE(mem_->AddRam(GuestAddr(kRamSize + 0x1000), 0x10000, "after-hole").ok());
  Activate();
  ring_->WriteDesc(0, kRamSize - 8, 0x2000, VRING_DESC_F_WRITE, 0);
  ring_->Publish(0);
  EXPECT_EQ(Pop(), PopResult::kBroken);
}

TEST_F(VirtQueueTest, ReadableAfterWritableBreaks) {
  Activate();
  ring_->Publish(ring_->AddChain({{kData, 4, true}, {kData, 4, false}}));
  EXPECT_EQ(Pop(), PopResult::kBroken);
}

TEST_F(VirtQueueTest, DescriptorEditedAfterPopDoesNotChangeTheElement) {
  Activate();
  const uint16_t head = ring_->AddChain({{kData, 8, true}});
  ring_->Publish(head);
  ASSERT_EQ(Pop(), PopResult::kOk);
  ring_->WriteDesc(head, 0x7fffffff0000, 0xffffffff, VRING_DESC_F_WRITE, 0);  // double fetch
  EXPECT_EQ(elem_.in_len, 8u);
  EXPECT_EQ(elem_.in[0].iov_base, mem_->HostPointer(kData, 8, true));
  vq_->Push(elem_, 8);
  EXPECT_EQ(ring_->TakeUsed()[0].second, 8u);
}

// ---- hostile: indirect ----

TEST_F(VirtQueueTest, IndirectWithoutTheFeatureBreaks) {
  Activate(false, /*indirect=*/false);
  ring_->Publish(ring_->AddIndirect({{kData, 4, true}}, GuestAddr(0x30000)));
  EXPECT_EQ(Pop(), PopResult::kBroken);
}

TEST_F(VirtQueueTest, IndirectInsideIndirectBreaks) {
  Activate();
  GuestVring::WriteDescAt(*mem_, GuestAddr(0x30000), 0, 0x31000, 16, VRING_DESC_F_INDIRECT, 0);
  ring_->WriteDesc(0, 0x30000, 16, VRING_DESC_F_INDIRECT, 0);
  ring_->Publish(0);
  EXPECT_EQ(Pop(), PopResult::kBroken);
}

TEST_F(VirtQueueTest, IndirectWithNextBreaks) {
  Activate();
  GuestVring::WriteDescAt(*mem_, GuestAddr(0x30000), 0, kData.value(), 4, VRING_DESC_F_WRITE, 0);
  ring_->WriteDesc(0, 0x30000, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
  ring_->Publish(0);
  EXPECT_EQ(Pop(), PopResult::kBroken);
}

TEST_F(VirtQueueTest, IndirectWithWriteFlagHasTheFlagIgnored) {
  Activate();
  GuestVring::WriteDescAt(*mem_, GuestAddr(0x30000), 0, kData.value(), 4, 0, 0);
  ring_->WriteDesc(0, 0x30000, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE, 0);
  ring_->Publish(0);
  ASSERT_EQ(Pop(), PopResult::kOk);
  EXPECT_EQ(elem_.out_len, 4u);
}

TEST_F(VirtQueueTest, IndirectAfterTheHeadBreaks) {
  Activate();
  ring_->WriteDesc(0, kData.value(), 4, VRING_DESC_F_NEXT, 1);
  ring_->WriteDesc(1, 0x30000, 16, VRING_DESC_F_INDIRECT, 0);
  ring_->Publish(0);
  EXPECT_EQ(Pop(), PopResult::kBroken);
}

TEST_F(VirtQueueTest, BadIndirectTableSizesBreak) {
  for (uint32_t len : {0u, 8u, 17u, (kMaxIndirectDescriptors + 1) * 16}) {
    SetUp();
    Activate();
    ring_->WriteDesc(0, 0x30000, len, VRING_DESC_F_INDIRECT, 0);
    ring_->Publish(0);
    EXPECT_EQ(Pop(), PopResult::kBroken) << len;
  }
}

TEST_F(VirtQueueTest, IndirectTableOutsideRamBreaks) {
  Activate();
  ring_->WriteDesc(0, kRamSize - 16, 32, VRING_DESC_F_INDIRECT, 0);
  ring_->Publish(0);
  EXPECT_EQ(Pop(), PopResult::kBroken);
}

TEST_F(VirtQueueTest, IndirectTableSplitAcrossAdjacentRegionsWorks) {
  ASSERT_TRUE(mem_->AddRam(GuestAddr(kRamSize), 0x10000, "more").ok());
  Activate();
  const GuestAddr table(kRamSize - 16);
  GuestVring::WriteDescAt(*mem_, table, 0, kData.value(), 4, VRING_DESC_F_NEXT, 1);
  GuestVring::WriteDescAt(*mem_, table, 1, kData.value() + 8, 4, VRING_DESC_F_WRITE, 0);
  ring_->WriteDesc(0, table.value(), 32, VRING_DESC_F_INDIRECT, 0);
  ring_->Publish(0);
  ASSERT_EQ(Pop(), PopResult::kOk);
  EXPECT_EQ(elem_.out_len, 4u);
  EXPECT_EQ(elem_.in_len, 4u);
}

TEST_F(VirtQueueTest, IndirectLoopBreaks) {
  Activate();
  GuestVring::WriteDescAt(*mem_, GuestAddr(0x30000), 0, kData.value(), 4, VRING_DESC_F_NEXT, 1);
  GuestVring::WriteDescAt(*mem_, GuestAddr(0x30000), 1, kData.value(), 4, VRING_DESC_F_NEXT, 0);
  ring_->WriteDesc(0, 0x30000, 32, VRING_DESC_F_INDIRECT, 0);
  ring_->Publish(0);
  EXPECT_EQ(Pop(), PopResult::kBroken);
}

// ---- hostile: ring placement and configuration ----

TEST_F(VirtQueueTest, BadQueueSizesAreRefused) {
  VirtQueue q(0, 256);
  EXPECT_FALSE(q.SetSize(0));
  EXPECT_FALSE(q.SetSize(3));
  EXPECT_FALSE(q.SetSize(512));  // above the device maximum
  EXPECT_TRUE(q.SetSize(64));
  EXPECT_EQ(q.size(), 64);
  VirtQueue big(0, kMaxQueueSize);
  EXPECT_TRUE(big.SetSize(kMaxQueueSize));
}

TEST_F(VirtQueueTest, ConfigurationIsFrozenOnceActive) {
  Activate();
  EXPECT_FALSE(vq_->SetSize(8));  // CVE-2026-5747: no size change after DRIVER_OK
  EXPECT_FALSE(vq_->SetAddresses(GuestAddr(0), GuestAddr(0), GuestAddr(0)));
  EXPECT_FALSE(vq_->SetEnabled(false));
  EXPECT_EQ(vq_->size(), 16);
  vq_->Reset();
  EXPECT_TRUE(vq_->SetSize(8));
}

TEST_F(VirtQueueTest, MisalignedRingsAreRefused) {
  ASSERT_TRUE(vq_->SetAddresses(ring_->desc_addr() + 8, ring_->avail_addr(), ring_->used_addr()));
  EXPECT_FALSE(vq_->Activate(mem_.get(), false, true));
  EXPECT_TRUE(vq_->broken());
  vq_->Reset();
  ASSERT_TRUE(vq_->SetSize(16));
  ASSERT_TRUE(vq_->SetAddresses(ring_->desc_addr(), ring_->avail_addr() + 1, ring_->used_addr()));
  EXPECT_FALSE(vq_->Activate(mem_.get(), false, true));
  vq_->Reset();
  ASSERT_TRUE(vq_->SetSize(16));
  ASSERT_TRUE(vq_->SetAddresses(ring_->desc_addr(), ring_->avail_addr(), ring_->used_addr() + 2));
  EXPECT_FALSE(vq_->Activate(mem_.get(), false, true));
}

TEST_F(VirtQueueTest, RingsOutsideRamOrOverlappingAreRefused) {
  ASSERT_TRUE(vq_->SetAddresses(GuestAddr(kRamSize - 64), ring_->avail_addr(), ring_->used_addr()));
  EXPECT_FALSE(vq_->Activate(mem_.get(), false, true));
  vq_->Reset();
  ASSERT_TRUE(vq_->SetSize(16));
  ASSERT_TRUE(vq_->SetAddresses(ring_->desc_addr(), ring_->avail_addr(), ring_->desc_addr()));
  EXPECT_FALSE(vq_->Activate(mem_.get(), false, true));
  EXPECT_THAT(vq_->broken_reason(), ::testing::HasSubstr("overlap"));
  vq_->Reset();
  ASSERT_TRUE(vq_->SetSize(16));
  ASSERT_TRUE(
      vq_->SetAddresses(ring_->desc_addr(), ring_->avail_addr(), GuestAddr(0x7fff00000000)));
  EXPECT_FALSE(vq_->Activate(mem_.get(), false, true));
}

TEST_F(VirtQueueTest, ResetMakesABrokenQueueUsableAgain) {
  Activate();
  ring_->Publish(16);
  ASSERT_EQ(Pop(), PopResult::kBroken);
  vq_->Reset();  // the same queue object, as a device reset does it
  EXPECT_FALSE(vq_->broken());
  ring_ = std::make_unique<GuestVring>(*mem_, kRing, 16);
  ASSERT_TRUE(vq_->SetSize(16));
  ASSERT_TRUE(vq_->SetAddresses(ring_->desc_addr(), ring_->avail_addr(), ring_->used_addr()));
  ASSERT_TRUE(vq_->SetEnabled(true));
  Activate();
  ring_->Publish(ring_->AddChain({{kData, 4, true}}));
  EXPECT_EQ(Pop(), PopResult::kOk);
}

TEST_F(VirtQueueTest, GuestMemoryReplacementIsFollowed) {
  Activate();
  ring_->Publish(ring_->AddChain({{kData, 4, true}}));
  // The peer replaces the memory map with the same layout (new mapping, same contents).
  std::vector<uint8_t> copy(kRamSize);
  ASSERT_TRUE(mem_->Read(GuestAddr(0), absl::MakeSpan(copy)));
  mem_->Clear();
  ASSERT_TRUE(mem_->AddRam(GuestAddr(0), kRamSize, "ram2").ok());
  ASSERT_TRUE(mem_->Write(GuestAddr(0), copy));
  ASSERT_EQ(Pop(), PopResult::kOk);
  EXPECT_EQ(elem_.in[0].iov_base, mem_->HostPointer(kData, 4, true));
  // And a map without the rings breaks the queue instead of touching stale pointers.
  mem_->Clear();
  EXPECT_EQ(Pop(), PopResult::kBroken);
}

}  // namespace
}  // namespace vdev::virtio
