// VirtQueue: the device side of a split virtqueue (VIRTIO 1.2 §2.7).
//
// The driver (guest) owns three areas in guest RAM: the descriptor table, the available ring and
// the used ring. The device pops chains the driver made available, reads and writes the buffers
// they describe, and pushes them back as used. Everything in those areas is hostile input: every
// descriptor is copied once and validated as a copy; chains are bounded by the queue size
// (indirect tables by their own length); every buffer must be RAM in full. A ring the device
// cannot trust marks the queue broken, and the owning device goes to DEVICE_NEEDS_RESET instead
// of crashing, hanging or allocating without bound (see HOSTILE_INPUTS.md, "Split virtqueue").
//
// Example (a device's queue handler):
//   VirtQueueElement elem;
//   for (int budget = 64; budget > 0; --budget) {
//     if (vq.Pop(&elem) != PopResult::kOk) break;    // kEmpty, or kBroken (device resets)
//     size_t n = Produce(elem.in);                   // write into the device-writable buffers
//     vq.Push(elem, n);
//   }
//   if (vq.ShouldNotify()) transport->Notify(queue);
//
// Thread-safety: one thread at a time (the device's queue lock or its data-plane thread).
// Configuration (size, addresses, enable) is written by the transport before DRIVER_OK and
// frozen after; the ring areas are translated once at Activate and again only when guest memory
// changes (GuestMemory::generation).
#ifndef VDEV_BUS_VIRTIO_VIRTQUEUE_H_
#define VDEV_BUS_VIRTIO_VIRTQUEUE_H_

#include <sys/uio.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/memory/guest_memory.h"

namespace vdev::virtio {

inline constexpr uint16_t kMaxQueueSize = 32768;
// An indirect table holds at most this many descriptors (a 1 MiB table).
inline constexpr uint32_t kMaxIndirectDescriptors = 65536;

// One popped chain: the buffers the device may read (driver -> device, "out") and write
// (device -> driver, "in"), as host segments of guest RAM valid until the element is pushed.
struct VirtQueueElement {
  uint16_t head = 0;
  std::vector<iovec> out;
  std::vector<iovec> in;
  uint64_t out_len = 0;  // bytes readable
  uint64_t in_len = 0;   // bytes writable
  void Clear() {
    out.clear();
    in.clear();
    out_len = in_len = 0;
  }
};

enum class PopResult {
  kOk,
  kEmpty,   // nothing available (or the queue is not ready)
  kBroken,  // the ring is unusable: the device must enter DEVICE_NEEDS_RESET
};

class VirtQueue {
 public:
  explicit VirtQueue(uint16_t index = 0, uint16_t max_size = 256);

  uint16_t index() const { return index_; }
  uint16_t max_size() const { return max_size_; }
  // A transport whose frontend owns the ring sizes (vhost-user-backend: the frontend's device
  // model chose them) raises the limit. A power of two up to kMaxQueueSize, on a queue that is
  // not frozen; the queue is reset. False otherwise.
  bool SetMaxSize(uint16_t max_size);

  // ---- driver-visible configuration (transport registers) ----
  // Queue size: a power of two in 1..max_size. False (and unchanged) otherwise, or when frozen.
  bool SetSize(uint16_t size);
  uint16_t size() const { return size_; }
  bool SetAddresses(GuestAddr desc, GuestAddr avail, GuestAddr used);
  GuestAddr desc_addr() const { return desc_; }
  GuestAddr avail_addr() const { return avail_; }
  GuestAddr used_addr() const { return used_; }
  // Legacy (virtio 0.9) layout: one page-aligned area holding all three parts.
  bool SetLegacyPfn(uint32_t pfn, uint32_t align = 4096);
  bool SetEnabled(bool enabled);
  bool enabled() const { return enabled_; }
  // Freezes the configuration (DRIVER_OK): later Set* calls fail.
  void Freeze() { frozen_ = true; }
  bool frozen() const { return frozen_; }

