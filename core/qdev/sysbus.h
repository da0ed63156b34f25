// The system bus: the root of `info qtree`, where devices without a bus of their own hang
// (host bridges, virtio-mmio transports). QEMU: TYPE_SYSTEM_BUS "System", "main-system-bus".
#ifndef VDEV_CORE_QDEV_SYSBUS_H_
#define VDEV_CORE_QDEV_SYSBUS_H_

#include "core/qdev/bus.h"
#include "core/qdev/device.h"

namespace vdev {

class SystemBus : public BusState {
 public:
  static constexpr char kTypeName[] = "System";
  using Parent = BusState;
};

// A device on the system bus. Not user-creatable by default: boards create them.
class SysBusDevice : public DeviceState {
 public:
  static constexpr char kTypeName[] = "sys-bus-device";
  static constexpr bool kAbstract = true;
  using Parent = DeviceState;
  static void ClassInit(DeviceClass& k);
};

}  // namespace vdev

#endif  // VDEV_CORE_QDEV_SYSBUS_H_
