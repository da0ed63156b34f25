#include "bus/virtio/virtio_device.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bus/virtio/virtio_uapi.h"
#include "core/base/byte_order.h"
#include "core/base/checked_math.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"

namespace vdev::virtio {

// ---- VirtioBus ----

void VirtioBus::ClassInit(BusClass& k) {
  k.description = "the bus between a virtio transport and its device";
  k.max_children = 1;
}

VirtIODevice* VirtioBus::device() const {
  return devices().empty() ? nullptr : static_cast<VirtIODevice*>(devices().front());
}

void VirtioBus::OnAttach(DeviceState& dev) {
  if (transport_ != nullptr) transport_->DevicePlugged(static_cast<VirtIODevice&>(dev));
}

void VirtioBus::OnDetach(DeviceState& dev) {
  // No downcast of a possibly half-destroyed device: the transport only compares pointers.
  if (transport_ != nullptr) transport_->DeviceUnplugged(*reinterpret_cast<VirtIODevice*>(&dev));
}

// ---- VirtIODevice ----

void VirtIODevice::ClassInit(VirtIODeviceClass& k) {
  k.bus_type = VirtioBus::kTypeName;
  k.AddProperty(qom::Prop("indirect_desc", &VirtIODevice::indirect_desc_, true,
                          "offer VIRTIO_RING_F_INDIRECT_DESC"));
  k.AddProperty(
      qom::Prop("event_idx", &VirtIODevice::event_idx_, true, "offer VIRTIO_RING_F_EVENT_IDX"));
  k.AddProperty(qom::LinkProp("iothread", &VirtIODevice::iothread_,
                              "serve the queues on this iothread (default: the notifying thread)"));
}

VirtIODevice::VirtIODevice() = default;
VirtIODevice::~VirtIODevice() = default;

absl::Status VirtIODevice::Realize() {
  VDEV_RETURN_IF_ERROR(DeviceState::Realize());
  host_features_ = DeviceFeatures() | (uint64_t{1} << VIRTIO_F_VERSION_1);
  if (indirect_desc_) host_features_ |= uint64_t{1} << VIRTIO_RING_F_INDIRECT_DESC;
  if (event_idx_) host_features_ |= uint64_t{1} << VIRTIO_RING_F_EVENT_IDX;
  host_features_ = FilterFeatures(host_features_);
  absl::MutexLock l(&mu_);
  config_.assign(config_size(), 0);
  return absl::OkStatus();
}

void VirtIODevice::Unrealize() {
  {
    absl::MutexLock l(&mu_);
    ResetLocked();
  }
  if (!doorbells_.empty()) {
    // On the iothread: after the handler in progress, none runs again.
    iothread_->loop().RunAndWait([this] {
      for (auto& d : doorbells_) {
        if (d != nullptr) d->watch.Reset();
      }
    });
    doorbells_.clear();
  }
  queues_.clear();
  DeviceState::Unrealize();
}

void VirtIODevice::Reset() {
  VirtioReset();
  DeviceState::Reset();
}

VirtQueue* VirtIODevice::AddQueue(uint16_t max_size) {
  VDEV_CHECK(IsPowerOfTwo(max_size) && max_size <= kMaxQueueSize);
  const uint16_t index = static_cast<uint16_t>(queues_.size());
  queues_.push_back(std::make_unique<VirtQueue>(index, max_size));
  if (iothread_ != nullptr) {
    // The queue's doorbell, served on the iothread.
    auto bell = std::make_unique<Doorbell>();
    absl::Status s;
    if (absl::StatusOr<EventNotifier> n = EventNotifier::Create(); n.ok()) {
      bell->notifier = std::move(*n);
      iothread_->loop().RunAndWait([&] {
        EventLoop::Polling polling;
        if (Pollable(index)) {
          polling.poll = [this, index] { return PollQueue(index); };
          polling.polling = [this, index](bool on) {
            absl::MutexLock l(&mu_);
            queues_[index]->SetPolling(on);
          };
        }
        auto w = iothread_->loop().WatchNotifier(
            bell->notifier, [this, index] { DoorbellRang(index); }, std::move(polling));
        if (w.ok()) {
          bell->watch = std::move(*w);
        } else {
          s = w.status();
        }
      });
    } else {
      s = n.status();
    }
    if (!s.ok()) {
      VDEV_LOG(kWarning, "%s: queue %u is served on the notifying thread, not %s: %s",
               DisplayName(), index, iothread_->name(), std::string(s.message()));
      bell.reset();
    }
    doorbells_.push_back(std::move(bell));
  }
  return queues_.back().get();
}

void VirtIODevice::SetLegacy(bool legacy) {
  absl::MutexLock l(&mu_);
  if (status_ != 0) return;  // chosen at the start of initialisation; a reset re-opens it
  legacy_ = legacy;
  guest_features_ &= legacy ? 0xffffffffu : ~uint64_t{0};
}

bool VirtIODevice::WithQueue(uint16_t index, const std::function<bool(VirtQueue&)>& fn) {
  absl::MutexLock l(&mu_);
  return index < queues_.size() && fn(*queues_[index]);
}

const GuestMemory* VirtIODevice::DmaMemory() const {
  VirtioBus* bus = virtio_bus();
  return bus && bus->transport() ? bus->transport()->dma_memory() : nullptr;
}

void VirtIODevice::StopLocked() {
  if (!started_) return;
  started_ = false;
  Stop();
}

bool VirtIODevice::legacy() const {
  absl::MutexLock l(&mu_);
  return legacy_;
}

uint64_t VirtIODevice::host_features() const {
  absl::MutexLock l(&mu_);
  // A legacy driver sees the first 32 bits only (and no VERSION_1).
  return legacy_ ? (host_features_ & 0xffffffffu) : host_features_;
}

uint64_t VirtIODevice::guest_features() const {
  absl::MutexLock l(&mu_);
  return guest_features_;
}

uint32_t VirtIODevice::ReadHostFeatures(uint32_t select) const {
  const uint64_t f = host_features();
  return select == 0 ? static_cast<uint32_t>(f) : select == 1 ? static_cast<uint32_t>(f >> 32) : 0;
}

uint32_t VirtIODevice::ReadGuestFeatures(uint32_t select) const {
  const uint64_t f = guest_features();
  return select == 0 ? static_cast<uint32_t>(f) : select == 1 ? static_cast<uint32_t>(f >> 32) : 0;
}

void VirtIODevice::WriteGuestFeatures(uint32_t select, uint32_t value) {
  absl::MutexLock l(&mu_);
  if (status_ & (kFeaturesOk | kDriverOk)) {
    VDEV_LOG_GUEST_ERROR(counters(), "features_write_late",
                         "%s: driver features written after FEATURES_OK", DisplayName());
    return;
  }
  if (select > 1) {
    if (value != 0) {
      VDEV_LOG_GUEST_ERROR(counters(), "features_unoffered",
                           "%s: driver features page %u = 0x%x (no such page)", DisplayName(),
                           select, value);
    }
    return;
  }
  const uint64_t offered = legacy_ ? (host_features_ & 0xffffffffu) : host_features_;
  const unsigned shift = select * 32;
  const uint64_t page = uint64_t{value} << shift;
  const uint64_t mask = uint64_t{0xffffffffu} << shift;
  if (page & ~offered) {
    VDEV_LOG_GUEST_ERROR(counters(), "features_unoffered",
                         "%s: driver accepted features 0x%x the device did not offer",
                         DisplayName(), page & ~offered);
  }
  guest_features_ = (guest_features_ & ~mask) | (page & offered);
}

uint8_t VirtIODevice::status() const {
  absl::MutexLock l(&mu_);
  return status_;
}

void VirtIODevice::VirtioReset() {
  absl::MutexLock l(&mu_);
  ResetLocked();
}

void VirtIODevice::ResetLocked() {
  StopLocked();
  status_ = 0;
  guest_features_ = 0;
  for (auto& q : queues_) q->Reset();
  std::fill(config_.begin(), config_.end(), 0);
  ResetState();
}

bool VirtIODevice::ActivateQueues() {
  const GuestMemory* mem = DmaMemory();
  const bool event_idx = guest_features_ >> VIRTIO_RING_F_EVENT_IDX & 1;
  const bool indirect = guest_features_ >> VIRTIO_RING_F_INDIRECT_DESC & 1;
  for (auto& q : queues_) {
    q->Freeze();
    if (!q->enabled()) continue;
    if (mem == nullptr || !q->Activate(mem, event_idx, indirect)) {
      MarkNeedsReset(mem == nullptr ? "no guest memory (bus mastering off?)" : q->broken_reason());
      return false;
    }
  }
  return true;
}

bool VirtIODevice::StartQueue(uint16_t index, const std::function<bool(VirtQueue&)>& configure) {
  absl::MutexLock l(&mu_);
  if (!running() || index >= queues_.size() || queues_[index]->active()) return false;
  VirtQueue& q = *queues_[index];
  q.Reset();
  if (!configure(q)) {
    q.Reset();
    q.Freeze();
    return false;
  }
  q.Freeze();
  const GuestMemory* mem = DmaMemory();
  if (mem == nullptr || !q.Activate(mem, guest_features_ >> VIRTIO_RING_F_EVENT_IDX & 1,
                                    guest_features_ >> VIRTIO_RING_F_INDIRECT_DESC & 1)) {
    MarkNeedsReset(mem == nullptr ? "no guest memory" : q.broken_reason());
    return false;
  }
  return true;
}

void VirtIODevice::SetStatus(uint8_t s) {
  absl::MutexLock l(&mu_);
  if (s == 0) {
    ResetLocked();
    return;
  }
  const uint8_t driver_bits = s & static_cast<uint8_t>(~kNeedsReset);  // NEEDS_RESET is ours
  const uint8_t old = status_;
  if ((old & ~kNeedsReset) & ~driver_bits) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_status",
                         "%s: status 0x%x clears bits of 0x%x without a reset", DisplayName(), s,
                         old);
    return;
  }
  uint8_t next = static_cast<uint8_t>(old | driver_bits);
  // Steps in order (§3.1.1): DRIVER needs ACKNOWLEDGE, FEATURES_OK needs DRIVER, DRIVER_OK needs
  // FEATURES_OK (not for legacy drivers, which have no such step).
  const bool order_ok =
      (!(next & kDriver) || (next & kAcknowledge)) && (!(next & kFeaturesOk) || (next & kDriver)) &&
      (!(next & kDriverOk) || ((next & kDriver) && (legacy_ || (next & kFeaturesOk))));
  if (!order_ok && legacy_) {
    // Legacy drivers in the field skip steps (iPXE writes DRIVER | DRIVER_OK straight after the
    // reset); legacy devices, QEMU's included, take the write. Counted, not refused.
    counters().Increment("legacy_status_order");
  } else if (!order_ok) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_status", "%s: status 0x%x skips a step (was 0x%x)",
                         DisplayName(), s, old);
    return;
  }
  if ((next & kFeaturesOk) && !(old & kFeaturesOk)) {
    std::string why;
    if (!legacy_ && !(guest_features_ >> VIRTIO_F_VERSION_1 & 1)) {
      why = "VIRTIO_F_VERSION_1 not accepted by a modern driver";
    } else {
      why = CheckFeatures(guest_features_);
    }
    if (!why.empty()) {
      // The device keeps FEATURES_OK clear: the driver sees it and gives up (§3.1.1 step 6). A
      // DRIVER_OK in the same write goes too: it needs FEATURES_OK.
      VDEV_LOG_GUEST_ERROR(counters(), "features_refused", "%s: FEATURES_OK refused: %s",
                           DisplayName(), why);
      next &= static_cast<uint8_t>(~(kFeaturesOk | kDriverOk));
    }
  }
  status_ = next;
  if ((next & kDriverOk) && !(old & kDriverOk) && !(next & (kFailed | kNeedsReset))) {
    // Legacy drivers never went through FEATURES_OK: check their features now.
    const std::string why = legacy_ ? CheckFeatures(guest_features_) : "";
    if (!why.empty()) {
      MarkNeedsReset(absl::StrCat("features refused at DRIVER_OK: ", why));
    } else if (ActivateQueues()) {
      started_ = true;
      Start();
    }
  }
  if ((next & kFailed) && !(old & kFailed)) StopLocked();
}

