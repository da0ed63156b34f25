// Internals shared by the parts of virtio-net (device.cc, tx.cc, rx.cc, ctrl.cc, vhost.cc).
// Not installed.
#ifndef VDEV_HW_NET_VIRTIO_NET_VIRTIO_NET_INTERNAL_H_
#define VDEV_HW_NET_VIRTIO_NET_VIRTIO_NET_INTERNAL_H_

#include <algorithm>
#include <cstring>
#include <vector>

#include "bus/virtio/chain_io.h"
#include "bus/virtio/virtio_uapi.h"
#include "hw/net/virtio_net/virtio_net.h"
#include "net/virtio_net_uapi.h"

namespace vdev::virtio {

constexpr uint64_t Bit(unsigned b) { return uint64_t{1} << b; }

// Offload features the guest can switch with CTRL_GUEST_OFFLOADS_SET.
constexpr uint64_t kGuestOffloads = Bit(VIRTIO_NET_F_GUEST_CSUM) | Bit(VIRTIO_NET_F_GUEST_TSO4) |
                                    Bit(VIRTIO_NET_F_GUEST_TSO6) | Bit(VIRTIO_NET_F_GUEST_ECN) |
                                    Bit(VIRTIO_NET_F_GUEST_UFO);
// Everything that needs the backend to carry a virtio-net header.
constexpr uint64_t kNeedVnetHdr = kGuestOffloads | Bit(VIRTIO_NET_F_CSUM) |
                                  Bit(VIRTIO_NET_F_HOST_TSO4) | Bit(VIRTIO_NET_F_HOST_TSO6) |
                                  Bit(VIRTIO_NET_F_HOST_ECN) | Bit(VIRTIO_NET_F_HOST_UFO) |
                                  Bit(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS);

// Everything that needs the control queue.
constexpr uint64_t kNeedCtrlVq = Bit(VIRTIO_NET_F_CTRL_RX) | Bit(VIRTIO_NET_F_CTRL_VLAN) |
                                 Bit(VIRTIO_NET_F_CTRL_RX_EXTRA) | Bit(VIRTIO_NET_F_CTRL_MAC_ADDR) |
                                 Bit(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS) |
                                 Bit(VIRTIO_NET_F_GUEST_ANNOUNCE) | Bit(VIRTIO_NET_F_MQ);
constexpr size_t kEthHeader = 14;
constexpr uint64_t kMaxTxFrame = 65535 + 14 + 4;  // a 64 KiB GSO frame and its Ethernet header
// Control payloads are copied out of the ring: bounded (a MAC table larger than the device's
// still fits, so its overflow flags can be set).
constexpr size_t kMaxCtrlPayload = 65536;
constexpr size_t kMaxIov = 256;

// The NIC side of one queue pair.
class VirtIONet::Nic : public net::NetClientState {
 public:
  Nic(VirtIONet* dev, size_t pair, std::string name)
      : NetClientState("nic", std::move(name)), dev_(dev), pair_(pair) {}
  bool CanReceive() override { return dev_->CanReceive(pair_); }
  ssize_t ReceiveIov(const iovec* iov, int n) override { return dev_->Receive(pair_, iov, n); }
  ssize_t ReceiveDirect(FillFn fill) override { return dev_->ReceiveDirect(pair_, fill); }
  ssize_t ReceiveDirectBatch(int max, BatchFillFn fill) override {
    return dev_->ReceiveDirectBatch(pair_, max, fill);
  }
  void LinkStatusChanged() override { dev_->LinkChanged(); }
  void DirectBatchEnd() override { dev_->DirectBatchEnd(pair_); }
  // A sender's burst of frames (ReceiveIov after ReceiveIov): completions are published once,
  // at its end.
  void ReceiveBatchBegin() override { dev_->RxBatch(pair_, true); }
  void ReceiveBatchEnd() override { dev_->RxBatch(pair_, false); }
  void PeerReady() override {}

 private:
  VirtIONet* dev_;
  const size_t pair_;
};

// Hears about a vhost backend going away and coming back.
class VirtIONet::VhostGlue : public vhost::VhostListener {
 public:
  explicit VhostGlue(VirtIONet* dev) : dev_(dev) {}
  void BackendDown() override { dev_->VhostBackendDown(); }
  void BackendUp() override { dev_->VhostBackendUp(); }

 private:
  VirtIONet* dev_;
};

}  // namespace vdev::virtio

#endif  // VDEV_HW_NET_VIRTIO_NET_VIRTIO_NET_INTERNAL_H_
