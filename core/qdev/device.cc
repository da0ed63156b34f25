#include "core/qdev/device.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/qdev/bus.h"

namespace vdev {

absl::string_view DeviceCategoryTitle(DeviceCategory c) {
  switch (c) {
    case DeviceCategory::kBridge:
      return "Controller/Bridge/Hub devices";
    case DeviceCategory::kUsb:
      return "USB devices";
    case DeviceCategory::kStorage:
      return "Storage devices";
    case DeviceCategory::kNetwork:
      return "Network devices";
    case DeviceCategory::kInput:
      return "Input devices";
    case DeviceCategory::kDisplay:
      return "Display devices";
    case DeviceCategory::kSound:
      return "Sound devices";
    case DeviceCategory::kMisc:
      return "Misc devices";
    case DeviceCategory::kCpu:
      return "CPU devices";
    case DeviceCategory::kWatchdog:
      return "Watchdog devices";
    case DeviceCategory::kUncategorized:
      return "Uncategorized devices";
  }
  return "Uncategorized devices";
}

void DeviceState::ClassInit(DeviceClass& k) { k.description = "a device"; }

DeviceState::DeviceState() = default;

DeviceState::~DeviceState() {
  // Destroying a device that is still plugged is a lifecycle bug; keep the bus consistent anyway.
  if (parent_bus_ != nullptr) parent_bus_->Detach(*this);
}

absl::Status DeviceState::RealizeDevice(RealizeContext* context) {
  if (realized_) {
    return absl::FailedPreconditionError(absl::StrCat(DisplayName(), " is already realized"));
  }
  if (context == nullptr && parent_bus_ != nullptr && parent_bus_->parent_device() != nullptr) {
    context = parent_bus_->parent_device()->realize_context();
  }
  context_ = context;
  absl::Status s = Realize();
  if (!s.ok()) return s;
  realized_ = true;
  return absl::OkStatus();
}

void DeviceState::UnrealizeDevice() {
  if (!realized_) return;
  if (parent_bus_ != nullptr) parent_bus_->BeforeUnrealize(*this);
  for (auto bus = child_buses_.rbegin(); bus != child_buses_.rend(); ++bus) {
    std::vector<DeviceState*> devs = (*bus)->devices();
    for (auto d = devs.rbegin(); d != devs.rend(); ++d) (*d)->UnrealizeDevice();
  }
  Unrealize();
  realized_ = false;
}

EventLoop& DeviceState::main_loop() const {
  return context_ != nullptr ? context_->main_loop() : ProcessMainLoop();
}

void DeviceState::ResetDevice() {
  for (BusState* bus : child_buses_) {
    for (DeviceState* d : bus->devices()) d->ResetDevice();
  }
  Reset();
}

std::string DeviceState::DisplayName() const {
  if (!id_.empty()) return absl::StrCat(type_name(), " '", id_, "'");
  std::string path = CanonicalPath();
  return path.empty() ? type_name() : absl::StrCat(type_name(), " '", path, "'");
}

bool DeviceState::BusNameInUse(absl::string_view name) {
  // Outside a tree (e.g. in the constructor, before the type is even set) only this device's
  // own children can clash.
  qom::Object* top = Root();
  std::vector<qom::Object*> stack = top ? std::vector<qom::Object*>{top} : children();
  while (!stack.empty()) {
    qom::Object* o = stack.back();
    stack.pop_back();
    if (auto* b = qom::DynamicCast<BusState>(o); b != nullptr && b->bus_name() == name) return true;
    for (qom::Object* c : o->children()) stack.push_back(c);
  }
  return false;
}

absl::Status DeviceState::AdoptChildBus(std::string name, std::unique_ptr<BusState> bus) {
  if (BusNameInUse(name)) {
    return absl::AlreadyExistsError(absl::StrCat("a bus named '", name, "' already exists"));
  }
  BusState* raw = bus.get();
  auto added = AddChild(std::move(name), std::move(bus));
  if (!added.ok()) return absl::InvalidArgumentError(added.status().message());
  raw->parent_device_ = this;
  child_buses_.push_back(raw);
  return absl::OkStatus();
}

void DeviceState::DestroyChildBus(BusState* bus) {
  auto it = std::find(child_buses_.begin(), child_buses_.end(), bus);
  if (it == child_buses_.end()) return;
  child_buses_.erase(it);
  DeleteChild(bus->name());
}

VDEV_REGISTER_TYPE(DeviceState);

}  // namespace vdev
