// EventLoop's busy polling (SetPollMaxNs, a notifier watch with a poll function): the window
// before a blocking wait, the polling(true / false) transitions, progress ending the window
// early without blocking, and no polling at all with a zero window or no poll function.
#include <atomic>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "core/loop/event_loop.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vdev {
namespace {

using ::testing::ElementsAre;

class EventLoopPollTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = std::move(*loop);
    auto n = EventNotifier::Create();
    ASSERT_TRUE(n.ok()) << n.status();
    notifier_ = std::move(*n);
  }
  void Watch() {
    auto w = loop_->WatchNotifier(notifier_, [this] { ++rang_; },
                                  {.poll =
                                       [this] {
                                         ++polls_;
                                         return work_.exchange(false);
                                       },
                                   .polling = [this](bool on) { modes_.push_back(on); }});
    ASSERT_TRUE(w.ok()) << w.status();
    watch_ = std::move(*w);
  }

  std::unique_ptr<EventLoop> loop_;
  EventNotifier notifier_;
  std::atomic<bool> work_{false};
  int rang_ = 0, polls_ = 0;
  std::vector<bool> modes_;
  FdWatch watch_;
};

TEST_F(EventLoopPollTest, AWindowWithoutProgressPollsThenTellsAndBlocks) {
  loop_->SetPollMaxNs(2'000'000);  // 2 ms
  Watch();
  const absl::Time t0 = absl::Now();
  ASSERT_TRUE(loop_->RunOnce(absl::Milliseconds(20)).ok());
  const absl::Duration took = absl::Now() - t0;
  EXPECT_THAT(modes_, ElementsAre(true, false));  // began, ended
  EXPECT_GT(polls_, 2);                           // polled during the window, then once more
  EXPECT_GE(took, absl::Milliseconds(20));        // then blocked for the timeout
}

TEST_F(EventLoopPollTest, ProgressEndsTheWindowWithoutBlockingAndPollingGoesOn) {
  loop_->SetPollMaxNs(50'000'000);  // 50 ms: progress must end it long before
  Watch();
  work_ = true;
  const absl::Time t0 = absl::Now();
  ASSERT_TRUE(loop_->RunOnce(absl::InfiniteDuration()).ok());
  EXPECT_LT(absl::Now() - t0, absl::Milliseconds(40));
  EXPECT_THAT(modes_, ElementsAre(true));  // still polling: the driver's kicks stay off
  // Work found in a later window is served there, without the notifier.
  std::thread producer([this] {
    absl::SleepFor(absl::Milliseconds(5));
    work_ = true;
  });
  ASSERT_TRUE(loop_->RunOnce(absl::Seconds(2)).ok());
  producer.join();
  EXPECT_FALSE(work_.load());
  EXPECT_EQ(rang_, 0);
  EXPECT_THAT(modes_, ElementsAre(true));
}

TEST_F(EventLoopPollTest, ANotifierStillWakesTheLoopAfterAWindow) {
  loop_->SetPollMaxNs(100'000);
  Watch();
  std::thread setter([this] {
    absl::SleepFor(absl::Milliseconds(20));
    notifier_.Set();
  });
  ASSERT_TRUE(loop_->RunOnce(absl::Seconds(5)).ok());
  setter.join();
  EXPECT_EQ(rang_, 1);
  EXPECT_THAT(modes_, ElementsAre(true, false));
}

// Posted work and a quit do not wait out a window: a long one ends as soon as they arrive.
TEST_F(EventLoopPollTest, PostedWorkAndAQuitEndALongWindowAtOnce) {
  loop_->SetPollMaxNs(10'000'000'000);  // 10 s
  Watch();
  bool ran = false;
  std::thread poster([&] {
    absl::SleepFor(absl::Milliseconds(20));
    loop_->Post([&ran] { ran = true; });
  });
  absl::Time t0 = absl::Now();
  ASSERT_TRUE(loop_->RunOnce(absl::Seconds(30)).ok());
  poster.join();
  EXPECT_TRUE(ran);
  EXPECT_LT(absl::Now() - t0, absl::Seconds(5));
  EXPECT_THAT(modes_, ElementsAre(true));  // still polling: nothing said it had ended
  std::thread quitter([&] {
    absl::SleepFor(absl::Milliseconds(20));
    loop_->Quit();
  });
  t0 = absl::Now();
  ASSERT_TRUE(loop_->Run().ok());
  quitter.join();
  EXPECT_LT(absl::Now() - t0, absl::Seconds(5));
}

TEST_F(EventLoopPollTest, AZeroWindowNeverPolls) {
  Watch();
  ASSERT_TRUE(loop_->RunOnce(absl::Milliseconds(5)).ok());
  EXPECT_EQ(polls_, 0);
  EXPECT_TRUE(modes_.empty());
}

TEST_F(EventLoopPollTest, ARemovedPollerIsNotPolledAgain) {
  loop_->SetPollMaxNs(1'000'000);
  Watch();
  ASSERT_TRUE(loop_->RunOnce(absl::Milliseconds(2)).ok());
  const int polls = polls_;
  watch_.Reset();
  ASSERT_TRUE(loop_->RunOnce(absl::Milliseconds(2)).ok());
  EXPECT_EQ(polls_, polls);
}

}  // namespace
}  // namespace vdev
