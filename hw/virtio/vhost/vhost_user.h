// The vhost-user protocol, frontend side (QEMU's docs/interop/vhost-user.rst): messages to a
// backend process (DPDK, OVS-DPDK) over a unix stream socket, with fds as SCM_RIGHTS.
//
// Header {u32 request; u32 flags; u32 size} then `size` payload bytes. flags: version 1 in bits
// 0-1, REPLY (bit 2) on a backend's reply, NEED_REPLY (bit 3) asks for a u64 ack (REPLY_ACK).
//
// The backend is untrusted like a guest: a reply must carry the request it answers, the REPLY
// flag, version 1 and the exact payload size for that request, and no fds unless the request
// returns some; every fd received is owned at once and closed on every path; every wait has a
// timeout, so a backend that stops answering is an error, not a hang.
//
// Example:
//   VDEV_ASSIGN_OR_RETURN(VhostUserClient c, VhostUserClient::Connect("/run/vhost.sock", 1s));
//   VDEV_ASSIGN_OR_RETURN(uint64_t features, c.GetU64(VhostUserRequest::kGetFeatures));
//   VDEV_RETURN_IF_ERROR(c.SetOwner());
//   VDEV_RETURN_IF_ERROR(c.SetMemTable(guest_memory));
//
// Thread-safety: one thread at a time per client.
#ifndef VDEV_HW_VIRTIO_VHOST_VHOST_USER_H_
#define VDEV_HW_VIRTIO_VHOST_VHOST_USER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "core/base/unique_fd.h"
#include "core/memory/guest_memory.h"

namespace vdev::vhost {

enum class VhostUserRequest : uint32_t {
  kGetFeatures = 1,
  kSetFeatures = 2,
  kSetOwner = 3,
  kResetOwner = 4,
  kSetMemTable = 5,
  kSetLogBase = 6,
  kSetLogFd = 7,
  kSetVringNum = 8,
  kSetVringAddr = 9,
  kSetVringBase = 10,
  kGetVringBase = 11,
  kSetVringKick = 12,
  kSetVringCall = 13,
  kSetVringErr = 14,
  kGetProtocolFeatures = 15,
  kSetProtocolFeatures = 16,
  kGetQueueNum = 17,
  kSetVringEnable = 18,
  kSendRarp = 19,
  kNetSetMtu = 20,
  kGetConfig = 24,
  kSetConfig = 25,
  kResetDevice = 34,
  kGetMaxMemSlots = 36,
  kAddMemReg = 37,
  kRemMemReg = 38,
};

// Protocol feature bits (VHOST_USER_PROTOCOL_F_*).
inline constexpr unsigned kProtocolMq = 0;
inline constexpr unsigned kProtocolRarp = 2;
inline constexpr unsigned kProtocolReplyAck = 3;
inline constexpr unsigned kProtocolMtu = 4;
inline constexpr unsigned kProtocolConfig = 9;
inline constexpr unsigned kProtocolResetDevice = 13;
inline constexpr unsigned kProtocolConfigureMemSlots = 15;
// VHOST_USER_F_PROTOCOL_FEATURES, a virtio feature bit offered by backends.
inline constexpr unsigned kVirtioProtocolFeatures = 30;

inline constexpr uint32_t kVhostUserVersion = 1;
inline constexpr uint32_t kFlagReply = 1u << 2;
inline constexpr uint32_t kFlagNeedReply = 1u << 3;
inline constexpr size_t kHeaderSize = 12;
inline constexpr size_t kMaxPayload = 4096;
inline constexpr int kMaxFds = 8;
inline constexpr int kMaxMemRegions = 8;
// In SET_VRING_KICK/CALL/ERR payloads: bits 0-7 the index, bit 8 "no fd" (polling).
inline constexpr uint64_t kVringIndexMask = 0xff;
inline constexpr uint64_t kVringNoFd = 1ull << 8;

struct VhostUserMessage {
  uint32_t request = 0;
  uint32_t flags = 0;
  std::vector<uint8_t> payload;
  std::vector<UniqueFd> fds;
};

// Encodes the payload of SET_MEM_TABLE for the fd-backed regions of `mem` (at most 8; each must
// have an fd): {u32 nregions; u32 pad; {u64 gpa, size, userspace addr, mmap offset}[n]}, and the
// fds in order. InvalidArgument when a region has no fd or there are too many.
absl::Status EncodeMemTable(const GuestMemory& mem, std::vector<uint8_t>* payload,
                            std::vector<int>* fds);

// Validates a backend's reply to `request`: REPLY set, version 1, the request echoed, exactly
// `payload_size` bytes, no fds. Returns the reply's payload.
absl::StatusOr<std::vector<uint8_t>> CheckReply(const VhostUserMessage& reply, uint32_t request,
                                                size_t payload_size);

// Reads one message (header, up to kMaxPayload bytes, up to 8 fds) within `timeout`.
// DeadlineExceeded on timeout; Unavailable when the peer closed; InvalidArgument when malformed.
absl::StatusOr<VhostUserMessage> ReadVhostUserMessage(int sock, absl::Duration timeout);
absl::Status SendVhostUserMessage(int sock, uint32_t request, uint32_t flags,
                                  absl::Span<const uint8_t> payload, absl::Span<const int> fds);

class VhostUserClient {
 public:
  // Connects to a backend listening on `path`.
  static absl::StatusOr<VhostUserClient> Connect(const std::string& path, absl::Duration timeout);
  explicit VhostUserClient(UniqueFd sock, absl::Duration timeout = absl::Seconds(5))
      : sock_(std::move(sock)), timeout_(timeout) {}
  VhostUserClient(VhostUserClient&&) = default;
  VhostUserClient& operator=(VhostUserClient&&) = default;

