// VirtioRegisters: the transport-independent register model of a virtio device, the state a
// driver programs before DRIVER_OK whatever the transport (VIRTIO 1.2 §4.1.4.3 common
// configuration, §4.2.2 MMIO registers, §4.1.4.8 legacy registers, and the vhost-user
// SET_VRING_* requests): the feature windows with their selectors, the queue selector, each
// queue's size, enable bit and ring addresses (written as 32-bit halves), and the MSI-X vectors.
//
// A transport is a thin decoder: it maps an offset and width to one of these calls, and keeps
// only what is its own (virtio-pci's ISR and capabilities, virtio-mmio's interrupt status and
// legacy page size). The rules live here once: a selector past the last queue reads as a queue
// that does not exist (size 0, vector NO_VECTOR) and refuses writes; queue fields freeze at
// DRIVER_OK; a vector the MSI-X table does not have reads back as NO_VECTOR (§4.1.5.1.2);
// enabling is one-way (0 is not a way to disable, §4.1.4.3.2).
//
//   VirtioRegisters regs;                       // in the transport
//   regs.Configure(vdev.num_queues(), vectors); // at realize
//   case VIRTIO_PCI_COMMON_Q_SELECT: regs.set_queue_select(val); break;
//   case VIRTIO_PCI_COMMON_Q_DESCHI: ok = regs.WriteQueue(vdev, QueueField::kDescHigh, val);
//
// Thread-safety: the selectors and vectors are guarded by an internal leaf lock; queue fields
// are read and written under the device's lock (VirtIODevice::WithQueue), so a write cannot race
// with DRIVER_OK freezing them. Lock order: device, then registers.
#ifndef VDEV_BUS_VIRTIO_VIRTIO_REGS_H_
#define VDEV_BUS_VIRTIO_VIRTIO_REGS_H_

#include <cstdint>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "bus/virtio/virtio_device.h"

namespace vdev::virtio {

inline constexpr uint16_t kNoVector = 0xffff;  // VIRTIO_MSI_NO_VECTOR

// The per-queue fields a driver reaches through the queue selector.
enum class QueueField : uint8_t {
  kSize,     // entries in the ring (a power of two up to kMaxSize)
  kMaxSize,  // the largest size the device supports (read-only)
  kEnable,   // 1 enables the queue (one-way until reset)
  kVector,   // MSI-X vector of the queue's used-buffer notifications
  kDescLow,  // descriptor table address, low / high 32 bits
  kDescHigh,
  kDriverLow,  // driver area (available ring)
  kDriverHigh,
  kDeviceLow,  // device area (used ring)
  kDeviceHigh,
};

// Replaces the low or high 32 bits of `value` with `half`.
inline uint64_t ReplaceHalf(uint64_t value, bool high, uint64_t half) {
  return high ? (value & 0xffffffffull) | (half << 32)
              : (value & ~0xffffffffull) | (half & 0xffffffffull);
}

class VirtioRegisters {
 public:
  // Sizes the vector table: one per queue; `msix_vectors` is the MSI-X table size a vector must
  // fall inside (0: no MSI-X, every vector reads back NO_VECTOR). At realize.
  void Configure(size_t num_queues, uint32_t msix_vectors);
  // Power-on state: selectors 0, every vector NO_VECTOR.
  void Reset();
  // Vectors back to NO_VECTOR (a device reset through the status register).
  void ResetVectors();

  // ---- features, through 32-bit windows ----
  uint32_t device_feature_select() const;
  void set_device_feature_select(uint32_t select);
  uint32_t driver_feature_select() const;
  void set_driver_feature_select(uint32_t select);
  // The window of offered / accepted features the selectors point at.
  uint32_t ReadDeviceFeatures(const VirtIODevice& d) const;
  uint32_t ReadDriverFeatures(const VirtIODevice& d) const;
  // Ignored (and counted by the device) after FEATURES_OK.
  void WriteDriverFeatures(VirtIODevice& d, uint32_t value) const;

  // ---- queues ----
  uint32_t queue_select() const;
  void set_queue_select(uint32_t select);
  // The selected queue's index, saturated (a selector past 0xffff selects no queue).
  uint16_t selected_queue() const;
  bool QueueExists(VirtIODevice& d) const { return selected_queue() < d.num_queues(); }

  // Field `f` of the selected queue; a queue that does not exist reads 0 (kVector: NO_VECTOR).
  uint64_t ReadQueue(VirtIODevice& d, QueueField f) const {
    return ReadQueueAt(d, selected_queue(), f);
  }
  // Writes field `f` of the selected queue. False (and nothing changed) when there is no such
  // queue, the field is read-only, the value is invalid or the queue is frozen (DRIVER_OK).
  bool WriteQueue(VirtIODevice& d, QueueField f, uint64_t value) {
    return WriteQueueAt(d, selected_queue(), f, value);
  }
  // The same for queue `index` (transports that address queues directly, as vhost-user does).
  uint64_t ReadQueueAt(VirtIODevice& d, uint16_t index, QueueField f) const;
  bool WriteQueueAt(VirtIODevice& d, uint16_t index, QueueField f, uint64_t value);

  // Legacy (virtio 0.9) rings: one area at page frame `pfn` (4 KiB units) with the used ring
  // aligned to `align`. `use_max_size`: the queue takes its maximum size first (legacy PCI has no
  // size register). PFN 0 releases the queue. Reads give the descriptor table's PFN.
  bool WriteLegacyPfn(VirtIODevice& d, uint32_t pfn, uint32_t align, bool use_max_size);
  uint32_t ReadLegacyPfn(VirtIODevice& d) const;

  // ---- MSI-X vectors ----
  uint16_t config_vector() const;
  void SetConfigVector(uint64_t vector);
  // Queue `index`'s vector; NO_VECTOR for a queue that does not exist.
  uint16_t queue_vector(uint16_t index) const;

 private:
  uint16_t CheckedVector(uint64_t v) const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return v < msix_vectors_ ? static_cast<uint16_t>(v) : kNoVector;
  }

  mutable absl::Mutex mu_;
  uint32_t msix_vectors_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t device_feature_select_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t driver_feature_select_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t queue_select_ ABSL_GUARDED_BY(mu_) = 0;
  uint16_t config_vector_ ABSL_GUARDED_BY(mu_) = kNoVector;
  std::vector<uint16_t> queue_vectors_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vdev::virtio

#endif  // VDEV_BUS_VIRTIO_VIRTIO_REGS_H_
