// The in-memory `loopback` netdev, for tests and for measuring a NIC alone:
//
//   -netdev loopback,id=n0[,reflect=on|off][,queues=N]
//
// Every frame the NIC sends is counted; with reflect=on (the default) it is sent back to the NIC
// from the backend's loop, as if the cable ran into itself. Tests can also capture what the NIC
// sent and inject frames of their own.
//
// Thread-safety: Inject, TakeCaptured and the counters may be used from any thread.
#ifndef VDEV_NET_LOOPBACK_H_
#define VDEV_NET_LOOPBACK_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "net/netdev.h"

namespace vdev::net {

class Loopback : public Netdev {
 public:
  static constexpr char kTypeName[] = "netdev-loopback";
  using Parent = Netdev;
  static void ClassInit(qom::ObjectClass& k);
  // The largest frame injected without a copy: Ethernet with a VLAN tag.
  static constexpr size_t kDirectFrame = 1514 + 4;

  ~Loopback() override;
  absl::Status Complete() override;

  NetClientState& client(size_t queue = 0) { return *clients_[queue]; }
  // Sends `frame` to the NIC on `queue` (from the calling thread). As SendIov: size, 0 queued,
  // -1 dropped.
  ssize_t Inject(const std::vector<uint8_t>& frame, size_t queue = 0);
  // Sends `count` copies of `frame` as one burst (the NIC publishes them together); returns how
  // many it took before the first it did not (queued or dropped). A frame of up to kDirectFrame
  // bytes is written straight into the NIC's buffers where the NIC offers them (as a TAP reads).
  int InjectBurst(const std::vector<uint8_t>& frame, int count, size_t queue = 0);
  // Starts keeping a copy of every frame received from the NIC.
  void SetCapture(bool on);
  // Frames captured so far (with the queue each arrived on, when `queues` is given).
  std::vector<std::vector<uint8_t>> TakeCaptured(std::vector<size_t>* queues = nullptr);
  // Waits (up to `timeout`) until at least `n` frames are captured.
  bool WaitCaptured(size_t n, absl::Duration timeout);

  uint64_t frames() const;
  uint64_t bytes() const;
  bool reflect() const { return reflect_; }

 private:
  class Client;
  ssize_t Received(size_t queue, const iovec* iov, int n);

  bool reflect_ = true;
  uint32_t queues_ = 1;
  // What the loopback received, per queue (each on its own cache line).
  struct alignas(64) QueueCount {
    std::atomic<uint64_t> frames{0};
    std::atomic<uint64_t> bytes{0};
  };
  std::unique_ptr<QueueCount[]> counts_;  // queues_ of them, from Complete()
  absl::Mutex mu_;
  std::atomic<bool> capture_{false};
  std::vector<std::vector<uint8_t>> captured_ ABSL_GUARDED_BY(mu_);
  std::vector<size_t> captured_queues_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vdev::net

#endif  // VDEV_NET_LOOPBACK_H_