uint32_t VirtIODevice::config_generation() const {
  absl::MutexLock l(&mu_);
  return generation_;
}

uint32_t VirtIODevice::ConfigRead(uint32_t offset, int size) {
  absl::MutexLock l(&mu_);
  if ((size != 1 && size != 2 && size != 4) ||
      !RangeWithin(offset, static_cast<uint64_t>(size), 0, config_.size())) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_config_access", "%s: config read of %d bytes at 0x%x",
                         DisplayName(), size, offset);
    return 0xffffffffu;
  }
  UpdateConfig(config_.data());
  return static_cast<uint32_t>(LoadLe(config_.data() + offset, size));
}

void VirtIODevice::ConfigWrite(uint32_t offset, uint32_t value, int size) {
  absl::MutexLock l(&mu_);
  if ((size != 1 && size != 2 && size != 4) ||
      !RangeWithin(offset, static_cast<uint64_t>(size), 0, config_.size())) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_config_access", "%s: config write of %d bytes at 0x%x",
                         DisplayName(), size, offset);
    return;
  }
  WriteConfig(offset, value, size);
}

void VirtIODevice::WriteConfig(uint32_t offset, uint32_t value, int size) {
  VDEV_LOG_GUEST_ERROR(counters(), "config_write_ro",
                       "%s: write to read-only config at 0x%x (%d bytes)", DisplayName(), offset,
                       size);
}

