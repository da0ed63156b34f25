#include "core/qdev/machine.h"

#include "core/qdev/introspect.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_types.h"

namespace vdev {
namespace {

using ::testing::ElementsAre;
using testing::Events;
using ::testing::HasSubstr;
using testing::TestDevice;

class MachineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Events().clear();
    auto m = Machine::Create("test-machine");
    ASSERT_TRUE(m.ok()) << m.status();
    machine_ = std::move(*m);
    host_ = static_cast<testing::TestMachine*>(machine_.get())->host;
  }
  std::unique_ptr<Machine> machine_;
  testing::TestBusHost* host_ = nullptr;
};

TEST_F(MachineTest, TreeHasCanonicalContainers) {
  qom::Object& root = machine_->root();
  for (const char* p :
       {"/machine", "/machine/peripheral", "/machine/peripheral-anon", "/machine/unattached",
        "/objects", "/netdevs", "/chardevs", "/machine/tbus-host/tbus.0",
        "/machine/unattached/sysbus/main-system-bus"}) {
    EXPECT_TRUE(root.Resolve(p).ok()) << p;
  }
  EXPECT_EQ(machine_->CanonicalPath(), "/machine");
}

TEST_F(MachineTest, DeviceAddWithIdGoesToPeripheral) {
  auto d = machine_->DeviceAdd("test-device,id=t0,u32=5,label=hi");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->CanonicalPath(), "/machine/peripheral/t0");
  EXPECT_TRUE((*d)->realized());
  EXPECT_EQ((*d)->parent_bus(), &host_->bus());
  EXPECT_EQ(static_cast<TestDevice*>(*d)->u32, 5u);
  EXPECT_EQ(machine_->FindDevice("t0"), *d);
  EXPECT_THAT(Events(), ElementsAre("preplug:t0", "realize:t0", "plug:t0"));
}

TEST_F(MachineTest, AnonymousDevicesAreNumbered) {
  auto a = machine_->DeviceAdd("test-device");
  auto b = machine_->DeviceAdd("test-device");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*a)->CanonicalPath(), "/machine/peripheral-anon/device[0]");
  EXPECT_EQ((*b)->CanonicalPath(), "/machine/peripheral-anon/device[1]");
}

TEST_F(MachineTest, UnknownDriver) {
  auto d = machine_->DeviceAdd("no-such-device");
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(d.status().message(), "'no-such-device' is not a valid device model name");
  EXPECT_EQ(machine_->DeviceAdd("container").status().message(),
            "'container' is not a valid device model name");
}

TEST_F(MachineTest, AbstractOrBoardOnlyDriverIsRefused) {
  EXPECT_EQ(machine_->DeviceAdd("device").status().message(),
            "Parameter 'driver' expects a pluggable device type, got 'device'");
  EXPECT_EQ(machine_->DeviceAdd("test-bus-host").status().message(),
            "Parameter 'driver' expects a pluggable device type, got 'test-bus-host'");
}

TEST_F(MachineTest, UnknownProperty) {
  EXPECT_EQ(machine_->DeviceAdd("test-device,macc=1").status().message(),
            "Property 'test-device.macc' not found (did you mean 'mac'?)");
}

TEST_F(MachineTest, BadValue) {
  EXPECT_EQ(machine_->DeviceAdd("test-device,u32=x").status().message(),
            "Parameter 'u32' expects an integer, got 'x'");
}

TEST_F(MachineTest, DuplicateId) {
  ASSERT_TRUE(machine_->DeviceAdd("test-device,id=nic0").ok());
  auto d = machine_->DeviceAdd("test-device,id=nic0");
  EXPECT_EQ(d.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(d.status().message(), "Duplicate ID 'nic0' for device");
}

TEST_F(MachineTest, MalformedId) {
  EXPECT_EQ(machine_->DeviceAdd("test-device,id=0bad").status().message(),
            "Parameter 'id' expects an identifier, got '0bad'");
  EXPECT_FALSE(machine_->DeviceAdd("test-device,id=").ok());
  EXPECT_FALSE(machine_->DeviceAdd("test-device,id=a/b").ok());
}

TEST_F(MachineTest, UnknownBus) {
  EXPECT_EQ(machine_->DeviceAdd("test-device,bus=pci.9").status().message(),
            "Bus 'pci.9' not found");
}

TEST_F(MachineTest, WrongBusType) {
  EXPECT_EQ(machine_->DeviceAdd("test-device,bus=main-system-bus").status().message(),
            "Device 'test-device' can't go on System bus 'main-system-bus'");
}

TEST_F(MachineTest, ExplicitBusByNameAndPath) {
  EXPECT_TRUE(machine_->DeviceAdd("test-device,bus=tbus.0").ok());
  EXPECT_TRUE(machine_->DeviceAdd("test-device,bus=/machine/tbus-host/tbus.0").ok());
}

TEST_F(MachineTest, NoSuitableBus) {
  auto m = Machine::Create("none");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->DeviceAdd("test-device").status().message(),
            "No 'test-bus' bus found for device 'test-device'");
}

