// What went through a machine's devices and backends, as `vdev serve` and `vdev serve-qemu`
// print it when they stop: one line per object with non-zero counters.
//
//   /machine/peripheral/vu0 (vhost-user-backend): connections=1 device_starts=1 ...
//   /netdevs/n0 queue 1: rx_frames=1520 tx_frames=2210
#ifndef VDEV_APPS_VDEV_REPORT_H_
#define VDEV_APPS_VDEV_REPORT_H_

#include <iosfwd>
#include <string>

#include "core/base/counters.h"
#include "core/qdev/machine.h"

namespace vdev::cli {

// "name=value ..." for the non-zero counters, "(none)" when there are none.
std::string Summary(const Counters& c);
// Every device and every netdev queue of `m` with counters, in tree order.
void PrintCounters(Machine& m, std::ostream& out);

}  // namespace vdev::cli

#endif  // VDEV_APPS_VDEV_REPORT_H_
