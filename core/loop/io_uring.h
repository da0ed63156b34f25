// IoUring: an io_uring (through liburing) for batching many small fd operations into one system
// call. A TAP write or read costs one syscall per frame otherwise, and on this class of machine
// the syscall, not the copy, is the price of a frame.
//
// Example:
//   VDEV_ASSIGN_OR_RETURN(std::unique_ptr<IoUring> ring, IoUring::Create(64));
//   for (...) ring->PrepWritev(fd, iov, n, /*user_data=*/i);   // false when the SQ is full
//   ring->SubmitAndWait(ring->pending());                       // one io_uring_enter
//   ring->Reap([](uint64_t user_data, int32_t res) { ... });    // res: bytes or -errno
//
// Reads and writes are RWF_NOWAIT: one that would block completes with -EAGAIN instead of
// waiting, so SubmitAndWait never waits on the fd itself.
// Operations on the same fd complete in submission order only when linked (PrepReadv's `link`):
// a failed linked operation cancels the rest of its chain (-ECANCELED).
//
// Thread-safety: none; one thread at a time (the owner serialises).
#ifndef VDEV_CORE_LOOP_IO_URING_H_
#define VDEV_CORE_LOOP_IO_URING_H_

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "core/base/unique_fd.h"

struct io_uring;

namespace vdev {

class IoUring {
 public:
  // A ring of `entries` submission slots (a power of two). Unavailable when the kernel has
  // io_uring disabled.
  static absl::StatusOr<std::unique_ptr<IoUring>> Create(unsigned entries);
  ~IoUring();
  IoUring(const IoUring&) = delete;
  IoUring& operator=(const IoUring&) = delete;

  unsigned capacity() const;
  unsigned pending() const;  // prepared, not yet submitted

  // Queue a writev/readv of `iov` (which must stay valid until SubmitAndWait returns). False
  // when the submission queue is full. `link`: the next operation runs only if this one succeeds.
  bool PrepWritev(int fd, const iovec* iov, int n, uint64_t user_data);
  bool PrepReadv(int fd, const iovec* iov, int n, uint64_t user_data, bool link = false);

  // Submits what was prepared and waits for `wait` completions. Returns the number submitted,
  // or an error (the ring is then in an unknown state: stop using it).
  absl::StatusOr<unsigned> SubmitAndWait(unsigned wait);
  // Calls `fn(user_data, res)` for every completion available; returns how many.
  unsigned Reap(absl::FunctionRef<void(uint64_t, int32_t)> fn);

 private:
  IoUring();

  std::unique_ptr<io_uring> ring_;
};

}  // namespace vdev

#endif  // VDEV_CORE_LOOP_IO_URING_H_
