#include "bus/virtio/virtio_regs.h"

#include <algorithm>

namespace vdev::virtio {

void VirtioRegisters::Configure(size_t num_queues, uint32_t msix_vectors) {
  absl::MutexLock l(&mu_);
  msix_vectors_ = msix_vectors;
  queue_vectors_.assign(num_queues, kNoVector);
  config_vector_ = kNoVector;
}

void VirtioRegisters::Reset() {
  absl::MutexLock l(&mu_);
  device_feature_select_ = driver_feature_select_ = queue_select_ = 0;
  config_vector_ = kNoVector;
  std::fill(queue_vectors_.begin(), queue_vectors_.end(), kNoVector);
}

void VirtioRegisters::ResetVectors() {
  absl::MutexLock l(&mu_);
  config_vector_ = kNoVector;
  std::fill(queue_vectors_.begin(), queue_vectors_.end(), kNoVector);
}

uint32_t VirtioRegisters::device_feature_select() const {
  absl::MutexLock l(&mu_);
  return device_feature_select_;
}

void VirtioRegisters::set_device_feature_select(uint32_t select) {
  absl::MutexLock l(&mu_);
  device_feature_select_ = select;
}

uint32_t VirtioRegisters::driver_feature_select() const {
  absl::MutexLock l(&mu_);
  return driver_feature_select_;
}

void VirtioRegisters::set_driver_feature_select(uint32_t select) {
  absl::MutexLock l(&mu_);
  driver_feature_select_ = select;
}

uint32_t VirtioRegisters::ReadDeviceFeatures(const VirtIODevice& d) const {
  return d.ReadHostFeatures(device_feature_select());
}

uint32_t VirtioRegisters::ReadDriverFeatures(const VirtIODevice& d) const {
  return d.ReadGuestFeatures(driver_feature_select());
}

void VirtioRegisters::WriteDriverFeatures(VirtIODevice& d, uint32_t value) const {
  d.WriteGuestFeatures(driver_feature_select(), value);
}

uint32_t VirtioRegisters::queue_select() const {
  absl::MutexLock l(&mu_);
  return queue_select_;
}

void VirtioRegisters::set_queue_select(uint32_t select) {
  absl::MutexLock l(&mu_);
  queue_select_ = select;
}

uint16_t VirtioRegisters::selected_queue() const {
  const uint32_t s = queue_select();
  return s <= 0xffff ? static_cast<uint16_t>(s) : 0xffff;
}

uint64_t VirtioRegisters::ReadQueueAt(VirtIODevice& d, uint16_t index, QueueField f) const {
  uint64_t v = f == QueueField::kVector ? kNoVector : 0;
  d.WithQueue(index, [&](VirtQueue& q) {
    switch (f) {
      case QueueField::kSize:
        v = q.size();
        break;
      case QueueField::kMaxSize:
        v = q.max_size();
        break;
      case QueueField::kEnable:
        v = q.enabled();
        break;
      case QueueField::kVector:
        v = queue_vector(index);
        break;
      case QueueField::kDescLow:
      case QueueField::kDescHigh:
        v = q.desc_addr().value();
        break;
      case QueueField::kDriverLow:
      case QueueField::kDriverHigh:
        v = q.avail_addr().value();
        break;
      case QueueField::kDeviceLow:
      case QueueField::kDeviceHigh:
        v = q.used_addr().value();
        break;
    }
    return true;
  });
  switch (f) {
    case QueueField::kDescLow:
    case QueueField::kDriverLow:
    case QueueField::kDeviceLow:
      return v & 0xffffffffu;
    case QueueField::kDescHigh:
    case QueueField::kDriverHigh:
    case QueueField::kDeviceHigh:
      return v >> 32;
    default:
      return v;
  }
}

bool VirtioRegisters::WriteQueueAt(VirtIODevice& d, uint16_t index, QueueField f, uint64_t value) {
  return d.WithQueue(index, [&](VirtQueue& q) {
    switch (f) {
      case QueueField::kSize:
        return value <= 0xffff && q.SetSize(static_cast<uint16_t>(value));
      case QueueField::kMaxSize:
        return false;
      case QueueField::kEnable:
        return value == 1 && q.SetEnabled(true);
      case QueueField::kVector: {
        if (q.frozen()) return false;
        absl::MutexLock l(&mu_);
        if (index >= queue_vectors_.size()) return false;
        queue_vectors_[index] = CheckedVector(value);
        return true;
      }
      case QueueField::kDescLow:
      case QueueField::kDescHigh:
        return q.SetAddresses(
            GuestAddr(ReplaceHalf(q.desc_addr().value(), f == QueueField::kDescHigh, value)),
            q.avail_addr(), q.used_addr());
      case QueueField::kDriverLow:
      case QueueField::kDriverHigh:
        return q.SetAddresses(
            q.desc_addr(),
            GuestAddr(ReplaceHalf(q.avail_addr().value(), f == QueueField::kDriverHigh, value)),
            q.used_addr());
      case QueueField::kDeviceLow:
      case QueueField::kDeviceHigh:
        return q.SetAddresses(
            q.desc_addr(), q.avail_addr(),
            GuestAddr(ReplaceHalf(q.used_addr().value(), f == QueueField::kDeviceHigh, value)));
    }
    return false;
  });
}

bool VirtioRegisters::WriteLegacyPfn(VirtIODevice& d, uint32_t pfn, uint32_t align,
                                     bool use_max_size) {
  return d.WithQueue(selected_queue(), [&](VirtQueue& q) {
    if (use_max_size && !q.SetSize(q.max_size())) return false;
    return q.SetLegacyPfn(pfn, align);
  });
}

uint32_t VirtioRegisters::ReadLegacyPfn(VirtIODevice& d) const {
  uint32_t pfn = 0;
  d.WithQueue(selected_queue(), [&](VirtQueue& q) {
    pfn = static_cast<uint32_t>(q.desc_addr().value() >> 12);
    return true;
  });
  return pfn;
}

uint16_t VirtioRegisters::config_vector() const {
  absl::MutexLock l(&mu_);
  return config_vector_;
}

void VirtioRegisters::SetConfigVector(uint64_t vector) {
  absl::MutexLock l(&mu_);
  config_vector_ = CheckedVector(vector);
}

uint16_t VirtioRegisters::queue_vector(uint16_t index) const {
  absl::MutexLock l(&mu_);
  return index < queue_vectors_.size() ? queue_vectors_[index] : kNoVector;
}

}  // namespace vdev::virtio
