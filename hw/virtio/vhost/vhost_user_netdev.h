// The `vhost-user` netdev: a NIC's data plane runs in a backend process (DPDK's net_vhost,
// OVS-DPDK) that maps guest RAM and serves the rings itself; we keep the control plane.
//
//   -chardev socket,id=c0,path=/run/vhost0.sock[,server=on][,reconnect=SECONDS]
//   -netdev vhost-user,id=n0,chardev=c0[,queues=N]
//   -device virtio-net-pci,netdev=n0[,mq=on]
//
// Complete() connects (or, server=on, waits up to 30 s for the backend) and runs the handshake:
// GET_FEATURES; GET/SET_PROTOCOL_FEATURES (MQ, REPLY_ACK, NET_MTU, RESET_DEVICE,
// CONFIGURE_MEM_SLOTS, as far as the backend offers them); GET_QUEUE_NUM with MQ (the backend
// must serve `queues` pairs); SET_OWNER. The NIC offers the guest only the data-plane features the
// backend has, and hands its rings over at DRIVER_OK (VhostDev).
//
// A backend that hangs up (or stops answering) takes the link down: the NIC takes its rings back
// at the used index in guest memory and tells the guest (link status + config interrupt). The
// netdev reconnects with backoff (50 ms doubling to 1 s, or to `reconnect` seconds), runs the
// handshake again, checks the backend still has every feature the guest negotiated, and the NIC
// hands the rings over again where they were and brings the link back up.
//
// Thread-safety: the vhost operations may be called from any thread (serialised by mu_);
// connection events run on the netdev's loop.
#ifndef VDEV_HW_VIRTIO_VHOST_VHOST_USER_NETDEV_H_
#define VDEV_HW_VIRTIO_VHOST_VHOST_USER_NETDEV_H_

#include <atomic>
#include <memory>
#include <optional>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "core/backends/chardev.h"
#include "hw/virtio/vhost/vhost_dev.h"
#include "hw/virtio/vhost/vhost_user.h"
#include "net/netdev.h"

namespace vdev::vhost {

class VhostUserNetdev : public net::Netdev, public VhostBackend {
 public:
  static constexpr char kTypeName[] = "netdev-vhost-user";
  using Parent = net::Netdev;
  static void ClassInit(qom::ObjectClass& k);

  ~VhostUserNetdev() override;
  absl::Status Complete() override;

  // As of the last handshake.
  uint64_t features() const override;
  uint64_t protocol_features() const;
  bool connected() const override;
  uint64_t connects() const;  // successful handshakes so far
  void SetListener(VhostListener* listener) override;

  // NET_SET_MTU when the backend took NET_MTU.
  absl::Status SetMtu(uint16_t mtu) override;
  // RESET_DEVICE when negotiated (else nothing: the rings are stopped already).
  absl::Status ResetDevice() override;
  // SEND_RARP: the backend announces `mac` on its network (QEMU sends it after a migration for
  // a guest without GUEST_ANNOUNCE). FailedPrecondition when the backend did not take RARP.
  absl::Status SendRarp(const uint8_t mac[6]);

  // VhostBackend. Unavailable while disconnected; a failure that means the backend is gone
  // (hang-up, timeout) starts the disconnect path.
  absl::Status SetFeatures(uint64_t features) override;
  absl::Status SetMemTable(const GuestMemory& mem) override;
  absl::Status SetupRing(uint32_t index, const VringSetup& ring) override;
  absl::Status SetVringEnable(uint32_t index, bool enable) override;
  absl::StatusOr<uint32_t> GetVringBase(uint32_t index) override;

 private:
  class Client;
  // Handshake on a fresh connection; the client on success.
  absl::StatusOr<VhostUserClient> Handshake(UniqueFd sock);
  // Runs `op` on the connected client; on a dead connection schedules Disconnected().
  absl::Status Op(const std::function<absl::Status(VhostUserClient&)>& op);
  // On the loop: the backend of connection `generation` (a value of connects_) is gone.
  void Disconnected(uint64_t generation);
  void TryReconnect();
  void Adopt(VhostUserClient c);  // on the loop
  void SetLinkDown(bool down);

  ChardevSocket* chardev_ = nullptr;
  uint32_t queues_ = 1;
  bool claimed_chardev_ = false;

  mutable absl::Mutex mu_;
  std::optional<VhostUserClient> client_ ABSL_GUARDED_BY(mu_);
  uint64_t features_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t protocol_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t connects_ ABSL_GUARDED_BY(mu_) = 0;
  VhostListener* listener_ ABSL_GUARDED_BY(mu_) = nullptr;
  // CONFIGURE_MEM_SLOTS: the slots the backend has, and the regions it holds.
  uint64_t max_mem_slots_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<GuestRamRegion> sent_regions_ ABSL_GUARDED_BY(mu_);

  // Loop-thread state.
  FdWatch hup_watch_;
  FdWatch accept_watch_;
  Timer reconnect_timer_;
  bool down_ = false;  // the link is down and reconnection runs
  absl::Duration backoff_ = absl::Milliseconds(50);
  std::shared_ptr<std::atomic<bool>> alive_ = std::make_shared<std::atomic<bool>>(true);
};

}  // namespace vdev::vhost

#endif  // VDEV_HW_VIRTIO_VHOST_VHOST_USER_NETDEV_H_
