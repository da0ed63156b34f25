// Test-only QOM types: a bus with a hotplug handler, a device with a property of every kind that
// acquires a real fd in Realize, a user-creatable object to link to, and a machine with the bus.
// They live in the test binaries only.
#ifndef VDEV_TESTS_TESTING_TEST_TYPES_H_
#define VDEV_TESTS_TESTING_TEST_TYPES_H_

#include <string>
#include <vector>

#include "core/base/unique_fd.h"
#include "core/qdev/bus.h"
#include "core/qdev/machine.h"
#include "core/qdev/sysbus.h"
#include "qom/object.h"
#include "qom/user_creatable.h"

namespace vdev::testing {

// Lifecycle events, in order: "realize:<id>", "unrealize:<id>", "reset:<id>", "plug:<id>"...
std::vector<std::string>& Events();

class TestBus : public BusState {
 public:
  static constexpr char kTypeName[] = "test-bus";
  using Parent = BusState;
  static void ClassInit(BusClass& k);  // max_children = 4
};

// A sysbus device that provides "tbus.0" and is its hotplug handler.
class TestBusHost : public SysBusDevice, public HotplugHandler {
 public:
  static constexpr char kTypeName[] = "test-bus-host";
  static constexpr const char* kInterfaces[] = {HotplugHandler::kTypeName};
  using Parent = SysBusDevice;
  TestBusHost();
  TestBus& bus() { return *bus_; }
  bool refuse_plug = false;
  bool refuse_unplug = false;

  absl::Status PrePlug(BusState& bus, DeviceState& dev) override;
  void Plug(BusState& bus, DeviceState& dev) override;
  absl::Status UnplugRequest(BusState& bus, DeviceState& dev) override;
  void Unplug(BusState& bus, DeviceState& dev) override;

 private:
  TestBus* bus_;
};

class TestObject : public qom::Object, public qom::UserCreatable {
 public:
  static constexpr char kTypeName[] = "test-object";
  static constexpr const char* kInterfaces[] = {qom::UserCreatable::kTypeName};
  using Parent = qom::Object;
  static void ClassInit(qom::ObjectClass& k);
  absl::Status Complete() override;
  uint32_t size = 0;
  bool fail_complete = false;
};

enum class TestMode { kFast = 0, kSlow = 1, kAuto = 2 };

// Plugs into test-bus. Realize opens an eventfd (a real host resource) unless fail-realize=on.
class TestDevice : public DeviceState {
 public:
  static constexpr char kTypeName[] = "test-device";
  using Parent = DeviceState;
  static void ClassInit(DeviceClass& k);

  bool flag = false;
  uint8_t u8 = 0;
  uint16_t u16 = 0;
  uint32_t u32 = 7;
  uint64_t u64 = 0;
  int8_t i8 = 0;
  int16_t i16 = 0;
  int32_t i32 = 0;
  int64_t i64 = 0;
  std::string label;
  TestMode mode = TestMode::kAuto;
  qom::MacAddress mac;
  qom::PciDevFn addr;
  qom::Size size;
  uint32_t knob = 0;  // runtime-settable
  uint64_t bits = 0;  // bit properties "bit0" (default on) and "bit40" (default off)
  bool fail_realize = false;
  TestObject* backend = nullptr;
  UniqueFd resource;  // held while realized

 protected:
  absl::Status Realize() override;
  void Unrealize() override;
  void Reset() override;
};

// A test-device subclass, as a plugin would write one: inherits everything, overrides Realize.
class TestSubDevice : public TestDevice {
 public:
  static constexpr char kTypeName[] = "test-sub-device";
  using Parent = TestDevice;
  static void ClassInit(DeviceClass& k);
  int realize_calls = 0;

 protected:
  absl::Status Realize() override;
};

// A device that is not hotpluggable.
class TestColdDevice : public TestDevice {
 public:
  static constexpr char kTypeName[] = "test-cold-device";
  using Parent = TestDevice;
  static void ClassInit(DeviceClass& k);
};

// A machine with a TestBusHost at /machine/tbus-host.
class TestMachine : public Machine {
 public:
  static constexpr char kTypeName[] = "test-machine";
  using Parent = Machine;
  static void ClassInit(MachineClass& k);
  TestBusHost* host = nullptr;

 protected:
  absl::Status Init() override;
};

// Number of open file descriptors of this process.
int OpenFdCount();

}  // namespace vdev::testing

#endif  // VDEV_TESTS_TESTING_TEST_TYPES_H_
