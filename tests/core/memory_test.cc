// GuestMemory, MemoryRegion/AddressSpace dispatch, and interrupt routing.
#include "core/memory/memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "core/memory/guest_memory.h"
#include "core/memory/irq.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vdev {
namespace {

using ::testing::ElementsAre;

// ---- GuestMemory ----

TEST(GuestMemoryTest, AddRamIsMemfdBackedAndZeroFilled) {
  auto mem = *GuestMemory::Create();
  ASSERT_TRUE(mem->AddRam(GuestAddr(0x1000), 0x4000, "ram").ok());
  ASSERT_EQ(mem->regions().size(), 1u);
  const GuestRamRegion& r = mem->regions()[0];
  EXPECT_GE(r.fd, 0);
  EXPECT_EQ(r.fd_offset, 0u);
  EXPECT_EQ(mem->ReadLe<uint64_t>(GuestAddr(0x1000)), 0u);
  // The fd is the memory: what the guest writes is visible through another mapping of it.
  ASSERT_TRUE(mem->WriteLe<uint32_t>(GuestAddr(0x1004), 0xcafef00d));
  void* p = mmap(nullptr, 0x4000, PROT_READ, MAP_SHARED, r.fd, 0);
  ASSERT_NE(p, MAP_FAILED);
  EXPECT_EQ(static_cast<uint8_t*>(p)[4], 0x0d);
  EXPECT_EQ(static_cast<uint8_t*>(p)[7], 0xca);
  munmap(p, 0x4000);
}

TEST(GuestMemoryTest, TypedAccessIsLittleEndian) {
  auto mem = *GuestMemory::Create();
  ASSERT_TRUE(mem->AddRam(GuestAddr(0), 0x1000, "ram").ok());
  ASSERT_TRUE(mem->WriteLe<uint16_t>(GuestAddr(0x10), 0x1234));
  EXPECT_EQ(mem->ReadLe<uint8_t>(GuestAddr(0x10)), 0x34);
  EXPECT_EQ(mem->ReadLe<uint8_t>(GuestAddr(0x11)), 0x12);
}

TEST(GuestMemoryTest, TranslateSplitsAcrossAdjacentRegions) {
  auto mem = *GuestMemory::Create();
  ASSERT_TRUE(mem->AddRam(GuestAddr(0x0), 0x1000, "a").ok());
  ASSERT_TRUE(mem->AddRam(GuestAddr(0x1000), 0x1000, "b").ok());
  std::vector<iovec> iov;
  ASSERT_TRUE(mem->Translate(GuestAddr(0xff0), 0x20, false, &iov));
  ASSERT_EQ(iov.size(), 2u);
  EXPECT_EQ(iov[0].iov_len, 0x10u);
  EXPECT_EQ(iov[1].iov_len, 0x10u);
  EXPECT_EQ(iov[0].iov_base, mem->HostPointer(GuestAddr(0xff0), 1, false));
  EXPECT_EQ(iov[1].iov_base, mem->HostPointer(GuestAddr(0x1000), 1, false));
}

TEST(GuestMemoryTest, TranslateRejectsRangeAcrossAHole) {
  auto mem = *GuestMemory::Create();
  ASSERT_TRUE(mem->AddRam(GuestAddr(0x0), 0x1000, "a").ok());
  ASSERT_TRUE(mem->AddRam(GuestAddr(0x2000), 0x1000, "b").ok());
  std::vector<iovec> iov = {iovec{nullptr, 7}};
  EXPECT_FALSE(mem->Translate(GuestAddr(0xff0), 0x1020, false, &iov));
  EXPECT_EQ(iov.size(), 1u);  // unchanged on failure
  EXPECT_FALSE(mem->IsRam(GuestAddr(0xfff), 2));
  uint8_t buf[2];
  EXPECT_FALSE(mem->Read(GuestAddr(0xfff), absl::MakeSpan(buf)));
}

TEST(GuestMemoryTest, TranslateRejectsPastTheEndAndWrapping) {
  auto mem = *GuestMemory::Create();
  ASSERT_TRUE(mem->AddRam(GuestAddr(0x0), 0x1000, "a").ok());
  std::vector<iovec> iov;
  EXPECT_FALSE(mem->Translate(GuestAddr(0xfff), 2, false, &iov));
  EXPECT_FALSE(mem->Translate(GuestAddr(0x10), ~uint64_t{0}, false, &iov));
  EXPECT_FALSE(mem->Translate(GuestAddr(~uint64_t{0}), 2, false, &iov));
  EXPECT_FALSE(mem->Translate(GuestAddr(0x5000), 1, false, &iov));
  EXPECT_TRUE(mem->Translate(GuestAddr(0x5000), 0, false, &iov));  // empty is always fine
  EXPECT_TRUE(iov.empty());
}

TEST(GuestMemoryTest, OverlappingOrEmptyRegionsAreRefused) {
  auto mem = *GuestMemory::Create();
  ASSERT_TRUE(mem->AddRam(GuestAddr(0x1000), 0x1000, "a").ok());
  EXPECT_EQ(mem->AddRam(GuestAddr(0x1800), 0x1000, "b").code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(mem->AddRam(GuestAddr(0x8000), 0, "c").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mem->AddRam(GuestAddr(~uint64_t{0} - 10), 0x1000, "d").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mem->regions().size(), 1u);
}

TEST(GuestMemoryTest, AdoptRegionChecksTheFdSizeAndSharesPages) {
  auto mem = *GuestMemory::Create();
  int fd = memfd_create("peer", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 0x3000), 0);
  auto dup = UniqueFd(fd).Dup();
  ASSERT_TRUE(dup.ok());
  // Past the end of the fd: refused, and the fd handed in is closed (nothing leaks).
  EXPECT_EQ(mem->AdoptRegion(GuestAddr(0), 0x2000, std::move(*dup), 0x2000, "peer").code(),
            absl::StatusCode::kInvalidArgument);
  int fd2 = memfd_create("peer2", MFD_CLOEXEC);
  ASSERT_EQ(ftruncate(fd2, 0x3000), 0);
  ASSERT_EQ(pwrite(fd2, "\x42", 1, 0x1000), 1);
  ASSERT_TRUE(mem->AdoptRegion(GuestAddr(0x10000), 0x2000, UniqueFd(fd2), 0x1000, "peer2").ok());
  EXPECT_EQ(mem->ReadLe<uint8_t>(GuestAddr(0x10000)), 0x42);
  EXPECT_EQ(mem->regions()[0].fd_offset, 0x1000u);
}

TEST(GuestMemoryTest, ReadOnlyRegionRefusesWrites) {
  auto mem = *GuestMemory::Create();
  int fd = memfd_create("rom", MFD_CLOEXEC);
  ASSERT_EQ(ftruncate(fd, 0x1000), 0);
  ASSERT_TRUE(mem->AdoptRegion(GuestAddr(0), 0x1000, UniqueFd(fd), 0, "rom", true).ok());
  EXPECT_FALSE(mem->WriteLe<uint8_t>(GuestAddr(0), 1));
  EXPECT_EQ(mem->ReadLe<uint8_t>(GuestAddr(0)), 0);
}

int CountFds() {
  int n = 0;
  for (int fd = 0; fd < 4096; ++fd) n += fcntl(fd, F_GETFD) != -1;
  return n;
}

TEST(GuestMemoryTest, ClearClosesEveryFd) {
  const int before = CountFds();
  {
    auto mem = *GuestMemory::Create();
    ASSERT_TRUE(mem->AddRam(GuestAddr(0), 0x1000, "a").ok());
    ASSERT_TRUE(mem->AddRam(GuestAddr(0x1000), 0x1000, "b").ok());
    EXPECT_EQ(CountFds(), before + 2);
    mem->Clear();
    EXPECT_EQ(CountFds(), before);
    ASSERT_TRUE(mem->AddRam(GuestAddr(0), 0x1000, "c").ok());
  }
  EXPECT_EQ(CountFds(), before);
}

// ---- AddressSpace dispatch ----

struct Recorder {
  std::vector<std::tuple<char, uint64_t, uint64_t, unsigned>> log;  // op, offset, value, size
  MemoryRegionOps Ops(AccessConstraints valid, unsigned impl_max = 0) {
    MemoryRegionOps ops;
    ops.read = [this](MmioOffset off, unsigned size) -> uint64_t {
      log.emplace_back('r', off.value(), 0, size);
      return 0x1122334455667788ull >> (8 * (8 - size));
    };
    ops.write = [this](MmioOffset off, uint64_t v, unsigned size) {
      log.emplace_back('w', off.value(), v, size);
    };
    ops.valid = valid;
    ops.impl_max_size = impl_max;
    return ops;
  }
};

TEST(AddressSpaceTest, HandlersSeeOffsetsRelativeToTheirRegion) {
  Recorder rec;
  auto root = MemoryRegion::CreateContainer("root", ~uint64_t{0});
  auto dev = MemoryRegion::CreateIo("dev", 0x100, rec.Ops({4, 4, false}));
  AddressSpace as("mem", root.get());
  root->AddSubregion(0x10000, dev.get());
  as.Write(0x10010, 0xabcd, 4);
  EXPECT_THAT(rec.log, ElementsAre(std::make_tuple('w', 0x10u, 0xabcdu, 4u)));
}

TEST(AddressSpaceTest, UnassignedReadsAllOnesAndWritesAreCounted) {
  auto root = MemoryRegion::CreateContainer("root", ~uint64_t{0});
  AddressSpace as("mem", root.get());
  uint64_t v = 0;
  EXPECT_EQ(as.Read(0x1234, 4, &v), MemTxResult::kUnassigned);
  EXPECT_EQ(v, 0xffffffffu);
  EXPECT_EQ(as.Read(0x1234, 2, &v), MemTxResult::kUnassigned);
  EXPECT_EQ(v, 0xffffu);
  EXPECT_EQ(as.Write(0x1234, 1, 4), MemTxResult::kUnassigned);
  EXPECT_EQ(as.counters().Value("unassigned_read"), 2u);
  EXPECT_EQ(as.counters().Value("unassigned_write"), 1u);
}

TEST(AddressSpaceTest, InvalidWidthsAreRejectedCentrally) {
  Recorder rec;
  Counters owner;
  auto root = MemoryRegion::CreateContainer("root", ~uint64_t{0});
  auto dev = MemoryRegion::CreateIo("dev", 0x100, rec.Ops({4, 4, false}));
  dev->set_owner_counters(&owner);
  root->AddSubregion(0, dev.get());
  AddressSpace as("mem", root.get());
  uint64_t v;
  for (unsigned size : {1u, 2u, 8u}) {
    EXPECT_EQ(as.Read(0x10, size, &v), MemTxResult::kRejected) << size;
    EXPECT_EQ(v, size == 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * size)) - 1);
  }
  EXPECT_EQ(as.Write(0x11, 1, 4), MemTxResult::kRejected);  // unaligned
  EXPECT_EQ(as.Read(0x10, 3, &v), MemTxResult::kRejected);  // not a width at all
  EXPECT_EQ(as.Read(0x10, 16, &v), MemTxResult::kRejected);
  EXPECT_TRUE(rec.log.empty());
  EXPECT_EQ(as.counters().Value("invalid_access"), 6u);
  EXPECT_EQ(owner.Value("bad_access"), 4u);
}

