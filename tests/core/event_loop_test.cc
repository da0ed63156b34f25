#include "core/loop/event_loop.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "core/loop/iothread.h"
#include "core/qdev/machine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_types.h"

namespace vdev {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Pipe MakePipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) ADD_FAILURE() << "pipe2 failed";
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

void WriteByte(const UniqueFd& fd) { ASSERT_EQ(write(fd.get(), "x", 1), 1); }

void ReadByte(const UniqueFd& fd) {
  char c;
  ASSERT_EQ(read(fd.get(), &c, 1), 1);
}

// Threads of this process.
int ThreadCount() {
  int n = 0;
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return -1;
  while (readdir(d) != nullptr) ++n;
  closedir(d);
  return n - 2;  // "." and ".."
}

class EventLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = std::move(*loop);
  }

  // Iterates until `done()` or `limit` passes; returns done().
  bool RunUntil(const std::function<bool()>& done, absl::Duration limit = absl::Seconds(5)) {
    const absl::Time deadline = absl::Now() + limit;
    while (!done() && absl::Now() < deadline) {
      absl::Status s = loop_->RunOnce(absl::Milliseconds(10));
      if (!s.ok()) {
        ADD_FAILURE() << s;
        return false;
      }
    }
    return done();
  }

  // Iterates for `d` regardless of events.
  void RunFor(absl::Duration d) {
    RunUntil([] { return false; }, d);
  }

  std::unique_ptr<EventLoop> loop_;
};

// ---- fd handlers ----

TEST_F(EventLoopTest, FdHandlerRunsWhenPipeBecomesReadable) {
  Pipe p = MakePipe();
  uint32_t seen = 0;
  auto watch = loop_->WatchFd(p.read.get(), EPOLLIN, [&](uint32_t revents) {
    seen = revents;
    ReadByte(p.read);
  });
  ASSERT_TRUE(watch.ok()) << watch.status();

  ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());
  EXPECT_EQ(seen, 0u);

  WriteByte(p.write);
  ASSERT_TRUE(loop_->RunOnce(absl::Seconds(5)).ok());
  EXPECT_EQ(seen, static_cast<uint32_t>(EPOLLIN));
}

TEST_F(EventLoopTest, SetEventsZeroPausesDispatchAndReenablingResumes) {
  Pipe p = MakePipe();
  int calls = 0;
  auto watch = loop_->WatchFd(p.read.get(), EPOLLIN, [&](uint32_t) { ++calls; });
  ASSERT_TRUE(watch.ok());
  WriteByte(p.write);  // never read: level-triggered, stays ready

  ASSERT_TRUE(watch->SetEvents(0).ok());
  EXPECT_EQ(watch->events(), 0u);
  ASSERT_TRUE(loop_->RunOnce(absl::Milliseconds(20)).ok());
  EXPECT_EQ(calls, 0);

  ASSERT_TRUE(watch->SetEvents(EPOLLIN).ok());
  ASSERT_TRUE(loop_->RunOnce(absl::Seconds(5)).ok());
  EXPECT_EQ(calls, 1);
}

TEST_F(EventLoopTest, PausedWatchIgnoresHangUp) {
  Pipe p = MakePipe();
  int calls = 0;
  auto watch = loop_->WatchFd(p.read.get(), EPOLLIN, [&](uint32_t) { ++calls; });
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(watch->SetEvents(0).ok());
  p.write.Reset();  // EPOLLHUP on the read end, which epoll reports whatever the interest

  ASSERT_TRUE(loop_->RunOnce(absl::Milliseconds(20)).ok());
  EXPECT_EQ(calls, 0);
}

TEST_F(EventLoopTest, HandlerSeesHangUpWhenWriterCloses) {
  Pipe p = MakePipe();
  uint32_t seen = 0;
  auto watch = loop_->WatchFd(p.read.get(), EPOLLIN, [&](uint32_t revents) { seen = revents; });
  ASSERT_TRUE(watch.ok());
  p.write.Reset();

  ASSERT_TRUE(loop_->RunOnce(absl::Seconds(5)).ok());
  EXPECT_TRUE(seen & EPOLLHUP);
}

