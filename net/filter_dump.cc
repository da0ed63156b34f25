#include "net/filter_dump.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace vdev::net {
namespace {

// The classic pcap format (no nanoseconds, no pcapng), as QEMU writes it.
struct PcapFileHeader {
  uint32_t magic = 0xa1b2c3d4;
  uint16_t version_major = 2;
  uint16_t version_minor = 4;
  int32_t thiszone = 0;
  uint32_t sigfigs = 0;
  uint32_t snaplen = 0;
  uint32_t linktype = 1;  // LINKTYPE_ETHERNET
};
static_assert(sizeof(PcapFileHeader) == 24);

struct PcapRecordHeader {
  uint32_t ts_sec;
  uint32_t ts_usec;
  uint32_t caplen;
  uint32_t len;
};
static_assert(sizeof(PcapRecordHeader) == 16);

// Writes all of `len` bytes (a regular file writes everything unless it fails; a short write is
// retried so that a record is never cut in two by an interrupted call).
bool WriteAll(int fd, const uint8_t* data, size_t len) {
  while (len > 0) {
    const ssize_t r = write(fd, data, len);
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (r == 0) return false;
    data += r;
    len -= static_cast<size_t>(r);
  }
  return true;
}

// WriteAll with SIGPIPE blocked on this thread, for a FIFO whose reader may go away: the write
// fails with EPIPE instead of the signal killing the process, and the signal it raised on this
// thread is consumed.
bool WriteAllNoSigpipe(int fd, const uint8_t* data, size_t len) {
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  sigset_t pending;
  sigpending(&pending);
  const bool was_pending = sigismember(&pending, SIGPIPE);
  const bool ok = WriteAll(fd, data, len);
  const int err = errno;
  if (!ok && err == EPIPE && !was_pending) {
    const timespec zero{};
    sigtimedwait(&pipe_set, nullptr, &zero);
  }
  if (!sigismember(&old, SIGPIPE)) pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = err;
  return ok;
}

}  // namespace

void FilterDump::ClassInit(qom::ObjectClass& k) {
  k.description = "dump the frames passing a netdev to a pcap file";
  k.AddProperty(qom::LinkProp("netdev", &FilterDump::netdev_, "the netdev to watch (required)"));
  k.AddProperty(qom::Prop("file", &FilterDump::file_, std::string(""),
                          "the pcap file to write (created or truncated; required)"));
  k.AddProperty(qom::Prop("maxlen", &FilterDump::maxlen_, uint32_t{65536},
                          "bytes of each frame to capture at most"));
}

FilterDump::~FilterDump() {
  // netdev_ is cleared if the netdev was destroyed first: its queues, and our place on them, are
  // gone with it. Otherwise step off its queues; RemoveFilter waits out a running Observe.
  if (attached_ && netdev_ != nullptr) {
    for (size_t i = 0; i < netdev_->num_queues(); ++i) netdev_->queue(i)->RemoveFilter(this);
  }
}

absl::Status FilterDump::Complete() {
  const std::string ctx = absl::StrCat("filter-dump '", name(), "'");
  if (netdev_ == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(ctx, ": netdev is required"));
  }
  if (file_.empty()) return absl::InvalidArgumentError(absl::StrCat(ctx, ": file is required"));
  if (maxlen_ == 0) {
    return absl::InvalidArgumentError(absl::StrCat(ctx, ": maxlen must be at least 1"));
  }
  if (netdev_->num_queues() == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(ctx, ": netdev '", netdev_->name(), "' has no queues"));
  }
  // As QEMU, a FIFO blocks here until it has a reader.
  auto fd = UniqueFd::Open(file_.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (!fd.ok()) return Annotate(fd.status(), ctx);
  struct stat st;
  const bool fifo = fstat(fd->get(), &st) == 0 && S_ISFIFO(st.st_mode);
  PcapFileHeader hdr;
  hdr.snaplen = maxlen_;
  const auto* bytes = reinterpret_cast<const uint8_t*>(&hdr);
  if (!(fifo ? WriteAllNoSigpipe : WriteAll)(fd->get(), bytes, sizeof(hdr))) {
    return Annotate(ErrnoToStatus(errno, absl::StrCat("write(", file_, ")")), ctx);
  }
  {
    absl::MutexLock l(&mu_);
    fd_ = std::move(*fd);
    fifo_ = fifo;
  }
  for (size_t i = 0; i < netdev_->num_queues(); ++i) netdev_->queue(i)->AddFilter(this);
  attached_ = true;
  return absl::OkStatus();
}

void FilterDump::Observe(const NetClientState& nc, const iovec* iov, int n,
                         bool /*sent_by_netdev*/) {
  const size_t total = IovSize(iov, n);
  const size_t skip = std::min(total, static_cast<size_t>(std::max(nc.CarriedVnetHdrLen(), 0)));
  const size_t len = total - skip;
  const size_t caplen = std::min<size_t>(len, maxlen_);
  absl::MutexLock l(&mu_);
  // Stamped under the lock, so that records are in time order in the file.
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  const PcapRecordHeader rec{static_cast<uint32_t>(ts.tv_sec),
                             static_cast<uint32_t>(ts.tv_nsec / 1000),
                             static_cast<uint32_t>(caplen), static_cast<uint32_t>(len)};
  record_.resize(sizeof(rec) + caplen);
  std::memcpy(record_.data(), &rec, sizeof(rec));
  IovToBuf(iov, n, skip, record_.data() + sizeof(rec), caplen);
  if (!(fifo_ ? WriteAllNoSigpipe : WriteAll)(fd_.get(), record_.data(), record_.size())) {
    write_errors_->Add(1);
    return;
  }
  frames_->Add(1);
}

VDEV_REGISTER_TYPE(FilterDump);

}  // namespace vdev::net
