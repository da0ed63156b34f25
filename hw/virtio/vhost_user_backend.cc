#include "hw/virtio/vhost_user_backend.h"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"

namespace vdev::virtio {
namespace {

constexpr uint8_t kNegotiated =
    VirtIODevice::kAcknowledge | VirtIODevice::kDriver | VirtIODevice::kFeaturesOk;
constexpr absl::Duration kRetry = absl::Milliseconds(100);

}  // namespace

void VhostUserBackend::ClassInit(DeviceClass& k) {
  k.description = "vhost-user backend: serves a vhost-user frontend's rings with a virtio device";
  k.category = DeviceCategory::kMisc;
  k.user_creatable = true;  // a system-bus device the user adds (-device), unlike a board's
  k.hotpluggable = false;
  k.AddProperty(qom::LinkProp("chardev", &VhostUserBackend::chardev_,
                              "the socket chardev the frontend connects on (or we connect to)"));
}

VhostUserBackend::VhostUserBackend() = default;

VhostUserBackend::~VhostUserBackend() = default;

absl::Status VhostUserBackend::Realize() {
  VDEV_RETURN_IF_ERROR(SysBusDevice::Realize());
  if (chardev_ == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(DisplayName(), ": property 'chardev' is required"));
  }
  if (!chardev_->Claim()) {
    return absl::FailedPreconditionError(
        absl::StrCat(DisplayName(), ": chardev '", chardev_->name(), "' is already in use"));
  }
  auto bus = TryCreateChildBus<VirtioBus>(absl::StrCat(id().empty() ? "vhost-user" : id(), ".0"));
  if (!bus.ok()) {
    chardev_->Release();
    return bus.status();
  }
  bus_ = *bus;
  bus_->set_transport(this);
  loop_ = &main_loop();
  absl::Status s;
  loop_->RunAndWait([&] {
    auto t = loop_->AddTimer([this] { chardev_->server() ? Listen() : TryConnect(); });
    if (!t.ok()) {
      s = t.status();
      return;
    }
    retry_ = std::move(*t);
    // The device is plugged and realized by the next -device: look for a frontend from then on.
    retry_.Arm(absl::ZeroDuration());
  });
  return s;
}

void VhostUserBackend::Unrealize() {
  loop_->RunAndWait([&] {
    if (session_ != nullptr) Disconnect(absl::CancelledError("the backend is going away"));
    retry_.Reset();
    listen_watch_.Reset();
  });
  if (bus_ != nullptr) {
    if (VirtIODevice* d = bus_->device()) bus_->Detach(*d);
    DestroyChildBus(bus_);
    bus_ = nullptr;
  }
  if (chardev_ != nullptr) chardev_->Release();
  SysBusDevice::Unrealize();
}

// ---- the connection (main loop) ----

void VhostUserBackend::Listen() {
  if (!listen_watch_.active()) {
    auto w = loop_->WatchFd(chardev_->listen_fd(), EPOLLIN, [this](uint32_t) {
      UniqueFd s(accept4(chardev_->listen_fd(), nullptr, nullptr, SOCK_CLOEXEC));
      if (s.valid()) Connected(std::move(s));
    });
    if (!w.ok()) {
      VDEV_LOG(kWarning, "%s: cannot watch the socket: %s", DisplayName(),
               std::string(w.status().message()));
      return;
    }
    listen_watch_ = std::move(*w);
  }
  // Until the device behind us is ready, a frontend waits in the backlog.
  const bool ready = vdev() != nullptr && vdev()->realized();
  (void)listen_watch_.SetEvents(ready && session_ == nullptr ? uint32_t{EPOLLIN} : 0u);
  if (!ready) retry_.Arm(kRetry);
}

void VhostUserBackend::TryConnect() {
  if (session_ != nullptr) return;
  if (vdev() == nullptr || !vdev()->realized()) {
    retry_.Arm(kRetry);
    return;
  }
  absl::StatusOr<UniqueFd> s = chardev_->Open(absl::ZeroDuration());
  if (!s.ok()) {
    counters().Increment("connect_retries");
    retry_.Arm(kRetry);
    return;
  }
  Connected(std::move(*s));
}

