#include "core/loop/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"

namespace vdev {

namespace internal {
struct LoopEntry {
  uint64_t id = 0;  // epoll_event.data: an id, not a pointer, so stale events cannot dangle
  int fd = -1;
  uint32_t events = 0;  // current interest; 0: not in the epoll set
  std::function<void(uint32_t)> cb;
  UniqueFd owned_fd;                    // a Timer's timerfd
  bool armed = false;                   // Timer only
  bool periodic = false;                // Timer only
  bool removed = false;                 // unregistered during the current iteration
  std::function<bool()> poll;           // busy polling (a notifier watch)
  std::function<void(bool)> poll_mode;  // polling began / ended
};
}  // namespace internal

namespace {

using internal::LoopEntry;

constexpr uint64_t kWakeId = 0;
constexpr int kMaxEvents = 64;
constexpr uint32_t kAllowedEvents = EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP;

int TimeoutMs(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return -1;
  if (d <= absl::ZeroDuration()) return 0;
  // Round up: a 100us timeout must not become a busy poll.
  const int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(d, absl::Milliseconds(1)));
  return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

// Reads an eventfd or timerfd counter. False when nothing was pending.
bool ReadCounter(int fd, uint64_t* value) {
  ssize_t n;
  do {
    n = ::read(fd, value, sizeof(*value));
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(sizeof(*value));
}

// Adds to an eventfd counter. EAGAIN (counter saturated) still leaves it readable.
void WriteCounter(int fd, uint64_t value) {
  ssize_t n;
  do {
    n = ::write(fd, &value, sizeof(value));
  } while (n < 0 && errno == EINTR);
}

const char* EpollOpName(int op) {
  switch (op) {
    case EPOLL_CTL_ADD:
      return "EPOLL_CTL_ADD";
    case EPOLL_CTL_MOD:
      return "EPOLL_CTL_MOD";
    default:
      return "EPOLL_CTL_DEL";
  }
}

absl::Status CheckEvents(uint32_t events) {
  if ((events & ~kAllowedEvents) != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("fd watch: unsupported epoll events 0x%x", events & ~kAllowedEvents));
  }
  return absl::OkStatus();
}

}  // namespace

// ---- EventNotifier ----

absl::StatusOr<EventNotifier> EventNotifier::Create() {
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, "eventfd");
  return EventNotifier(UniqueFd(fd));
}

void EventNotifier::Set() {
  VDEV_CHECK(fd_.valid());
  WriteCounter(fd_.get(), 1);
}

bool EventNotifier::TestAndClear() {
  VDEV_CHECK(fd_.valid());
  uint64_t value;
  return ReadCounter(fd_.get(), &value);
}

// ---- FdWatch ----

FdWatch::FdWatch(FdWatch&& other) noexcept
    : loop_(std::exchange(other.loop_, nullptr)), entry_(std::exchange(other.entry_, nullptr)) {}

FdWatch& FdWatch::operator=(FdWatch&& other) noexcept {
  if (this != &other) {
    Reset();
    loop_ = std::exchange(other.loop_, nullptr);
    entry_ = std::exchange(other.entry_, nullptr);
  }
  return *this;
}

absl::Status FdWatch::SetEvents(uint32_t events) {
  VDEV_CHECK(entry_ != nullptr);
  return loop_->SetEntryEvents(entry_, events);
}

uint32_t FdWatch::events() const { return entry_ != nullptr ? entry_->events : 0; }

void FdWatch::Reset() {
  if (entry_ == nullptr) return;
  loop_->RemoveEntry(std::exchange(entry_, nullptr));
  loop_ = nullptr;
}

// ---- Timer ----

Timer::Timer(Timer&& other) noexcept
    : loop_(std::exchange(other.loop_, nullptr)), entry_(std::exchange(other.entry_, nullptr)) {}

Timer& Timer::operator=(Timer&& other) noexcept {
  if (this != &other) {
    Reset();
    loop_ = std::exchange(other.loop_, nullptr);
    entry_ = std::exchange(other.entry_, nullptr);
  }
  return *this;
}

void Timer::Arm(absl::Duration after, absl::Duration period) {
  VDEV_CHECK(entry_ != nullptr);
  loop_->ArmTimer(entry_, after, period);
}

