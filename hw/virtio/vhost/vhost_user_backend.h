// The vhost-user protocol, backend side (QEMU's docs/interop/vhost-user.rst): one frontend
// connection's state and the requests that change it. The frontend (QEMU, DPDK's virtio-user,
// our own -netdev vhost-user) is untrusted like a guest: every request is checked in full before
// anything changes (its size, its fds, its indices, its memory regions against each other and
// against their fds), a bad one is refused with a one-line error and the session is left as it
// was, and the caller drops the connection. Every fd a request brings is owned at once; a mapping
// lives in the session's GuestMemory and goes with it.
//
//   VhostUserBackendSession s(&device_side, {.num_rings = 2, .max_ring_size = 1024});
//   for (;;) {
//     VDEV_ASSIGN_OR_RETURN(VhostUserMessage m, ReadVhostUserMessage(sock, timeout));
//     VDEV_RETURN_IF_ERROR(s.Handle(sock, std::move(m)));   // error: drop the connection
//   }
//
// The session keeps what the frontend set: features, protocol features, the memory table (guest
// RAM mapped from the frontend's fds, and the frontend's virtual addresses of it, which ring
// addresses are given in), and per ring its size, base, addresses (translated to guest-physical),
// kick/call/err eventfds and enable bit. When a ring is complete (features, memory, size,
// addresses, kick, enabled) the session hands it to the device side (`StartRing`), whether or not
// a STATUS frontend has said DRIVER_OK (QEMU 7.2 does for net, not for rng); GET_VRING_BASE stops
// it (`StopRing`) and returns where it got to; SET_STATUS(0) stops them all.
//
// Thread-safety: one thread at a time (the connection's loop).
#ifndef VDEV_HW_VIRTIO_VHOST_VHOST_USER_BACKEND_H_
#define VDEV_HW_VIRTIO_VHOST_VHOST_USER_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/base/unique_fd.h"
#include "core/memory/guest_memory.h"
#include "hw/virtio/vhost/vhost_user.h"

namespace vdev::vhost {

// Protocol features a backend may offer (VHOST_USER_PROTOCOL_F_*), beyond those in vhost_user.h.
inline constexpr unsigned kProtocolStatus = 16;

// One ring as the frontend set it up.
struct BackendRing {
  uint32_t num = 0;   // size (0: not set)
  uint32_t base = 0;  // the next available index to take
  bool addr_set = false;
  GuestAddr desc, avail, used;  // guest-physical, translated from the frontend's addresses
  uint32_t addr_flags = 0;      // VHOST_VRING_F_LOG
  UniqueFd kick, call, err;     // invalid: none (the "no fd" bit, polling)
  bool kick_set = false;        // SET_VRING_KICK arrived (with or without an fd)
  bool enabled = false;         // SET_VRING_ENABLE(1), or started without PROTOCOL_FEATURES
  bool started = false;         // handed to the device side
};

// What the session drives: the virtio device behind the backend.
class VhostUserBackendDevice {
 public:
  virtual ~VhostUserBackendDevice() = default;
  // The virtio features the device offers (the session adds VHOST_USER_F_PROTOCOL_FEATURES).
  virtual uint64_t DeviceFeatures() const = 0;
  // The frontend accepted `features` (only bits offered; checked by the session).
  virtual absl::Status SetFeatures(uint64_t features) = 0;
  // Serve ring `index` from `ring` in `mem` (both valid until StopRing or the session ends).
  virtual absl::Status StartRing(uint32_t index, const BackendRing& ring,
                                 const GuestMemory& mem) = 0;
  // Stop serving ring `index`; returns the next available index it would take (for
  // GET_VRING_BASE).
  virtual uint32_t StopRing(uint32_t index) = 0;
  // A started ring's call eventfd was replaced (SET_VRING_CALL; -1: none). The old one is closed
  // after this returns.
  virtual void CallChanged(uint32_t index, int fd) {}
  // A started ring was enabled or disabled (SET_VRING_ENABLE).
  virtual void RingEnabled(uint32_t index, bool enabled) {}
  // The frontend asks for the device to be reset (RESET_DEVICE, RESET_OWNER, SET_STATUS(0)).
  virtual void ResetDevice() {}
  // SEND_RARP: announce `mac` on the device's network (virtio-net).
  virtual absl::Status SendRarp(const uint8_t mac[6]) {
    return absl::UnimplementedError("the device cannot announce itself");
  }
  // GET_CONFIG / SET_CONFIG: the device's configuration space, [offset, offset + size) inside
  // it (checked by the session against ConfigSize).
  virtual uint32_t ConfigSize() const { return 0; }
  virtual std::vector<uint8_t> GetConfig(uint32_t offset, uint32_t size) {
    return std::vector<uint8_t>(size);
  }
  virtual absl::Status SetConfig(uint32_t offset, const std::vector<uint8_t>& data) {
    return absl::UnimplementedError("the device's configuration is read-only");
  }
};

struct BackendLimits {
  uint32_t num_rings = 2;         // GET_QUEUE_NUM reports num_rings / 2 (queue pairs for net)
  uint32_t max_ring_size = 1024;  // SET_VRING_NUM above this is refused
  uint64_t protocol_features =    // offered
      uint64_t{1} << kProtocolMq | uint64_t{1} << kProtocolReplyAck |
      uint64_t{1} << kProtocolConfigureMemSlots | uint64_t{1} << kProtocolResetDevice |
      uint64_t{1} << kProtocolStatus | uint64_t{1} << kProtocolRarp | uint64_t{1} << kProtocolMtu |
      uint64_t{1} << kProtocolConfig;
};

class VhostUserBackendSession {
 public:
  VhostUserBackendSession(VhostUserBackendDevice* device, BackendLimits limits);
  ~VhostUserBackendSession();