void VhostUserBackend::Connected(UniqueFd sock) {
  VirtIODevice* d = vdev();
  if (d == nullptr || !d->realized()) return;  // closed: the frontend tries again
  vhost::BackendLimits limits;
  limits.num_rings = static_cast<uint32_t>(d->num_queues());
  // The frontend's device model chose the ring sizes (QEMU's virtio-mmio offers 1024, its
  // rx_queue_size up to 1024, DPDK's virtio-user up to 32768): serve any the ring format allows.
  limits.max_ring_size = kMaxQueueSize;
  for (uint16_t i = 0; i < d->num_queues(); ++i) {
    d->WithQueue(i, [](VirtQueue& q) { return q.SetMaxSize(kMaxQueueSize); });
  }
  regs_.Configure(d->num_queues(), 0);
  session_ = std::make_unique<vhost::VhostUserBackendSession>(this, limits);
  kick_watches_.clear();
  kick_watches_.resize(d->num_queues());
  {
    absl::MutexLock l(&call_mu_);
    call_fds_.assign(d->num_queues(), -1);
  }
  sock_ = std::move(sock);
  auto w = loop_->WatchFd(sock_.get(), EPOLLIN, [this](uint32_t) { Readable(); });
  if (!w.ok()) {
    Disconnect(w.status());
    return;
  }
  sock_watch_ = std::move(*w);
  ++connections_;
  counters().Increment("connections");
  if (listen_watch_.active()) (void)listen_watch_.SetEvents(0);  // one frontend at a time
}

void VhostUserBackend::Readable() {
  absl::StatusOr<vhost::VhostUserMessage> m =
      vhost::ReadVhostUserMessage(sock_.get(), absl::Seconds(1));
  if (!m.ok()) {
    Disconnect(m.status());
    return;
  }
  if (absl::Status s = session_->Handle(sock_.get(), std::move(*m)); !s.ok()) {
    counters().Increment("requests_refused");
    Disconnect(s);
    return;
  }
  // Kick watches follow the rings the session runs.
  for (uint32_t i = 0; i < session_->num_rings(); ++i) {
    const vhost::BackendRing& r = session_->ring(i);
    const bool want = r.started && r.kick.valid();
    if (want && !kick_watches_[i].active()) {
      const int fd = r.kick.get();
      const uint16_t q = static_cast<uint16_t>(i);
      auto w = loop_->WatchFd(fd, EPOLLIN, [this, fd, q](uint32_t) {
        eventfd_t v;
        if (eventfd_read(fd, &v) == 0) KickArrived(q);
      });
      if (w.ok()) kick_watches_[i] = std::move(*w);
    } else if (!want && kick_watches_[i].active()) {
      kick_watches_[i].Reset();
    }
  }
  // The STATUS protocol feature says when the device runs.
  if (!device_running_ && (session_->status() & VirtIODevice::kDriverOk)) StartDevice();
  MaybeStartOnKicks();
  SyncFrontendQueues(false);
}

bool VhostUserBackend::EnabledRingsComplete() const {
  for (uint32_t i = 0; i < session_->num_rings(); ++i) {
    const vhost::BackendRing& r = session_->ring(i);
    if (r.enabled && !r.started && (r.num != 0 || r.addr_set || r.kick_set)) return false;
  }
  return true;
}

void VhostUserBackend::MaybeStartOnKicks() {
  if (pending_kicks_.empty() || session_ == nullptr) return;
  if (!device_running_) {
    if (!EnabledRingsComplete()) return;
    StartDevice();
  }
  std::vector<uint16_t> kicks;
  kicks.swap(pending_kicks_);
  VirtIODevice* d = vdev();
  if (d == nullptr || !device_running_) return;
  for (uint16_t q : kicks) d->Kick(q);
}

void VhostUserBackend::SyncFrontendQueues(bool force) {
  VirtIODevice* d = vdev();
  if (d == nullptr || session_ == nullptr || !device_running_) return;
  std::vector<bool> now(d->num_queues(), false);
  for (uint32_t i = 0; i < session_->num_rings() && i < now.size(); ++i) {
    now[i] = session_->ring(i).started && session_->ring(i).enabled;
  }
  if (!force && now == frontend_queues_) return;
  frontend_queues_ = now;
  d->SetFrontendQueues(now);
}

void VhostUserBackend::Disconnect(const absl::Status& why) {
  if (why.code() != absl::StatusCode::kUnavailable && why.code() != absl::StatusCode::kCancelled) {
    VDEV_LOG(kWarning, "%s: frontend dropped: %s", DisplayName(), std::string(why.message()));
  }
  kick_watches_.clear();
  pending_kicks_.clear();
  sock_watch_.Reset();
  if (session_ != nullptr) session_->Close();  // stops the rings (StopRing)
  StopDevice();
  session_.reset();
  mem_.store(nullptr, std::memory_order_release);
  sock_.Reset();
  {
    absl::MutexLock l(&call_mu_);
    std::fill(call_fds_.begin(), call_fds_.end(), -1);
  }
  counters().Increment("disconnects");
  // Ready for the next frontend.
  if (retry_.active()) retry_.Arm(chardev_->server() ? absl::ZeroDuration() : kRetry);
}