void Timer::Cancel() {
  VDEV_CHECK(entry_ != nullptr);
  loop_->ArmTimer(entry_, absl::InfiniteDuration(), absl::ZeroDuration());
}

bool Timer::armed() const { return entry_ != nullptr && entry_->armed; }

void Timer::Reset() {
  if (entry_ == nullptr) return;
  loop_->RemoveEntry(std::exchange(entry_, nullptr));
  loop_ = nullptr;
}

// ---- EventLoop ----

absl::StatusOr<std::unique_ptr<EventLoop>> EventLoop::Create() {
  int epfd = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return ErrnoToStatus(errno, "epoll_create1");
  UniqueFd epoll_fd(epfd);
  int wfd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wfd < 0) return ErrnoToStatus(errno, "eventfd");
  UniqueFd wake_fd(wfd);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeId;
  if (::epoll_ctl(epfd, EPOLL_CTL_ADD, wfd, &ev) < 0) {
    return ErrnoToStatus(errno, "epoll_ctl(EPOLL_CTL_ADD)");
  }
  return std::unique_ptr<EventLoop>(new EventLoop(std::move(epoll_fd), std::move(wake_fd)));
}

EventLoop::EventLoop(UniqueFd epoll_fd, UniqueFd wake_fd)
    : epoll_fd_(std::move(epoll_fd)),
      wake_fd_(std::move(wake_fd)),
      owner_(std::this_thread::get_id()) {}

EventLoop::~EventLoop() {
  VDEV_CHECK(!running_.load(std::memory_order_acquire));
  // Unrun callbacks go first: they may own tokens of this loop.
  std::deque<std::function<void()>> unrun;
  {
    absl::MutexLock lock(&mu_);
    unrun.swap(posted_);
  }
  unrun.clear();
  VDEV_CHECK(entries_.empty() && "an FdWatch or Timer outlived its EventLoop");
}

void EventLoop::CheckLoopThread() const {
  VDEV_CHECK(InLoopThread() || !running_.load(std::memory_order_acquire));
}

absl::StatusOr<LoopEntry*> EventLoop::AddEntry(int fd, uint32_t events,
                                               std::function<void(uint32_t)> cb,
                                               UniqueFd owned_fd) {
  CheckLoopThread();
  VDEV_RETURN_IF_ERROR(CheckEvents(events));
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("fd watch: bad fd ", fd));
  auto e = std::make_unique<LoopEntry>();
  e->id = next_id_++;
  e->fd = fd;
  e->cb = std::move(cb);
  e->owned_fd = std::move(owned_fd);
  if (events != 0) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = e->id;
    if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) {
      return ErrnoToStatus(errno, absl::StrCat("epoll_ctl(EPOLL_CTL_ADD, fd ", fd, ")"));
    }
    e->events = events;
  }
  LoopEntry* raw = e.get();
  entries_.emplace(raw->id, std::move(e));
  return raw;
}

absl::Status EventLoop::SetEntryEvents(LoopEntry* e, uint32_t events) {
  CheckLoopThread();
  VDEV_RETURN_IF_ERROR(CheckEvents(events));
  if (events == e->events) return absl::OkStatus();
  // Interest 0 leaves the epoll set entirely: epoll reports EPOLLHUP/EPOLLERR even for an empty
  // interest set, and a paused watch on a hung-up pipe would spin the loop.
  const int op = e->events == 0 ? EPOLL_CTL_ADD : events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = e->id;
  const int r = ::epoll_ctl(epoll_fd_.get(), op, e->fd, &ev);
  const int err = errno;
  if (r < 0 && op != EPOLL_CTL_DEL) {
    return ErrnoToStatus(err, absl::StrCat("epoll_ctl(", EpollOpName(op), ", fd ", e->fd, ")"));
  }
  // A failed DEL (the fd was closed under us) still stops dispatch: interest 0 is never dispatched.
  e->events = events;
  if (r < 0) return ErrnoToStatus(err, absl::StrCat("epoll_ctl(EPOLL_CTL_DEL, fd ", e->fd, ")"));
  return absl::OkStatus();
}

