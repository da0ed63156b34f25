#include "tests/testing/virtio_ring.h"

#include "bus/virtio/virtio_uapi.h"

namespace vdev::testing {

GuestVring::GuestVring(const GuestMemory& mem, GuestAddr base, uint16_t size)
    : mem_(mem),
      size_(size),
      desc_(base),
      avail_(base + 16ull * size),
      used_(GuestAddr((avail_.value() + 6 + 2ull * size + 4095) & ~4095ull)) {
  // A zeroed ring: indices 0, no flags.
  for (uint64_t a = desc_.value(); a < used_.value() + 6 + 8ull * size; a += 8) {
    mem_.WriteLe<uint64_t>(GuestAddr(a), 0);
  }
}

uint64_t GuestVring::footprint() const { return used_.value() + 6 + 8ull * size_ - desc_.value(); }

void GuestVring::WriteDescAt(const GuestMemory& mem, GuestAddr table, uint32_t i, uint64_t addr,
                             uint32_t len, uint16_t flags, uint16_t next) {
  const GuestAddr d = table + 16ull * i;
  mem.WriteLe<uint64_t>(d, addr);
  mem.WriteLe<uint32_t>(d + 8, len);
  mem.WriteLe<uint16_t>(d + 12, flags);
  mem.WriteLe<uint16_t>(d + 14, next);
}

void GuestVring::WriteDesc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
  WriteDescAt(mem_, desc_, i, addr, len, flags, next);
}

uint16_t GuestVring::AddChain(const std::vector<Buf>& bufs) {
  const uint16_t head = next_desc_;
  for (size_t k = 0; k < bufs.size(); ++k) {
    const uint16_t i = next_desc_;
    next_desc_ = static_cast<uint16_t>((next_desc_ + 1) % size_);
    const bool last = k + 1 == bufs.size();
    WriteDesc(i, bufs[k].addr.value(), bufs[k].len,
              static_cast<uint16_t>((bufs[k].write ? VRING_DESC_F_WRITE : 0) |
                                    (last ? 0 : VRING_DESC_F_NEXT)),
              last ? 0 : next_desc_);
  }
  return head;
}

uint16_t GuestVring::AddIndirect(const std::vector<Buf>& bufs, GuestAddr table) {
  for (size_t k = 0; k < bufs.size(); ++k) {
    const bool last = k + 1 == bufs.size();
    WriteDescAt(mem_, table, static_cast<uint32_t>(k), bufs[k].addr.value(), bufs[k].len,
                static_cast<uint16_t>((bufs[k].write ? VRING_DESC_F_WRITE : 0) |
                                      (last ? 0 : VRING_DESC_F_NEXT)),
                last ? 0 : static_cast<uint16_t>(k + 1));
  }
  const uint16_t head = next_desc_;
  next_desc_ = static_cast<uint16_t>((next_desc_ + 1) % size_);
  WriteDesc(head, table.value(), static_cast<uint32_t>(16 * bufs.size()), VRING_DESC_F_INDIRECT, 0);
  return head;
}

void GuestVring::SetRingEntry(uint16_t slot, uint16_t head) {
  mem_.WriteLe<uint16_t>(avail_ + 4 + 2ull * (slot % size_), head);
}

void GuestVring::Publish(uint16_t head) {
  SetRingEntry(avail_shadow_, head);
  SetAvailIdx(static_cast<uint16_t>(avail_shadow_ + 1));
}

void GuestVring::SetAvailIdx(uint16_t idx) {
  avail_shadow_ = idx;
  mem_.WriteLe<uint16_t>(avail_ + 2, idx);
}

uint16_t GuestVring::avail_idx() const { return *mem_.ReadLe<uint16_t>(avail_ + 2); }
void GuestVring::SetAvailFlags(uint16_t flags) { mem_.WriteLe<uint16_t>(avail_, flags); }
void GuestVring::SetUsedEvent(uint16_t idx) {
  mem_.WriteLe<uint16_t>(avail_ + 4 + 2ull * size_, idx);
}
uint16_t GuestVring::used_idx() const { return *mem_.ReadLe<uint16_t>(used_ + 2); }
uint16_t GuestVring::used_flags() const { return *mem_.ReadLe<uint16_t>(used_); }
uint16_t GuestVring::avail_event() const {
  return *mem_.ReadLe<uint16_t>(used_ + 4 + 8ull * size_);
}

std::pair<uint32_t, uint32_t> GuestVring::UsedElem(uint16_t slot) const {
  const GuestAddr e = used_ + 4 + 8ull * (slot % size_);
  return {*mem_.ReadLe<uint32_t>(e), *mem_.ReadLe<uint32_t>(e + 4)};
}

std::vector<std::pair<uint32_t, uint32_t>> GuestVring::TakeUsed() {
  std::vector<std::pair<uint32_t, uint32_t>> out;
  const uint16_t now = used_idx();
  while (last_used_ != now) out.push_back(UsedElem(last_used_++));
  return out;
}

}  // namespace vdev::testing