  // Handles one request from the frontend and sends its reply on `sock` (GET_* requests, and
  // the REPLY_ACK ack when asked for). An error refuses the request without changing anything;
  // the caller drops the connection (which stops every ring: see Close).
  absl::Status Handle(int sock, VhostUserMessage msg);
  // The connection is gone: stop every started ring, unmap the memory, close every fd.
  void Close();

  uint64_t acked_features() const { return features_; }
  uint64_t acked_protocol_features() const { return protocol_features_; }
  bool owned() const { return owner_; }
  uint8_t status() const { return status_; }
  // NET_SET_MTU's value (0: none sent).
  uint32_t mtu() const { return mtu_; }
  const GuestMemory& memory() const { return *mem_; }
  const BackendRing& ring(uint32_t index) const { return rings_[index]; }
  uint32_t num_rings() const { return static_cast<uint32_t>(rings_.size()); }

 private:
  // A region of the table: guest-physical range, the frontend's virtual address of it, and how
  // many times ADD_MEM_REG added it (QEMU adds every region once per queue pair's vhost device,
  // and removes it as many times).
  struct Region {
    uint64_t gpa, size, uaddr, offset;
    uint32_t refs = 1;
  };
  absl::StatusOr<uint64_t> Dispatch(int sock, VhostUserMessage& msg, bool* replied);
  absl::Status SetMemTable(const VhostUserMessage& msg);
  absl::Status AddMemReg(VhostUserMessage& msg);
  absl::Status RemMemReg(const VhostUserMessage& msg);
  absl::Status Config(int sock, const VhostUserMessage& msg);
  // Replaces guest memory with `regions` (fds in the same order), all or nothing.
  absl::Status MapRegions(const std::vector<Region>& regions, std::vector<UniqueFd> fds);
  // A duplicate of the fd behind the mapped region at `gpa`.
  UniqueFd DupFdOf(uint64_t gpa) const;
  absl::StatusOr<uint32_t> RingIndex(uint64_t index, const char* what) const;
  // The frontend's virtual address `uaddr` of `len` bytes as a guest-physical address.
  absl::StatusOr<GuestAddr> UserToGuest(uint64_t uaddr, uint64_t len, const char* what) const;
  absl::Status SetVringFd(VhostUserMessage& msg, const char* what, UniqueFd BackendRing::*fd);
  // Starts ring `index` when it is complete and may run (enabled, device status allows).
  absl::Status MaybeStart(uint32_t index);
  void StopAll();

  VhostUserBackendDevice* device_;
  const BackendLimits limits_;
  bool owner_ = false;
  uint64_t features_ = 0;
  bool features_set_ = false;
  uint64_t protocol_features_ = 0;
  uint8_t status_ = 0;
  uint32_t mtu_ = 0;
  std::vector<Region> regions_;
  std::unique_ptr<GuestMemory> mem_;
  std::vector<BackendRing> rings_;
};

}  // namespace vdev::vhost

#endif  // VDEV_HW_VIRTIO_VHOST_VHOST_USER_BACKEND_H_