TEST(AddressSpaceTest, UnalignedAllowedWhenDeclared) {
  Recorder rec;
  auto root = MemoryRegion::CreateContainer("root", ~uint64_t{0});
  auto dev = MemoryRegion::CreateIo("dev", 0x100, rec.Ops({1, 4, true}));
  root->AddSubregion(0, dev.get());
  AddressSpace as("mem", root.get());
  EXPECT_EQ(as.Write(0x11, 7, 2), MemTxResult::kOk);
  EXPECT_THAT(rec.log, ElementsAre(std::make_tuple('w', 0x11u, 7u, 2u)));
}

TEST(AddressSpaceTest, WideAccessesAreSplitToTheImplementedSize) {
  Recorder rec;
  auto root = MemoryRegion::CreateContainer("root", ~uint64_t{0});
  auto dev = MemoryRegion::CreateIo("dev", 0x100, rec.Ops({4, 8, false}, /*impl_max=*/4));
  root->AddSubregion(0, dev.get());
  AddressSpace as("mem", root.get());
  as.Write(0x8, 0x1111222233334444ull, 8);
  EXPECT_THAT(rec.log, ElementsAre(std::make_tuple('w', 0x8u, 0x33334444u, 4u),
                                   std::make_tuple('w', 0xcu, 0x11112222u, 4u)));
  rec.log.clear();
  EXPECT_EQ(as.ReadValue(0x8, 8), 0x1122334411223344ull);
  EXPECT_EQ(rec.log.size(), 2u);
}

