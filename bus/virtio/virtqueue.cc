#include "bus/virtio/virtqueue.h"

#include <atomic>
#include <cstring>

#include "absl/strings/str_format.h"
#include "bus/virtio/virtio_uapi.h"
#include "core/base/checked_math.h"

namespace vdev::virtio {
namespace {

constexpr uint64_t kDescSize = 16;

uint64_t AvailSize(uint16_t n) { return 6 + 2 * uint64_t{n}; }  // flags, idx, ring, used_event
uint64_t UsedSize(uint16_t n) { return 6 + 8 * uint64_t{n}; }   // flags, idx, ring, avail_event

// The rings are little-endian (VIRTIO 1.x) and so is every host vdev runs on.
uint16_t Load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
void Store16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
void Store32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

}  // namespace

VirtQueue::VirtQueue(uint16_t index, uint16_t max_size)
    : index_(index), max_size_(max_size), size_(max_size) {
  head_in_flight_.assign(max_size_, false);
}

void VirtQueue::Reset() {
  size_ = max_size_;
  desc_ = avail_ = used_ = GuestAddr(0);
  enabled_ = frozen_ = false;
  mem_ = nullptr;
  desc_host_ = avail_host_ = used_host_ = nullptr;
  event_idx_ = indirect_ = false;
  last_avail_idx_ = shadow_avail_idx_ = used_idx_ = signalled_used_ = 0;
  signalled_used_valid_ = false;
  notification_enabled_ = !polling_;
  notification_wanted_ = true;
  in_flight_ = 0;
  head_in_flight_.assign(max_size_, false);
  broken_ = false;
  broken_reason_.clear();
}

bool VirtQueue::SetMaxSize(uint16_t max_size) {
  if (frozen_ || max_size == 0 || max_size > kMaxQueueSize || !IsPowerOfTwo(max_size)) {
    return false;
  }
  max_size_ = max_size;
  Reset();
  return true;
}

bool VirtQueue::SetSize(uint16_t size) {
  if (frozen_ || size == 0 || size > max_size_ || !IsPowerOfTwo(size)) return false;
  size_ = size;
  return true;
}

bool VirtQueue::SetAddresses(GuestAddr desc, GuestAddr avail, GuestAddr used) {
  if (frozen_) return false;
  desc_ = desc;
  avail_ = avail;
  used_ = used;
  return true;
}

bool VirtQueue::SetLegacyPfn(uint32_t pfn, uint32_t align) {
  if (frozen_) return false;
  if (pfn == 0) {
    desc_ = avail_ = used_ = GuestAddr(0);
    enabled_ = false;
    return true;
  }
  const uint64_t desc = uint64_t{pfn} << 12;
  const uint64_t avail = desc + kDescSize * size_;
  const auto used = AlignUp(avail + AvailSize(size_), align);
  if (!used) return false;
  desc_ = GuestAddr(desc);
  avail_ = GuestAddr(avail);
  used_ = GuestAddr(*used);
  enabled_ = true;
  return true;
}

bool VirtQueue::SetEnabled(bool enabled) {
  if (frozen_) return false;
  enabled_ = enabled;
  return true;
}

void VirtQueue::SetRingPositions(uint16_t last_avail, uint16_t used) {
  last_avail_idx_ = shadow_avail_idx_ = last_avail;
  used_idx_ = used;
  signalled_used_valid_ = false;
}

uint16_t VirtQueue::ReadUsedIdx() {
  if (!Fresh()) return used_idx_;
  return __atomic_load_n(reinterpret_cast<uint16_t*>(used_host_ + 2), __ATOMIC_ACQUIRE);
}

PopResult VirtQueue::Break(std::string reason) {
  if (!broken_) {
    broken_ = true;
    broken_reason_ = absl::StrFormat("queue %u: %s", index_, reason);
  }
  return PopResult::kBroken;
}

bool VirtQueue::Activate(const GuestMemory* mem, bool event_idx, bool indirect) {
  mem_ = mem;
  event_idx_ = event_idx;
  indirect_ = indirect;
  if (!IsPowerOfTwo(size_) || size_ > max_size_) {
    Break(absl::StrFormat("size %u is not a power of two up to %u", size_, max_size_));
    return false;
  }
  if (desc_.value() % 16 != 0 || avail_.value() % 2 != 0 || used_.value() % 4 != 0) {
    Break(absl::StrFormat("ring areas misaligned (desc 0x%x, avail 0x%x, used 0x%x)", desc_.value(),
                          avail_.value(), used_.value()));
    return false;
  }
  const uint64_t dl = kDescSize * size_, al = AvailSize(size_), ul = UsedSize(size_);
  if (RangesOverlap(desc_.value(), dl, avail_.value(), al) ||
      RangesOverlap(desc_.value(), dl, used_.value(), ul) ||
      RangesOverlap(avail_.value(), al, used_.value(), ul)) {
    Break("ring areas overlap");
    return false;
  }
  if (!Translate()) return false;
  // A poller that began before the rings existed could not say so in them: say it now.
  SetNotification(notification_wanted_);
  return true;
}

bool VirtQueue::Translate() {
  // Each area must be RAM, in one region (the used ring writable); host views are kept until
  // guest memory changes.
  mem_generation_ = mem_->generation();
  desc_host_ = mem_->HostPointer(desc_, kDescSize * size_, false);
  avail_host_ = mem_->HostPointer(avail_, AvailSize(size_), false);
  used_host_ = mem_->HostPointer(used_, UsedSize(size_), true);
  if (desc_host_ == nullptr || avail_host_ == nullptr || used_host_ == nullptr) {
    Break(absl::StrFormat("ring areas are not RAM (desc 0x%x, avail 0x%x, used 0x%x, size %u)",
                          desc_.value(), avail_.value(), used_.value(), size_));
    desc_host_ = avail_host_ = used_host_ = nullptr;
    return false;
  }
  return true;
}

uint16_t VirtQueue::AvailIdx() {
  // Acquire: the ring entries and descriptors the driver wrote before publishing idx are seen.
  return __atomic_load_n(reinterpret_cast<uint16_t*>(avail_host_ + 2), __ATOMIC_ACQUIRE);
}

void VirtQueue::WriteUsedIdx(uint16_t v) {
  // Release: the used entries are visible before the index that publishes them.
  __atomic_store_n(reinterpret_cast<uint16_t*>(used_host_ + 2), v, __ATOMIC_RELEASE);
}

bool VirtQueue::Fresh() {
  if (broken_ || mem_ == nullptr || desc_host_ == nullptr) return false;
  // Guest memory was replaced: translate the rings again (or break) before touching them.
  return mem_->generation() == mem_generation_ || Translate();
}

bool VirtQueue::Empty() {
  if (!Fresh()) return true;
  if (shadow_avail_idx_ != last_avail_idx_) return false;
  shadow_avail_idx_ = AvailIdx();
  return shadow_avail_idx_ == last_avail_idx_;
}

PopResult VirtQueue::Pop(VirtQueueElement* elem) {
  if (broken_) return PopResult::kBroken;
  if (!active() || desc_host_ == nullptr) return PopResult::kEmpty;
  if (!Fresh()) return PopResult::kBroken;
  if (shadow_avail_idx_ == last_avail_idx_) {
    shadow_avail_idx_ = AvailIdx();
    if (shadow_avail_idx_ == last_avail_idx_) {
      if (!(event_idx_ && notification_enabled_)) return PopResult::kEmpty;
      // With EVENT_IDX the driver kicks only when it passes avail_event: publish it, make the
      // store visible before reading the index again (the driver does the mirror image), and
      // only then call the ring empty. Otherwise a buffer added in between is never kicked.
      Store16(used_host_ + 4 + 8 * size_, last_avail_idx_);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      shadow_avail_idx_ = AvailIdx();
      if (shadow_avail_idx_ == last_avail_idx_) return PopResult::kEmpty;
    }
  }
  // More than a ring's worth ahead (or an index that went backwards) is a lie (CVE-2016-5403).
  const uint16_t pending = static_cast<uint16_t>(shadow_avail_idx_ - last_avail_idx_);
  if (pending > size_) {
    return Break(absl::StrFormat("available index %u is %u entries ahead of %u (size %u)",
                                 shadow_avail_idx_, pending, last_avail_idx_, size_));
  }
  const uint16_t slot = last_avail_idx_ & (size_ - 1);
  const uint16_t head = Load16(avail_host_ + 4 + 2 * slot);
  if (head >= size_) return Break(absl::StrFormat("head %u >= size %u", head, size_));
  if (head_in_flight_[head]) return Break(absl::StrFormat("head %u made available twice", head));
  elem->Clear();
  elem->head = head;
  if (PopResult r = ReadChain(head, elem); r != PopResult::kOk) return r;
  ++last_avail_idx_;
  ++in_flight_;
  head_in_flight_[head] = true;
  // With EVENT_IDX and kicks wanted, ask for one when the driver goes past what we consumed.
  if (event_idx_ && notification_enabled_) Store16(used_host_ + 4 + 8 * size_, last_avail_idx_);
  return PopResult::kOk;
}

bool VirtQueue::MapBuffer(const Desc& d, VirtQueueElement* elem) {
  const bool write = d.flags & VRING_DESC_F_WRITE;
  std::vector<iovec>& v = write ? elem->in : elem->out;
  if (!mem_->Translate(GuestAddr(d.addr), d.len, write, &v)) return false;
  (write ? elem->in_len : elem->out_len) += d.len;
  return true;
}

PopResult VirtQueue::ReadChain(uint16_t head, VirtQueueElement* elem) {
  auto read_desc = [](const uint8_t* table, uint32_t i) {
    Desc d;  // one copy of the guest's descriptor; only the copy is used
    std::memcpy(&d.addr, table + kDescSize * i, 8);
    std::memcpy(&d.len, table + kDescSize * i + 8, 4);
    std::memcpy(&d.flags, table + kDescSize * i + 12, 2);
    std::memcpy(&d.next, table + kDescSize * i + 14, 2);
    return d;
  };
  const uint8_t* table = desc_host_;
  uint32_t table_len = size_;
  std::vector<uint8_t> indirect_copy;
  Desc d = read_desc(table, head);
  bool indirect = false;
  if (d.flags & VRING_DESC_F_INDIRECT) {
    if (!indirect_) return Break("indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC");
    if (d.flags & VRING_DESC_F_NEXT) return Break("indirect descriptor with NEXT");
    if (d.len == 0 || d.len % kDescSize != 0 || d.len / kDescSize > kMaxIndirectDescriptors) {
      return Break(absl::StrFormat("indirect table of %u bytes", d.len));
    }
    // The spec has the device ignore WRITE on the descriptor that points at a table.
    table = mem_->HostPointer(GuestAddr(d.addr), d.len, false);
    if (table == nullptr) {  // not RAM, or across regions: copy it (bounded: 1 MiB at most)
      indirect_copy.resize(d.len);
      if (!mem_->Read(GuestAddr(d.addr), absl::MakeSpan(indirect_copy))) {
        return Break(
            absl::StrFormat("indirect table at 0x%x (%u bytes) is not RAM", d.addr, d.len));
      }
      table = indirect_copy.data();
    }
    table_len = d.len / kDescSize;
    indirect = true;
    d = read_desc(table, 0);
  }
  uint32_t count = 0;
  uint64_t total = 0;
  bool seen_write = false;
  while (true) {
    // A chain can hold each descriptor of its table once: more means a loop.
    if (++count > table_len) return Break("descriptor chain loops or is longer than its table");
    if (d.flags & VRING_DESC_F_INDIRECT) {
      return Break(indirect ? "indirect descriptor inside an indirect table"
                            : "indirect descriptor after the head of a chain");
    }
    if (d.flags & VRING_DESC_F_WRITE) {
      seen_write = true;
    } else if (seen_write) {
      return Break("device-readable descriptor after a device-writable one");
    }
    total += d.len;
    if (total > 0xffffffffull) return Break("chain longer than 4 GiB");
    if (d.len > 0 && !MapBuffer(d, elem)) {
      return Break(absl::StrFormat("buffer 0x%x+%u is not RAM", d.addr, d.len));
    }
    if (!(d.flags & VRING_DESC_F_NEXT)) break;
    if (d.next >= table_len) {
      return Break(absl::StrFormat("next %u outside a table of %u", d.next, table_len));
    }
    d = read_desc(table, d.next);
  }
  return PopResult::kOk;
}

void VirtQueue::Fill(const VirtQueueElement& elem, uint32_t len, uint16_t idx) {
  if (!Fresh() || elem.head >= size_ || !head_in_flight_[elem.head]) {
    return;  // nothing to give back (device bug or reset in between): never write blindly
  }
  if (len > elem.in_len) len = static_cast<uint32_t>(elem.in_len);
  const uint16_t pos = static_cast<uint16_t>(used_idx_ + idx) & (size_ - 1);
  Store32(used_host_ + 4 + 8 * pos, elem.head);
  Store32(used_host_ + 8 + 8 * pos, len);
  head_in_flight_[elem.head] = false;
  --in_flight_;
}

void VirtQueue::Flush(uint16_t count) {
  if (count == 0 || !Fresh()) return;
  used_idx_ = static_cast<uint16_t>(used_idx_ + count);
  WriteUsedIdx(used_idx_);
}

void VirtQueue::Push(const VirtQueueElement& elem, uint32_t len) {
  Fill(elem, len, 0);
  Flush(1);
}

void VirtQueue::Unpop(const VirtQueueElement& elem) {
  if (elem.head >= size_ || !head_in_flight_[elem.head]) return;
  head_in_flight_[elem.head] = false;
  --in_flight_;
  --last_avail_idx_;
}

bool VirtQueue::ShouldNotify() {
  if (!Fresh()) return false;
  // The used index store must be visible before the driver's flags/used_event are read (the
  // driver does the mirror image), or an interrupt can be lost.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!event_idx_) return !(Load16(avail_host_) & VRING_AVAIL_F_NO_INTERRUPT);
  const uint16_t old = signalled_used_;
  const bool valid = signalled_used_valid_;
  signalled_used_ = used_idx_;
  signalled_used_valid_ = true;
  if (!valid) return true;
  const uint16_t used_event = Load16(avail_host_ + 4 + 2 * size_);
  // vring_need_event: notify when used_event lies in (old, new].
  return static_cast<uint16_t>(used_idx_ - used_event - 1) < static_cast<uint16_t>(used_idx_ - old);
}

void VirtQueue::SetPolling(bool polling) {
  polling_ = polling;
  SetNotification(notification_wanted_);
}

void VirtQueue::SetNotification(bool enable) {
  notification_wanted_ = enable;
  enable = enable && !polling_;
  notification_enabled_ = enable;
  if (!Fresh()) return;
  if (event_idx_) {
    if (enable) Store16(used_host_ + 4 + 8 * size_, shadow_avail_idx_);  // avail_event
  } else {
    uint16_t flags = Load16(used_host_);
    flags = enable ? (flags & ~VRING_USED_F_NO_NOTIFY) : (flags | VRING_USED_F_NO_NOTIFY);
    Store16(used_host_, flags);
  }
  if (enable) std::atomic_thread_fence(std::memory_order_seq_cst);
}

}  // namespace vdev::virtio