  // GET_FEATURES / GET_PROTOCOL_FEATURES / GET_QUEUE_NUM / GET_MAX_MEM_SLOTS: a u64 reply.
  absl::StatusOr<uint64_t> GetU64(VhostUserRequest request);
  // SET_FEATURES / SET_PROTOCOL_FEATURES / NET_SET_MTU ...: a u64 argument.
  absl::Status SetU64(VhostUserRequest request, uint64_t value);
  absl::Status SetOwner();
  // A request without payload (RESET_DEVICE, RESET_OWNER).
  absl::Status Request(VhostUserRequest request);
  absl::Status SetMemTable(const GuestMemory& mem);
  absl::Status SetVringNum(uint32_t index, uint32_t num);
  absl::Status SetVringBase(uint32_t index, uint32_t base);
  // GET_VRING_BASE stops the ring and returns where the backend got to (index echoed, checked).
  absl::StatusOr<uint32_t> GetVringBase(uint32_t index);
  absl::Status SetVringAddr(uint32_t index, uint64_t desc, uint64_t used, uint64_t avail);
  // SET_VRING_KICK / CALL / ERR with an eventfd (or -1: polling, the "no fd" bit).
  absl::Status SetVringFd(VhostUserRequest request, uint32_t index, int fd);
  absl::Status SetVringEnable(uint32_t index, bool enable);
  // CONFIGURE_MEM_SLOTS: ADD_MEM_REG / REM_MEM_REG for one fd-backed region of guest RAM
  // ({u64 padding; u64 gpa, size, userspace addr, mmap offset}, and the region's fd to add).
  absl::Status AddMemReg(const GuestRamRegion& region);
  absl::Status RemMemReg(const GuestRamRegion& region);
  // RARP: SEND_RARP, the backend announces `mac` on its network.
  absl::Status SendRarp(const uint8_t mac[6]);
  // CONFIG: `size` bytes (at most kMaxConfigSize) of the device's configuration at `offset`, and
  // a write of `data` there ({u32 offset, size, flags; u8 payload[size]}).
  static constexpr uint32_t kMaxConfigSize = 256;
  absl::StatusOr<std::vector<uint8_t>> GetConfig(uint32_t offset, uint32_t size);
  absl::Status SetConfig(uint32_t offset, absl::Span<const uint8_t> data);

  // With REPLY_ACK negotiated, every set-request asks for an ack and fails on a non-zero one.
  void set_reply_ack(bool on) { reply_ack_ = on; }
  int fd() const { return sock_.get(); }

 private:
  absl::Status Send(VhostUserRequest request, absl::Span<const uint8_t> payload,
                    absl::Span<const int> fds = {});
  absl::StatusOr<std::vector<uint8_t>> Call(VhostUserRequest request,
                                            absl::Span<const uint8_t> payload, size_t reply_size);

  UniqueFd sock_;
  absl::Duration timeout_;
  bool reply_ack_ = false;
};

}  // namespace vdev::vhost

#endif  // VDEV_HW_VIRTIO_VHOST_VHOST_USER_H_