TEST(AddressSpaceTest, HigherPriorityWinsAndRemovalUncoversTheLowerOne) {
  Recorder lo, hi;
  auto root = MemoryRegion::CreateContainer("root", ~uint64_t{0});
  auto a = MemoryRegion::CreateIo("low", 0x1000, lo.Ops({1, 8, true}));
  auto b = MemoryRegion::CreateIo("high", 0x100, hi.Ops({1, 8, true}));
  AddressSpace as("mem", root.get());
  root->AddSubregion(0x0, a.get(), 0);
  root->AddSubregion(0x800, b.get(), 1);
  as.Write(0x810, 1, 1);
  as.Write(0x910, 1, 1);
  EXPECT_EQ(hi.log.size(), 1u);
  EXPECT_EQ(lo.log.size(), 1u);
  EXPECT_EQ(std::get<1>(lo.log[0]), 0x910u);
  root->RemoveSubregion(b.get());
  as.Write(0x810, 1, 1);
  EXPECT_EQ(lo.log.size(), 2u);
  EXPECT_EQ(std::get<1>(lo.log[1]), 0x810u);
}

TEST(AddressSpaceTest, EqualPriorityTheNewestWins) {
  Recorder first, second;
  auto root = MemoryRegion::CreateContainer("root", ~uint64_t{0});
  auto a = MemoryRegion::CreateIo("a", 0x100, first.Ops({1, 8, true}));
  auto b = MemoryRegion::CreateIo("b", 0x100, second.Ops({1, 8, true}));
  root->AddSubregion(0, a.get());
  root->AddSubregion(0x80, b.get());
  AddressSpace as("mem", root.get());
  as.Write(0x90, 1, 1);
  EXPECT_TRUE(first.log.empty());
  EXPECT_EQ(second.log.size(), 1u);
}

