// The vhost core: hands a device's running virtqueues to a data plane outside this process (the
// kernel's vhost-net, or a vhost-user backend such as DPDK) and takes them back.
//
// VhostBackend is the set of vhost operations, implemented over ioctls (VhostKernelBackend,
// vhost_kernel.h) or over the vhost-user protocol (VhostUserNetdev, vhost_user_netdev.h).
// VhostDev runs the hand-over on one backend:
//
//   Start: SET_FEATURES, SET_MEM_TABLE (from GuestMemory), then per ring SET_VRING_NUM, _BASE (the
//          device's last available index), _ADDR (host virtual addresses of the three parts),
//          _KICK and _CALL (eventfds made here), _ERR, and last the rings are enabled/attached.
//   Kick:  the driver notified ring i: its kick eventfd is signalled. A transport that has an
//          ioeventfd on the ring's notify address (a VMM's KVM_IOEVENTFD) hands it over as the kick
//          fd instead, and kicks never pass through us.
//   Call:  the backend signalled a call eventfd: `on_call(i)` runs on the given loop and raises
//          the ring's interrupt (MSI-X vector or INTx). A transport that has an irqfd for the
//          ring's vector hands it over instead, and no call ever passes through us.
//   Stop:  GET_VRING_BASE per ring; the answer becomes the device's last available index and the
//          used index is read back from the ring. A backend that is gone cannot answer: the
//          positions fall back to the used index in guest memory (buffers made available but not
//          used are processed again by whoever takes over), as QEMU does.
//
// Thread-safety: Start/Stop/Kick under the owning device's lock; `on_call` runs on `loop`
// without any lock held and never after Stop() returned; it must not take the device's lock.
#ifndef VDEV_HW_VIRTIO_VHOST_VHOST_DEV_H_
#define VDEV_HW_VIRTIO_VHOST_VHOST_DEV_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bus/virtio/virtqueue.h"
#include "core/loop/event_loop.h"
#include "core/memory/guest_memory.h"

namespace vdev::vhost {

// Ring addresses in the frontend's (our) virtual address space, as both vhost flavours take them.
struct VringAddr {
  uint64_t desc = 0, avail = 0, used = 0;
};

// Everything a backend needs to serve one ring, sent in this order (QEMU's vhost_virtqueue_start):
// SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ADDR, SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR.
struct VringSetup {
  uint32_t num = 0;   // ring size
  uint32_t base = 0;  // the next available index the backend takes
  VringAddr addr;
  int kick = -1, call = -1, err = -1;  // eventfds, or -1 for none
};

// Told about a backend going away and coming back (on the backend's loop, no lock held).
class VhostListener {
 public:
  virtual ~VhostListener() = default;
  virtual void BackendDown() = 0;
  virtual void BackendUp() = 0;
};

class VhostBackend {
 public:
  virtual ~VhostBackend() = default;
  // The virtio features the backend offers (as of its last handshake).
  virtual uint64_t features() const = 0;
  virtual bool connected() const { return true; }
  // Whether the backend's features decide the offloads (vhost-user: the backend handles the
  // virtio-net header) or the peer's do (vhost-net: the TAP's vnet header).
  virtual bool decides_offloads() const { return true; }
  // Whether the device carries on with its own data path when the backend refuses the rings
  // (vhost-net: the TAP is still there) instead of needing a reset.
  virtual bool userspace_fallback() const { return false; }
  virtual void SetListener(VhostListener* listener) {}
  // The device's MTU (VIRTIO_NET_F_MTU), for backends that take it.
  virtual absl::Status SetMtu(uint16_t mtu) { return absl::OkStatus(); }
  // The device was reset (vhost-user RESET_DEVICE where negotiated).
  virtual absl::Status ResetDevice() { return absl::OkStatus(); }
  virtual absl::Status SetFeatures(uint64_t features) = 0;
  virtual absl::Status SetMemTable(const GuestMemory& mem) = 0;
  // Hands ring `index` over (not yet enabled); stops at the first step that fails.
  virtual absl::Status SetupRing(uint32_t index, const VringSetup& ring) = 0;
  // Ring `index` may be served (vhost-user SET_VRING_ENABLE; kernel VHOST_NET_SET_BACKEND).
  virtual absl::Status SetVringEnable(uint32_t index, bool enable) = 0;
  // Stops ring `index` and returns the backend's next available index.
  virtual absl::StatusOr<uint32_t> GetVringBase(uint32_t index) = 0;
};

// Translates a ring's guest addresses into ours; InvalidArgument unless each part lies in RAM in
// full and is aligned (16 / 2 / 4).
absl::StatusOr<VringAddr> TranslateRing(const GuestMemory& mem, uint16_t size, GuestAddr desc,
                                        GuestAddr avail, GuestAddr used);

class VhostDev {
 public:
  struct Ring {
    uint32_t index;         // the backend's ring index
    virtio::VirtQueue* vq;  // active, with its addresses and positions
    int irqfd = -1;         // the transport's irqfd for this ring's vector, if any
    int ioeventfd = -1;     // the transport's ioeventfd on this ring's notify address, if any
    bool enabled = true;    // enable the ring at once (MQ: only the active pairs)
  };
  // `on_call(ring index)` runs on `loop` when the backend signals a ring. `on_error(ring index)`
  // when it signals the ring's error eventfd.
  VhostDev(EventLoop& loop, std::function<void(uint32_t)> on_call,
           std::function<void(uint32_t)> on_error);
  ~VhostDev();
  VhostDev(const VhostDev&) = delete;
  VhostDev& operator=(const VhostDev&) = delete;

  absl::Status Start(VhostBackend& backend, const GuestMemory& mem, uint64_t features,
                     std::vector<Ring> rings);
  bool started() const { return started_; }
  // Signals ring `index`'s kick eventfd; false when the ring is not handed over.
  bool Kick(uint32_t index);
  // Takes the rings back (see above). `backend` is null when the backend is gone. Returns the
  // first error of GET_VRING_BASE, after falling back for that ring.
  absl::Status Stop(VhostBackend* backend);
  // Enables or disables ring `index` at the backend (MQ pairs coming and going).
  absl::Status SetRingEnabled(VhostBackend& backend, uint32_t index, bool enable);
  bool handed_over(uint32_t index) const;

 private:
  struct Shared;  // the callbacks, eventfds and their watches, released on the loop
  absl::Status Unwind(VhostBackend& backend, std::vector<Ring> rings, size_t touched,
                      std::shared_ptr<Shared> shared, absl::Status error);
  EventLoop& loop_;
  std::function<void(uint32_t)> on_call_, on_error_;
  std::vector<Ring> rings_;
  std::shared_ptr<Shared> shared_;
  bool started_ = false;
};

}  // namespace vdev::vhost

#endif  // VDEV_HW_VIRTIO_VHOST_VHOST_DEV_H_
