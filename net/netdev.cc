#include "net/netdev.h"

#include "core/qdev/realize_context.h"

namespace vdev::net {

void Netdev::ClassInit(qom::ObjectClass& k) {
  k.description = "network backend";
  k.AddProperty(qom::LinkProp("iothread", &Netdev::iothread_,
                              "serve the backend's fds on this iothread (default: the main loop)"));
}

Netdev::~Netdev() = default;

bool Netdev::Claim() {
  if (claimed_) return false;
  claimed_ = true;
  return true;
}

void Netdev::Release() { claimed_ = false; }

EventLoop& Netdev::loop() {
  if (loop_ == nullptr) loop_ = iothread_ != nullptr ? &iothread_->loop() : &main_loop();
  return *loop_;
}

VDEV_REGISTER_TYPE(Netdev);

}  // namespace vdev::net