void VirtIODevice::SetFrontendQueues(const std::vector<bool>& enabled) {
  absl::MutexLock l(&mu_);
  if (!running() || !started_) return;
  std::vector<bool> e = enabled;
  e.resize(queues_.size(), false);
  FrontendQueuesChanged(e);
}

void VirtIODevice::Kick(uint16_t index) {
  if (index < doorbells_.size() && doorbells_[index] != nullptr &&
      !iothread_->loop().InLoopThread()) {
    doorbells_[index]->notifier.Set();  // the notifying thread only signals
    return;
  }
  absl::MutexLock l(&mu_);
  KickLocked(index);
}

void VirtIODevice::DoorbellRang(uint16_t index) {
  absl::MutexLock l(&mu_);
  // A doorbell that raced a reset or a stop finds nothing to serve.
  if (!running() || !started_) return;
  KickLocked(index);
}

bool VirtIODevice::PollQueue(uint16_t index) {
  absl::MutexLock l(&mu_);
  if (!running() || !started_ || DmaMemory() == nullptr) return false;
  VirtQueue& q = *queues_[index];
  if (!q.active() || q.broken() || q.Empty()) return false;
  const uint16_t before = q.last_avail_idx();
  HandleQueue(index);
  if (q.broken()) MarkNeedsReset(q.broken_reason());
  // Progress only when buffers were taken (a queue held by its backend is not).
  return q.last_avail_idx() != before;
}

