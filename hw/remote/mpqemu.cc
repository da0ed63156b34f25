#include "hw/remote/mpqemu.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/fd_passing.h"

namespace vdev::remote {
namespace {

constexpr size_t kMaxPayload = 4096;

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("mpqemu: ", what));
}

template <typename T>
T Get(absl::Span<const uint8_t> p, size_t off) {
  T v;
  std::memcpy(&v, p.data() + off, sizeof(T));
  return v;
}

const char* Name(MpqemuCmd c) {
  switch (c) {
    case MpqemuCmd::kSyncSysmem:
      return "SYNC_SYSMEM";
    case MpqemuCmd::kRet:
      return "RET";
    case MpqemuCmd::kPciCfgWrite:
      return "PCI_CFGWRITE";
    case MpqemuCmd::kPciCfgRead:
      return "PCI_CFGREAD";
    case MpqemuCmd::kBarWrite:
      return "BAR_WRITE";
    case MpqemuCmd::kBarRead:
      return "BAR_READ";
    case MpqemuCmd::kSetIrqfd:
      return "SET_IRQFD";
    case MpqemuCmd::kDeviceReset:
      return "DEVICE_RESET";
  }
  return "?";
}

// Reads exactly `len` bytes (stream socket). NotFound on EOF before any byte when `eof_ok`.
absl::Status ReadFull(int sock, uint8_t* buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    const ssize_t n = recv(sock, buf + done, len - done, 0);
    if (n == 0)
      return Bad(absl::StrFormat("connection closed inside a message (%u of %u bytes)", done, len));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, "recv");
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

bool MpqemuWantsReply(MpqemuCmd cmd) {
  switch (cmd) {
    case MpqemuCmd::kPciCfgWrite:
    case MpqemuCmd::kPciCfgRead:
    case MpqemuCmd::kBarWrite:
    case MpqemuCmd::kBarRead:
    case MpqemuCmd::kDeviceReset:
      return true;
    default:
      return false;
  }
}

absl::StatusOr<MpqemuMessage> ParseMpqemuMessage(absl::Span<const uint8_t> header,
                                                 absl::Span<const uint8_t> payload,
                                                 std::vector<UniqueFd> fds) {
  if (header.size() != kMpqemuHeaderSize) return Bad("truncated header");
  const int32_t cmd = Get<int32_t>(header, 0);
  const uint64_t size = Get<uint64_t>(header, 8);
  if (size != payload.size()) {
    return Bad(absl::StrFormat("header says %u payload bytes, %u present", size, payload.size()));
  }
  if (cmd < 0 || cmd > static_cast<int32_t>(MpqemuCmd::kDeviceReset)) {
    return Bad(absl::StrCat("unknown command ", cmd));
  }
  MpqemuMessage m;
  m.cmd = static_cast<MpqemuCmd>(cmd);
  size_t want_size = 0;
  int min_fds = 0, max_fds = 0;
  switch (m.cmd) {
    case MpqemuCmd::kSyncSysmem:
      want_size = 24 * kMpqemuMaxRegions;
      min_fds = 1;
      max_fds = 8;
      break;
    case MpqemuCmd::kRet:
      want_size = 8;
      break;
    case MpqemuCmd::kPciCfgWrite:
    case MpqemuCmd::kPciCfgRead:
      want_size = 12;
      break;
    case MpqemuCmd::kBarWrite:
    case MpqemuCmd::kBarRead:
      want_size = 24;
      break;
    case MpqemuCmd::kSetIrqfd:
      min_fds = max_fds = 2;
      break;
    case MpqemuCmd::kDeviceReset:
      break;
  }
  if (size != want_size) {
    return Bad(
        absl::StrFormat("%s with a %u-byte payload (expects %u)", Name(m.cmd), size, want_size));
  }
  const int nfds = static_cast<int>(fds.size());
  if (nfds < min_fds || nfds > max_fds) {
    return Bad(
        absl::StrFormat("%s with %d fds (expects %d..%d)", Name(m.cmd), nfds, min_fds, max_fds));
  }
  switch (m.cmd) {
    case MpqemuCmd::kSyncSysmem: {
      // Regions with a size take one fd each, in order; empty slots are unused.
      int next_fd = 0;
      for (int i = 0; i < kMpqemuMaxRegions; ++i) {
        MpqemuRegion r;
        r.gpa = Get<uint64_t>(payload, 8 * i);
        r.size = Get<uint64_t>(payload, 64 + 8 * i);
        const int64_t off = Get<int64_t>(payload, 128 + 8 * i);
        if (r.size == 0) continue;
        if (next_fd == nfds) return Bad("SYNC_SYSMEM: more regions than fds");
        if (off < 0) return Bad(absl::StrFormat("SYNC_SYSMEM: region %d has offset %d", i, off));
        r.offset = static_cast<uint64_t>(off);
        if (r.gpa + r.size < r.gpa || r.offset + r.size < r.offset) {
          return Bad(absl::StrFormat("SYNC_SYSMEM: region %d wraps", i));
        }
        r.fd = std::move(fds[next_fd++]);
        struct stat st;
        if (fstat(r.fd.get(), &st) != 0)
          return Bad(absl::StrFormat("SYNC_SYSMEM: fd %d: %s", i, strerror(errno)));
        if (static_cast<uint64_t>(st.st_size) < r.offset + r.size) {
          return Bad(
              absl::StrFormat("SYNC_SYSMEM: region %d (%#x bytes at offset %#x) is past the "
                              "end of its fd (%#x bytes)",
                              i, r.size, r.offset, st.st_size));
        }
        for (const MpqemuRegion& o : m.regions) {
          if (r.gpa < o.gpa + o.size && o.gpa < r.gpa + r.size) {
            return Bad(
                absl::StrFormat("SYNC_SYSMEM: regions at %#x and %#x overlap", o.gpa, r.gpa));
          }
        }
        m.regions.push_back(std::move(r));
      }
      if (next_fd != nfds) return Bad("SYNC_SYSMEM: more fds than regions");
      break;
    }
    case MpqemuCmd::kRet:
      m.ret = Get<uint64_t>(payload, 0);
      break;
    case MpqemuCmd::kPciCfgWrite:
    case MpqemuCmd::kPciCfgRead: {
      m.cfg_addr = Get<uint32_t>(payload, 0);
      m.cfg_val = Get<uint32_t>(payload, 4);
      m.cfg_len = Get<int32_t>(payload, 8);
      if (m.cfg_len != 1 && m.cfg_len != 2 && m.cfg_len != 4) {
        return Bad(absl::StrFormat("%s of width %d", Name(m.cmd), m.cfg_len));
      }
      if (m.cfg_addr >= kMpqemuConfigSize || m.cfg_addr + m.cfg_len > kMpqemuConfigSize) {
        return Bad(absl::StrFormat("%s at %#x past the config space", Name(m.cmd), m.cfg_addr));
      }
      break;
    }
    case MpqemuCmd::kBarWrite:
    case MpqemuCmd::kBarRead: {
      m.bar_addr = Get<uint64_t>(payload, 0);
      m.bar_val = Get<uint64_t>(payload, 8);
      m.bar_size = Get<uint32_t>(payload, 16);
      const uint8_t memory = payload[20];
      if (m.bar_size != 1 && m.bar_size != 2 && m.bar_size != 4 && m.bar_size != 8) {
        return Bad(absl::StrFormat("%s of width %u", Name(m.cmd), m.bar_size));
      }
      if (memory > 1) return Bad(absl::StrFormat("%s with memory=%u", Name(m.cmd), memory));
      m.bar_memory = memory == 1;
      if (m.bar_addr + m.bar_size < m.bar_addr) return Bad("BAR access wraps");
      break;
    }
    case MpqemuCmd::kSetIrqfd:
      m.irq_fd = std::move(fds[0]);
      m.resample_fd = std::move(fds[1]);
      break;
    case MpqemuCmd::kDeviceReset:
      break;
  }
  return m;
}

