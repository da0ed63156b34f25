// DPDK's testpmd as a real vhost-user peer for tests and benchmarks (command lines measured in
// ../shared/reference/dpdk.md): a backend (`net_vhost0`, the server of a unix socket, in macswap /
// io / rxonly forwarding) or a frontend (`net_virtio_user0`, DPDK's own virtio driver, in txonly).
//
// Each process gets a private runtime directory and file prefix, no hugepages (--no-huge), a
// small mbuf pool, and its stdout/stderr in a log file; it is killed and reaped on destruction,
// and also when the thread that started it exits (PR_SET_PDEATHSIG): start it from the thread
// that owns it.
//
// Example:
//   if (!TestPmd::Available()) GTEST_SKIP() << TestPmd::kMissing;
//   auto pmd = TestPmd::StartVhostBackend(dir + "/vh.sock", "macswap");
//   ASSERT_TRUE(pmd.ok()) << pmd.status();
//
// Thread-safety: none; one owner.
#ifndef VDEV_TESTS_TESTING_DPDK_TESTPMD_H_
#define VDEV_TESTS_TESTING_DPDK_TESTPMD_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace vdev::testing {

class TestPmd {
 public:
  static constexpr char kMissing[] =
      "dpdk-testpmd is not installed (apt-get install dpdk dpdk-dev; scripts/setup does)";
  static bool Available();

  // A vhost-user backend serving `socket` (returned once the socket exists and testpmd forwards)
  // with forwarding `mode`; with `client`, testpmd connects to a socket we listen on instead.
  // `lcores` pins testpmd's main and forwarding cores; `txpkts` is the frame size of txonly.
  static absl::StatusOr<std::unique_ptr<TestPmd>> StartVhostBackend(
      const std::string& socket, const std::string& mode, bool client = false,
      const std::string& lcores = "0@1,1@0", int queues = 1, int txpkts = 0);
  // A vhost-user backend serving `socket` that forwards (io) between the ring and the kernel TAP
  // `tap` through DPDK's TAP PMD (net_tap, which attaches to a persistent multiqueue TAP of that
  // name), run inside the network namespace `netns`.
  static absl::StatusOr<std::unique_ptr<TestPmd>> StartVhostToTap(
      const std::string& socket, const std::string& tap, const std::string& netns,
      const std::string& lcores = "0@1,1@0");
  // DPDK's virtio-user driver on `socket` (a backend listens there), transmitting `txpkts`-byte
  // frames as fast as it can (txonly), or forwarding what it receives (io, macswap), after a first
  // burst of its own with `tx_first`.
  static absl::StatusOr<std::unique_ptr<TestPmd>> StartVirtioUser(
      const std::string& socket, const std::string& mode, int txpkts,
      const std::string& lcores = "0@0,1@1", bool tx_first = false);
  ~TestPmd();

  pid_t pid() const { return pid_; }
  // SIGKILL and reap (the socket file stays behind, as after a crash).
  void Kill();
  // SIGINT and reap: testpmd prints its final statistics.
  void Stop();
  std::string Log() const;
  // The last "Rx-pps:" figure testpmd printed, or -1.
  double LastRxPps() const;
  // The best of the once-a-second `key` figures ("Rx-pps:", "Tx-pps:") after the first; 0 if
  // none.
  double BestPps(const std::string& key) const;

 private:
  // Starts testpmd with `args`, inside the network namespace `netns` if one is named.
  static absl::StatusOr<std::unique_ptr<TestPmd>> Spawn(std::vector<std::string> args,
                                                        const std::string& netns = "");
  // Waits until `socket` exists and forwarding runs.
  absl::Status WaitForwarding(const std::string& socket);
  pid_t pid_ = -1;
  std::string dir_;  // runtime dir and log
};

}  // namespace vdev::testing

#endif  // VDEV_TESTS_TESTING_DPDK_TESTPMD_H_
