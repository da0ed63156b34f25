// qdev: DeviceState and DeviceClass, the base of every emulated device.
//
// Lifecycle: construct (cannot fail, touches no host resource) -> set properties -> Realize (may
// fail; acquires everything) -> run -> Unrealize (cannot fail; releases in reverse) -> destroy.
// Properties are writable until realize and read-only afterwards unless runtime-settable.
//
// A device overrides the protected hooks and chains to its parent explicitly:
//
//   absl::Status EduDevice::Realize() {
//     VDEV_RETURN_IF_ERROR(pci::PCIDevice::Realize());
//     ...acquire...
//     return absl::OkStatus();
//   }
//   void EduDevice::Unrealize() {
//     ...release...
//     pci::PCIDevice::Unrealize();
//   }
//
// Thread-safety: lifecycle calls happen on the control-plane thread.
#ifndef VDEV_CORE_QDEV_DEVICE_H_
#define VDEV_CORE_QDEV_DEVICE_H_

#include <atomic>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/base/counters.h"
#include "core/qdev/realize_context.h"
#include "qom/object.h"

namespace vdev {

class BusState;

// Where `-device help` lists a device (QEMU's DEVICE_CATEGORY_*).
enum class DeviceCategory {
  kBridge,
  kUsb,
  kStorage,
  kNetwork,
  kInput,
  kDisplay,
  kSound,
  kMisc,
  kCpu,
  kWatchdog,
  kUncategorized,
};
absl::string_view DeviceCategoryTitle(DeviceCategory c);

class DeviceClass : public qom::ObjectClass {
 public:
  DeviceCategory category = DeviceCategory::kUncategorized;
  // Type name of the bus this device plugs into ("PCI", "System", "virtio-bus"); empty for a
  // device that sits on no bus.
  std::string bus_type;
  // May be created with -device / device_add.
  bool user_creatable = true;
  // May be added or removed after the machine is running (the bus must allow it too).
  bool hotpluggable = true;
};

class DeviceState : public qom::Object {
 public:
  static constexpr char kTypeName[] = "device";
  static constexpr bool kAbstract = true;
  using Parent = qom::Object;
  using Class = DeviceClass;
  static void ClassInit(DeviceClass& k);

  DeviceState();
  ~DeviceState() override;

  const DeviceClass& device_class() const {
    return static_cast<const DeviceClass&>(object_class());
  }
  // The user's id ("" for anonymous devices).
  const std::string& id() const { return id_; }
  void set_id(std::string id) { id_ = std::move(id); }
  bool realized() const { return realized_; }
  BusState* parent_bus() const { return parent_bus_; }
  // Buses this device provides (e.g. a PCI host bridge's "pci.0").
  const std::vector<BusState*>& child_buses() const { return child_buses_; }
  // Per-device event counters (guest errors, traffic).
  Counters& counters() { return counters_; }
  const Counters& counters() const { return counters_; }

  bool PropertiesFrozen() const override { return realized_; }

  // What the machine lent this device at realize (nullptr outside any machine).
  RealizeContext* realize_context() const { return context_; }
  // The loop for this device's host fds and deferred work: its context's main loop, or
  // ProcessMainLoop() for a device realized outside any machine.
  EventLoop& main_loop() const;

  // Drives the lifecycle; called by Machine, buses and parent devices, not overridden.
  // Realizes this device in `context` (borrowed; it outlives the device), or, when null, in the
  // context of the device that owns this device's bus. FailedPrecondition when already realized.
  // On failure the device is left unrealized.
  absl::Status RealizeDevice(RealizeContext* context = nullptr);
  // Unrealizes the devices on this device's buses (last plugged first), then this device.
  void UnrealizeDevice();
  // Resets the devices on this device's buses, then this device (post-order, like QEMU).
  void ResetDevice();

  // A name for messages: "edu 'id'" or "edu '/machine/...'".
  std::string DisplayName() const;

 protected:
  virtual absl::Status Realize() { return absl::OkStatus(); }
  virtual void Unrealize() {}
  virtual void Reset() {}

  // Creates a bus of type B owned by this device, as the child named `name` (which is also the
  // bus name, e.g. "pci.0"). For constructors, with fixed names; a failure is a programmer error.
  template <typename B>
  B* CreateChildBus(std::string name) {
    auto bus = TryCreateChildBus<B>(std::move(name));
    VDEV_CHECK(bus.ok());
    return *bus;
  }
  // The same for names chosen at run time (e.g. from the user's id, in Realize). Bus names are
  // unique in a tree: AlreadyExists when a bus of that name exists anywhere in this device's tree;
  // InvalidArgument when the name is taken by a child or property of this device.
  template <typename B>
  absl::StatusOr<B*> TryCreateChildBus(std::string name) {
    std::unique_ptr<B> bus = qom::MakeChecked<B>();
    B* raw = bus.get();
    absl::Status s = AdoptChildBus(std::move(name), std::move(bus));
    if (!s.ok()) return s;
    return raw;
  }
  // True when a bus named `name` exists in this device's tree (or among its own children when it
  // is not in a tree yet).
  bool BusNameInUse(absl::string_view name);
  // Destroys a bus made by CreateChildBus (e.g. in Unrealize for a bus made in Realize). Devices
  // still on it are left busless; callers unplug them first.
  void DestroyChildBus(BusState* bus);

 private:
  friend class BusState;
  absl::Status AdoptChildBus(std::string name, std::unique_ptr<BusState> bus);

  std::string id_;
  // Atomic: buses read it from vCPU threads to tell whether a device is fully realized.
  std::atomic<bool> realized_{false};
  BusState* parent_bus_ = nullptr;
  RealizeContext* context_ = nullptr;
  std::vector<BusState*> child_buses_;
  Counters counters_;
};

}  // namespace vdev

#endif  // VDEV_CORE_QDEV_DEVICE_H_
