// VirtIODevice: the transport-independent part of every virtio device (VIRTIO 1.2 §2, §3.1):
// device status, feature negotiation, device configuration space with its generation counter,
// virtqueues, and reset. A transport (virtio-pci, virtio-mmio) maps its registers onto these
// calls; a device type (virtio-rng, virtio-net) adds its features, its config layout and its queue
// handlers.
//
// The status is an explicit state machine. From reset (0) a driver may only add bits, in order:
// ACKNOWLEDGE, DRIVER, FEATURES_OK (modern drivers: the device keeps it clear when the accepted
// features are unacceptable), DRIVER_OK. Writing 0 resets. Writes that clear bits without a reset
// or skip a step are ignored and counted. At DRIVER_OK the queue configuration freezes and every
// enabled queue is activated; a queue the device cannot use, or a ring that breaks later, sets
// DEVICE_NEEDS_RESET (and a config interrupt) instead of crashing. FAILED stops the device.
//
//   class VirtIORng : public VirtIODevice {
//     static void ClassInit(VirtIODeviceClass& k) { k.device_id = VIRTIO_ID_RNG; }
//     absl::Status Realize() override {
//       VDEV_RETURN_IF_ERROR(VirtIODevice::Realize());
//       vq_ = AddQueue(8);
//       return absl::OkStatus();
//     }
//     void HandleQueue(uint16_t index) override { ...Pop / Push / NotifyQueue... }
//   };
//
// Data plane on an iothread ("-object iothread,id=io0 -device virtio-...,iothread=io0", QEMU's
// virtio-blk iothread): each queue gets a doorbell (an eventfd, QEMU's ioeventfd) served on the
// iothread's loop. A driver's notify on another thread (a vCPU's MMIO write, a vhost-user kick
// read on the main loop) only rings the doorbell; the queue is served on the iothread, whose
// used-buffer notifications leave through the transport from there. Without an iothread a
// notify runs the queue on the notifying thread, as before.
//
// Quiescing: every queue handler runs under the device's lock, and so do reset, status and
// feature changes, so a reset waits for a handler in progress to finish (drain) and the handler
// that runs after it finds the device stopped and does nothing (a doorbell that raced a reset is
// not a guest error). Unrealize drops the doorbells on the iothread itself, after the handler in
// progress, before the queues go.
//
// Thread-safety: transport calls and queue handlers are serialised by the device's lock, which
// the public methods take; HandleQueue and the other hooks run with it held. The doorbells are
// made at realize and dropped at unrealize, when no driver notifies.
#ifndef VDEV_BUS_VIRTIO_VIRTIO_DEVICE_H_
#define VDEV_BUS_VIRTIO_VIRTIO_DEVICE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "bus/virtio/virtio_bus.h"
#include "bus/virtio/virtqueue.h"
#include "core/loop/event_loop.h"
#include "core/loop/iothread.h"
#include "core/qdev/device.h"

namespace vdev::virtio {

class VirtIODeviceClass : public DeviceClass {
 public:
  uint16_t device_id = 0;  // VIRTIO_ID_*
  uint32_t config_size = 0;
};

class VirtIODevice : public DeviceState {
 public:
  static constexpr char kTypeName[] = "virtio-device";
  static constexpr bool kAbstract = true;
  using Parent = DeviceState;
  using Class = VirtIODeviceClass;
  static void ClassInit(VirtIODeviceClass& k);

  VirtIODevice();
  ~VirtIODevice() override;

  const VirtIODeviceClass& virtio_class() const {
    return static_cast<const VirtIODeviceClass&>(object_class());
  }
  uint16_t device_id() const { return virtio_class().device_id; }
  VirtioBus* virtio_bus() const { return static_cast<VirtioBus*>(parent_bus()); }

  // ---- for transports ----
  // Legacy (virtio 0.9.5) interface: 32 feature bits, no FEATURES_OK step, guest-endian
  // config (little-endian on x86). Transports set it when the driver uses the legacy interface;
  // the choice is made while the status is 0 and holds until the next reset.
  void SetLegacy(bool legacy);
  bool legacy() const;

