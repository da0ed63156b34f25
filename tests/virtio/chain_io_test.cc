// ChainReader / ChainWriter and the positional segment helpers: reads and writes across segment
// boundaries, short chains (never past the end), empty segments, skipping, peeking.
#include "bus/virtio/chain_io.h"

#include <cstring>
#include <numeric>

#include "gtest/gtest.h"

namespace vdev::virtio {
namespace {

// Three segments of 3, 0 and 5 bytes over one backing buffer.
class ChainIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::iota(std::begin(mem_), std::end(mem_), uint8_t{0});
    segs_ = {{mem_, 3}, {mem_ + 3, 0}, {mem_ + 10, 5}};
  }
  uint8_t mem_[16];
  std::vector<iovec> segs_;
};

TEST_F(ChainIoTest, ReaderReadsAcrossSegmentsAndStopsAtTheEnd) {
  ChainReader r(segs_);
  EXPECT_EQ(r.remaining(), 8u);
  uint8_t buf[10] = {};
  EXPECT_EQ(r.Read(buf, 4), 4u);
  EXPECT_EQ(buf[0], 0);
  EXPECT_EQ(buf[2], 2);
  EXPECT_EQ(buf[3], 10);  // the empty segment is passed over
  EXPECT_EQ(r.consumed(), 4u);
  EXPECT_EQ(r.Read(buf, 10), 4u);  // only what is left
  EXPECT_EQ(buf[3], 14);
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_EQ(r.Read(buf, 1), 0u);
}

TEST_F(ChainIoTest, ReadObjectFailsOnAShortChain) {
  ChainReader r(segs_);
  uint32_t v = 0;
  ASSERT_TRUE(r.ReadObject(&v));
  EXPECT_EQ(v, 0x0a020100u);  // bytes 0, 1, 2, 10, little-endian
  uint64_t big = 0;
  EXPECT_FALSE(r.ReadObject(&big));  // 4 bytes left
  EXPECT_EQ(r.remaining(), 0u);
}

TEST_F(ChainIoTest, WriterWritesAcrossSegmentsAndCountsWhatItWrote) {
  ChainWriter w(segs_);
  const uint8_t data[9] = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8};
  EXPECT_EQ(w.Skip(1), 1u);
  EXPECT_EQ(w.Write(data, 9), 7u);
  EXPECT_EQ(w.written(), 8u);
  EXPECT_EQ(mem_[0], 0);  // skipped
  EXPECT_EQ(mem_[1], 0xa0);
  EXPECT_EQ(mem_[2], 0xa1);
  EXPECT_EQ(mem_[3], 3);  // not in any segment
  EXPECT_EQ(mem_[10], 0xa2);
  EXPECT_EQ(mem_[14], 0xa6);
  EXPECT_EQ(mem_[15], 15);  // past the end: untouched
  EXPECT_FALSE(w.WriteObject(uint8_t{1}));
}

TEST_F(ChainIoTest, PeekGivesTheContiguousPieceAtTheCursor) {
  ChainWriter w(segs_);
  absl::Span<uint8_t> p = w.Peek();
  EXPECT_EQ(p.data(), mem_);
  EXPECT_EQ(p.size(), 3u);
  w.Skip(3);
  p = w.Peek(2);  // past the empty segment, limited
  EXPECT_EQ(p.data(), mem_ + 10);
  EXPECT_EQ(p.size(), 2u);
  w.Skip(5);
  EXPECT_TRUE(w.Peek().empty());
}

TEST_F(ChainIoTest, PositionalHelpers) {
  EXPECT_EQ(SegmentsSize(segs_), 8u);
  const uint16_t nb = 0xbeef;
  EXPECT_EQ(CopyToSegments(segs_, 2, &nb, 2), 2u);  // straddles the first boundary
  EXPECT_EQ(mem_[2], 0xef);
  EXPECT_EQ(mem_[10], 0xbe);
  uint16_t back = 0;
  EXPECT_EQ(CopyFromSegments(segs_, 2, &back, 2), 2u);
  EXPECT_EQ(back, 0xbeef);
  uint8_t tail[4];
  EXPECT_EQ(CopyFromSegments(segs_, 6, tail, 4), 2u);  // only 2 bytes from offset 6
  EXPECT_EQ(CopyToSegments(segs_, 100, &nb, 2), 0u);
  std::vector<iovec> rest;
  AppendSegments(segs_, 4, &rest);
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].iov_base, mem_ + 11);
  EXPECT_EQ(rest[0].iov_len, 4u);
}

}  // namespace
}  // namespace vdev::virtio
