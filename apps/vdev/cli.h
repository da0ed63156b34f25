// The `vdev` command line: build a machine from QEMU-style options and introspect it.
//
//   vdev [-machine OPTS] [-plugin PATH]... [-object OPTS]... [-chardev OPTS]...
//        [-netdev OPTS]... [-device OPTS]... [--print WHAT]...
//
// WHAT is qtree, qom-tree, qom-dot, types or plugins. `-device help`, `-device TYPE,help` and the
// same forms of -machine/-object/-netdev/-chardev print help and exit 0. Bad input prints one
// line "vdev: <option>: <error>" to stderr and exits 1.
#ifndef VDEV_APPS_VDEV_CLI_H_
#define VDEV_APPS_VDEV_CLI_H_

#include <iosfwd>
#include <string>
#include <vector>

namespace vdev::cli {

// Runs vdev with `args` (without argv[0]); returns the exit status.
int Run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace vdev::cli

#endif  // VDEV_APPS_VDEV_CLI_H_
