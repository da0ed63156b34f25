// A plugin stamped with a future ABI version: it must be refused.
#include "core/qdev/device.h"
#include "core/qdev/plugin.h"

extern "C" __attribute__((visibility("default"), used)) const vdev::PluginAbi vdev_plugin_abi = {
    vdev::kPluginMagic, 999, vdev::kCxxAbi, 0, "9.9.9", "bad-abi"};

namespace {
class BadAbiDevice : public vdev::DeviceState {
 public:
  static constexpr char kTypeName[] = "bad-abi-device";
  using Parent = vdev::DeviceState;
};
VDEV_REGISTER_TYPE(BadAbiDevice);
}  // namespace