TEST(AddressSpaceTest, AliasShowsAWindowOfItsTarget) {
  Recorder rec;
  auto root = MemoryRegion::CreateContainer("root", ~uint64_t{0});
  auto dev = MemoryRegion::CreateIo("dev", 0x1000, rec.Ops({1, 8, true}));
  auto alias = MemoryRegion::CreateAlias("win", dev.get(), 0x400, 0x100);
  root->AddSubregion(0x20000, alias.get());
  AddressSpace as("mem", root.get());
  as.Write(0x20010, 5, 1);
  EXPECT_THAT(rec.log, ElementsAre(std::make_tuple('w', 0x410u, 5u, 1u)));
  EXPECT_EQ(as.Lookup(0x20100), nullptr);  // past the window
}

TEST(AddressSpaceTest, NestedContainersAndDisabledRegions) {
  Recorder rec;
  auto root = MemoryRegion::CreateContainer("root", ~uint64_t{0});
  auto bar = MemoryRegion::CreateContainer("bar", 0x1000);
  auto regs = MemoryRegion::CreateIo("regs", 0x100, rec.Ops({4, 4, false}));
  bar->AddSubregion(0x200, regs.get());
  root->AddSubregion(0xfe000000, bar.get());
  AddressSpace as("mem", root.get());
  uint64_t off = 0;
  EXPECT_EQ(as.Lookup(0xfe000204, &off), regs.get());
  EXPECT_EQ(off, 4u);
  bar->SetEnabled(false);
  EXPECT_EQ(as.Lookup(0xfe000204), nullptr);
  bar->SetEnabled(true);
  bar->SetOffset(0xfd000000);
  EXPECT_EQ(as.Lookup(0xfd000204), regs.get());
  EXPECT_EQ(as.Lookup(0xfe000204), nullptr);
}

