#include "core/qdev/sysbus.h"

namespace vdev {

void SysBusDevice::ClassInit(DeviceClass& k) {
  k.bus_type = SystemBus::kTypeName;
  k.user_creatable = false;
  k.hotpluggable = false;
}

VDEV_REGISTER_TYPE(SystemBus);
VDEV_REGISTER_TYPE(SysBusDevice);

}  // namespace vdev