TEST_F(EventLoopTest, WatchRemovedInsideItsOwnCallbackDoesNotRunAgain) {
  Pipe p = MakePipe();
  int calls = 0;
  FdWatch watch;
  auto w = loop_->WatchFd(p.read.get(), EPOLLIN, [&](uint32_t) {
    ++calls;
    watch.Reset();  // destroys this very callback's registration
  });
  ASSERT_TRUE(w.ok());
  watch = std::move(*w);
  WriteByte(p.write);  // never read

  ASSERT_TRUE(loop_->RunOnce(absl::Seconds(5)).ok());
  ASSERT_TRUE(loop_->RunOnce(absl::Milliseconds(20)).ok());
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(watch.active());
}

TEST_F(EventLoopTest, WatchRemovedByAnotherCallbackInTheSameBatchIsSkipped) {
  Pipe a = MakePipe();
  Pipe b = MakePipe();
  FdWatch wa;
  FdWatch wb;
  std::vector<std::string> ran;
  auto ra = loop_->WatchFd(a.read.get(), EPOLLIN, [&](uint32_t) {
    ran.push_back("a");
    ReadByte(a.read);
    wb.Reset();
  });
  auto rb = loop_->WatchFd(b.read.get(), EPOLLIN, [&](uint32_t) {
    ran.push_back("b");
    ReadByte(b.read);
    wa.Reset();
  });
  ASSERT_TRUE(ra.ok() && rb.ok());
  wa = std::move(*ra);
  wb = std::move(*rb);
  WriteByte(a.write);
  WriteByte(b.write);  // both ready in one epoll batch: whichever runs first removes the other

  ASSERT_TRUE(loop_->RunOnce(absl::Seconds(5)).ok());
  ASSERT_TRUE(loop_->RunOnce(absl::Milliseconds(20)).ok());
  EXPECT_EQ(ran.size(), 1u);
}

TEST_F(EventLoopTest, WatchingTheSameFdTwiceIsAlreadyExists) {
  Pipe p = MakePipe();
  auto first = loop_->WatchFd(p.read.get(), EPOLLIN, [](uint32_t) {});
  ASSERT_TRUE(first.ok());

  auto second = loop_->WatchFd(p.read.get(), EPOLLIN, [](uint32_t) {});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(second.status().message(), HasSubstr("epoll_ctl(EPOLL_CTL_ADD, fd "));
}