TEST(AddressSpaceTest, RamRegionsAreReadAndWrittenDirectly) {
  std::vector<uint8_t> ram(0x1000);
  auto root = MemoryRegion::CreateContainer("root", ~uint64_t{0});
  auto r = MemoryRegion::CreateRam("ram", ram.size(), ram.data());
  root->AddSubregion(0x1000, r.get());
  AddressSpace as("mem", root.get());
  as.Write(0x1010, 0x0102030405060708ull, 8);
  EXPECT_EQ(ram[0x10], 0x08);
  EXPECT_EQ(as.ReadValue(0x1010, 4), 0x05060708u);
}

TEST(AddressSpaceTest, AccessStraddlingRamRegionsIsSplitPerRegion) {
  std::vector<uint8_t> a(0x10, 0xaa), b(0x10, 0xbb);
  auto root = MemoryRegion::CreateContainer("root", ~uint64_t{0});
  auto ra = MemoryRegion::CreateRam("a", a.size(), a.data());
  auto rb = MemoryRegion::CreateRam("b", b.size(), b.data());
  root->AddSubregion(0x0, ra.get());
  root->AddSubregion(0x10, rb.get());
  AddressSpace as("mem", root.get());
  EXPECT_EQ(as.ReadValue(0xe, 4), 0xbbbbaaaau);
  EXPECT_EQ(as.Write(0xf, 0x11223344, 4), MemTxResult::kOk);
  EXPECT_EQ(a[0xf], 0x44);
  EXPECT_EQ(b[0x2], 0x11);
  // Past the end of RAM into nothing: the missing bytes read as ones.
  EXPECT_EQ(as.ReadValue(0x1e, 4), 0xffffbbbbu);
}

TEST(AddressSpaceTest, AccessRunningPastADeviceRegionNeverReachesIt) {
  std::vector<uint8_t> ram(0x10, 0xaa);
  Recorder rec;
  Counters owner;
  auto root = MemoryRegion::CreateContainer("root", ~uint64_t{0});
  auto r = MemoryRegion::CreateRam("ram", ram.size(), ram.data());
  auto dev = MemoryRegion::CreateIo("dev", 0x10, rec.Ops({1, 8, true}));
  dev->set_owner_counters(&owner);
  root->AddSubregion(0x0, r.get());
  root->AddSubregion(0x10, dev.get());
  AddressSpace as("mem", root.get());
  uint64_t v = 0;
  EXPECT_EQ(as.Read(0xe, 4, &v), MemTxResult::kRejected);
  EXPECT_EQ(v, 0xffffaaaau);
  EXPECT_EQ(as.Write(0x1c, 0, 8), MemTxResult::kRejected);  // 4 bytes past the device's end
  EXPECT_TRUE(rec.log.empty());
  EXPECT_EQ(owner.Value("bad_access"), 2u);
}

TEST(AddressSpaceTest, AccessAtTheTopOfTheAddressSpaceDoesNotWrap) {
  std::vector<uint8_t> ram(0x10, 0);
  auto root = MemoryRegion::CreateContainer("root", ~uint64_t{0});
  auto r = MemoryRegion::CreateRam("low", ram.size(), ram.data());
  root->AddSubregion(0, r.get());
  AddressSpace as("mem", root.get());
  EXPECT_EQ(as.ReadValue(~uint64_t{0} - 1, 4), 0xffffffffu);
  EXPECT_EQ(as.Write(~uint64_t{0} - 1, 0, 4), MemTxResult::kUnassigned);
  EXPECT_EQ(ram[0], 0);
}

TEST(AddressSpaceTest, HandlerIsNeverReentered) {
  auto root = MemoryRegion::CreateContainer("root", ~uint64_t{0});
  AddressSpace* as_ptr = nullptr;
  int calls = 0;
  MemTxResult inner = MemTxResult::kOk;
  MemoryRegionOps ops;
  ops.write = [&](MmioOffset, uint64_t, unsigned) {
    ++calls;
    inner = as_ptr->Write(0x1000, 0, 4);  // "DMA" aimed at its own registers
  };
  ops.valid = {4, 4, false};
  auto dev = MemoryRegion::CreateIo("dev", 0x100, std::move(ops));
  root->AddSubregion(0x1000, dev.get());
  AddressSpace as("mem", root.get());
  as_ptr = &as;
  EXPECT_EQ(as.Write(0x1000, 0, 4), MemTxResult::kOk);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(inner, MemTxResult::kRejected);
  EXPECT_EQ(as.counters().Value("reentrant_access"), 1u);
}