TEST_F(MachineTest, BusCapacityIsEnforced) {
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(machine_->DeviceAdd("test-device").ok());
  auto full = machine_->DeviceAdd("test-device,bus=tbus.0");
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(full.status().message(), "Bus 'tbus.0' is full");
  EXPECT_EQ(machine_->DeviceAdd("test-device").status().code(),
            absl::StatusCode::kResourceExhausted);
}

// The state a failed device_add must leave untouched.
struct Snapshot {
  std::string qom_tree;
  size_t bus_devices;
  int fds;
};

Snapshot Take(Machine& m, testing::TestBusHost& host) {
  return Snapshot{FormatQomTree(m.root()), host.bus().devices().size(), testing::OpenFdCount()};
}

TEST_F(MachineTest, FailedRealizeLeavesNothingBehind) {
  Snapshot before = Take(*machine_, *host_);
  auto d = machine_->DeviceAdd("test-device,id=bad,fail-realize=on");
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(d.status().message(), HasSubstr("realize failed as asked"));
  Snapshot after = Take(*machine_, *host_);
  EXPECT_EQ(after.qom_tree, before.qom_tree);
  EXPECT_EQ(after.bus_devices, before.bus_devices);
  EXPECT_EQ(after.fds, before.fds);  // the eventfd opened in Realize was released
  // The id is free again, and anonymous numbering has no gap.
  EXPECT_TRUE(machine_->DeviceAdd("test-device,id=bad").ok());
  auto anon_fail = machine_->DeviceAdd("test-device,fail-realize=on");
  EXPECT_FALSE(anon_fail.ok());
  auto anon = machine_->DeviceAdd("test-device");
  ASSERT_TRUE(anon.ok());
  EXPECT_EQ((*anon)->CanonicalPath(), "/machine/peripheral-anon/device[0]");
}

TEST_F(MachineTest, FailedPropertyLeavesNothingBehind) {
  ASSERT_TRUE(machine_->ObjectAdd("object", "test-object,id=be0").ok());
  Snapshot before = Take(*machine_, *host_);
  // The link is set before the bad value: it must be released too.
  EXPECT_FALSE(machine_->DeviceAdd("test-device,id=t,backend=be0,u8=300").ok());
  EXPECT_EQ(Take(*machine_, *host_).qom_tree, before.qom_tree);
  EXPECT_FALSE((*machine_->root().Resolve("/objects/be0"))->HasIncomingLinks());
  EXPECT_TRUE(machine_->DeviceAdd("test-device,id=t").ok());
}

TEST_F(MachineTest, RefusedPrePlugLeavesNothingBehind) {
  host_->refuse_plug = true;
  Snapshot before = Take(*machine_, *host_);
  auto d = machine_->DeviceAdd("test-device,id=t");
  EXPECT_EQ(d.status().message(), "test-bus-host refuses the plug");
  EXPECT_EQ(Take(*machine_, *host_).qom_tree, before.qom_tree);
  EXPECT_EQ(host_->bus().devices().size(), 0u);
}

TEST_F(MachineTest, PropertiesFrozenAfterRealizeExceptRuntimeSettable) {
  auto d = machine_->DeviceAdd("test-device,id=t");
  ASSERT_TRUE(d.ok());
  absl::Status s = (*d)->SetProperty("u32", "1");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "Attempt to set property 'u32' on 'test-device' after it was realized");
  EXPECT_TRUE((*d)->SetProperty("knob", "9").ok());
  EXPECT_EQ(static_cast<TestDevice*>(*d)->knob, 9u);
}

TEST_F(MachineTest, DeviceDelUnrealizesAndRemoves) {
  ASSERT_TRUE(machine_->DeviceAdd("test-device,id=t").ok());
  int fds = testing::OpenFdCount();
  Events().clear();
  ASSERT_TRUE(machine_->DeviceDel("t").ok());
  EXPECT_THAT(Events(), ElementsAre("unrealize:t", "unplug:t"));
  EXPECT_EQ(machine_->FindDevice("t"), nullptr);
  EXPECT_EQ(host_->bus().devices().size(), 0u);
  EXPECT_EQ(testing::OpenFdCount(), fds - 1);
  EXPECT_TRUE(machine_->DeviceAdd("test-device,id=t").ok());  // id reusable
}

