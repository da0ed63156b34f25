// EventLoop: an epoll loop for fd handlers, timers and deferred work (QEMU's AioContext).
//
// A loop multiplexes three kinds of event sources, each registered through a move-only RAII
// token that unregisters on destruction (declare tokens after what their callbacks reference):
//   - FdWatch: a callback for readiness of an fd (EPOLLIN / EPOLLOUT, level-triggered). Interest
//     can change at run time: SetEvents(0) stops dispatch (e.g. while a device cannot receive)
//     and takes the fd out of the epoll set, so even a hung-up peer does not spin the loop.
//   - Timer: a timerfd (CLOCK_MONOTONIC), one-shot or periodic. Overruns coalesce: a late
//     periodic timer runs its callback once.
//   - Defer()/Post(): callbacks run on the loop thread in FIFO order, like bottom halves. An
//     iteration runs only the callbacks queued by the time its epoll_wait returned, so a callback
//     that re-posts itself does not starve fd handlers.
// EventNotifier is an eventfd, the cross-thread doorbell of QEMU's event_notifier.
//
// Busy polling (QEMU's aio polling with poll-max-ns): a notifier watch may carry a poll function
// (is there work? serve it, say whether it made progress) and a mode callback. With
// SetPollMaxNs(ns > 0), an iteration that would block first calls the poll functions for up to
// ns, telling the watches that polling began (a virtqueue then suppresses the driver's kicks);
// progress ends the window early (the iteration then serves fds and deferred work without
// blocking, and the next one polls again); a window without progress tells the watches that
// polling ended, polls once more (work may have arrived as kicks were re-enabled) and blocks.
// Fd handlers and deferred work wait at most one window.
//
// One iteration (RunOnce) is: one epoll_wait, then the fd and timer callbacks that are ready,
// then the deferred batch. Callbacks may add and remove any registration, including their own:
// a registration removed during an iteration is skipped for the rest of it and freed at its end.
// Errors: syscall failures are statuses naming the call; broken API contracts (a token used on
// the wrong thread, a loop destroyed before its tokens, RunOnce re-entered) are CHECKs.
//
// Example:
//   VDEV_ASSIGN_OR_RETURN(std::unique_ptr<EventLoop> loop, EventLoop::Create());
//   VDEV_ASSIGN_OR_RETURN(FdWatch rx, loop->WatchFd(tap.get(), EPOLLIN, [&](uint32_t revents) {
//     DrainTap();
//   }));
//   VDEV_ASSIGN_OR_RETURN(Timer t, loop->AddTimer([&] { Coalesce(); }));
//   t.Arm(absl::Microseconds(50));
//   rx.SetEvents(0);          // the guest has no buffers: stop reading
//   loop->Post([&] { ... });  // from any thread
//   VDEV_RETURN_IF_ERROR(loop->Run());  // until some thread calls loop->Quit()
//
// Thread-safety: Post/Defer, RunAndWait, Quit, InLoopThread and EventNotifier::Set are
// thread-safe; all else (FdWatch and Timer too) is loop-thread only, or any one thread while idle.
#ifndef VDEV_CORE_LOOP_EVENT_LOOP_H_
#define VDEV_CORE_LOOP_EVENT_LOOP_H_

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/base/unique_fd.h"

namespace vdev {

class EventLoop;

namespace internal {
struct LoopEntry;  // one registration; owned by its EventLoop
}  // namespace internal

// An eventfd (EFD_NONBLOCK | EFD_CLOEXEC) used as a level-triggered doorbell. Move-only.
// Thread-safety: Set() is thread-safe; TestAndClear() is for the one consumer.
class EventNotifier {
 public:
  EventNotifier() = default;  // invalid until assigned from Create()
  static absl::StatusOr<EventNotifier> Create();

