#include "core/qdev/realize_context.h"

#include "core/base/logging.h"
#include "core/loop/iothread.h"
#include "qom/object.h"

namespace vdev {

EventLoop& ProcessMainLoop() {
  static IOThread* loop = [] {
    IOThread* t = qom::MakeChecked<IOThread>().release();  // lives as long as the process
    absl::Status s = t->Complete();
    VDEV_CHECK(s.ok() && "cannot start the main loop thread");
    return t;
  }();
  return loop->loop();
}

EventLoop& ContextUser::main_loop() const {
  return context_ != nullptr ? context_->main_loop() : ProcessMainLoop();
}

}  // namespace vdev
