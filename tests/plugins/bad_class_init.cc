// A plugin whose class_init declares a property twice: the load fails and registers nothing.
#include "core/qdev/device.h"
#include "core/qdev/plugin.h"

VDEV_PLUGIN("bad-class-init");

namespace {
class TwiceDevice : public vdev::DeviceState {
 public:
  static constexpr char kTypeName[] = "bad-class-init-device";
  using Parent = vdev::DeviceState;
  static void ClassInit(vdev::DeviceClass& k) {
    k.AddProperty(vdev::qom::Prop("x", &TwiceDevice::x_, uint32_t{0}, "x"));
    k.AddProperty(vdev::qom::Prop("x", &TwiceDevice::x_, uint32_t{0}, "x again"));
  }

 private:
  uint32_t x_ = 0;
};
VDEV_REGISTER_TYPE(TwiceDevice);
}  // namespace
