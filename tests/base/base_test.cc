#include <fcntl.h>
#include <unistd.h>

#include "core/base/checked_math.h"
#include "core/base/counters.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"
#include "core/base/strong_types.h"
#include "core/base/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/log_capture.h"
#include "tests/testing/test_types.h"

namespace vdev {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<int> Half(int v) {
  if (v % 2) return absl::InvalidArgumentError("odd");
  return v / 2;
}

absl::StatusOr<int> Quarter(int v) {
  VDEV_ASSIGN_OR_RETURN(int h, Half(v));
  VDEV_ASSIGN_OR_RETURN(h, Half(h));
  return h;
}

absl::Status CheckEven(int v) {
  VDEV_RETURN_IF_ERROR(Half(v).status());
  return absl::OkStatus();
}

TEST(StatusMacrosTest, AssignOrReturnPropagatesValueAndError) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().message(), "odd");
}

TEST(StatusMacrosTest, ReturnIfErrorReturnsFirstError) {
  EXPECT_TRUE(CheckEven(4).ok());
  EXPECT_EQ(CheckEven(3).code(), absl::StatusCode::kInvalidArgument);
}

TEST(StatusMacrosTest, AnnotateKeepsCodeAndPrependsContext) {
  absl::Status s = Annotate(absl::NotFoundError("no file"), "tap 'n0'");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "tap 'n0': no file");
  EXPECT_TRUE(Annotate(absl::OkStatus(), "x").ok());
}

TEST(CheckedMathTest, DetectsOverflow) {
  EXPECT_EQ(CheckedAdd<uint64_t>(~0ull, 1), std::nullopt);
  EXPECT_EQ(CheckedAdd<uint64_t>(1, 2), 3u);
  EXPECT_EQ(CheckedSub<uint32_t>(1, 2), std::nullopt);
  EXPECT_EQ(CheckedMul<uint32_t>(0x10000, 0x10000), std::nullopt);
  EXPECT_EQ(CheckedMul<uint32_t>(6, 7), 42u);
}

TEST(CheckedMathTest, RangeWithinRejectsWrapAndOverrun) {
  EXPECT_TRUE(RangeWithin(0x1000, 0x10, 0x1000, 0x10));
  EXPECT_FALSE(RangeWithin(0x1000, 0x11, 0x1000, 0x10));
  EXPECT_FALSE(RangeWithin(0xfff, 1, 0x1000, 0x10));
  EXPECT_FALSE(RangeWithin(~0ull, 2, 0, ~0ull));  // addr + len wraps
  EXPECT_TRUE(RangeWithin(0x1010, 0, 0x1000, 0x10));
}

TEST(CheckedMathTest, RangesOverlap) {
  EXPECT_TRUE(RangesOverlap(0, 10, 9, 1));
  EXPECT_FALSE(RangesOverlap(0, 10, 10, 1));
  EXPECT_FALSE(RangesOverlap(0, 0, 0, 10));
  EXPECT_TRUE(RangesOverlap(~0ull, 1, ~0ull - 3, 4));
}

TEST(CheckedMathTest, AlignUpAndPowerOfTwo) {
  EXPECT_EQ(AlignUp(5, 4), 8u);
  EXPECT_EQ(AlignUp(8, 4), 8u);
  EXPECT_EQ(AlignUp(~0ull, 4), std::nullopt);
  EXPECT_EQ(AlignUp(5, 3), std::nullopt);
  EXPECT_TRUE(IsPowerOfTwo(32768));
  EXPECT_FALSE(IsPowerOfTwo(0));
  EXPECT_FALSE(IsPowerOfTwo(96));
}

TEST(StrongTypesTest, CompareAndOffset) {
  GuestAddr a(0x1000);
  EXPECT_EQ((a + 0x10).value(), 0x1010u);
  EXPECT_LT(a, GuestAddr(0x2000));
  EXPECT_EQ(GuestAddr(0x2000) - a, 0x1000u);
  EXPECT_EQ(ToString(IoPort(0xcf8)), "0xcf8");
  static_assert(!std::is_convertible_v<GuestAddr, MmioOffset>);
  static_assert(!std::is_convertible_v<uint64_t, GuestAddr>);
}

