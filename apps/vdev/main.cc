// vdev: build a machine from QEMU-style options and introspect it. See cli.h.
#include <iostream>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "apps/vdev/cli.h"

int main(int argc, char** argv) {
  // Debian's Abseil is built without NDEBUG: its Mutex checks lock order on every acquisition.
  // The tests keep that check; a running machine does not pay for it (docs/performance.md).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::vector<std::string> args(argv + 1, argv + argc);
  return vdev::cli::Run(args, std::cout, std::cerr);
}
