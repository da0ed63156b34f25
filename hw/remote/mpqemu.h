// QEMU's multi-process protocol (`x-pci-proxy-dev`, QEMU 7.2), the device side: QEMU forwards
// every config-space and BAR access of one PCI function to us over a unix stream socket and waits
// for the reply. Facts measured on this machine are in ../shared/reference/mpqemu.md.
//
// Wire format: a 16-byte header {int32 cmd; 4 pad; uint64 size} then `size` payload bytes; file
// descriptors (at most 8) ride as one SCM_RIGHTS message with the header.
//
//   cmd  name           payload                                              fds   reply
//   0    SYNC_SYSMEM    u64 gpa[8], u64 size[8], i64 offset[8] (192)         1..8  none
//   1    RET            u64 value (8)                                        0     (a reply)
//   2    PCI_CFGWRITE   u32 addr, u32 val, i32 len (12)                      0     RET
//   3    PCI_CFGREAD    same (12)                                            0     RET value
//   4    BAR_WRITE      u64 addr, u64 val, u32 size, u8 memory, 3 pad (24)   0     RET
//   5    BAR_READ       same (24)                                            0     RET value
//   6    SET_IRQFD      none                                                 2     none
//   7    DEVICE_RESET   none                                                 0     RET 0
//
// Everything from the peer is validated: the command, the exact payload size, the fd count for
// the command, and the fields (config offsets and widths, BAR widths, memory regions that wrap,
// overlap, or reach past the end of their fd). Every fd received is owned by a UniqueFd from the
// moment it arrives, so each is closed on every path, error or not.
//
// Example (the device server's loop):
//   for (;;) {
//     absl::StatusOr<MpqemuMessage> m = ReadMpqemuMessage(sock);
//     if (!m.ok()) break;                      // peer gone (NotFound) or a malformed message
//     ... handle; for commands that want one: SendMpqemuRet(sock, value) ...
//   }
//
// Thread-safety: functions only; one reader and one writer per socket.
#ifndef VDEV_HW_REMOTE_MPQEMU_H_
#define VDEV_HW_REMOTE_MPQEMU_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/base/unique_fd.h"

namespace vdev::remote {

enum class MpqemuCmd : int32_t {
  kSyncSysmem = 0,
  kRet = 1,
  kPciCfgWrite = 2,
  kPciCfgRead = 3,
  kBarWrite = 4,
  kBarRead = 5,
  kSetIrqfd = 6,
  kDeviceReset = 7,
};

inline constexpr size_t kMpqemuHeaderSize = 16;
inline constexpr int kMpqemuMaxFds = 8;
inline constexpr int kMpqemuMaxRegions = 8;
// Conventional PCI: the proxy forwards a 256-byte config space.
inline constexpr uint32_t kMpqemuConfigSize = 256;

struct MpqemuRegion {
  uint64_t gpa = 0;
  uint64_t size = 0;
  uint64_t offset = 0;  // into `fd`
  UniqueFd fd;
};

struct MpqemuMessage {
  MpqemuCmd cmd = MpqemuCmd::kRet;
  // SYNC_SYSMEM: the complete new RAM table (non-empty regions only, in wire order).
  std::vector<MpqemuRegion> regions;
  // PCI_CFGREAD / PCI_CFGWRITE.
  uint32_t cfg_addr = 0;
  uint32_t cfg_val = 0;
  int cfg_len = 0;
  // BAR_READ / BAR_WRITE: absolute guest-physical address (memory) or port (I/O).
  uint64_t bar_addr = 0;
  uint64_t bar_val = 0;
  unsigned bar_size = 0;
  bool bar_memory = false;
  // SET_IRQFD: the INTx eventfd and its resample eventfd. RET: `ret`.
  UniqueFd irq_fd;
  UniqueFd resample_fd;
  uint64_t ret = 0;
};

// Whether `cmd` expects a RET from us.
bool MpqemuWantsReply(MpqemuCmd cmd);

// Decodes and validates one message from its header, payload and received fds (which it takes).
// InvalidArgument, naming the problem, for anything malformed. For fuzzing and for
// ReadMpqemuMessage.
absl::StatusOr<MpqemuMessage> ParseMpqemuMessage(absl::Span<const uint8_t> header,
                                                 absl::Span<const uint8_t> payload,
                                                 std::vector<UniqueFd> fds);

// Reads one message from `sock` (blocking): NotFound when the peer closed the connection before
// a header; InvalidArgument for a malformed message (the stream cannot be trusted after it);
// errors from the socket as statuses. A payload over 4 KiB is refused without reading it.
absl::StatusOr<MpqemuMessage> ReadMpqemuMessage(int sock);

// Sends RET with `value`.
absl::Status SendMpqemuRet(int sock, uint64_t value);
// Sends a message with a raw payload and fds (the QEMU side, for tests and tools).
absl::Status SendMpqemuRaw(int sock, int32_t cmd, absl::Span<const uint8_t> payload,
                           absl::Span<const int> fds);

}  // namespace vdev::remote

#endif  // VDEV_HW_REMOTE_MPQEMU_H_