void VirtIODevice::KickLocked(uint16_t index) {
  if (index >= queues_.size()) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_queue_notify", "%s: notify of queue %u of %u",
                         DisplayName(), index, queues_.size());
    return;
  }
  if (!running() || !started_) {
    VDEV_LOG_GUEST_ERROR(counters(), "notify_not_running",
                         "%s: notify of queue %u with status 0x%x", DisplayName(), index, status_);
    return;
  }
  if (DmaMemory() == nullptr) {  // the guest turned bus mastering off: no ring access
    VDEV_LOG_GUEST_ERROR(counters(), "notify_without_dma",
                         "%s: notify of queue %u while the device may not access memory",
                         DisplayName(), index);
    return;
  }
  counters().Increment("kicks");
  HandleQueue(index);
  if (queues_[index]->broken()) MarkNeedsReset(queues_[index]->broken_reason());
}

void VirtIODevice::NotifyQueue(uint16_t index) {
  if (index >= queues_.size() || !queues_[index]->ShouldNotify()) return;
  if (VirtioBus* bus = virtio_bus(); bus && bus->transport()) bus->transport()->NotifyQueue(index);
}

void VirtIODevice::ConfigChanged() {
  ++generation_;
  if (VirtioBus* bus = virtio_bus(); bus && bus->transport()) bus->transport()->NotifyConfig();
}

void VirtIODevice::MarkNeedsReset(const std::string& why) {
  if (status_ & kNeedsReset) return;
  VDEV_LOG_GUEST_ERROR(counters(), "needs_reset", "%s: DEVICE_NEEDS_RESET: %s", DisplayName(), why);
  status_ |= kNeedsReset;
  StopLocked();
  // Tell a driver that is listening (§2.1.2: a config change notification).
  if (status_ & kDriverOk) ConfigChanged();
}

VDEV_REGISTER_TYPE(VirtioBus);
VDEV_REGISTER_TYPE(VirtIODevice);

}  // namespace vdev::virtio
