// A plugin with one good type and one whose name is taken ("pc"): neither may be registered.
#include "core/qdev/device.h"
#include "core/qdev/machine.h"
#include "core/qdev/plugin.h"

VDEV_PLUGIN("bad-duplicate");

namespace {
class FineDevice : public vdev::DeviceState {
 public:
  static constexpr char kTypeName[] = "dup-plugin-fine-device";
  using Parent = vdev::DeviceState;
};
class ClashingMachine : public vdev::Machine {
 public:
  static constexpr char kTypeName[] = "pc";
  using Parent = vdev::Machine;
};
VDEV_REGISTER_TYPE(FineDevice);
VDEV_REGISTER_TYPE(ClashingMachine);
}  // namespace
