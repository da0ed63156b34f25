// The number of fds this process has open (entries of /proc/self/fd), for tests that check that
// every fd a peer sent was closed.
#ifndef VDEV_TESTS_TESTING_OPEN_FDS_H_
#define VDEV_TESTS_TESTING_OPEN_FDS_H_

#include <dirent.h>

namespace vdev::testing {

inline int OpenFdCount() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (readdir(d) != nullptr) ++n;
  closedir(d);
  return n;
}

}  // namespace vdev::testing

#endif  // VDEV_TESTS_TESTING_OPEN_FDS_H_