TEST(AddressSpaceTest, TransactionRebuildsOnceAtTheEnd) {
  Recorder rec;
  auto root = MemoryRegion::CreateContainer("root", ~uint64_t{0});
  AddressSpace as("mem", root.get());
  std::vector<std::unique_ptr<MemoryRegion>> regs;
  {
    MemoryTransaction t;
    for (int i = 0; i < 100; ++i) {
      regs.push_back(MemoryRegion::CreateIo("r", 0x10, rec.Ops({1, 8, true})));
      root->AddSubregion(uint64_t(i) * 0x100, regs.back().get());
    }
    EXPECT_EQ(as.FlatRanges().size(), 0u);  // not yet visible
  }
  EXPECT_EQ(as.FlatRanges().size(), 100u);
}

TEST(AddressSpaceTest, DestroyedRegionDisappearsFromTheView) {
  auto root = MemoryRegion::CreateContainer("root", ~uint64_t{0});
  AddressSpace as("mem", root.get());
  {
    Recorder rec;
    auto dev = MemoryRegion::CreateIo("dev", 0x100, rec.Ops({1, 8, true}));
    root->AddSubregion(0x1000, dev.get());
    EXPECT_EQ(as.FlatRanges().size(), 1u);
  }
  EXPECT_EQ(as.FlatRanges().size(), 0u);
  EXPECT_EQ(as.ReadValue(0x1000, 4), 0xffffffffu);
}

TEST(AddressSpaceTest, ConcurrentDispatchWhileRemapping) {
  std::atomic<uint64_t> hits{0};
  MemoryRegionOps ops;
  ops.read = [&](MmioOffset, unsigned) -> uint64_t {
    hits.fetch_add(1);
    return 7;
  };
  ops.valid = {4, 4, false};
  auto root = MemoryRegion::CreateContainer("root", ~uint64_t{0});
  auto dev = MemoryRegion::CreateIo("dev", 0x1000, std::move(ops));
  root->AddSubregion(0x10000, dev.get());
  AddressSpace as("mem", root.get());
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    while (!stop.load()) {
      uint64_t v = as.ReadValue(0x10000, 4);
      ASSERT_TRUE(v == 7 || v == 0xffffffffu);
    }
  });
  for (int i = 0; i < 2000; ++i) dev->SetEnabled(i % 2 == 0);
  stop = true;
  reader.join();
  dev->SetEnabled(true);
  EXPECT_EQ(as.ReadValue(0x10000, 4), 7u);
}

// ---- interrupts ----

TEST(IrqRouterTest, SharedLevelLineIsTheOrOfItsSources) {
  RecordingIrqSink sink;
  IrqRouter router(&sink);
  int a = 0, b = 0;
  router.SetLevel(11, &a, true);
  router.SetLevel(11, &b, true);
  router.SetLevel(11, &a, false);
  EXPECT_TRUE(sink.level(11));
  router.SetLevel(11, &b, false);
  EXPECT_FALSE(sink.level(11));
  EXPECT_EQ(sink.raised_count(11), 1);
}

TEST(IrqRouterTest, RepeatedAssertIsOneEdge) {
  RecordingIrqSink sink;
  IrqRouter router(&sink);
  int a = 0;
  router.SetLevel(5, &a, true);
  router.SetLevel(5, &a, true);
  EXPECT_EQ(sink.raised_count(5), 1);
}

TEST(IrqRouterTest, MsiGoesToTheSink) {
  RecordingIrqSink sink;
  IrqRouter router(&sink);
  router.SendMsi({0xfee00000, 0x41});
  EXPECT_THAT(sink.msis(), ElementsAre(MsiMessage{0xfee00000, 0x41}));
}

TEST(IrqRouterTest, NewSinkLearnsLinesAlreadyHigh) {
  RecordingIrqSink first, second;
  IrqRouter router(&first);
  int a = 0;
  router.SetLevel(9, &a, true);
  router.set_sink(&second);
  EXPECT_TRUE(second.level(9));
}

}  // namespace
}  // namespace vdev
