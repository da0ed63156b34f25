// qdev buses and the hotplug handler interface.
//
// A bus is an object in the composition tree, owned by the device that provides it (its name in
// the tree is the bus name, e.g. "pci.0"). Devices on a bus are owned elsewhere in the tree
// (/machine/peripheral/...); the bus borrows them, and unplug order keeps that safe.
//
// Thread-safety: control-plane thread only.
#ifndef VDEV_CORE_QDEV_BUS_H_
#define VDEV_CORE_QDEV_BUS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/qdev/device.h"
#include "qom/object.h"

namespace vdev {

// Implemented by whoever decides whether a device may come and go on a bus (usually the bus's
// parent device or the machine). A bus without a handler does not support hotplug.
class HotplugHandler {
 public:
  static constexpr char kTypeName[] = "hotplug-handler";
  virtual ~HotplugHandler() = default;
  // Before the device is realized: may refuse.
  virtual absl::Status PrePlug(BusState& bus, DeviceState& dev) { return absl::OkStatus(); }
  // After the device is realized.
  virtual void Plug(BusState& bus, DeviceState& dev) {}
  // Before the device is unrealized: may refuse (e.g. the slot does not allow removal).
  virtual absl::Status UnplugRequest(BusState& bus, DeviceState& dev) { return absl::OkStatus(); }
  // After the device is unrealized, before it leaves the bus.
  virtual void Unplug(BusState& bus, DeviceState& dev) {}
};

class BusClass : public qom::ObjectClass {
 public:
  // Maximum number of devices on one bus of this class; 0 = unlimited.
  int max_children = 0;
};

class BusState : public qom::Object {
 public:
  static constexpr char kTypeName[] = "bus";
  static constexpr bool kAbstract = true;
  using Parent = qom::Object;
  using Class = BusClass;

  ~BusState() override;
  const BusClass& bus_class() const { return static_cast<const BusClass&>(object_class()); }
  // The bus name ("pci.0"), its name in the composition tree.
  const std::string& bus_name() const { return name(); }
  DeviceState* parent_device() const { return parent_device_; }
  // Devices in plug order.
  const std::vector<DeviceState*>& devices() const { return devices_; }
  bool full() const;

  HotplugHandler* hotplug_handler() const { return hotplug_handler_; }
  void set_hotplug_handler(HotplugHandler* h) { hotplug_handler_ = h; }

  // Adds `dev` to this bus: checks the bus type, capacity and the bus's own rules (CheckPlug).
  // Does not realize it.
  absl::Status Attach(DeviceState& dev);
  // Removes `dev` from this bus (it must be unrealized).
  void Detach(DeviceState& dev);

  // Extra lines for `info qtree` about `dev` on this bus (e.g. PCI class and address).
  virtual std::vector<std::string> DescribeDevice(const DeviceState& dev) const { return {}; }

 protected:
  // Bus-specific admission rules (e.g. a free PCI slot). Called by Attach before the device joins.
  virtual absl::Status CheckPlug(DeviceState& dev) { return absl::OkStatus(); }
  // Called after the device joined / before it leaves.
  virtual void OnAttach(DeviceState& dev) {}
  virtual void OnDetach(DeviceState& dev) {}
  // Called when `dev` starts to unrealize, before its own Unrealize and before the devices on
  // its buses: the bus hides it from the guest here (e.g. config cycles, BAR mappings).
  virtual void BeforeUnrealize(DeviceState& dev) {}

 private:
  friend class DeviceState;
  DeviceState* parent_device_ = nullptr;
  HotplugHandler* hotplug_handler_ = nullptr;
  std::vector<DeviceState*> devices_;
};

}  // namespace vdev

#endif  // VDEV_CORE_QDEV_BUS_H_
