// Reading and writing the buffers of a descriptor chain (crosvm's Reader/Writer): a chain's
// device-readable part (VirtQueueElement::out) and device-writable part (::in) are lists of host
// segments of guest RAM; these cursors read or write them as one byte stream without the device
// doing iovec arithmetic. Nothing is ever read or written past the end: a short read or write
// returns what fit, and the device decides what a short chain means (usually a guest error).
//
//   ChainReader r(elem.out);
//   virtio_net_ctrl_hdr ch;
//   if (!r.ReadObject(&ch)) { ...too short... }
//   ChainWriter w(elem.in);
//   w.Write(&status, 1);
//   vq.Push(elem, w.written());
//
// Positional helpers (CopyToSegments / CopyFromSegments) cover the device that patches a field
// after the fact (virtio-net's num_buffers), and AppendSegments hands the rest of a chain to a
// system call (readv into the guest's buffers).
//
// Thread-safety: a cursor is used by one thread; the segments are the chain's, valid until the
// element is pushed.
#ifndef VDEV_BUS_VIRTIO_CHAIN_IO_H_
#define VDEV_BUS_VIRTIO_CHAIN_IO_H_

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "absl/types/span.h"

namespace vdev::virtio {

// Total length of `segs`.
size_t SegmentsSize(absl::Span<const iovec> segs);
// Copies up to `len` bytes into / out of `segs` starting `offset` bytes in; returns the bytes
// copied (less when the segments end first).
size_t CopyToSegments(absl::Span<const iovec> segs, size_t offset, const void* src, size_t len);
size_t CopyFromSegments(absl::Span<const iovec> segs, size_t offset, void* dst, size_t len);
// Appends to `out` the part of `segs` from `offset` on (no bytes are copied).
void AppendSegments(absl::Span<const iovec> segs, size_t offset, std::vector<iovec>* out);

// A cursor over segments: the position, the bytes left, and the current contiguous piece.
class SegmentCursor {
 public:
  explicit SegmentCursor(absl::Span<const iovec> segs);

  // Bytes before / after the cursor.
  size_t consumed() const { return consumed_; }
  size_t remaining() const { return total_ - consumed_; }
  // Moves the cursor `len` bytes on (at most to the end); returns how far it moved.
  size_t Skip(size_t len);
  // The contiguous bytes at the cursor, at most `limit` of them (empty at the end).
  absl::Span<uint8_t> Peek(size_t limit = SIZE_MAX) const;

 protected:
  // Copies between the segments at the cursor and `buf`, advancing.
  size_t Transfer(uint8_t* buf, size_t len, bool to_segments);

 private:
  absl::Span<const iovec> segs_;
  size_t total_ = 0;
  size_t consumed_ = 0;
  size_t seg_ = 0;      // current segment
  size_t seg_off_ = 0;  // offset in it
};

// Reads a chain's device-readable buffers in order.
class ChainReader : public SegmentCursor {
 public:
  using SegmentCursor::SegmentCursor;
  size_t Read(void* dst, size_t len) { return Transfer(static_cast<uint8_t*>(dst), len, false); }
  // Reads a whole object; false (and the cursor at the end) when fewer bytes are left.
  template <typename T>
  bool ReadObject(T* out) {
    static_assert(std::is_trivially_copyable_v<T>);
    return Read(out, sizeof(T)) == sizeof(T);
  }
};

// Writes a chain's device-writable buffers in order.
class ChainWriter : public SegmentCursor {
 public:
  using SegmentCursor::SegmentCursor;
  size_t Write(const void* src, size_t len) {
    return Transfer(static_cast<uint8_t*>(const_cast<void*>(src)), len, true);
  }
  template <typename T>
  bool WriteObject(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    return Write(&v, sizeof(T)) == sizeof(T);
  }
  // Bytes written (or skipped) so far: the used length to push.
  size_t written() const { return consumed(); }
};

}  // namespace vdev::virtio

#endif  // VDEV_BUS_VIRTIO_CHAIN_IO_H_
