// Character devices (-chardev): the byte-stream endpoints a frontend talks through. One backend
// so far, a unix stream socket, which is what vhost-user runs over:
//
//   -chardev socket,id=c0,path=/run/vhost0.sock              connect to a listening peer
//   -chardev socket,id=c0,path=/run/vhost0.sock,server=on    listen; the peer connects to us
//
// A chardev is created at /chardevs/ID and used by one frontend (e.g. `-netdev
// vhost-user,chardev=c0`), which opens connections through it: in client mode every Open()
// connects anew (reconnecting after the peer went away), in server mode Open() accepts the next
// peer on the socket bound at Complete(). A server unlinks a stale socket file before binding and
// removes its own when destroyed.
//
// Thread-safety: Open() may be called from any one thread at a time.
#ifndef VDEV_CORE_BACKENDS_CHARDEV_H_
#define VDEV_CORE_BACKENDS_CHARDEV_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/base/unique_fd.h"
#include "qom/object.h"
#include "qom/user_creatable.h"

namespace vdev {

class Chardev : public qom::Object, public qom::UserCreatable {
 public:
  static constexpr char kTypeName[] = "chardev";
  static constexpr bool kAbstract = true;
  static constexpr const char* kInterfaces[] = {qom::UserCreatable::kTypeName};
  using Parent = qom::Object;
  static void ClassInit(qom::ObjectClass& k) {}

  // A frontend takes the chardev (one frontend per chardev); false when it is taken.
  bool Claim();
  void Release() { claimed_ = false; }
  bool CanBeDeleted() const override { return !claimed_; }

 private:
  bool claimed_ = false;
};

class ChardevSocket : public Chardev {
 public:
  static constexpr char kTypeName[] = "chardev-socket";
  using Parent = Chardev;
  static void ClassInit(qom::ObjectClass& k);

  ~ChardevSocket() override;
  absl::Status Complete() override;

  // A new connection: client mode connects to `path` (Unavailable when nobody listens); server
  // mode waits up to `timeout` for a peer (DeadlineExceeded).
  absl::StatusOr<UniqueFd> Open(absl::Duration timeout);
  bool server() const { return server_; }
  const std::string& path() const { return path_; }
  // The listening socket (server mode), for frontends that wait for peers on a loop.
  int listen_fd() const { return listen_.get(); }
  // `reconnect=SECONDS`: the longest wait between two reconnection attempts (0: the frontend's
  // default).
  uint32_t reconnect() const { return reconnect_; }

 private:
  std::string path_;
  bool server_ = false;
  uint32_t reconnect_ = 0;
  UniqueFd listen_;
};

}  // namespace vdev

#endif  // VDEV_CORE_BACKENDS_CHARDEV_H_