  // Rings the doorbell. Setting an already-set notifier keeps it set.
  void Set();
  // True when the notifier was set; clears it.
  bool TestAndClear();
  int fd() const { return fd_.get(); }
  bool valid() const { return fd_.valid(); }

 private:
  explicit EventNotifier(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

// Registration of an fd handler; unregisters on destruction or Reset(). Move-only.
class FdWatch {
 public:
  FdWatch() = default;
  FdWatch(FdWatch&& other) noexcept;
  FdWatch& operator=(FdWatch&& other) noexcept;
  ~FdWatch() { Reset(); }

  // Changes the interest set (EPOLLIN, EPOLLOUT, or 0 to pause). An event of the old interest
  // still pending in the current iteration is not dispatched. Errors come from epoll_ctl.
  absl::Status SetEvents(uint32_t events);
  uint32_t events() const;
  // Unregisters; the callback will not run again. Safe from inside any callback, including this
  // watch's own (the callback object stays alive until the current iteration ends).
  void Reset();
  bool active() const { return entry_ != nullptr; }

 private:
  friend class EventLoop;
  FdWatch(EventLoop* loop, internal::LoopEntry* entry) : loop_(loop), entry_(entry) {}
  EventLoop* loop_ = nullptr;
  internal::LoopEntry* entry_ = nullptr;
};

// A timerfd-backed timer; disarms and unregisters on destruction or Reset(). Move-only.
class Timer {
 public:
  Timer() = default;
  Timer(Timer&& other) noexcept;
  Timer& operator=(Timer&& other) noexcept;
  ~Timer() { Reset(); }

  // (Re)arms: first expiry after `after` (<= 0: as soon as possible; infinite: disarm), then
  // every `period` when positive and finite. Replaces any previous arming, including an expiry
  // that is due but not yet dispatched.
  void Arm(absl::Duration after, absl::Duration period = absl::ZeroDuration());
  // Disarms; a due but undispatched expiry is dropped.
  void Cancel();
  // True while an expiry is pending: one-shot timers disarm before their callback runs (so it may
  // re-arm), periodic ones stay armed.
  bool armed() const;
  void Reset();
  bool active() const { return entry_ != nullptr; }

 private:
  friend class EventLoop;
  Timer(EventLoop* loop, internal::LoopEntry* entry) : loop_(loop), entry_(entry) {}
  EventLoop* loop_ = nullptr;
  internal::LoopEntry* entry_ = nullptr;
};

// Every FdWatch and Timer must be destroyed before their loop (CHECKed). Callbacks posted but not
// yet run when the loop is destroyed are destroyed without running.
class EventLoop {
 public:
  static absl::StatusOr<std::unique_ptr<EventLoop>> Create();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;
  ~EventLoop();

  // Calls `cb(revents)` while `fd` is ready for `events` (EPOLLIN | EPOLLOUT; 0 registers the
  // watch paused). revents may also carry EPOLLERR / EPOLLHUP; a handler that sees them should
  // stop watching. `fd` stays owned by the caller and must stay open while watched. An fd can be
  // watched once per loop (AlreadyExists otherwise); regular files cannot be (PermissionDenied).
  absl::StatusOr<FdWatch> WatchFd(int fd, uint32_t events, std::function<void(uint32_t)> cb);
  // Calls `cb` each time `notifier` is set, after clearing it. `notifier` must outlive the watch.
  absl::StatusOr<FdWatch> WatchNotifier(EventNotifier& notifier, std::function<void()> cb);
  // The same with a poll function and a mode callback for busy polling (see the file comment):
  // `poll` serves what it finds and returns whether it made progress; `polling(true / false)`
  // when a polling window starts / ends. Both run on the loop thread.
  struct Polling {
    std::function<bool()> poll;
    std::function<void(bool)> polling;
  };
  absl::StatusOr<FdWatch> WatchNotifier(EventNotifier& notifier, std::function<void()> cb,
                                        Polling polling);
  // The busy-poll window in ns (0: never poll). Thread-safe; takes effect at the next iteration.
  void SetPollMaxNs(uint64_t ns) { poll_max_ns_.store(ns, std::memory_order_relaxed); }
  uint64_t poll_max_ns() const { return poll_max_ns_.load(std::memory_order_relaxed); }
  // A disarmed timer that calls `cb` on the loop thread when it expires.
  absl::StatusOr<Timer> AddTimer(std::function<void()> cb);

  // Runs `fn` on the loop thread in a later iteration, after everything posted before it.
  // Thread-safe; wakes the loop. Defer is the same call, named for use from the loop thread.
  void Post(std::function<void()> fn);
  void Defer(std::function<void()> fn) { Post(std::move(fn)); }
  // Runs `fn` on the loop thread and waits for it: inline when InLoopThread(), otherwise posted,
  // blocking until the loop runs it. A thread about to run the loop is not the loop thread until
  // its first iteration (IOThread::Complete() waits for that).
  void RunAndWait(const std::function<void()>& fn);

  // One iteration: waits up to `timeout` (0: poll; infinite: until something happens; negative
  // counts as 0) and dispatches. The calling thread becomes the loop thread. Not reentrant.
  absl::Status RunOnce(absl::Duration timeout);
  // Iterates until Quit(), then returns (OK unless epoll_wait failed). Each Quit() ends one Run();
  // one that comes before Run() makes it return at once.
  absl::Status Run();
  // Thread-safe. Run() returns once the current iteration is over.
  void Quit();
  // True on the thread running the loop; while none runs it, on the thread that ran it last
  // (the creating thread before the first run).
  bool InLoopThread() const {
    return owner_.load(std::memory_order_acquire) == std::this_thread::get_id();
  }

 private:
  friend class FdWatch;
  friend class Timer;
  EventLoop(UniqueFd epoll_fd, UniqueFd wake_fd);

  // CHECKs that the caller may touch loop-thread state.
  void CheckLoopThread() const;
  absl::StatusOr<internal::LoopEntry*> AddEntry(int fd, uint32_t events,
                                                std::function<void(uint32_t)> cb,
                                                UniqueFd owned_fd);
  absl::Status SetEntryEvents(internal::LoopEntry* e, uint32_t events);
  void RemoveEntry(internal::LoopEntry* e);
  void ArmTimer(internal::LoopEntry* e, absl::Duration after, absl::Duration period);
  void Wake();
  void DrainWake();
  // The busy-poll window before a blocking wait; true when a poll function made progress.
  bool PollWindow();

  const UniqueFd epoll_fd_;
  const UniqueFd wake_fd_;  // eventfd in the epoll set: rung by Post() and Quit()
  std::atomic<std::thread::id> owner_;
  std::atomic<bool> running_{false};
  std::atomic<bool> quit_{false};
  std::atomic<uint64_t> poll_max_ns_{0};
  // Set by Post() and Quit() before they ring wake_fd_: a poll window ends for them at once.
  std::atomic<bool> wake_signal_{false};

  // Loop-thread state.
  uint64_t next_id_ = 1;  // 0 is the wake fd
  absl::flat_hash_map<uint64_t, std::unique_ptr<internal::LoopEntry>> entries_;
  // Entries removed during an iteration; freed when it ends (their callback may be running).
  std::vector<std::unique_ptr<internal::LoopEntry>> graveyard_;
  size_t num_pollers_ = 0;  // entries with a poll function
  bool polling_ = false;    // inside a run of polling windows (the watches were told)
  std::vector<internal::LoopEntry*> poll_scratch_;

  absl::Mutex mu_;
  std::deque<std::function<void()>> posted_ ABSL_GUARDED_BY(mu_);
  // True when wake_fd_ has been (or is being) rung for posted_ since the loop last took it.
  bool wake_pending_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace vdev

#endif  // VDEV_CORE_LOOP_EVENT_LOOP_H_