absl::StatusOr<MpqemuMessage> ReadMpqemuMessage(int sock) {
  uint8_t header[kMpqemuHeaderSize];
  // Every fd that came is owned from here on, whatever happens next.
  absl::StatusOr<Received> got = ReceiveWithFds(sock, header, sizeof(header));
  if (!got.ok()) return got.status();
  std::vector<UniqueFd> fds = std::move(got->fds);
  const bool bad_control = got->bad_control;
  const size_t n = got->bytes;
  if (n == 0) return absl::NotFoundError("mpqemu: the peer closed the connection");
  if (bad_control) return Bad("truncated or foreign control message");
  if (n < sizeof(header)) {
    if (absl::Status s = ReadFull(sock, header + n, sizeof(header) - n); !s.ok()) return s;
  }
  const uint64_t size = Get<uint64_t>(absl::MakeConstSpan(header, sizeof(header)), 8);
  if (size > kMaxPayload) {
    return Bad(absl::StrFormat("a %u-byte payload (at most %u)", size, kMaxPayload));
  }
  std::vector<uint8_t> payload(size);
  if (size > 0) {
    if (absl::Status s = ReadFull(sock, payload.data(), size); !s.ok()) return s;
  }
  return ParseMpqemuMessage(absl::MakeConstSpan(header, sizeof(header)), payload, std::move(fds));
}

absl::Status SendMpqemuRaw(int sock, int32_t cmd, absl::Span<const uint8_t> payload,
                           absl::Span<const int> fds) {
  if (fds.size() > static_cast<size_t>(kMpqemuMaxFds)) return Bad("too many fds to send");
  uint8_t header[kMpqemuHeaderSize] = {};
  const uint64_t size = payload.size();
  std::memcpy(header, &cmd, 4);
  std::memcpy(header + 8, &size, 8);
  iovec iov[2] = {{header, sizeof(header)}, {const_cast<uint8_t*>(payload.data()), payload.size()}};
  absl::StatusOr<size_t> n = SendWithFds(sock, iov, payload.empty() ? 1 : 2, fds);
  if (!n.ok()) return n.status();
  if (*n != sizeof(header) + payload.size()) return Bad("short send");
  return absl::OkStatus();
}

absl::Status SendMpqemuRet(int sock, uint64_t value) {
  uint8_t p[8];
  std::memcpy(p, &value, 8);
  return SendMpqemuRaw(sock, static_cast<int32_t>(MpqemuCmd::kRet), p, {});
}

}  // namespace vdev::remote