  // ---- runtime ----
  // Starts using the rings with the negotiated ring features (EVENT_IDX, INDIRECT_DESC) and the
  // given memory. Validates the ring areas (alignment, all RAM, no overlap); false marks the queue
  // broken (with the reason in broken_reason()).
  bool Activate(const GuestMemory* mem, bool event_idx, bool indirect);
  bool active() const { return mem_ != nullptr; }
  // Back to the power-on state (size = max, addresses 0, disabled, not frozen, indices 0).
  void Reset();

  PopResult Pop(VirtQueueElement* elem);
  // Returns a popped element with `len` bytes written into its device-writable buffers. Fill puts
  // it at position `idx` after the pending ones; Flush publishes `count` filled entries at once.
  void Push(const VirtQueueElement& elem, uint32_t len);
  void Fill(const VirtQueueElement& elem, uint32_t len, uint16_t idx);
  void Flush(uint16_t count);
  // Returns an element without using it (the device could not process it now): it will be
  // popped again.
  void Unpop(const VirtQueueElement& elem);

  // Device -> driver: whether the driver wants an interrupt for what was flushed since the last
  // notification (VRING_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX).
  bool ShouldNotify();
  // Driver -> device: ask for kicks (true) or suppress them while the device polls (false). With
  // EVENT_IDX this publishes avail_event. After enabling, check for work again (a kick may have
  // been skipped just before).
  void SetNotification(bool enable);
  // While the device's loop busy-polls this queue (iothread poll-max-ns), kicks stay suppressed
  // whatever SetNotification asks; when polling ends the last SetNotification wish applies again
  // (then check for work: a buffer may have come just before).
  void SetPolling(bool polling);
  bool polling() const { return polling_; }
  // Whether buffers are available (without popping).
  bool Empty();

  bool broken() const { return broken_; }
  const std::string& broken_reason() const { return broken_reason_; }
  uint16_t in_flight() const { return in_flight_; }
  uint16_t last_avail_idx() const { return last_avail_idx_; }
  uint16_t used_idx() const { return used_idx_; }
  // Ring positions, for handing a running queue over (vhost) and back.
  void SetRingPositions(uint16_t last_avail, uint16_t used);
  // The used index as the ring in guest memory holds it (where another data plane got to);
  // used_idx() when the ring cannot be read.
  uint16_t ReadUsedIdx();

 private:
  struct Desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
  };
  PopResult Break(std::string reason);
  bool Translate();  // (re)computes the host pointers of the ring areas
  // True when the rings can be touched: active, not broken, host views current.
  bool Fresh();
  bool MapBuffer(const Desc& d, VirtQueueElement* elem);
  PopResult ReadChain(uint16_t head, VirtQueueElement* elem);
  uint16_t AvailIdx();
  void WriteUsedIdx(uint16_t v);

  const uint16_t index_;
  uint16_t max_size_;
  uint16_t size_;
  GuestAddr desc_, avail_, used_;
  bool enabled_ = false;
  bool frozen_ = false;

  const GuestMemory* mem_ = nullptr;
  uint64_t mem_generation_ = 0;
  bool event_idx_ = false;
  bool indirect_ = false;
  // Host views of the ring areas (valid while mem_generation_ matches).
  uint8_t* desc_host_ = nullptr;
  uint8_t* avail_host_ = nullptr;
  uint8_t* used_host_ = nullptr;

  uint16_t last_avail_idx_ = 0;
  uint16_t shadow_avail_idx_ = 0;
  uint16_t used_idx_ = 0;
  uint16_t signalled_used_ = 0;  // used index at the last notification
  bool signalled_used_valid_ = false;
  bool notification_enabled_ = true;  // in effect on the ring
  bool notification_wanted_ = true;   // the device's last SetNotification
  bool polling_ = false;              // kept across Reset: it is the loop's state, not the ring's
  uint16_t in_flight_ = 0;
  std::vector<bool> head_in_flight_;
  bool broken_ = false;
  std::string broken_reason_;
};

}  // namespace vdev::virtio

#endif  // VDEV_BUS_VIRTIO_VIRTQUEUE_H_
