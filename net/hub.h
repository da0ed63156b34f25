// Hubs (QEMU's `hub`): every frame that enters one port leaves by all the others, like an
// Ethernet repeater. A hub exists while it has ports; ports name it by number.
//
//   -netdev hubport,id=p0,hubid=0 -netdev hubport,id=p1,hubid=0
//   -device virtio-net-pci,netdev=p0 -device virtio-net-pci,netdev=p1     two NICs on one hub
//   -netdev tap,id=t0,... -netdev hubport,id=p2,hubid=0,netdev=t0          a backend on the hub
//
// Thread-safety: ports may receive on any thread; the port list has its own lock.
#ifndef VDEV_NET_HUB_H_
#define VDEV_NET_HUB_H_

#include <cstdint>
#include <utility>

#include "net/netdev.h"

namespace vdev::net {

class HubPort : public Netdev {
 public:
  static constexpr char kTypeName[] = "netdev-hubport";
  using Parent = Netdev;
  static void ClassInit(qom::ObjectClass& k);

  ~HubPort() override;
  absl::Status Complete() override;

  uint32_t hubid() const { return hubid_; }
  // Ports currently on hub `hubid` of this port's machine.
  size_t PortCount(uint32_t hubid) const;

 private:
  class Client;
  uint32_t hubid_ = 0;
  Netdev* netdev_ = nullptr;  // a backend this port is wired to
  bool registered_ = false;
  std::pair<const void*, uint32_t> key_{nullptr, 0};
};

}  // namespace vdev::net

#endif  // VDEV_NET_HUB_H_