  uint64_t host_features() const;
  uint64_t guest_features() const;
  bool GuestHas(unsigned bit) const { return guest_features() >> bit & 1; }
  // 32-bit pages of the offered / accepted features (select 0: bits 0..31, 1: 32..63, more: 0).
  uint32_t ReadHostFeatures(uint32_t select) const;
  uint32_t ReadGuestFeatures(uint32_t select) const;
  // Ignored (and counted) after FEATURES_OK or DRIVER_OK; bits the device did not offer are
  // dropped (and counted).
  void WriteGuestFeatures(uint32_t select, uint32_t value);

  uint8_t status() const;
  void SetStatus(uint8_t status);
  // Resets the device (status 0): queues, features, device state.
  void VirtioReset();

  uint32_t config_size() const { return virtio_class().config_size; }
  uint32_t config_generation() const;
  // Device configuration space. Widths 1, 2, 4 (and 8 split in two) inside the space; anything
  // else reads all-ones / is dropped, and counted.
  uint32_t ConfigRead(uint32_t offset, int size);
  void ConfigWrite(uint32_t offset, uint32_t value, int size);

  size_t num_queues() const { return queues_.size(); }
  // Queue `index`, or nullptr when out of range. For device code (under the device's lock) and
  // tests; transports go through WithQueue.
  VirtQueue* queue(uint16_t index) {
    return index < queues_.size() ? queues_[index].get() : nullptr;
  }
  // Runs `fn` on queue `index` under the device's lock (so a configuration write cannot race
  // with DRIVER_OK freezing the queue). False when there is no such queue or `fn` returns false.
  bool WithQueue(uint16_t index, const std::function<bool(VirtQueue&)>& fn);
  // For transports whose queues start one by one (a vhost-user frontend sets its rings up
  // separately, and may set one up after the device started): queue `index` of a running device
  // is reset, configured by `configure` (size, addresses, enable), frozen and activated. False
  // when the device is not running, the queue does not exist or is active, or `configure` fails;
  // a ring that cannot be activated sets DEVICE_NEEDS_RESET.
  bool StartQueue(uint16_t index, const std::function<bool(VirtQueue&)>& configure);
  // The driver notified queue `index`. Out-of-range queues, a device not running, and a broken
  // device are ignored and counted. With an iothread, called on another thread, it rings the
  // queue's doorbell and returns; the queue is served on the iothread.
  void Kick(uint16_t index);
  // The iothread serving the queues (property "iothread"), or nullptr.
  IOThread* iothread() const { return iothread_; }
  // The loop queue work belongs on: the iothread's, or nullptr (the notifying thread's).
  EventLoop* queue_loop() const { return iothread_ != nullptr ? &iothread_->loop() : nullptr; }
  // For transports whose frontend keeps the control plane (vhost-user-backend): `enabled` holds,
  // per queue, whether the frontend runs it (SET_VRING_ENABLE on a ring it set up). A device
  // whose queues are grouped through that control plane follows it (virtio-net serves the
  // leading queue pairs whose both queues are enabled: the frontend chose them through the
  // control queue it keeps). Ignored while the device is not running.
  void SetFrontendQueues(const std::vector<bool>& enabled);
  // A frontend asks the device to announce `mac` on its network (vhost-user SEND_RARP, after a
  // migration, for a guest that cannot announce itself). Unimplemented for a device without a
  // network.
  virtual absl::Status AnnounceFromFrontend(const uint8_t mac[6]) {
    return absl::UnimplementedError(DisplayName() + " has no network to announce on");
  }