TEST_F(MachineTest, DeviceDelByPath) {
  ASSERT_TRUE(machine_->DeviceAdd("test-device").ok());
  EXPECT_TRUE(machine_->DeviceDel("/machine/peripheral-anon/device[0]").ok());
}

TEST_F(MachineTest, DeviceDelErrors) {
  EXPECT_EQ(machine_->DeviceDel("nope").message(), "Device 'nope' not found");
  EXPECT_EQ(machine_->DeviceDel("/machine/tbus-host").code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(machine_->DeviceAdd("test-device,id=t").ok());
  host_->refuse_unplug = true;
  EXPECT_EQ(machine_->DeviceDel("t").message(), "test-bus-host refuses the unplug");
  EXPECT_NE(machine_->FindDevice("t"), nullptr);
  EXPECT_TRUE(machine_->FindDevice("t")->realized());
}

TEST_F(MachineTest, HotplugNeedsHotpluggableDeviceAndBus) {
  machine_->Done();
  EXPECT_TRUE(machine_->DeviceAdd("test-device,id=hot").ok());
  EXPECT_EQ(machine_->DeviceAdd("test-cold-device,id=cold").status().message(),
            "Device 'test-cold-device' does not support hotplugging");
  host_->bus().set_hotplug_handler(nullptr);
  EXPECT_EQ(machine_->DeviceAdd("test-device,id=hot2").status().message(),
            "Bus 'tbus.0' does not support hotplugging");
  EXPECT_EQ(machine_->DeviceDel("hot").message(), "Bus 'tbus.0' does not support hotplugging");
  host_->bus().set_hotplug_handler(host_);
}

TEST_F(MachineTest, ColdPlugAllowsNonHotpluggableDevices) {
  ASSERT_TRUE(machine_->DeviceAdd("test-cold-device,id=cold").ok());
  machine_->Done();
  EXPECT_EQ(machine_->DeviceDel("cold").message(),
            "Device 'test-cold-device' does not support hotplugging");
}

TEST_F(MachineTest, ResetReachesEveryDevice) {
  ASSERT_TRUE(machine_->DeviceAdd("test-device,id=a").ok());
  ASSERT_TRUE(machine_->DeviceAdd("test-device,id=b").ok());
  Events().clear();
  machine_->Reset();
  EXPECT_THAT(Events(), ElementsAre("reset:a", "reset:b"));
}

TEST_F(MachineTest, DestructionUnrealizesLastPluggedFirst) {
  ASSERT_TRUE(machine_->DeviceAdd("test-device,id=a").ok());
  ASSERT_TRUE(machine_->DeviceAdd("test-device,id=b").ok());
  int fds = testing::OpenFdCount();
  Events().clear();
  machine_.reset();
  EXPECT_THAT(Events(), ElementsAre("unrealize:b", "unrealize:a"));
  EXPECT_EQ(testing::OpenFdCount(), fds - 2);
}

TEST_F(MachineTest, SubclassRealizeChainsToParent) {
  auto d = machine_->DeviceAdd("test-sub-device,id=s");
  ASSERT_TRUE(d.ok());
  auto* sub = qom::DynamicCast<testing::TestSubDevice>(*d);
  ASSERT_NE(sub, nullptr);
  EXPECT_EQ(sub->realize_calls, 1);
  EXPECT_TRUE(sub->resource.valid());  // the parent's Realize ran
  EXPECT_EQ(sub->u32, 42u);
}

TEST_F(MachineTest, ObjectAddAndLinkAndInUse) {
  auto obj = machine_->ObjectAdd("object", "test-object,id=be0,size=3");
  ASSERT_TRUE(obj.ok()) << obj.status();
  EXPECT_EQ((*obj)->CanonicalPath(), "/objects/be0");
  auto d = machine_->DeviceAdd("test-device,id=t,backend=be0");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(static_cast<TestDevice*>(*d)->backend, *obj);
  absl::Status busy = machine_->ObjectDel("object", "be0");
  EXPECT_EQ(busy.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(busy.message(), "object 'be0' is in use by /machine/peripheral/t.backend");
  ASSERT_TRUE(machine_->DeviceDel("t").ok());
  EXPECT_TRUE(machine_->ObjectDel("object", "be0").ok());
  EXPECT_EQ(machine_->ObjectDel("object", "be0").code(), absl::StatusCode::kNotFound);
}

TEST_F(MachineTest, ObjectAddErrorsLeaveNothing) {
  EXPECT_EQ(machine_->ObjectAdd("object", "nope,id=x").status().message(),
            "Parameter 'qom-type' expects a user-creatable object type, got 'nope'");
  EXPECT_EQ(machine_->ObjectAdd("object", "test-object").status().message(),
            "Parameter 'id' is missing");
  EXPECT_FALSE(machine_->ObjectAdd("object", "test-object,id=x,size=big").ok());
  EXPECT_FALSE(machine_->ObjectAdd("object", "test-object,id=x,fail-complete=on").ok());
  EXPECT_EQ((*machine_->root().Resolve("/objects"))->child_count(), 0u);
  ASSERT_TRUE(machine_->ObjectAdd("object", "test-object,id=x").ok());
  EXPECT_EQ(machine_->ObjectAdd("object", "test-object,id=x").status().message(),
            "Duplicate ID 'x' for object");
}

TEST_F(MachineTest, NetdevAndChardevGroupsNameTheMissingBackend) {
  EXPECT_EQ(machine_->ObjectAdd("netdev", "user,id=n0").status().message(),
            "Parameter 'type' expects a netdev backend type, got 'user'");
  EXPECT_EQ(machine_->ObjectAdd("chardev", "pty,id=c0").status().message(),
            "Parameter 'backend' expects a chardev backend type, got 'pty'");
}

TEST(RealizeContextTest, DevicesGetTheMachinesLoopAndChildrenInheritIt) {
  auto m = Machine::Create("pc");
  ASSERT_TRUE(m.ok()) << m.status();
  auto d = (*m)->DeviceAdd("virtio-rng-pci,id=r0");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->realize_context(), m->get());
  EXPECT_EQ(&(*d)->main_loop(), &(*m)->main_loop());
  // The proxy realizes its virtio backend itself: the backend inherits the proxy's context.
  auto* backend = qom::DynamicCast<DeviceState>((*d)->FindChild("virtio-backend"));
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(backend->realize_context(), m->get());
  EXPECT_EQ(&backend->main_loop(), &(*m)->main_loop());
}

TEST(RealizeContextTest, NetdevsGetTheMachinesLoopFromTheMachineThatCreatesThem) {
  auto m = Machine::Create("pc");
  ASSERT_TRUE(m.ok()) << m.status();
  auto obj = (*m)->ObjectAdd("netdev", "loopback,id=n0");
  ASSERT_TRUE(obj.ok()) << obj.status();
  auto* nd = dynamic_cast<ContextUser*>(*obj);
  ASSERT_NE(nd, nullptr);
  EXPECT_EQ(nd->realize_context(), m->get());
  EXPECT_EQ(&nd->main_loop(), &(*m)->main_loop());
  // Outside a machine: the process loop.
  auto lone = qom::TypeRegistry::Global().Create("netdev-loopback");
  ASSERT_TRUE(lone.ok()) << lone.status();
  EXPECT_EQ(&dynamic_cast<ContextUser*>(lone->get())->main_loop(), &ProcessMainLoop());
}

TEST(RealizeContextTest, ADeviceOutsideAnyMachineUsesTheProcessLoop) {
  auto obj = qom::TypeRegistry::Global().Create(TestDevice::kTypeName);
  ASSERT_TRUE(obj.ok()) << obj.status();
  auto* dev = qom::DynamicCast<DeviceState>(obj->get());
  ASSERT_TRUE(dev->RealizeDevice().ok());
  EXPECT_EQ(dev->realize_context(), nullptr);
  EXPECT_EQ(&dev->main_loop(), &ProcessMainLoop());
  dev->UnrealizeDevice();
}

TEST(MachineCreateTest, DefaultAndUnknownMachines) {
  auto def = Machine::Create("");
  ASSERT_TRUE(def.ok());
  EXPECT_EQ((*def)->type_name(), "pc");
  auto bad = Machine::Create("q35");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(bad.status().message(), HasSubstr("unsupported machine type 'q35'"));
  EXPECT_FALSE(Machine::Create("machine").ok());      // abstract
  EXPECT_FALSE(Machine::Create("test-device").ok());  // not a machine
  EXPECT_EQ(Machine::Create("none,foo=1").status().message(), "Property 'none.foo' not found");
}

TEST(IdTest, WellFormedIds) {
  EXPECT_TRUE(IsWellFormedId("nic0"));
  EXPECT_TRUE(IsWellFormedId("a-b.c_d"));
  EXPECT_FALSE(IsWellFormedId("0nic"));
  EXPECT_FALSE(IsWellFormedId(""));
  EXPECT_FALSE(IsWellFormedId("a b"));
}

}  // namespace
}  // namespace vdev
