#include "bus/virtio/chain_io.h"

#include <algorithm>
#include <cstring>

namespace vdev::virtio {

size_t SegmentsSize(absl::Span<const iovec> segs) {
  size_t n = 0;
  for (const iovec& v : segs) n += v.iov_len;
  return n;
}

namespace {

// Calls fn(segment pointer, buffer offset, chunk) for the bytes [offset, offset + len).
template <typename Fn>
size_t ForEachChunk(absl::Span<const iovec> segs, size_t offset, size_t len, Fn fn) {
  size_t done = 0;
  for (const iovec& v : segs) {
    if (done == len) break;
    if (offset >= v.iov_len) {
      offset -= v.iov_len;
      continue;
    }
    const size_t chunk = std::min(v.iov_len - offset, len - done);
    fn(static_cast<uint8_t*>(v.iov_base) + offset, done, chunk);
    done += chunk;
    offset = 0;
  }
  return done;
}

}  // namespace

size_t CopyToSegments(absl::Span<const iovec> segs, size_t offset, const void* src, size_t len) {
  const auto* s = static_cast<const uint8_t*>(src);
  return ForEachChunk(segs, offset, len,
                      [s](uint8_t* p, size_t at, size_t n) { std::memcpy(p, s + at, n); });
}

size_t CopyFromSegments(absl::Span<const iovec> segs, size_t offset, void* dst, size_t len) {
  auto* d = static_cast<uint8_t*>(dst);
  return ForEachChunk(segs, offset, len,
                      [d](uint8_t* p, size_t at, size_t n) { std::memcpy(d + at, p, n); });
}

void AppendSegments(absl::Span<const iovec> segs, size_t offset, std::vector<iovec>* out) {
  for (const iovec& v : segs) {
    if (offset >= v.iov_len) {
      offset -= v.iov_len;
      continue;
    }
    out->push_back({static_cast<uint8_t*>(v.iov_base) + offset, v.iov_len - offset});
    offset = 0;
  }
}

SegmentCursor::SegmentCursor(absl::Span<const iovec> segs)
    : segs_(segs), total_(SegmentsSize(segs)) {}

size_t SegmentCursor::Skip(size_t len) { return Transfer(nullptr, len, false); }

absl::Span<uint8_t> SegmentCursor::Peek(size_t limit) const {
  size_t seg = seg_, off = seg_off_;
  while (seg < segs_.size() && off == segs_[seg].iov_len) {
    ++seg;
    off = 0;
  }
  if (seg == segs_.size()) return {};
  return absl::MakeSpan(static_cast<uint8_t*>(segs_[seg].iov_base) + off,
                        std::min(segs_[seg].iov_len - off, limit));
}

size_t SegmentCursor::Transfer(uint8_t* buf, size_t len, bool to_segments) {
  size_t done = 0;
  while (done < len && seg_ < segs_.size()) {
    const iovec& v = segs_[seg_];
    const size_t chunk = std::min(v.iov_len - seg_off_, len - done);
    if (buf != nullptr && chunk != 0) {
      uint8_t* p = static_cast<uint8_t*>(v.iov_base) + seg_off_;
      if (to_segments) {
        std::memcpy(p, buf + done, chunk);
      } else {
        std::memcpy(buf + done, p, chunk);
      }
    }
    done += chunk;
    seg_off_ += chunk;
    if (seg_off_ == v.iov_len) {
      ++seg_;
      seg_off_ = 0;
    }
  }
  consumed_ += done;
  return done;
}

}  // namespace vdev::virtio