  // ---- for device implementations ----
  // Tells the driver that queue `index` has used buffers, if it wants to know.
  void NotifyQueue(uint16_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The device configuration changed: bump the generation and interrupt.
  void ConfigChanged() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The device cannot go on without a reset (a broken ring, an impossible request).
  void MarkNeedsReset(const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool running() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return (status_ & kDriverOk) && !(status_ & (kNeedsReset | kFailed));
  }

  static constexpr uint8_t kAcknowledge = 1;
  static constexpr uint8_t kDriver = 2;
  static constexpr uint8_t kDriverOk = 4;
  static constexpr uint8_t kFeaturesOk = 8;
  static constexpr uint8_t kNeedsReset = 0x40;
  static constexpr uint8_t kFailed = 0x80;

 protected:
  absl::Status Realize() override;
  void Unrealize() override;
  void Reset() override;

  // Adds a queue of at most `max_size` entries (a power of two <= 32768). In Realize.
  VirtQueue* AddQueue(uint16_t max_size);

  // Device-specific offered features (the base adds VERSION_1, INDIRECT_DESC, EVENT_IDX).
  virtual uint64_t DeviceFeatures() const { return 0; }
  // The final say on the offered features, after the base added its ring features (a device
  // whose data plane is elsewhere removes what that data plane lacks).
  virtual uint64_t FilterFeatures(uint64_t offered) const { return offered; }
  // Features whose work belongs to whoever owns the device's control plane (virtio-net: the
  // control queue and what rides on it). A transport whose frontend keeps the control plane to
  // itself (vhost-user-backend) leaves these out of the features it negotiates with the device.
 public:
  virtual uint64_t ControlPlaneFeatures() const { return 0; }

 protected:
  // Whether the accepted features are consistent (dependencies between bits). Empty = fine;
  // otherwise the reason FEATURES_OK is refused.
  virtual std::string CheckFeatures(uint64_t features) const { return ""; }
  // Fills the config space before a driver read.
  virtual void UpdateConfig(uint8_t* config) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {}
  // A driver wrote [offset, offset + size) (already bounds-checked); default: read-only, counted.
  virtual void WriteConfig(uint32_t offset, uint32_t value, int size)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The driver kicked queue `index` of a running device.
  virtual void HandleQueue(uint16_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {}
  // Whether an iothread that busy-polls may poll queue `index` for new buffers (and serve it
  // without a kick). Queues whose available buffers wait for something else (receive buffers
  // waiting for frames) must say no, or the poll would spin on them.
  virtual bool Pollable(uint16_t index) const { return false; }
  // DRIVER_OK with every queue activated / the device stops (reset, FAILED, NEEDS_RESET).
  virtual void Start() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {}
  virtual void Stop() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {}
  // Device state back to power-on (queues and status are handled by the base).
  virtual void ResetState() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {}
  // SetFrontendQueues on a running device (`enabled` has one entry per queue).
  virtual void FrontendQueuesChanged(const std::vector<bool>& enabled)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {}

  // For device code holding mu_.
  uint64_t negotiated() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return guest_features_; }
  bool negotiated(unsigned bit) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return guest_features_ >> bit & 1;
  }
  bool legacy_locked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return legacy_; }
  // NEEDS_RESET or FAILED: the device waits for a reset.
  bool broken_locked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return status_ & (kNeedsReset | kFailed);
  }
  // Whether the device may touch guest memory now (bus mastering on).
  bool dma_allowed() const { return DmaMemory() != nullptr; }
  const GuestMemory* dma_memory() const { return DmaMemory(); }

  mutable absl::Mutex mu_;

 private:
  void ResetLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Kick's checks and the queue's handler.
  void KickLocked(uint16_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A queue's doorbell rang (on the iothread).
  void DoorbellRang(uint16_t index);
  // The iothread polls queue `index`: serves it when the driver added buffers; whether it took
  // any.
  bool PollQueue(uint16_t index);
  void StopLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const GuestMemory* DmaMemory() const;
  bool ActivateQueues() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Properties.
  bool indirect_desc_ = true;
  bool event_idx_ = true;
  IOThread* iothread_ = nullptr;

  // With an iothread: one doorbell per queue, watched on the iothread (nullptr where it could not
  // be made: that queue is served on the notifying thread). Written at realize and unrealize only.
  struct Doorbell {
    EventNotifier notifier;
    FdWatch watch;  // on the iothread's loop
  };
  std::vector<std::unique_ptr<Doorbell>> doorbells_;

  std::vector<std::unique_ptr<VirtQueue>> queues_;
  uint64_t host_features_ = 0;  // fixed at realize
  bool legacy_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;  // Start() ran and Stop() has not
  uint8_t status_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t guest_features_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<uint8_t> config_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vdev::virtio

#endif  // VDEV_BUS_VIRTIO_VIRTIO_DEVICE_H_
