#include "tests/testing/test_types.h"

#include <dirent.h>
#include <sys/eventfd.h>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace vdev::testing {

std::vector<std::string>& Events() {
  static auto* events = new std::vector<std::string>();
  return *events;
}

static std::string Tag(const DeviceState& d) { return d.id().empty() ? d.type_name() : d.id(); }

void TestBus::ClassInit(BusClass& k) {
  k.description = "a bus for tests";
  k.max_children = 4;
}

TestBusHost::TestBusHost() : bus_(CreateChildBus<TestBus>("tbus.0")) {
  bus_->set_hotplug_handler(this);
}

absl::Status TestBusHost::PrePlug(BusState&, DeviceState& dev) {
  if (refuse_plug) return absl::FailedPreconditionError("test-bus-host refuses the plug");
  Events().push_back(absl::StrCat("preplug:", Tag(dev)));
  return absl::OkStatus();
}
void TestBusHost::Plug(BusState&, DeviceState& dev) {
  Events().push_back(absl::StrCat("plug:", Tag(dev)));
}
absl::Status TestBusHost::UnplugRequest(BusState&, DeviceState& dev) {
  if (refuse_unplug) return absl::FailedPreconditionError("test-bus-host refuses the unplug");
  return absl::OkStatus();
}
void TestBusHost::Unplug(BusState&, DeviceState& dev) {
  Events().push_back(absl::StrCat("unplug:", Tag(dev)));
}

void TestObject::ClassInit(qom::ObjectClass& k) {
  k.description = "an object for tests";
  k.AddProperty(qom::Prop("size", &TestObject::size, uint32_t{0}, "a number"));
  k.AddProperty(qom::Prop("fail-complete", &TestObject::fail_complete, false, "fail Complete()"));
}

absl::Status TestObject::Complete() {
  if (fail_complete) return absl::InternalError("test-object: complete failed as asked");
  return absl::OkStatus();
}

static const std::vector<std::pair<std::string, int>>& ModeNames() {
  static const auto* names =
      new std::vector<std::pair<std::string, int>>{{"fast", 0}, {"slow", 1}, {"auto", 2}};
  return *names;
}

void TestDevice::ClassInit(DeviceClass& k) {
  k.description = "a device for tests";
  k.category = DeviceCategory::kMisc;
  k.bus_type = TestBus::kTypeName;
  k.AddProperty(qom::Prop("flag", &TestDevice::flag, false, "a bool"));
  k.AddProperty(qom::Prop("u8", &TestDevice::u8, uint8_t{0}, "a u8"));
  k.AddProperty(qom::Prop("u16", &TestDevice::u16, uint16_t{0}, "a u16"));
  k.AddProperty(qom::Prop("u32", &TestDevice::u32, uint32_t{7}, "a u32"));
  k.AddProperty(qom::Prop("u64", &TestDevice::u64, uint64_t{0}, "a u64"));
  k.AddProperty(qom::Prop("i8", &TestDevice::i8, int8_t{0}, "an i8"));
  k.AddProperty(qom::Prop("i16", &TestDevice::i16, int16_t{0}, "an i16"));
  k.AddProperty(qom::Prop("i32", &TestDevice::i32, int32_t{0}, "an i32"));
  k.AddProperty(qom::Prop("i64", &TestDevice::i64, int64_t{0}, "an i64"));
  k.AddProperty(qom::Prop("label", &TestDevice::label, std::string(), "a string"));
  k.AddProperty(qom::EnumProp("mode", &TestDevice::mode, TestMode::kAuto, ModeNames(), "an enum",
                              "TestMode"));
  k.AddProperty(qom::Prop("mac", &TestDevice::mac, qom::MacAddress{}, "a MAC address"));
  k.AddProperty(qom::Prop("addr", &TestDevice::addr, qom::PciDevFn::Auto(), "a PCI address"));
  k.AddProperty(qom::Prop("size", &TestDevice::size, qom::Size{}, "a size"));
  qom::PropertyInfo knob = qom::Prop("knob", &TestDevice::knob, uint32_t{0}, "runtime-settable");
  knob.runtime_settable = true;
  k.AddProperty(std::move(knob));
  k.AddProperty(qom::BitProp("bit0", &TestDevice::bits, 0, true, "bit 0 of bits"));
  k.AddProperty(qom::BitProp("bit40", &TestDevice::bits, 40, false, "bit 40 of bits"));
  k.AddProperty(qom::Prop("fail-realize", &TestDevice::fail_realize, false, "fail Realize()"));
  k.AddProperty(qom::LinkProp("backend", &TestDevice::backend, "a test-object"));
}

absl::Status TestDevice::Realize() {
  VDEV_RETURN_IF_ERROR(DeviceState::Realize());
  int fd = eventfd(0, EFD_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, "eventfd");
  resource.Reset(fd);
  if (fail_realize) {
    resource.Reset();
    return absl::InternalError(absl::StrCat(DisplayName(), ": realize failed as asked"));
  }
  Events().push_back(absl::StrCat("realize:", Tag(*this)));
  return absl::OkStatus();
}

void TestDevice::Unrealize() {
  Events().push_back(absl::StrCat("unrealize:", Tag(*this)));
  resource.Reset();
  DeviceState::Unrealize();
}

void TestDevice::Reset() {
  Events().push_back(absl::StrCat("reset:", Tag(*this)));
  DeviceState::Reset();
}

void TestSubDevice::ClassInit(DeviceClass& k) {
  k.description = "a subclass of test-device";
  k.SetPropertyDefault("u32", "42");
}

absl::Status TestSubDevice::Realize() {
  ++realize_calls;
  return TestDevice::Realize();
}

void TestColdDevice::ClassInit(DeviceClass& k) {
  k.description = "a test-device that cannot be hotplugged";
  k.hotpluggable = false;
}

void TestMachine::ClassInit(MachineClass& k) { k.description = "a machine for tests"; }

absl::Status TestMachine::Init() {
  VDEV_RETURN_IF_ERROR(Machine::Init());
  VDEV_ASSIGN_OR_RETURN(DeviceState * d,
                        AddBoardDevice(qom::MakeChecked<TestBusHost>(), &sysbus(), "tbus-host"));
  host = static_cast<TestBusHost*>(d);
  return absl::OkStatus();
}

int OpenFdCount() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (readdir(d) != nullptr) ++n;
  closedir(d);
  return n - 3;  // ".", "..", and the DIR's own fd
}

VDEV_REGISTER_TYPE(TestBus);
VDEV_REGISTER_TYPE(TestBusHost);
VDEV_REGISTER_TYPE(TestObject);
VDEV_REGISTER_TYPE(TestDevice);
VDEV_REGISTER_TYPE(TestSubDevice);
VDEV_REGISTER_TYPE(TestColdDevice);
VDEV_REGISTER_TYPE(TestMachine);

}  // namespace vdev::testing
