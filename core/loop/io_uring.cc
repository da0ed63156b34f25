#include "core/loop/io_uring.h"

#include <liburing.h>
#include <linux/fs.h>

#include <cerrno>

namespace vdev {

IoUring::IoUring() : ring_(std::make_unique<io_uring>()) {}

absl::StatusOr<std::unique_ptr<IoUring>> IoUring::Create(unsigned entries) {
  std::unique_ptr<IoUring> r(new IoUring());
  if (const int err = io_uring_queue_init(entries, r->ring_.get(), 0); err < 0) {
    r->ring_.reset();  // nothing to tear down
    return ErrnoToStatus(-err, "io_uring_queue_init");
  }
  return r;
}

IoUring::~IoUring() {
  if (ring_ != nullptr) io_uring_queue_exit(ring_.get());
}

unsigned IoUring::capacity() const { return ring_->sq.ring_entries; }

unsigned IoUring::pending() const { return io_uring_sq_ready(ring_.get()); }

bool IoUring::PrepWritev(int fd, const iovec* iov, int n, uint64_t user_data) {
  io_uring_sqe* s = io_uring_get_sqe(ring_.get());
  if (s == nullptr) return false;
  // Offset -1: the file position (none for a TAP).
  io_uring_prep_writev(s, fd, iov, static_cast<unsigned>(n), static_cast<uint64_t>(-1));
  s->rw_flags = RWF_NOWAIT;  // -EAGAIN rather than parking the request
  io_uring_sqe_set_data64(s, user_data);
  return true;
}

bool IoUring::PrepReadv(int fd, const iovec* iov, int n, uint64_t user_data, bool link) {
  io_uring_sqe* s = io_uring_get_sqe(ring_.get());
  if (s == nullptr) return false;
  io_uring_prep_readv(s, fd, iov, static_cast<unsigned>(n), static_cast<uint64_t>(-1));
  s->rw_flags = RWF_NOWAIT;  // an empty TAP answers -EAGAIN at once instead of waiting
  io_uring_sqe_set_data64(s, user_data);
  if (link) io_uring_sqe_set_flags(s, IOSQE_IO_LINK);
  return true;
}

absl::StatusOr<unsigned> IoUring::SubmitAndWait(unsigned wait) {
  for (;;) {
    const int r = io_uring_submit_and_wait(ring_.get(), wait);
    if (r >= 0) return static_cast<unsigned>(r);
    if (r != -EINTR) return ErrnoToStatus(-r, "io_uring_enter");
  }
}

unsigned IoUring::Reap(absl::FunctionRef<void(uint64_t, int32_t)> fn) {
  unsigned head, n = 0;
  io_uring_cqe* c;
  io_uring_for_each_cqe(ring_.get(), head, c) {
    fn(io_uring_cqe_get_data64(c), c->res);
    ++n;
  }
  io_uring_cq_advance(ring_.get(), n);
  return n;
}

}  // namespace vdev