TEST_F(EventLoopTest, WatchingARegularFileIsRefused) {
  auto file = UniqueFd::Open("/proc/self/exe", O_RDONLY);
  ASSERT_TRUE(file.ok()) << file.status();

  auto watch = loop_->WatchFd(file->get(), EPOLLIN, [](uint32_t) {});
  EXPECT_EQ(watch.status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(EventLoopTest, UnsupportedEventBitsAreInvalidArgument) {
  Pipe p = MakePipe();
  auto watch = loop_->WatchFd(p.read.get(), EPOLLIN | EPOLLET, [](uint32_t) {});
  EXPECT_EQ(watch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(watch.status().message(), "fd watch: unsupported epoll events 0x80000000");
}

// ---- notifiers ----

TEST_F(EventLoopTest, NotifierTestAndClearReportsWhetherItWasSet) {
  auto n = EventNotifier::Create();
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_FALSE(n->TestAndClear());
  n->Set();
  n->Set();
  EXPECT_TRUE(n->TestAndClear());
  EXPECT_FALSE(n->TestAndClear());
}

TEST_F(EventLoopTest, NotifierSetFromAnotherThreadWakesRun) {
  auto n = EventNotifier::Create();
  ASSERT_TRUE(n.ok());
  int calls = 0;
  auto watch = loop_->WatchNotifier(*n, [&] {
    ++calls;
    loop_->Quit();
  });
  ASSERT_TRUE(watch.ok()) << watch.status();

  std::thread setter([&] { n->Set(); });
  EXPECT_TRUE(loop_->Run().ok());
  setter.join();
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(n->TestAndClear());  // the watch cleared it
}

// ---- timers ----

TEST_F(EventLoopTest, OneShotTimerFiresOnce) {
  int fired = 0;
  auto timer = loop_->AddTimer([&] { ++fired; });
  ASSERT_TRUE(timer.ok()) << timer.status();
  EXPECT_FALSE(timer->armed());

  timer->Arm(absl::Milliseconds(1));
  EXPECT_TRUE(timer->armed());
  ASSERT_TRUE(RunUntil([&] { return fired > 0; }));
  RunFor(absl::Milliseconds(30));
  EXPECT_EQ(fired, 1);
  EXPECT_FALSE(timer->armed());
}

TEST_F(EventLoopTest, PeriodicTimerFiresRepeatedly) {
  int fired = 0;
  auto timer = loop_->AddTimer([&] { ++fired; });
  ASSERT_TRUE(timer.ok());

  timer->Arm(absl::Milliseconds(1), absl::Milliseconds(2));
  ASSERT_TRUE(RunUntil([&] { return fired >= 5; }));
  EXPECT_TRUE(timer->armed());
}

TEST_F(EventLoopTest, CancelledTimerDoesNotFire) {
  int fired = 0;
  auto timer = loop_->AddTimer([&] { ++fired; });
  ASSERT_TRUE(timer.ok());

  timer->Arm(absl::Milliseconds(5));
  timer->Cancel();
  EXPECT_FALSE(timer->armed());
  RunFor(absl::Milliseconds(30));
  EXPECT_EQ(fired, 0);
}

TEST_F(EventLoopTest, CancelDropsAnExpiryThatIsDueButNotDispatched) {
  int fired = 0;
  auto timer = loop_->AddTimer([&] { ++fired; });
  ASSERT_TRUE(timer.ok());

  timer->Arm(absl::ZeroDuration());
  absl::SleepFor(absl::Milliseconds(5));  // expired, nobody has run the loop
  timer->Cancel();
  RunFor(absl::Milliseconds(20));
  EXPECT_EQ(fired, 0);
}

TEST_F(EventLoopTest, OneShotTimerCanRearmFromItsCallback) {
  int fired = 0;
  Timer timer;
  auto t = loop_->AddTimer([&] {
    if (++fired < 3) timer.Arm(absl::Milliseconds(1));
  });
  ASSERT_TRUE(t.ok());
  timer = std::move(*t);

  timer.Arm(absl::Milliseconds(1));
  ASSERT_TRUE(RunUntil([&] { return fired == 3; }));
  RunFor(absl::Milliseconds(20));
  EXPECT_EQ(fired, 3);
}

// ---- deferred and posted work ----

TEST_F(EventLoopTest, DeferredCallbacksRunInFifoOrder) {
  std::vector<int> order;
  for (int i = 0; i < 5; ++i) loop_->Defer([&order, i] { order.push_back(i); });

  ASSERT_TRUE(loop_->RunOnce(absl::ZeroDuration()).ok());
  EXPECT_THAT(order, ElementsAre(0, 1, 2, 3, 4));
}

TEST_F(EventLoopTest, SelfRepostingDeferredCallbackDoesNotStarveFdHandler) {
  int spins = 0;
  std::function<void()> again = [&] {
    ++spins;
    loop_->Defer(again);
  };
  loop_->Defer(again);
  Pipe p = MakePipe();
  bool fd_ran = false;
  auto watch = loop_->WatchFd(p.read.get(), EPOLLIN, [&](uint32_t) {
    fd_ran = true;
    ReadByte(p.read);
  });
  ASSERT_TRUE(watch.ok());
  WriteByte(p.write);

  ASSERT_TRUE(loop_->RunOnce(absl::Seconds(5)).ok());
  EXPECT_TRUE(fd_ran);
  EXPECT_EQ(spins, 1);  // one run per iteration, never an endless batch

  fd_ran = false;
  WriteByte(p.write);
  ASSERT_TRUE(loop_->RunOnce(absl::Seconds(5)).ok());
  EXPECT_TRUE(fd_ran);
  EXPECT_EQ(spins, 2);
}

TEST_F(EventLoopTest, PostsFromFourThreadsAllRunInPerThreadOrder) {
  constexpr int kThreads = 4;
  constexpr int kPosts = 1000;
  int ran = 0;
  int last[kThreads] = {-1, -1, -1, -1};
  bool in_order = true;
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&, t] {
      for (int i = 0; i < kPosts; ++i) {
        loop_->Post([&, t, i] {
          in_order = in_order && last[t] == i - 1;
          last[t] = i;
          if (++ran == kThreads * kPosts) loop_->Quit();
        });
      }
    });
  }

  EXPECT_TRUE(loop_->Run().ok());
  for (std::thread& t : posters) t.join();
  EXPECT_EQ(ran, kThreads * kPosts);
  EXPECT_TRUE(in_order);
}