void EventLoop::RemoveEntry(LoopEntry* e) {
  CheckLoopThread();
  // Failure means the fd was closed before its watch; events still queued for it find no entry.
  if (e->events != 0) ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, e->fd, nullptr);
  auto it = entries_.find(e->id);
  VDEV_CHECK(it != entries_.end());
  e->removed = true;
  if (e->poll) --num_pollers_;
  std::unique_ptr<LoopEntry> owned = std::move(it->second);
  entries_.erase(it);
  // During an iteration the entry's callback may be the one running: keep it alive until the end.
  if (running_.load(std::memory_order_relaxed)) graveyard_.push_back(std::move(owned));
}

void EventLoop::ArmTimer(LoopEntry* e, absl::Duration after, absl::Duration period) {
  CheckLoopThread();
  itimerspec spec{};  // all zero: disarm
  const bool arm = after != absl::InfiniteDuration();
  if (arm) {
    // A zero it_value would disarm: "now" is the smallest positive delay.
    spec.it_value = absl::ToTimespec(std::max(after, absl::Nanoseconds(1)));
    if (period > absl::ZeroDuration() && period != absl::InfiniteDuration()) {
      spec.it_interval = absl::ToTimespec(period);
    }
  }
  // Cannot fail: the timerfd is ours and the values were made valid above. Re-arming also zeroes
  // the expiry count, so an expiry that was due but not dispatched is dropped.
  VDEV_CHECK(::timerfd_settime(e->fd, 0, &spec, nullptr) == 0);
  e->armed = arm;
  e->periodic = arm && (spec.it_interval.tv_sec != 0 || spec.it_interval.tv_nsec != 0);
}

absl::StatusOr<FdWatch> EventLoop::WatchFd(int fd, uint32_t events,
                                           std::function<void(uint32_t)> cb) {
  VDEV_ASSIGN_OR_RETURN(LoopEntry * e, AddEntry(fd, events, std::move(cb), UniqueFd()));
  return FdWatch(this, e);
}

absl::StatusOr<FdWatch> EventLoop::WatchNotifier(EventNotifier& notifier,
                                                 std::function<void()> cb) {
  VDEV_CHECK(notifier.valid());
  const int fd = notifier.fd();
  return WatchFd(fd, EPOLLIN, [fd, cb = std::move(cb)](uint32_t) {
    uint64_t value;
    if (ReadCounter(fd, &value)) cb();
  });
}

absl::StatusOr<FdWatch> EventLoop::WatchNotifier(EventNotifier& notifier, std::function<void()> cb,
                                                 Polling polling) {
  VDEV_ASSIGN_OR_RETURN(FdWatch w, WatchNotifier(notifier, std::move(cb)));
  if (polling.poll) {
    w.entry_->poll = std::move(polling.poll);
    w.entry_->poll_mode = std::move(polling.polling);
    ++num_pollers_;
  }
  return w;
}

bool EventLoop::PollWindow() {
  poll_scratch_.clear();
  for (auto& [id, e] : entries_) {
    if (e->poll) poll_scratch_.push_back(e.get());
  }
  auto tell = [this](bool on) {
    for (LoopEntry* e : poll_scratch_) {
      if (!e->removed && e->poll_mode) e->poll_mode(on);
    }
  };
  auto poll_all = [this] {
    // Posted work or a quit waits in epoll: end the window as if a poller made progress.
    bool progress =
        wake_signal_.load(std::memory_order_acquire) || quit_.load(std::memory_order_acquire);
    for (LoopEntry* e : poll_scratch_) {
      if (!e->removed && e->poll()) progress = true;
    }
    return progress;
  };
  if (!polling_) {
    polling_ = true;
    tell(true);
  }
  const absl::Time deadline =
      absl::Now() + absl::Nanoseconds(poll_max_ns_.load(std::memory_order_relaxed));
  do {
    if (poll_all()) return true;
  } while (absl::Now() < deadline);
  polling_ = false;
  tell(false);
  return poll_all();
}

