// virtio-net with a vhost data plane: at DRIVER_OK the receive/transmit rings go to the backend
// (VhostDev), the control queue stays here. Kicks are forwarded to the rings' kick eventfds, the
// backend's calls become the rings' interrupts, and on reset (or a backend that goes away) the
// rings come back with their positions.
#include "core/base/logging.h"
#include "core/base/status_macros.h"
#include "hw/net/virtio_net/virtio_net_internal.h"
#include "hw/virtio/vhost/vhost_kernel.h"
#include "net/tap.h"

namespace vdev::virtio {
namespace {

// Features the backend's data plane implements (QEMU's user_feature_bits): the guest is offered
// these only when the backend has them. The rest (MAC, STATUS, the control queue and what it
// carries, MTU, announce) is the device's own.
constexpr uint64_t kVhostFeatures =
    Bit(VIRTIO_NET_F_CSUM) | Bit(VIRTIO_NET_F_GUEST_CSUM) | Bit(VIRTIO_NET_F_GUEST_TSO4) |
    Bit(VIRTIO_NET_F_GUEST_TSO6) | Bit(VIRTIO_NET_F_GUEST_ECN) | Bit(VIRTIO_NET_F_GUEST_UFO) |
    Bit(VIRTIO_NET_F_HOST_TSO4) | Bit(VIRTIO_NET_F_HOST_TSO6) | Bit(VIRTIO_NET_F_HOST_ECN) |
    Bit(VIRTIO_NET_F_HOST_UFO) | Bit(VIRTIO_NET_F_MRG_RXBUF) | Bit(VIRTIO_NET_F_MQ) |
    Bit(VIRTIO_RING_F_INDIRECT_DESC) | Bit(VIRTIO_RING_F_EVENT_IDX) | Bit(VIRTIO_F_VERSION_1) |
    Bit(VIRTIO_F_ANY_LAYOUT);
// What a vhost-net ring implements (QEMU's kernel_feature_bits); the offloads are the TAP's (its
// vnet header).
constexpr uint64_t kVhostRingFeatures = Bit(VIRTIO_NET_F_MRG_RXBUF) |
                                        Bit(VIRTIO_RING_F_INDIRECT_DESC) |
                                        Bit(VIRTIO_RING_F_EVENT_IDX) | Bit(VIRTIO_F_VERSION_1);

}  // namespace

absl::Status VirtIONet::RealizeVhost(size_t npairs) {
  if (auto* tap = dynamic_cast<net::Tap*>(netdev_); tap != nullptr && tap->vhost_fd(0) >= 0) {
    std::vector<int> vhost_fds, tap_fds;
    for (size_t i = 0; i < npairs; ++i) {
      vhost_fds.push_back(tap->vhost_fd(i));
      tap_fds.push_back(tap->fd(i));
    }
    VDEV_ASSIGN_OR_RETURN(own_vhost_,
                          vhost::VhostKernelNet::Create(vhost_fds, tap_fds, tap->vnet_hdr()));
    vhost_ = own_vhost_.get();
  } else {
    vhost_ = dynamic_cast<vhost::VhostBackend*>(netdev_);
  }
  if (vhost_ == nullptr) return absl::OkStatus();
  vhost_features_ = vhost_->features();
  vhost_mask_ = vhost_->decides_offloads() ? kVhostFeatures : kVhostRingFeatures;
  if (vhost_->decides_offloads()) {
    // The backend handles virtio-net headers itself; what it offloads is in its features.
    has_vnet_hdr_ = true;
    has_ufo_ = true;
  }
  vhost_glue_ = std::make_unique<VhostGlue>(this);
  vhost_->SetListener(vhost_glue_.get());
  return absl::OkStatus();
}

void VirtIONet::UnrealizeVhost() {
  if (vhost_ == nullptr) return;
  // Events run on the netdev's loop: once this returns, none is running or will reach us.
  netdev_->loop().RunAndWait([this] { vhost_->SetListener(nullptr); });
  vhost_glue_.reset();
  vhost_ = nullptr;
  own_vhost_.reset();
}

uint64_t VirtIONet::FilterFeatures(uint64_t offered) const {
  if (vhost_ == nullptr) return offered;
  return DropOrphans(offered & (~vhost_mask_ | vhost_features_));
}

void VirtIONet::StartVhost() {
  if (vhost_ == nullptr || !vhost_up_ || (vhost_dev_ != nullptr && vhost_dev_->started())) return;
  const GuestMemory* mem = dma_memory();
  if (mem == nullptr) return;
  VirtioTransport* transport = virtio_bus()->transport();
  if (vhost_dev_ == nullptr) {
    Counter* errors = counters().Get("vhost_ring_errors");
    vhost_dev_ = std::make_unique<vhost::VhostDev>(
        *loop_,
        // The backend used buffers and the driver wants to know: raise the ring's interrupt.
        [transport](uint32_t index) { transport->NotifyQueue(static_cast<uint16_t>(index)); },
        [errors, name = DisplayName()](uint32_t index) {
          errors->Add();
          // Logged at 1, 2, 4, 8... so a backend that keeps signalling cannot flood the log.
          const uint64_t n = errors->value();
          if ((n & (n - 1)) == 0) {
            VDEV_LOG(kWarning, "%s: the vhost backend reported an error on ring %u (%u so far)",
                     name, index, n);
          }
        });
  }
  std::vector<vhost::VhostDev::Ring> rings;
  for (size_t p = 0; p < pairs_.size(); ++p) {
    for (uint16_t q : {static_cast<uint16_t>(2 * p), static_cast<uint16_t>(2 * p + 1)}) {
      VirtQueue* vq = queue(q);
      if (vq->enabled()) {
        rings.push_back(
            {q, vq, transport->QueueIrqfd(q), transport->QueueIoeventfd(q), p < curr_pairs_});
      }
    }
  }
  ClearRxHints();  // the backend fills the receive rings from here
  absl::Status s = vhost_dev_->Start(*vhost_, *mem, negotiated() & vhost_mask_, rings);
  if (s.ok() && host_mtu_ != 0) s = vhost_->SetMtu(host_mtu_);
  if (s.ok()) {
    counters().Increment("vhost_starts");
    return;
  }
  // (A failing Start already took its rings back; a failing SetMtu leaves them running.)
  (void)vhost_dev_->Stop(vhost_->connected() ? vhost_ : nullptr);
  if (vhost_->userspace_fallback()) {
    // Our own data path carries on with the rings where they are.
    counters().Increment("vhost_fallbacks");
    VDEV_LOG(kWarning, "%s: vhost: %s; using the userspace data path", DisplayName(), s.message());
    return;
  }
  if (!vhost_->connected()) return;  // started again when the backend is back
  // The backend refused the rings: the device cannot go on (a reset retries).
  MarkNeedsReset(absl::StrCat("vhost: ", s.message()));
}

void VirtIONet::StopVhost() {
  if (vhost_dev_ == nullptr || !vhost_dev_->started()) return;
  absl::Status s = vhost_dev_->Stop(vhost_up_ ? vhost_ : nullptr);
  if (!s.ok()) {
    VDEV_LOG(kWarning, "%s: vhost: taking the rings back: %s", DisplayName(), s.ToString());
  }
}

void VirtIONet::VhostSetPairs(size_t n) {
  if (vhost_dev_ == nullptr || !vhost_dev_->started()) return;
  for (size_t p = 0; p < pairs_.size(); ++p) {
    for (uint32_t q : {static_cast<uint32_t>(2 * p), static_cast<uint32_t>(2 * p + 1)}) {
      if (absl::Status s = vhost_dev_->SetRingEnabled(*vhost_, q, p < n); !s.ok()) {
        VDEV_LOG(kWarning, "%s: vhost: ring %u: %s", DisplayName(), q, s.ToString());
      }
    }
  }
}

bool VirtIONet::VhostKick(uint16_t index) {
  if (vhost_ == nullptr) return false;
  if (vhost_dev_ != nullptr && vhost_dev_->Kick(index)) return true;
  if (vhost_->userspace_fallback()) return false;  // our data path has the rings
  // The backend is away: the buffers wait in the ring for it.
  counters().Increment("vhost_kicks_while_down");
  return true;
}

void VirtIONet::VhostBackendDown() {
  absl::MutexLock l(&mu_);
  if (vhost_dev_ != nullptr && vhost_dev_->started()) {
    // No one to ask for ring bases: resume from the used index in guest memory.
    (void)vhost_dev_->Stop(nullptr);
  }
  vhost_up_ = false;
  counters().Increment("vhost_backend_down");
}

void VirtIONet::VhostBackendUp() {
  absl::MutexLock l(&mu_);
  vhost_up_ = true;
  const uint64_t lacking = negotiated() & vhost_mask_ & ~vhost_->features();
  if (running() && lacking != 0) {
    MarkNeedsReset(absl::StrFormat(
        "vhost: the backend came back without features 0x%x the driver uses", lacking));
    return;
  }
  if (running()) StartVhost();
}

}  // namespace vdev::virtio
