// A plugin without VDEV_PLUGIN: its types must not be accepted.
#include "core/qdev/device.h"

namespace {
class NoStampDevice : public vdev::DeviceState {
 public:
  static constexpr char kTypeName[] = "bad-no-stamp-device";
  using Parent = vdev::DeviceState;
};
VDEV_REGISTER_TYPE(NoStampDevice);
}  // namespace