TEST_F(EventLoopTest, QuitFromAnotherThreadStopsRun) {
  std::atomic<bool> quit_sent{false};
  std::thread quitter([&] {
    absl::SleepFor(absl::Milliseconds(20));
    quit_sent = true;
    loop_->Quit();
  });

  EXPECT_TRUE(loop_->Run().ok());
  EXPECT_TRUE(quit_sent);
  quitter.join();
}

TEST_F(EventLoopTest, QuitBeforeRunMakesRunReturnAtOnce) {
  loop_->Quit();
  EXPECT_TRUE(loop_->Run().ok());
}

TEST_F(EventLoopTest, InLoopThreadIsTrueOnlyOnTheRunningThread) {
  bool in_callback = false;
  loop_->Post([&] {
    in_callback = loop_->InLoopThread();
    loop_->Quit();
  });
  bool seen_from_outside = true;
  std::thread runner([&] { ASSERT_TRUE(loop_->Run().ok()); });
  runner.join();
  seen_from_outside = loop_->InLoopThread();

  EXPECT_TRUE(in_callback);
  EXPECT_FALSE(seen_from_outside);  // the runner ran it last
}

TEST_F(EventLoopTest, RunAndWaitRunsOnTheLoopThreadAndWaits) {
  // Until the runner's first iteration, this thread (the creator) is still the loop thread.
  absl::Notification running;
  loop_->Post([&] { running.Notify(); });
  std::thread runner([&] { ASSERT_TRUE(loop_->Run().ok()); });
  running.WaitForNotification();
  std::thread::id ran_on;

  loop_->RunAndWait([&] { ran_on = std::this_thread::get_id(); });
  EXPECT_EQ(ran_on, runner.get_id());
  loop_->Quit();
  runner.join();
}

// ---- resources ----

TEST(EventLoopResourcesTest, DestroyingLoopAndRegistrationsLeaksNoFd) {
  const int before = testing::OpenFdCount();
  {
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    Pipe p = MakePipe();
    auto n = EventNotifier::Create();
    ASSERT_TRUE(n.ok());
    auto fd_watch = (*loop)->WatchFd(p.read.get(), EPOLLIN, [](uint32_t) {});
    auto n_watch = (*loop)->WatchNotifier(*n, [] {});
    auto timer = (*loop)->AddTimer([] {});
    Timer dropped_in_callback;
    auto t2 = (*loop)->AddTimer([&] { dropped_in_callback.Reset(); });
    ASSERT_TRUE(fd_watch.ok() && n_watch.ok() && timer.ok() && t2.ok());
    dropped_in_callback = std::move(*t2);
    timer->Arm(absl::Milliseconds(1), absl::Milliseconds(1));
    dropped_in_callback.Arm(absl::ZeroDuration());
    n->Set();
    WriteByte(p.write);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE((*loop)->RunOnce(absl::Milliseconds(5)).ok());
    EXPECT_FALSE(dropped_in_callback.active());
    EXPECT_GT(testing::OpenFdCount(), before);
  }
  EXPECT_EQ(testing::OpenFdCount(), before);
}

// ---- IOThread ----

class IOThreadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = Machine::Create("none");
    ASSERT_TRUE(m.ok()) << m.status();
    machine_ = std::move(*m);
  }
  IOThread* AddIOThread(absl::string_view options) {
    auto o = machine_->ObjectAdd("object", options);
    if (!o.ok()) {
      ADD_FAILURE() << o.status();
      return nullptr;
    }
    return qom::DynamicCast<IOThread>(*o);
  }
  std::unique_ptr<Machine> machine_;
};

TEST_F(IOThreadTest, PostedCallbackRunsOnTheIOThread) {
  IOThread* io = AddIOThread("iothread,id=io0");
  ASSERT_NE(io, nullptr);
  EXPECT_EQ(io->CanonicalPath(), "/objects/io0");
  absl::Notification ran;
  std::thread::id ran_on;
  bool in_loop = false;

  io->loop().Post([&] {
    ran_on = std::this_thread::get_id();
    in_loop = io->loop().InLoopThread();
    ran.Notify();
  });
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_NE(ran_on, std::this_thread::get_id());
  EXPECT_TRUE(in_loop);
  EXPECT_FALSE(io->loop().InLoopThread());
}

TEST_F(IOThreadTest, ObjectDelJoinsTheThread) {
  IOThread* io = AddIOThread("iothread,id=io0");
  ASSERT_NE(io, nullptr);
  absl::Notification started;
  std::atomic<bool> finished{false};
  io->loop().Post([&] {
    started.Notify();
    absl::SleepFor(absl::Milliseconds(50));
    finished = true;
  });
  started.WaitForNotification();

  ASSERT_TRUE(machine_->ObjectDel("object", "io0").ok());
  EXPECT_TRUE(finished);  // the callback in flight completed before ObjectDel returned
  EXPECT_FALSE(machine_->root().Resolve("/objects/io0").ok());
}

TEST_F(IOThreadTest, DeletingAnIOThreadLeavesNoThreadOrFdBehind) {
  const int threads = ThreadCount();
  const int fds = testing::OpenFdCount();
  ASSERT_NE(AddIOThread("iothread,id=io0"), nullptr);
  EXPECT_EQ(ThreadCount(), threads + 1);

  ASSERT_TRUE(machine_->ObjectDel("object", "io0").ok());
  // The kernel drops a joined thread from /proc a moment after pthread_join returns.
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (ThreadCount() != threads && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(ThreadCount(), threads);
  EXPECT_EQ(testing::OpenFdCount(), fds);
}

TEST_F(IOThreadTest, FdHandlerRegisteredThroughRunAndWaitRunsOnTheIOThread) {
  IOThread* io = AddIOThread("iothread,id=io0");
  ASSERT_NE(io, nullptr);
  EventLoop& loop = io->loop();
  Pipe p = MakePipe();
  absl::Notification readable;
  std::thread::id ran_on;
  FdWatch watch;
  absl::Status status;

  loop.RunAndWait([&] {
    auto w = loop.WatchFd(p.read.get(), EPOLLIN, [&](uint32_t) {
      ran_on = std::this_thread::get_id();
      ReadByte(p.read);
      readable.Notify();
    });
    status = w.status();
    if (w.ok()) watch = std::move(*w);
  });
  ASSERT_TRUE(status.ok()) << status;
  WriteByte(p.write);
  ASSERT_TRUE(readable.WaitForNotificationWithTimeout(absl::Seconds(10)));
  loop.RunAndWait([&] { watch.Reset(); });

  EXPECT_NE(ran_on, std::this_thread::get_id());
}

TEST_F(IOThreadTest, PollMaxNsIsAcceptedAndStored) {
  IOThread* dflt = AddIOThread("iothread,id=io0");
  IOThread* set = AddIOThread("iothread,id=io1,poll-max-ns=1000");
  ASSERT_NE(dflt, nullptr);
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(dflt->GetProperty("poll-max-ns").value(), "32768");
  EXPECT_EQ(set->poll_max_ns(), 1000u);
}

TEST_F(IOThreadTest, CompletingTwiceIsFailedPrecondition) {
  IOThread* io = AddIOThread("iothread,id=io0");
  ASSERT_NE(io, nullptr);

  absl::Status s = io->Complete();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "iothread 'io0': already started");
}

}  // namespace
}  // namespace vdev