TEST(UniqueFdTest, ClosesOnDestructionAndMove) {
  int before = testing::OpenFdCount();
  {
    auto fd = UniqueFd::Open("/dev/null", O_RDONLY);
    ASSERT_TRUE(fd.ok());
    EXPECT_EQ(testing::OpenFdCount(), before + 1);
    UniqueFd moved = std::move(*fd);
    EXPECT_FALSE(fd->valid());
    EXPECT_TRUE(moved.valid());
    auto dup = moved.Dup();
    ASSERT_TRUE(dup.ok());
    EXPECT_EQ(testing::OpenFdCount(), before + 2);
  }
  EXPECT_EQ(testing::OpenFdCount(), before);
}

TEST(UniqueFdTest, ReleaseGivesUpOwnership) {
  auto fd = UniqueFd::Open("/dev/null", O_RDONLY);
  ASSERT_TRUE(fd.ok());
  int raw = fd->Release();
  EXPECT_FALSE(fd->valid());
  EXPECT_EQ(::close(raw), 0);
}

TEST(UniqueFdTest, OpenFailureNamesTheCall) {
  auto fd = UniqueFd::Open("/nonexistent/vdev", O_RDONLY);
  EXPECT_EQ(fd.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(fd.status().message(), HasSubstr("open(/nonexistent/vdev)"));
}

TEST(ErrnoToStatusTest, MapsCommonErrors) {
  EXPECT_EQ(ErrnoToStatus(EPERM, "x").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ErrnoToStatus(EBUSY, "x").code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ErrnoToStatus(EINVAL, "ioctl(TUNSETIFF)").message(),
            "ioctl(TUNSETIFF): Invalid argument");
}

TEST(CountersTest, IncrementsAndSnapshotsSorted) {
  Counters c;
  Counter* kicks = c.Get("kicks");
  kicks->Add();
  kicks->Add(2);
  c.Increment("bad");
  EXPECT_EQ(c.Value("kicks"), 3u);
  EXPECT_EQ(c.Value("never"), 0u);
  EXPECT_EQ(c.Get("kicks"), kicks);
  auto snap = c.Snapshot();
  ASSERT_EQ(snap.size(), 2u);
  EXPECT_EQ(snap[0].first, "bad");
}

TEST(RateLimiterTest, AllowsBurstThenSuppressesThenRefills) {
  RateLimiter rl(2, absl::Seconds(1));
  absl::Time t = absl::UnixEpoch();
  uint64_t suppressed = 0;
  EXPECT_TRUE(rl.AllowAt(t, &suppressed));
  EXPECT_TRUE(rl.AllowAt(t, &suppressed));
  EXPECT_FALSE(rl.AllowAt(t, &suppressed));
  EXPECT_FALSE(rl.AllowAt(t, &suppressed));
  EXPECT_TRUE(rl.AllowAt(t + absl::Seconds(1), &suppressed));
  EXPECT_EQ(suppressed, 2u);
}

TEST(GuestErrorLogTest, CountsEveryErrorButLogsRateLimited) {
  testing::LogCapture capture;
  Counters c;
  for (int i = 0; i < 100; ++i) {
    VDEV_LOG_GUEST_ERROR(c, "bad_width", "device x: %d-byte access", 3);
  }
  EXPECT_EQ(c.Value("bad_width"), 100u);
  ASSERT_GE(capture.lines().size(), 1u);
  EXPECT_LE(capture.lines().size(), 11u);
  EXPECT_EQ(capture.lines()[0], "guest error: device x: 3-byte access");
}

TEST(LoggingTest, SeverityFilterDropsLowerMessages) {
  testing::LogCapture capture;
  LogSeverity old = MinLogSeverity();
  SetMinLogSeverity(LogSeverity::kWarning);
  VDEV_LOG(kInfo, "hidden %d", 1);
  VDEV_LOG(kError, "shown %d", 2);
  SetMinLogSeverity(old);
  ASSERT_EQ(capture.lines().size(), 1u);
  EXPECT_EQ(capture.lines()[0], "shown 2");
}

TEST(CheckDeathTest, CheckAbortsWithExpression) {
  EXPECT_DEATH(VDEV_CHECK(1 + 1 == 3), "CHECK failed: 1 \\+ 1 == 3");
}

}  // namespace
}  // namespace vdev