void VhostUserBackend::KickArrived(uint16_t index) {
  // Without DRIVER_OK (no STATUS feature, or a frontend that does not send it, as QEMU 7.2's
  // vhost-user-rng) a kick says the frontend set the device up, once every ring it enabled is
  // complete (QEMU kicks a ring as soon as it is set up, before the next ring is).
  if (!device_running_) {
    if (std::find(pending_kicks_.begin(), pending_kicks_.end(), index) == pending_kicks_.end()) {
      pending_kicks_.push_back(index);
    }
    MaybeStartOnKicks();
    return;
  }
  VirtIODevice* d = vdev();
  if (d == nullptr || !device_running_) return;
  SyncFrontendQueues(false);
  if (index >= frontend_queues_.size() || !frontend_queues_[index]) {
    // A ring the frontend has not enabled (QEMU kicks every ring it sets up): its work is served
    // when the frontend enables it.
    counters().Increment("kicks_disabled_ring");
    return;
  }
  d->Kick(index);
}

// ---- the device, driven by the session ----

uint64_t VhostUserBackend::DeviceFeatures() const {
  VirtIODevice* d = vdev();
  return d != nullptr ? d->host_features() : 0;
}

absl::Status VhostUserBackend::SetFeatures(uint64_t features) {
  VirtIODevice* d = vdev();
  if (d == nullptr) return absl::FailedPreconditionError("no virtio device on the bus");
  // The frontend keeps the control plane (QEMU passes GUEST_ANNOUNCE on, for one).
  features &= ~d->ControlPlaneFeatures();
  // Again with the same features (QEMU repeats them for each queue pair, after the rings of the
  // pairs before were set up): nothing to do.
  if ((d->status() & VirtIODevice::kFeaturesOk) && d->guest_features() == features) {
    return absl::OkStatus();
  }
  // The driver's negotiation, as a guest does it through the common configuration.
  d->VirtioReset();
  d->SetStatus(VirtIODevice::kAcknowledge);
  d->SetStatus(VirtIODevice::kAcknowledge | VirtIODevice::kDriver);
  for (uint32_t sel = 0; sel < 2; ++sel) {
    regs_.set_driver_feature_select(sel);
    regs_.WriteDriverFeatures(*d, static_cast<uint32_t>(features >> (32 * sel)));
  }
  d->SetStatus(kNegotiated);
  if (!(d->status() & VirtIODevice::kFeaturesOk)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: the device does not accept features 0x%x", DisplayName(), features));
  }
  device_running_ = false;
  return absl::OkStatus();
}

absl::Status VhostUserBackend::StartRing(uint32_t index, const vhost::BackendRing& ring,
                                         const GuestMemory& mem) {
  VirtIODevice* d = vdev();
  if (d == nullptr || index >= d->num_queues()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("ring %u: the device has %u queues", index, d ? d->num_queues() : 0));
  }
  if (device_running_) {
    // A ring set up after the device started (a frontend that kicked early, or a queue pair
    // enabled later) starts on its own.
    mem_.store(&mem, std::memory_order_release);
    const bool ok = d->StartQueue(static_cast<uint16_t>(index), [&](VirtQueue& vq) {
      return ring.num <= 0xffff && vq.SetSize(static_cast<uint16_t>(ring.num)) &&
             vq.SetAddresses(ring.desc, ring.avail, ring.used) && vq.SetEnabled(true);
    });
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrFormat("ring %u cannot start on the running device", index));
    }
    d->WithQueue(static_cast<uint16_t>(index), [&](VirtQueue& vq) {
      vq.SetRingPositions(static_cast<uint16_t>(ring.base), vq.ReadUsedIdx());
      return true;
    });
    absl::MutexLock l(&call_mu_);
    if (index < call_fds_.size()) call_fds_[index] = ring.call.valid() ? ring.call.get() : -1;
    return absl::OkStatus();
  }
  if ((d->status() & kNegotiated) != kNegotiated) {
    return absl::FailedPreconditionError(absl::StrFormat("ring %u before SET_FEATURES", index));
  }
  mem_.store(&mem, std::memory_order_release);
  const uint16_t q = static_cast<uint16_t>(index);
  auto set = [&](QueueField f, uint64_t v) { return regs_.WriteQueueAt(*d, q, f, v); };
  const bool ok =
      set(QueueField::kSize, ring.num) && set(QueueField::kDescLow, ring.desc.value()) &&
      set(QueueField::kDescHigh, ring.desc.value() >> 32) &&
      set(QueueField::kDriverLow, ring.avail.value()) &&
      set(QueueField::kDriverHigh, ring.avail.value() >> 32) &&
      set(QueueField::kDeviceLow, ring.used.value()) &&
      set(QueueField::kDeviceHigh, ring.used.value() >> 32) && set(QueueField::kEnable, 1);
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrFormat("ring %u: size %u refused by the device", index, ring.num));
  }
  if (stopped_at_.size() < d->num_queues()) stopped_at_.resize(d->num_queues());
  stopped_at_[q] = static_cast<uint16_t>(ring.base);
  absl::MutexLock l(&call_mu_);
  if (index < call_fds_.size()) call_fds_[index] = ring.call.valid() ? ring.call.get() : -1;
  return absl::OkStatus();
}

