// TestNic: a NetClientState that plays the NIC in backend tests. It records every frame it takes,
// can refuse frames for a while (ReceiveIov answers 0: "cannot take it now"), and sends frames
// as a NIC would, counting the `sent` callbacks of frames that were queued.
//
// Example:
//   TestNic nic;
//   NetClientState::Connect(&nic, netdev->queue(0));
//   nic.SendFrame({1, 2, 3});
//   ASSERT_TRUE(nic.WaitFrames(1, absl::Seconds(5)));
//
// Thread-safety: thread-safe; the backend delivers on its loop thread while the test thread waits.
#ifndef VDEV_TESTS_NET_TEST_NIC_H_
#define VDEV_TESTS_NET_TEST_NIC_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "net/net.h"

namespace vdev::net::testing {

class TestNic : public NetClientState {
 public:
  explicit TestNic(std::string name = "nic0") : NetClientState("nic", std::move(name)) {}

  ssize_t ReceiveIov(const iovec* iov, int n) override {
    absl::MutexLock l(&mu_);
    ++attempts_;
    if (!accepting_) return 0;
    std::vector<uint8_t> frame(IovSize(iov, n));
    IovToBuf(iov, n, 0, frame.data(), frame.size());
    frames_.push_back(std::move(frame));
    return static_cast<ssize_t>(frames_.back().size());
  }

  // While off, ReceiveIov answers 0 (the frame is queued at this NIC). Turning it back on does
  // not flush: call ReceiverReady() for that, as a NIC does when the guest adds buffers.
  void SetAccepting(bool on) {
    absl::MutexLock l(&mu_);
    accepting_ = on;
  }

  // Sends one frame; a frame that is queued is counted in callbacks() once it is delivered.
  ssize_t SendFrame(const std::vector<uint8_t>& frame) {
    return Send(frame.data(), frame.size(), [this] { callbacks_.fetch_add(1); });
  }

  bool WaitFrames(size_t n, absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return frames_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  bool WaitAttempts(int n, absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return attempts_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }

  std::vector<std::vector<uint8_t>> frames() {
    absl::MutexLock l(&mu_);
    return frames_;
  }
  size_t frame_count() {
    absl::MutexLock l(&mu_);
    return frames_.size();
  }
  // ReceiveIov calls, taken or refused.
  int attempts() {
    absl::MutexLock l(&mu_);
    return attempts_;
  }
  int callbacks() const { return callbacks_.load(); }

 private:
  absl::Mutex mu_;
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  int attempts_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::vector<uint8_t>> frames_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> callbacks_{0};
};

// A frame of `size` bytes whose content depends on `seq` (so reordering or corruption shows).
inline std::vector<uint8_t> MakeFrame(uint32_t seq, size_t size) {
  std::vector<uint8_t> f(size);
  for (size_t i = 0; i < size; ++i) f[i] = static_cast<uint8_t>(seq * 31 + i * 7 + (i >> 8));
  for (size_t i = 0; i < 4 && i < size; ++i) f[i] = static_cast<uint8_t>(seq >> (8 * i));
  return f;
}

}  // namespace vdev::net::testing

#endif  // VDEV_TESTS_NET_TEST_NIC_H_
