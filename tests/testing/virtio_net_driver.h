// The software guest's virtio-net driver, on its virtio-pci driver: negotiates features, sets up
// receive/transmit pairs and the control queue, posts receive buffers, sends frames (one buffer
// holding header and frame), collects received frames (merging mergeable buffers) and issues
// control commands, all through guest-visible accesses.
//
// Memory: rings and buffers live in guest RAM from `base` (about 24 MiB with 4 pairs).
//
// Example:
//   VirtioNetDriver net(*drv, m->guest_memory(), GuestAddr(0x1000000));
//   ASSERT_TRUE(net.Init(kVersion1 | Bit(VIRTIO_NET_F_MRG_RXBUF) | Bit(VIRTIO_NET_F_CTRL_VQ)));
//   net.FillRx(0, 64);
//   net.Send(0, frame);
//   auto frames = net.WaitRx(0, 1, absl::Seconds(5));
//
// Thread-safety: none; the test thread is the guest. The device may complete buffers from its
// loop thread; WaitRx/WaitTx poll the used rings.
#ifndef VDEV_TESTS_TESTING_VIRTIO_NET_DRIVER_H_
#define VDEV_TESTS_TESTING_VIRTIO_NET_DRIVER_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/time/time.h"
#include "core/memory/guest_memory.h"
#include "net/virtio_net_uapi.h"
#include "tests/testing/virtio_pci_driver.h"
#include "tests/testing/virtio_ring.h"

namespace vdev::testing {

class VirtioNetDriver {
 public:
  struct RxFrame {
    virtio_net_hdr_mrg_rxbuf hdr{};
    uint16_t buffers = 1;
    std::vector<uint8_t> data;  // the frame, without the header
  };

  VirtioNetDriver(VirtioPciDriver& pci, const GuestMemory& ram, GuestAddr base);

  // Negotiates `wanted` (& offered), sets up `pairs` queue pairs (and the control queue when
  // CTRL_VQ was accepted; `max_pairs` tells where it is), DRIVER_OK. Queue vectors: MSI-X
  // vector 1 + queue index when `msix`, else none.
  bool Init(uint64_t wanted, uint16_t pairs = 1, uint16_t max_pairs = 1, uint16_t ring_size = 256,
            uint32_t rx_buf_size = 2048, bool msix = false);
  uint64_t features() const { return features_; }
  bool Has(unsigned bit) const { return features_ >> bit & 1; }
  int hdr_len() const { return hdr_len_; }

  // Posts `count` receive buffers on pair `pair` and kicks.
  void FillRx(uint16_t pair, int count, bool kick = true);
  // Sends one frame with header `hdr` (zero: no offload). False when the ring is full.
  bool Send(uint16_t pair, const std::vector<uint8_t>& frame, const virtio_net_hdr& hdr = {},
            bool kick = true);
  // Frees completed transmit buffers; returns how many.
  int ReclaimTx(uint16_t pair);
  uint16_t tx_in_flight(uint16_t pair) const { return queues_[2 * pair + 1].in_flight; }
  // Received frames completed so far (receive buffers are re-posted when `refill`).
  std::vector<RxFrame> TakeRx(uint16_t pair, bool refill = true);
  // Polls until `n` frames arrived or `timeout`; returns what arrived.
  std::vector<RxFrame> WaitRx(uint16_t pair, size_t n, absl::Duration timeout, bool refill = true);
  // Waits until every sent frame was completed.
  bool WaitTx(uint16_t pair, absl::Duration timeout);

  // A control command; the ack byte, or nullopt when the device returned no ack.
  std::optional<uint8_t> Ctrl(uint8_t cls, uint8_t cmd, const std::vector<uint8_t>& data);
  uint16_t ctrl_index() const { return ctrl_index_; }

  // Device configuration.
  std::array<uint8_t, 6> ConfigMac();
  uint16_t ConfigStatus();
  uint16_t ConfigMaxPairs();

  GuestVring* ring(uint16_t queue) { return queues_[queue].ring; }
  // Guest address of buffer slot `slot` of queue `queue`.
  GuestAddr BufferAddr(uint16_t queue, uint16_t slot) const;
  uint32_t buf_size() const { return buf_size_; }

 private:
  struct Queue {
    GuestVring* ring = nullptr;
    uint16_t next_slot = 0;  // the ring hands out descriptors round-robin, one per chain
    uint16_t in_flight = 0;
  };
  uint16_t PostBuffer(uint16_t queue, uint32_t len, bool write);

  VirtioPciDriver& pci_;
  const GuestMemory& ram_;
  const GuestAddr base_;
  uint64_t features_ = 0;
  int hdr_len_ = 10;
  uint16_t ring_size_ = 256;
  uint32_t buf_size_ = 2048;
  uint16_t ctrl_index_ = 0xffff;
  std::vector<Queue> queues_;
};

}  // namespace vdev::testing

#endif  // VDEV_TESTS_TESTING_VIRTIO_NET_DRIVER_H_
