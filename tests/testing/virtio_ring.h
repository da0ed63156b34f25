// The driver side of one split virtqueue in guest RAM, for the software guest and for tests that
// hand-craft rings: lays out the descriptor table, available and used rings (VIRTIO 1.2 §2.7),
// builds direct and indirect chains, publishes them, and reads back used entries. Raw setters
// exist so hostile tests can write anything a malicious driver could.
//
// Example:
//   GuestVring ring(mem, GuestAddr(0x10000), 16);
//   uint16_t head = ring.AddChain({{GuestAddr(0x20000), 64, /*write=*/true}});
//   ring.Publish(head);
//   ... device pops and pushes ...
//   auto used = ring.TakeUsed();   // {id, len} pairs
//
// Thread-safety: none; the test thread plays the driver.
#ifndef VDEV_TESTS_TESTING_VIRTIO_RING_H_
#define VDEV_TESTS_TESTING_VIRTIO_RING_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "core/memory/guest_memory.h"

namespace vdev::testing {

class GuestVring {
 public:
  struct Buf {
    GuestAddr addr;
    uint32_t len;
    bool write;  // device-writable
  };

  // Descriptor table at `base`, available ring right after it, used ring on the next 4 KiB
  // boundary (the legacy layout, which is also a valid modern one).
  GuestVring(const GuestMemory& mem, GuestAddr base, uint16_t size);

  uint16_t size() const { return size_; }
  GuestAddr desc_addr() const { return desc_; }
  GuestAddr avail_addr() const { return avail_; }
  GuestAddr used_addr() const { return used_; }
  // Bytes from `base` to the end of the used ring.
  uint64_t footprint() const;

  // Writes a chain into the next free descriptors (allocated round-robin); returns its head.
  uint16_t AddChain(const std::vector<Buf>& bufs);
  // Writes `bufs` as an indirect table at `table` and one descriptor pointing at it.
  uint16_t AddIndirect(const std::vector<Buf>& bufs, GuestAddr table);
  // Makes `head` available: ring[avail_idx % size] = head, then avail_idx + 1.
  void Publish(uint16_t head);

  // Raw access, for hostile tests.
  void WriteDesc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next);
  static void WriteDescAt(const GuestMemory& mem, GuestAddr table, uint32_t i, uint64_t addr,
                          uint32_t len, uint16_t flags, uint16_t next);
  void SetRingEntry(uint16_t slot, uint16_t head);
  void SetAvailIdx(uint16_t idx);
  uint16_t avail_idx() const;
  void SetAvailFlags(uint16_t flags);
  void SetUsedEvent(uint16_t idx);
  uint16_t used_idx() const;
  uint16_t used_flags() const;
  uint16_t avail_event() const;
  std::pair<uint32_t, uint32_t> UsedElem(uint16_t slot) const;  // {id, len}

  // Used entries published since the last call.
  std::vector<std::pair<uint32_t, uint32_t>> TakeUsed();

 private:
  const GuestMemory& mem_;
  uint16_t size_;
  GuestAddr desc_, avail_, used_;
  uint16_t next_desc_ = 0;
  uint16_t avail_shadow_ = 0;
  uint16_t last_used_ = 0;
};

}  // namespace vdev::testing

#endif  // VDEV_TESTS_TESTING_VIRTIO_RING_H_
