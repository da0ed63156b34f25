#include "core/qdev/bus.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace vdev {

BusState::~BusState() {
  // Devices outlive their bus only while the tree is being torn down; leave them consistent.
  for (DeviceState* d : devices_) d->parent_bus_ = nullptr;
}

bool BusState::full() const {
  const int max = bus_class().max_children;
  return max > 0 && devices_.size() >= static_cast<size_t>(max);
}

absl::Status BusState::Attach(DeviceState& dev) {
  if (dev.parent_bus_ != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(dev.DisplayName(), " is already on bus '", dev.parent_bus_->bus_name(), "'"));
  }
  const std::string& want = dev.device_class().bus_type;
  if (want.empty() || !IsA(want)) {
    return absl::FailedPreconditionError(absl::StrCat("Device '", dev.type_name(), "' can't go on ",
                                                      type_name(), " bus '", bus_name(), "'"));
  }
  if (full()) return absl::ResourceExhaustedError(absl::StrCat("Bus '", bus_name(), "' is full"));
  absl::Status s = CheckPlug(dev);
  if (!s.ok()) return s;
  devices_.push_back(&dev);
  dev.parent_bus_ = this;
  OnAttach(dev);
  return absl::OkStatus();
}

void BusState::Detach(DeviceState& dev) {
  auto it = std::find(devices_.begin(), devices_.end(), &dev);
  if (it == devices_.end()) return;
  OnDetach(dev);
  devices_.erase(it);
  dev.parent_bus_ = nullptr;
}

VDEV_REGISTER_TYPE(BusState);
VDEV_REGISTER_TYPE_INFO((qom::TypeInfo{
    .name = HotplugHandler::kTypeName, .parent = "interface", .abstract = true}));

}  // namespace vdev
