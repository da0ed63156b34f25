// `vdev serve-qemu [vdev options] -- qemu-system-x86_64 [args]`: builds the machine, then runs
// QEMU with our PCI functions plugged into it through `x-pci-proxy-dev` and serves them until QEMU
// exits (docs/serve-qemu.md).
//
// Every `@FD:<device id>@` in QEMU's arguments is replaced by the number of an inherited socket
// whose other end serves that device (`-device x-pci-proxy-dev,id=px0,fd=@FD:nic0@`). vdev exits
// with QEMU's status. A malformed message from QEMU ends the run with one error line (QEMU is
// stopped); QEMU dying ends it too; vdev dying takes QEMU with it (PR_SET_PDEATHSIG), and SIGINT /
// SIGTERM to vdev are passed on to QEMU.
#ifndef VDEV_APPS_VDEV_SERVE_QEMU_H_
#define VDEV_APPS_VDEV_SERVE_QEMU_H_

#include <iosfwd>
#include <string>
#include <vector>

#include "core/qdev/machine.h"

namespace vdev::cli {

// Prints what went through each served device to `out` once QEMU is gone.
int ServeQemu(Machine& m, const std::vector<std::string>& qemu_argv, std::ostream& out,
              std::ostream& err);

}  // namespace vdev::cli

#endif  // VDEV_APPS_VDEV_SERVE_QEMU_H_
