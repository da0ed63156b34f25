// IOThread: "-object iothread,id=io0", a thread running its own EventLoop (QEMU's iothread).
//
// Devices that take an "iothread" link run their data plane (fd handlers, timers, deferred work)
// on the loop of that thread instead of the control-plane thread. Complete() creates the loop and
// starts the thread; destruction quits the loop and joins the thread. An iothread that a device
// links to cannot be deleted (object-del refuses while links point at it), so a device's
// registrations, which it drops on unrealize, never outlive the loop.
//
// poll-max-ns (QEMU's default, 32768) is the loop's busy-poll window (EventLoop::SetPollMaxNs):
// before it blocks, the thread polls the queues of the devices it serves for that long (a fixed
// window, where QEMU grows and shrinks it). 0 turns polling off.
//
// Example:
//   VDEV_ASSIGN_OR_RETURN(qom::Object* o, machine->ObjectAdd("object", "iothread,id=io0"));
//   EventLoop& loop = qom::DynamicCast<IOThread>(o)->loop();
//   absl::StatusOr<FdWatch> w;
//   loop.RunAndWait([&] { w = loop.WatchFd(fd, EPOLLIN, OnReadable); });  // registered on io0
//   VDEV_RETURN_IF_ERROR(w.status());
//   watch_ = std::move(*w);
//   ...
//   loop.RunAndWait([&] { watch_.Reset(); });  // at unrealize, before letting go of io0
//
// Thread-safety: the object (properties, lifecycle) belongs to the control-plane thread; loop()
// may be called from any thread once Complete() has returned, with EventLoop's own contract.
#ifndef VDEV_CORE_LOOP_IOTHREAD_H_
#define VDEV_CORE_LOOP_IOTHREAD_H_

#include <cstdint>
#include <memory>
#include <thread>

#include "absl/status/status.h"
#include "core/loop/event_loop.h"
#include "qom/object.h"
#include "qom/user_creatable.h"

namespace vdev {

class IOThread : public qom::Object, public qom::UserCreatable {
 public:
  static constexpr char kTypeName[] = "iothread";
  static constexpr const char* kInterfaces[] = {qom::UserCreatable::kTypeName};
  using Parent = qom::Object;
  static void ClassInit(qom::ObjectClass& k);

  IOThread() = default;
  ~IOThread() override;  // quits the loop and joins the thread

  // Creates the loop and starts the thread; when it returns, the new thread is the loop thread.
  // FailedPrecondition when already started; syscall and thread-creation failures as statuses.
  absl::Status Complete() override;

  // The thread's loop. CHECKs that Complete() succeeded.
  EventLoop& loop();
  bool started() const { return loop_ != nullptr; }
  uint64_t poll_max_ns() const { return poll_max_ns_; }

 private:
  uint64_t poll_max_ns_ = 0;
  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;  // runs loop_; joined by the destructor before loop_ goes
};

}  // namespace vdev

#endif  // VDEV_CORE_LOOP_IOTHREAD_H_
