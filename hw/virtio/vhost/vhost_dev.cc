#include "hw/virtio/vhost/vhost_dev.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"
#include "hw/virtio/vhost/vhost_kernel.h"

namespace vdev::vhost {

absl::StatusOr<VringAddr> TranslateRing(const GuestMemory& mem, uint16_t size, GuestAddr desc,
                                        GuestAddr avail, GuestAddr used) {
  VDEV_ASSIGN_OR_RETURN(vhost_vring_addr a,
                        BuildVringAddr(mem, 0, size, desc.value(), avail.value(), used.value()));
  return VringAddr{a.desc_user_addr, a.avail_user_addr, a.used_user_addr};
}

// The eventfds outlive a Stop() until the loop has dropped their watches (which may only be done
// on the loop thread, and Stop runs under the device's lock, which loop callbacks also take).
struct VhostDev::Shared {
  std::function<void(uint32_t)> on_call, on_error;
  std::atomic<bool> live{true};
  struct PerRing {
    uint32_t index = 0;
    EventNotifier kick, call, err;
    FdWatch call_watch, err_watch;
  };
  std::vector<PerRing> rings;
};

VhostDev::VhostDev(EventLoop& loop, std::function<void(uint32_t)> on_call,
                   std::function<void(uint32_t)> on_error)
    : loop_(loop), on_call_(std::move(on_call)), on_error_(std::move(on_error)) {}

VhostDev::~VhostDev() {
  if (started_) (void)Stop(nullptr);
}

absl::Status VhostDev::Start(VhostBackend& backend, const GuestMemory& mem, uint64_t features,
                             std::vector<Ring> rings) {
  if (started_) return absl::FailedPreconditionError("vhost: already started");
  auto shared = std::make_shared<Shared>();
  shared->on_call = on_call_;
  shared->on_error = on_error_;
  shared->rings.resize(rings.size());
  for (size_t i = 0; i < rings.size(); ++i) {
    Shared::PerRing& r = shared->rings[i];
    r.index = rings[i].index;
    VDEV_ASSIGN_OR_RETURN(r.kick, EventNotifier::Create());
    VDEV_ASSIGN_OR_RETURN(r.call, EventNotifier::Create());
    VDEV_ASSIGN_OR_RETURN(r.err, EventNotifier::Create());
  }
  // Every ring is checked before the backend hears of any.
  std::vector<VringAddr> addrs;
  for (const Ring& ring : rings) {
    const virtio::VirtQueue& vq = *ring.vq;
    VDEV_ASSIGN_OR_RETURN(VringAddr addr, TranslateRing(mem, vq.size(), vq.desc_addr(),
                                                        vq.avail_addr(), vq.used_addr()));
    addrs.push_back(addr);
  }
  VDEV_RETURN_IF_ERROR(backend.SetFeatures(features));
  VDEV_RETURN_IF_ERROR(backend.SetMemTable(mem));
  absl::Status s = absl::OkStatus();
  size_t touched = 0;  // rings the backend may be serving from here on
  for (size_t i = 0; i < rings.size() && s.ok(); ++i) {
    const Ring& ring = rings[i];
    const virtio::VirtQueue& vq = *ring.vq;
    Shared::PerRing& r = shared->rings[i];
    touched = i + 1;
    s = backend.SetupRing(ring.index, {.num = vq.size(),
                                       .base = vq.last_avail_idx(),
                                       .addr = addrs[i],
                                       .kick = ring.ioeventfd >= 0 ? ring.ioeventfd : r.kick.fd(),
                                       .call = ring.irqfd >= 0 ? ring.irqfd : r.call.fd(),
                                       .err = r.err.fd()});
  }
  if (!s.ok()) return Unwind(backend, std::move(rings), touched, std::move(shared), s);
  // Watches are loop state: they are registered there, later (Start may run under the device's
  // lock, which loop callbacks take, so it cannot wait for the loop). A call signalled before
  // stays pending in its eventfd. Their callbacks hold only the shared state.
  std::vector<bool> via_irqfd;
  for (const Ring& ring : rings) via_irqfd.push_back(ring.irqfd >= 0);
  loop_.Post([shared, via_irqfd, &loop = loop_] {
    std::weak_ptr<Shared> weak = shared;
    for (size_t i = 0; i < shared->rings.size(); ++i) {
      Shared::PerRing& r = shared->rings[i];
      const uint32_t index = r.index;
      if (!via_irqfd[i]) {
        auto w = loop.WatchNotifier(r.call, [weak, i, index] {
          auto s = weak.lock();
          if (s == nullptr) return;
          s->rings[i].call.TestAndClear();
          if (s->live.load(std::memory_order_acquire)) s->on_call(index);
        });
        if (w.ok())
          r.call_watch = std::move(*w);
        else
          VDEV_LOG(kError, "vhost: cannot watch ring %u's call eventfd: %s", index,
                   w.status().ToString());
      }
      auto e = loop.WatchNotifier(r.err, [weak, i, index] {
        auto s = weak.lock();
        if (s == nullptr) return;
        s->rings[i].err.TestAndClear();
        if (s->live.load(std::memory_order_acquire)) s->on_error(index);
      });
      if (e.ok()) r.err_watch = std::move(*e);
    }
  });
  for (const Ring& ring : rings) {
    if (!ring.enabled) continue;
    if (absl::Status st = backend.SetVringEnable(ring.index, true); !st.ok()) {
      const size_t n = rings.size();
      return Unwind(backend, std::move(rings), n, std::move(shared), st);
    }
  }
  // The driver may have kicked before the hand-over: let the backend look at every ring once.
  for (size_t i = 0; i < rings.size(); ++i) {
    if (rings[i].ioeventfd >= 0) {
      const uint64_t one = 1;
      (void)!write(rings[i].ioeventfd, &one, sizeof(one));
    } else {
      shared->rings[i].kick.Set();
    }
  }
  rings_ = std::move(rings);
  shared_ = std::move(shared);
  started_ = true;
  return absl::OkStatus();
}

absl::Status VhostDev::Unwind(VhostBackend& backend, std::vector<Ring> rings, size_t touched,
                              std::shared_ptr<Shared> shared, absl::Status error) {
  // The backend may already serve the first `touched` rings: stop them and take their positions
  // back, as a Stop would.
  rings.resize(touched);
  rings_ = std::move(rings);
  shared_ = std::move(shared);
  started_ = true;
  (void)Stop(&backend);
  return error;
}

bool VhostDev::handed_over(uint32_t index) const {
  return started_ && std::any_of(rings_.begin(), rings_.end(),
                                 [index](const Ring& r) { return r.index == index; });
}

bool VhostDev::Kick(uint32_t index) {
  if (!started_) return false;
  for (size_t i = 0; i < rings_.size(); ++i) {
    if (rings_[i].index != index) continue;
    if (rings_[i].ioeventfd >= 0) {
      // A notify write that reached us although a VMM's ioeventfd is bound (e.g. the legacy
      // register): pass it on through the same eventfd.
      const uint64_t one = 1;
      (void)!write(rings_[i].ioeventfd, &one, sizeof(one));
    } else {
      shared_->rings[i].kick.Set();
    }
    return true;
  }
  return false;
}

absl::Status VhostDev::SetRingEnabled(VhostBackend& backend, uint32_t index, bool enable) {
  if (!handed_over(index)) return absl::OkStatus();
  return backend.SetVringEnable(index, enable);
}

absl::Status VhostDev::Stop(VhostBackend* backend) {
  if (!started_) return absl::OkStatus();
  started_ = false;
  shared_->live.store(false, std::memory_order_release);
  absl::Status first = absl::OkStatus();
  for (const Ring& ring : rings_) {
    virtio::VirtQueue& vq = *ring.vq;
    std::optional<uint16_t> last_avail;
    if (backend != nullptr) {
      // First stop the ring, then read where it got to.
      absl::StatusOr<uint32_t> base = backend->GetVringBase(ring.index);
      if (base.ok()) {
        last_avail = static_cast<uint16_t>(*base);
      } else if (first.ok()) {
        first = base.status();
      }
    }
    const uint16_t used = vq.ReadUsedIdx();
    vq.SetRingPositions(last_avail.value_or(used), used);
  }
  rings_.clear();
  // Drop the watches on the loop, later (see Shared); the eventfds go with them.
  loop_.Post([s = std::move(shared_)]() mutable { s.reset(); });
  return first;
}

}  // namespace vdev::vhost
