// Netdev: the base of every -netdev backend (QOM type "netdev"; a backend NAME is the type
// "netdev-NAME"). A backend owns one NetClientState per queue; a NIC links to the backend with
// `netdev=ID` and peers its queue pairs with the backend's queues, one to one.
//
//   -netdev tap,id=n0,ifname=t0,queues=2 -device virtio-net-pci,netdev=n0,mq=on
//   -netdev help                 lists the backends; -netdev tap,help lists tap's options
//
// A backend is created by Machine::ObjectAdd("netdev", ...): properties first, then Complete()
// (which opens fds and registers them on loop()). It cannot be deleted while a NIC uses it.
//
// Thread-safety: control-plane thread, except the clients' data paths (see net.h) and loop().
#ifndef VDEV_NET_NETDEV_H_
#define VDEV_NET_NETDEV_H_

#include <memory>
#include <vector>

#include "core/loop/event_loop.h"
#include "core/loop/iothread.h"
#include "core/qdev/realize_context.h"
#include "net/net.h"
#include "qom/object.h"
#include "qom/user_creatable.h"

namespace vdev::net {

class Netdev : public qom::Object, public qom::UserCreatable, public ContextUser {
 public:
  static constexpr char kTypeName[] = "netdev";
  static constexpr bool kAbstract = true;
  static constexpr const char* kInterfaces[] = {qom::UserCreatable::kTypeName};
  using Parent = qom::Object;
  static void ClassInit(qom::ObjectClass& k);

  ~Netdev() override;

  size_t num_queues() const { return clients_.size(); }
  NetClientState* queue(size_t i) const {
    return i < clients_.size() ? clients_[i].get() : nullptr;
  }

  // A NIC takes the backend (one NIC per backend); false when it is taken.
  bool Claim();
  void Release();
  bool claimed() const { return claimed_; }
  bool CanBeDeleted() const override { return !claimed_; }

  // The loop the backend's fds are served on: its iothread, else the main loop of the machine
  // that created it (its realize context).
  EventLoop& loop();

 protected:
  std::vector<std::unique_ptr<NetClientState>> clients_;
  // Runs `fn` on loop() and waits (fd registrations are loop-thread state).
  void OnLoop(const std::function<void()>& fn) { loop().RunAndWait(fn); }

 private:
  IOThread* iothread_ = nullptr;
  EventLoop* loop_ = nullptr;
  bool claimed_ = false;
};

}  // namespace vdev::net

#endif  // VDEV_NET_NETDEV_H_
