// RealizeContext: what the machine lends the devices realized in it, for their lifetime. QEMU
// devices reach these through globals (qemu_get_aio_context()); here the machine hands them over
// when it realizes a device, and a device realized by another (a proxy's virtio backend, a device
// on a bridge's bus) inherits its parent's. A VMM that realizes devices without a Machine can
// implement it itself.
//
//   absl::Status MyDevice::Realize() {
//     loop_ = &main_loop();        // DeviceState::main_loop(): the context's, or a process-wide
//     one
//     ...
//   }
//
// Thread-safety: main_loop() may be called from any thread; the loop is started on first use.
#ifndef VDEV_CORE_QDEV_REALIZE_CONTEXT_H_
#define VDEV_CORE_QDEV_REALIZE_CONTEXT_H_

#include "core/loop/event_loop.h"

namespace vdev {

class RealizeContext {
 public:
  virtual ~RealizeContext() = default;
  // The loop that serves host fds of devices and backends not linked to an iothread.
  virtual EventLoop& main_loop() = 0;
};

// The same for objects that are not devices but serve fds, such as netdevs: the machine that
// creates one (-netdev, netdev_add) hands it its context before Complete(), as it hands a device
// its context at realize. An object created outside any machine uses ProcessMainLoop().
class ContextUser {
 public:
  virtual ~ContextUser() = default;
  void set_realize_context(RealizeContext* context) { context_ = context; }
  RealizeContext* realize_context() const { return context_; }
  EventLoop& main_loop() const;

 private:
  RealizeContext* context_ = nullptr;
};

// A process-wide loop thread, started on first use: the main loop of devices and objects that are
// realized outside any machine (unit tests, a VMM's own devices).
EventLoop& ProcessMainLoop();

}  // namespace vdev

#endif  // VDEV_CORE_QDEV_REALIZE_CONTEXT_H_
