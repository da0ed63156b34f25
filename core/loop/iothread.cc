#include "core/loop/iothread.h"

#include <pthread.h>

#include <string>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"

namespace vdev {

namespace {
// QEMU's IOTHREAD_POLL_MAX_NS_DEFAULT.
constexpr uint64_t kDefaultPollMaxNs = 32768;
}  // namespace

void IOThread::ClassInit(qom::ObjectClass& k) {
  k.description = "a thread with its own event loop for device data planes";
  k.AddProperty(qom::Prop("poll-max-ns", &IOThread::poll_max_ns_, kDefaultPollMaxNs,
                          "busy-poll window in ns before the thread blocks (0: never poll)"));
}

IOThread::~IOThread() {
  if (thread_.joinable()) {
    loop_->Quit();
    thread_.join();
  }
}

absl::Status IOThread::Complete() {
  const std::string context = absl::StrCat("iothread '", name(), "'");
  if (loop_ != nullptr) return absl::FailedPreconditionError(context + ": already started");
  auto loop = EventLoop::Create();
  if (!loop.ok()) return Annotate(loop.status(), context);
  loop_ = std::move(*loop);
  loop_->SetPollMaxNs(poll_max_ns_);

  // Linux limits thread names to 15 characters.
  std::string thread_name = absl::StrCat("IO ", name()).substr(0, 15);
  absl::Notification started;
  absl::Status start_status;
  try {
    thread_ = std::thread([this, &started, &start_status, thread_name, context] {
      pthread_setname_np(pthread_self(), thread_name.c_str());
      // A first iteration makes this thread the loop thread before Complete() returns, so that
      // InLoopThread() is false on the caller's side from then on.
      absl::Status s = loop_->RunOnce(absl::ZeroDuration());
      const bool ok = s.ok();
      start_status = s;
      started.Notify();  // Complete()'s locals may be gone from here on
      if (!ok) return;
      s = loop_->Run();
      if (!s.ok()) VDEV_LOG(kError, "%s: event loop stopped: %s", context, s.ToString());
    });
  } catch (const std::system_error& e) {
    loop_.reset();
    return absl::ResourceExhaustedError(
        absl::StrCat(context, ": cannot start a thread: ", e.what()));
  }
  started.WaitForNotification();
  if (!start_status.ok()) {
    thread_.join();
    loop_.reset();
    return Annotate(start_status, context);
  }
  return absl::OkStatus();
}

EventLoop& IOThread::loop() {
  VDEV_CHECK(loop_ != nullptr && "IOThread::loop() before Complete()");
  return *loop_;
}

VDEV_REGISTER_TYPE(IOThread);

}  // namespace vdev
