#include "core/loop/io_uring.h"

#include <linux/fs.h>
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace vdev {

absl::StatusOr<std::unique_ptr<IoUring>> IoUring::Create(unsigned entries) {
  io_uring_params p{};
  const int fd = static_cast<int>(syscall(__NR_io_uring_setup, entries, &p));
  if (fd < 0) return ErrnoToStatus(errno, "io_uring_setup");
  std::unique_ptr<IoUring> r(new IoUring());
  r->fd_ = UniqueFd(fd);
  r->sq_entries_ = p.sq_entries;
  r->sq_map_size_ = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  r->cq_map_size_ = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
  const bool single = p.features & IORING_FEAT_SINGLE_MMAP;
  if (single) r->sq_map_size_ = r->cq_map_size_ = std::max(r->sq_map_size_, r->cq_map_size_);
  r->sq_map_ = mmap(nullptr, r->sq_map_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                    IORING_OFF_SQ_RING);
  if (r->sq_map_ == MAP_FAILED) {
    r->sq_map_ = nullptr;
    return ErrnoToStatus(errno, "mmap(io_uring SQ)");
  }
  if (single) {
    r->cq_map_ = r->sq_map_;
  } else {
    r->cq_map_ = mmap(nullptr, r->cq_map_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                      fd, IORING_OFF_CQ_RING);
    if (r->cq_map_ == MAP_FAILED) {
      r->cq_map_ = nullptr;
      return ErrnoToStatus(errno, "mmap(io_uring CQ)");
    }
  }
  r->sqes_size_ = p.sq_entries * sizeof(io_uring_sqe);
  void* sqes = mmap(nullptr, r->sqes_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                    IORING_OFF_SQES);
  if (sqes == MAP_FAILED) return ErrnoToStatus(errno, "mmap(io_uring SQEs)");
  r->sqes_ = static_cast<io_uring_sqe*>(sqes);
  auto* sq = static_cast<uint8_t*>(r->sq_map_);
  auto* cq = static_cast<uint8_t*>(r->cq_map_);
  r->sq_head_ = reinterpret_cast<std::atomic<unsigned>*>(sq + p.sq_off.head);
  r->sq_tail_ = reinterpret_cast<std::atomic<unsigned>*>(sq + p.sq_off.tail);
  r->sq_mask_ = *reinterpret_cast<unsigned*>(sq + p.sq_off.ring_mask);
  r->sq_array_ = reinterpret_cast<unsigned*>(sq + p.sq_off.array);
  r->cq_head_ = reinterpret_cast<std::atomic<unsigned>*>(cq + p.cq_off.head);
  r->cq_tail_ = reinterpret_cast<std::atomic<unsigned>*>(cq + p.cq_off.tail);
  r->cq_mask_ = *reinterpret_cast<unsigned*>(cq + p.cq_off.ring_mask);
  r->cqes_ = reinterpret_cast<io_uring_cqe*>(cq + p.cq_off.cqes);
  return r;
}

IoUring::~IoUring() {
  if (sqes_ != nullptr) munmap(sqes_, sqes_size_);
  if (cq_map_ != nullptr && cq_map_ != sq_map_) munmap(cq_map_, cq_map_size_);
  if (sq_map_ != nullptr) munmap(sq_map_, sq_map_size_);
}

io_uring_sqe* IoUring::NextSqe() {
  const unsigned head = sq_head_->load(std::memory_order_acquire);
  const unsigned tail = sq_tail_->load(std::memory_order_relaxed) + pending_;
  if (tail - head >= sq_entries_) return nullptr;
  const unsigned idx = tail & sq_mask_;
  io_uring_sqe* s = &sqes_[idx];
  std::memset(s, 0, sizeof(*s));
  sq_array_[idx] = idx;
  ++pending_;
  return s;
}

bool IoUring::PrepWritev(int fd, const iovec* iov, int n, uint64_t user_data) {
  io_uring_sqe* s = NextSqe();
  if (s == nullptr) return false;
  s->opcode = IORING_OP_WRITEV;
  s->fd = fd;
  s->addr = reinterpret_cast<uint64_t>(iov);
  s->len = static_cast<uint32_t>(n);
  s->off = static_cast<uint64_t>(-1);  // the file position (none for a TAP)
  s->rw_flags = RWF_NOWAIT;            // -EAGAIN rather than parking the request
  s->user_data = user_data;
  return true;
}

bool IoUring::PrepReadv(int fd, const iovec* iov, int n, uint64_t user_data, bool link) {
  io_uring_sqe* s = NextSqe();
  if (s == nullptr) return false;
  s->opcode = IORING_OP_READV;
  s->fd = fd;
  s->addr = reinterpret_cast<uint64_t>(iov);
  s->len = static_cast<uint32_t>(n);
  s->off = static_cast<uint64_t>(-1);
  s->rw_flags = RWF_NOWAIT;  // an empty TAP answers -EAGAIN at once instead of waiting
  s->user_data = user_data;
  if (link) s->flags |= IOSQE_IO_LINK;
  return true;
}

absl::StatusOr<unsigned> IoUring::SubmitAndWait(unsigned wait) {
  const unsigned n = pending_;
  sq_tail_->store(sq_tail_->load(std::memory_order_relaxed) + n, std::memory_order_release);
  pending_ = 0;
  for (;;) {
    const long r = syscall(__NR_io_uring_enter, fd_.get(), n, wait,
                           wait ? IORING_ENTER_GETEVENTS : 0, nullptr, 0);
    if (r >= 0) return static_cast<unsigned>(r);
    if (errno != EINTR) return ErrnoToStatus(errno, "io_uring_enter");
  }
}

unsigned IoUring::Reap(absl::FunctionRef<void(uint64_t, int32_t)> fn) {
  unsigned head = cq_head_->load(std::memory_order_relaxed);
  const unsigned tail = cq_tail_->load(std::memory_order_acquire);
  unsigned n = 0;
  for (; head != tail; ++head, ++n) {
    const io_uring_cqe& c = cqes_[head & cq_mask_];
    fn(c.user_data, c.res);
  }
  cq_head_->store(head, std::memory_order_release);
  return n;
}

}  // namespace vdev