void VhostUserBackend::StartDevice() {
  VirtIODevice* d = vdev();
  if (d == nullptr || (d->status() & kNegotiated) != kNegotiated) return;
  d->SetStatus(kNegotiated | VirtIODevice::kDriverOk);
  device_running_ = (d->status() & VirtIODevice::kDriverOk) != 0;
  // Each queue resumes where the frontend says (SET_VRING_BASE), its used index as the ring has
  // it.
  for (uint16_t i = 0; i < d->num_queues() && i < stopped_at_.size(); ++i) {
    d->WithQueue(i, [&](VirtQueue& vq) {
      if (vq.active()) vq.SetRingPositions(stopped_at_[i], vq.ReadUsedIdx());
      return true;
    });
  }
  counters().Increment("device_starts");
  // The device starts with one queue pair; the frontend may run more.
  SyncFrontendQueues(true);
}

void VhostUserBackend::CallChanged(uint32_t index, int fd) {
  absl::MutexLock l(&call_mu_);
  if (index < call_fds_.size()) call_fds_[index] = fd;
}

uint32_t VhostUserBackend::StopRing(uint32_t index) {
  // The kick fd goes next (the session closes it): stop watching it first.
  if (index < kick_watches_.size()) kick_watches_[index].Reset();
  VirtIODevice* d = vdev();
  if (d != nullptr && device_running_) {
    // The first ring stopped stops the device: every queue's position is kept for its ring.
    for (uint16_t i = 0; i < d->num_queues() && i < stopped_at_.size(); ++i) {
      d->WithQueue(i, [&](VirtQueue& vq) {
        if (vq.active()) stopped_at_[i] = vq.last_avail_idx();
        return true;
      });
    }
    StopDevice();
  }
  {
    absl::MutexLock l(&call_mu_);
    if (index < call_fds_.size()) call_fds_[index] = -1;
  }
  return index < stopped_at_.size() ? stopped_at_[index] : 0;
}

void VhostUserBackend::StopDevice() {
  if (!device_running_) return;
  device_running_ = false;
  frontend_queues_.clear();
  pending_kicks_.clear();
  if (VirtIODevice* d = vdev()) d->VirtioReset();
}

void VhostUserBackend::ResetDevice() {
  StopDevice();
  if (VirtIODevice* d = vdev()) d->VirtioReset();
}

absl::Status VhostUserBackend::SendRarp(const uint8_t mac[6]) {
  VirtIODevice* d = vdev();
  if (d == nullptr) return absl::FailedPreconditionError("no virtio device on the bus");
  return d->AnnounceFromFrontend(mac);
}

uint32_t VhostUserBackend::ConfigSize() const {
  VirtIODevice* d = vdev();
  return d != nullptr ? d->config_size() : 0;
}

std::vector<uint8_t> VhostUserBackend::GetConfig(uint32_t offset, uint32_t size) {
  std::vector<uint8_t> out(size);
  VirtIODevice* d = vdev();
  if (d == nullptr) return out;
  for (uint32_t i = 0; i < size; ++i) out[i] = static_cast<uint8_t>(d->ConfigRead(offset + i, 1));
  return out;
}

absl::Status VhostUserBackend::SetConfig(uint32_t offset, const std::vector<uint8_t>& data) {
  VirtIODevice* d = vdev();
  if (d == nullptr) return absl::FailedPreconditionError("no virtio device on the bus");
  // As a driver's writes: the device decides what is writable (and counts the rest).
  for (size_t i = 0; i < data.size(); ++i) {
    d->ConfigWrite(offset + static_cast<uint32_t>(i), data[i], 1);
  }
  return absl::OkStatus();
}

// ---- VirtioTransport ----

void VhostUserBackend::NotifyQueue(uint16_t index) {
  absl::MutexLock l(&call_mu_);
  if (index < call_fds_.size() && call_fds_[index] >= 0) eventfd_write(call_fds_[index], 1);
}

const GuestMemory* VhostUserBackend::dma_memory() const {
  return mem_.load(std::memory_order_acquire);
}

VDEV_REGISTER_TYPE(VhostUserBackend);

}  // namespace vdev::virtio