absl::StatusOr<Timer> EventLoop::AddTimer(std::function<void()> cb) {
  CheckLoopThread();
  int tfd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (tfd < 0) return ErrnoToStatus(errno, "timerfd_create");
  VDEV_ASSIGN_OR_RETURN(LoopEntry * e, AddEntry(tfd, EPOLLIN, nullptr, UniqueFd(tfd)));
  e->cb = [e, cb = std::move(cb)](uint32_t) {
    uint64_t expirations;
    // Nothing to read: cancelled or re-armed after epoll_wait saw it ready.
    if (!ReadCounter(e->fd, &expirations)) return;
    if (!e->periodic) e->armed = false;
    cb();  // may destroy the Timer; `e` is not touched afterwards
  };
  return Timer(this, e);
}

void EventLoop::Post(std::function<void()> fn) {
  bool ring = false;
  {
    absl::MutexLock lock(&mu_);
    posted_.push_back(std::move(fn));
    ring = !std::exchange(wake_pending_, true);
    wake_signal_.store(true, std::memory_order_release);
  }
  if (ring) Wake();
}

void EventLoop::RunAndWait(const std::function<void()>& fn) {
  if (InLoopThread()) {
    fn();
    return;
  }
  absl::Notification done;
  Post([&fn, &done] {
    fn();
    done.Notify();
  });
  done.WaitForNotification();
}

void EventLoop::Wake() { WriteCounter(wake_fd_.get(), 1); }

void EventLoop::DrainWake() {
  uint64_t value;
  ReadCounter(wake_fd_.get(), &value);
}

absl::Status EventLoop::RunOnce(absl::Duration timeout) {
  const bool was_running = running_.exchange(true, std::memory_order_acq_rel);
  VDEV_CHECK(!was_running && "EventLoop::RunOnce re-entered or run by two threads");
  owner_.store(std::this_thread::get_id(), std::memory_order_release);

  int wait_ms = TimeoutMs(timeout);
  if (wait_ms != 0 && num_pollers_ > 0 && poll_max_ns_.load(std::memory_order_relaxed) > 0) {
    if (PollWindow()) wait_ms = 0;  // progress: serve the rest without blocking, then poll again
  } else if (polling_ && num_pollers_ == 0) {
    polling_ = false;
  }
  epoll_event events[kMaxEvents];
  int n = ::epoll_wait(epoll_fd_.get(), events, kMaxEvents, wait_ms);
  if (n < 0) {
    const int err = errno;
    if (err != EINTR) {
      running_.store(false, std::memory_order_release);
      return ErrnoToStatus(err, "epoll_wait");
    }
    n = 0;
  }

  // Drain the doorbell before taking the batch: a Post() after the drain either lands in the
  // batch or, finding wake_pending_ cleared, rings again. No wake-up is lost.
  for (int i = 0; i < n; ++i) {
    if (events[i].data.u64 == kWakeId) DrainWake();
  }
  std::deque<std::function<void()>> batch;
  {
    absl::MutexLock lock(&mu_);
    wake_pending_ = false;
    wake_signal_.store(false, std::memory_order_relaxed);
    batch.swap(posted_);
  }

  for (int i = 0; i < n; ++i) {
    const uint64_t id = events[i].data.u64;
    if (id == kWakeId) continue;
    auto it = entries_.find(id);
    if (it == entries_.end()) continue;  // removed earlier in this iteration
    LoopEntry* e = it->second.get();
    // Interest may have changed since epoll_wait: deliver only what is still wanted.
    const uint32_t revents = events[i].events & (e->events | EPOLLERR | EPOLLHUP);
    if (e->events == 0 || revents == 0) continue;
    e->cb(revents);
  }

  // Only what was queued before this point: callbacks posted from here on wait for the next
  // iteration, so a self-reposting callback cannot starve fd handlers.
  for (std::function<void()>& fn : batch) fn();
  batch.clear();

  // Freeing an entry can free captured tokens, which may retire more entries.
  while (!graveyard_.empty()) {
    std::vector<std::unique_ptr<LoopEntry>> dead = std::move(graveyard_);
    graveyard_.clear();
    dead.clear();
  }
  running_.store(false, std::memory_order_release);
  return absl::OkStatus();
}

absl::Status EventLoop::Run() {
  absl::Status status;
  while (!quit_.exchange(false, std::memory_order_acq_rel)) {
    status = RunOnce(absl::InfiniteDuration());
    if (!status.ok()) break;
  }
  return status;
}

void EventLoop::Quit() {
  quit_.store(true, std::memory_order_release);
  Wake();
}

}  // namespace vdev
