#include "bus/pci/pci_bridge.h"
#include "bus/pci/pci_bus.h"
#include "bus/pci/pci_device.h"
#include "core/qdev/introspect.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hw/machine/pc.h"
#include "tests/testing/log_capture.h"

namespace vdev::pci {
namespace {

using ::testing::HasSubstr;

// A plain PCI function for these tests (config space only).
class TestPciFunction : public PCIDevice {
 public:
  static constexpr char kTypeName[] = "test-pci-function";
  using Parent = PCIDevice;
  static void ClassInit(PCIDeviceClass& k) {
    k.description = "a PCI function for tests";
    k.vendor_id = 0x1234;
    k.device_id = 0x11e8;
    k.revision = 0x10;
    k.class_id = 0x00ff;
    k.subsystem_vendor_id = 0x1af4;
    k.subsystem_id = 0x1100;
    k.AddProperty(qom::LinkProp("peer", &TestPciFunction::peer, "another PCI function"));
  }
  PCIDevice* peer = nullptr;
};
VDEV_REGISTER_TYPE(TestPciFunction);

class PciTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = Machine::Create("pc");
    ASSERT_TRUE(m.ok()) << m.status();
    m_ = std::move(*m);
    bus_ = &static_cast<machine::PcMachine*>(m_.get())->pci_bus();
  }
  PCIDevice* Add(absl::string_view opts) {
    auto d = m_->DeviceAdd(absl::StrCat("test-pci-function,", opts));
    return d.ok() ? static_cast<PCIDevice*>(*d) : nullptr;
  }
  std::unique_ptr<Machine> m_;
  PCIBus* bus_ = nullptr;
};

TEST_F(PciTest, PcMachineHasHostBridgeAtZero) {
  PCIDevice* hb = bus_->device_at(0);
  ASSERT_NE(hb, nullptr);
  EXPECT_EQ(hb->type_name(), "i440FX");
  EXPECT_EQ(hb->ConfigRead(kVendorId, 4), 0x12378086u);
  EXPECT_EQ(bus_->bus_name(), "pci.0");
}

TEST_F(PciTest, FirstFreeSlotIsChosen) {
  PCIDevice* a = Add("id=a");
  PCIDevice* b = Add("id=b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->devfn(), qom::PciDevFn::Of(1, 0));
  EXPECT_EQ(b->devfn(), qom::PciDevFn::Of(2, 0));
  EXPECT_EQ(*a->GetProperty("addr"), "01.0");
}

TEST_F(PciTest, ExplicitAddressAndCollision) {
  ASSERT_NE(Add("id=a,addr=5"), nullptr);
  auto clash = m_->DeviceAdd("test-pci-function,id=b,addr=05.0");
  EXPECT_EQ(clash.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(clash.status().message(),
            "PCI: slot 5 function 0 not available for test-pci-function, in use by "
            "test-pci-function,id=a");
  EXPECT_EQ(m_->FindDevice("b"), nullptr);
}

TEST_F(PciTest, MultifunctionRules) {
  ASSERT_NE(Add("id=f0,addr=6.0"), nullptr);
  EXPECT_EQ(m_->DeviceAdd("test-pci-function,addr=6.1").status().message(),
            "PCI: single function device can't be populated in function 6.1");
  ASSERT_NE(Add("id=g1,addr=7.1"), nullptr);  // function first, function 0 later
  EXPECT_EQ(m_->DeviceAdd("test-pci-function,addr=7.0").status().message(),
            "PCI: 7.0 indicates single function, but 7.1 is already populated");
  PCIDevice* h0 = Add("id=h0,addr=7.0,multifunction=on");
  ASSERT_NE(h0, nullptr);
  EXPECT_EQ(h0->ConfigRead(kHeaderType, 1), kHeaderTypeMultiFunction);
  EXPECT_NE(Add("id=h2,addr=7.2"), nullptr);
}

TEST_F(PciTest, SlotsRunOut) {
  for (int i = 1; i < 32; ++i) ASSERT_NE(Add(""), nullptr) << i;
  auto none = m_->DeviceAdd("test-pci-function");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(none.status().message(),
            "PCI: no slot/function available for test-pci-function, all in use or reserved");
}

TEST_F(PciTest, DeviceDelFreesTheSlot) {
  ASSERT_NE(Add("id=a,addr=3"), nullptr);
  ASSERT_TRUE(m_->DeviceDel("a").ok());
  EXPECT_EQ(bus_->device_at(3 * 8), nullptr);
  EXPECT_NE(Add("id=a,addr=3"), nullptr);
}

TEST_F(PciTest, ConfigHeaderFromClassMetadata) {
  PCIDevice* d = Add("id=a");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->ConfigRead(kVendorId, 2), 0x1234u);
  EXPECT_EQ(d->ConfigRead(kDeviceId, 2), 0x11e8u);
  EXPECT_EQ(d->ConfigRead(kRevisionId, 1), 0x10u);
  EXPECT_EQ(d->ConfigRead(kClassDevice, 2), 0x00ffu);
  EXPECT_EQ(d->ConfigRead(kSubsystemVendorId, 4), 0x11001af4u);
}

TEST_F(PciTest, WriteMasksProtectReadOnlyBytes) {
  PCIDevice* d = Add("id=a");
  ASSERT_NE(d, nullptr);
  d->ConfigWrite(kVendorId, 0xffffffff, 4);
  EXPECT_EQ(d->ConfigRead(kVendorId, 4), 0x11e81234u);
  d->ConfigWrite(kCommand, 0xffff, 2);
  EXPECT_EQ(d->ConfigRead(kCommand, 2), 0x0507u);  // IO, MEM, MASTER, SERR, INTX_DISABLE
  d->ConfigWrite(kInterruptLine, 0x0b, 1);
  EXPECT_EQ(d->ConfigRead(kInterruptLine, 1), 0x0bu);
  d->ConfigWrite(kInterruptPin, 0x04, 1);
  EXPECT_EQ(d->ConfigRead(kInterruptPin, 1), 0u);
}

TEST_F(PciTest, StatusBitsAreWriteOneToClear) {
  PCIDevice* d = Add("id=a");
  ASSERT_NE(d, nullptr);
  d->config()[kStatus + 1] = 0xf9;  // device latched errors
  d->config()[kStatus] = kStatusCapList;
  d->ConfigWrite(kStatus, 0x0800, 2);  // clear one bit
  EXPECT_EQ(d->ConfigRead(kStatus, 2), 0xf110u);
  d->ConfigWrite(kStatus, 0x0000, 2);  // zeros change nothing
  EXPECT_EQ(d->ConfigRead(kStatus, 2), 0xf110u);
  d->ConfigWrite(kStatus, 0xffff, 2);  // RO bits stay
  EXPECT_EQ(d->ConfigRead(kStatus, 2), kStatusCapList);
}

TEST_F(PciTest, HostileConfigAccessesAreIgnoredAndCounted) {
  testing::LogCapture capture;
  PCIDevice* d = Add("id=a");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->ConfigRead(0x100, 4), 0xffffffffu);  // past the end
  EXPECT_EQ(d->ConfigRead(0xfe, 4), 0xffffffffu);   // straddles the end
  EXPECT_EQ(d->ConfigRead(0x01, 2), 0xffffffffu);   // unaligned
  EXPECT_EQ(d->ConfigRead(0x00, 3), 0xffffffffu);   // bad width
  EXPECT_EQ(d->ConfigRead(0x00, 8), 0xffffffffu);
  d->ConfigWrite(0x3fffffff, 1, 4);
  d->ConfigWrite(kCommand + 1, 0xff, 2);
  EXPECT_EQ(d->counters().Value("bad_config_access"), 7u);
  EXPECT_EQ(d->ConfigRead(kVendorId, 2), 0x1234u);  // still answers
}

TEST_F(PciTest, ResetClearsCommand) {
  PCIDevice* d = Add("id=a");
  ASSERT_NE(d, nullptr);
  d->ConfigWrite(kCommand, kCommandMemory | kCommandMaster, 2);
  m_->Reset();
  EXPECT_EQ(d->ConfigRead(kCommand, 2), 0u);
  EXPECT_EQ(d->ConfigRead(kVendorId, 2), 0x1234u);
}

TEST_F(PciTest, QtreeShowsPciAddressAndIds) {
  ASSERT_NE(Add("id=a,addr=4"), nullptr);
  std::string q = FormatQtree(*m_);
  EXPECT_THAT(q, HasSubstr("bus: pci.0\n      type PCI\n"));
  EXPECT_THAT(q, HasSubstr("class Host bridge, addr 00:00.0, pci id 8086:1237 (sub 1af4:1100)"));
  EXPECT_THAT(q, HasSubstr("class Unclassified device, addr 00:04.0, pci id 1234:11e8"));
}

TEST_F(PciTest, BadAddrValue) {
  EXPECT_EQ(m_->DeviceAdd("test-pci-function,addr=40").status().message(),
            "Parameter 'addr' expects a PCI address (slot[.fn], slot 0-1f, fn 0-7), got '40'");
}

TEST_F(PciTest, BridgeProvidesSecondaryBusNamedAfterItsId) {
  auto br = m_->DeviceAdd("pci-bridge,id=br0,addr=3");
  ASSERT_TRUE(br.ok()) << br.status();
  auto* bridge = static_cast<PCIBridge*>(*br);
  ASSERT_NE(bridge->secondary_bus(), nullptr);
  EXPECT_EQ(bridge->secondary_bus()->bus_name(), "br0");
  PCIDevice* behind = Add("id=behind,bus=br0,addr=1");
  ASSERT_NE(behind, nullptr);
  EXPECT_EQ(behind->parent_bus(), bridge->secondary_bus());
  EXPECT_EQ(bridge->ConfigRead(kVendorId, 4), 0x00011b36u);
  EXPECT_EQ(bridge->ConfigRead(kClassDevice, 2), 0x0604u);
  EXPECT_EQ(bridge->ConfigRead(kHeaderType, 1), kHeaderTypeBridge);
  std::string q = FormatQtree(*m_);
  EXPECT_THAT(q, HasSubstr("dev: pci-bridge, id \"br0\""));
  EXPECT_THAT(
      q,
      HasSubstr("bus: br0\n          type PCI\n          dev: test-pci-function, id \"behind\""));
}

TEST_F(PciTest, BridgeBusNumbersAndWindowsAreGuestProgrammable) {
  auto added = m_->DeviceAdd("pci-bridge,id=br0");
  ASSERT_TRUE(added.ok()) << added.status();
  auto* bridge = static_cast<PCIBridge*>(*added);
  PCIDevice* behind = Add("id=behind,bus=br0,addr=2");
  ASSERT_NE(behind, nullptr);
  EXPECT_EQ(bridge->secondary_bus()->bus_number(), 0);
  bridge->ConfigWrite(kPrimaryBus, 0x00020100, 4);  // primary 0, secondary 1, subordinate 2
  EXPECT_EQ(bridge->secondary_bus()->bus_number(), 1);
  EXPECT_THAT(FormatQtree(*m_), HasSubstr("addr 01:02.0, pci id 1234:11e8"));
  bridge->ConfigWrite(kIoBase, 0xffff, 2);  // the low nibble (decode type) is read-only
  EXPECT_EQ(bridge->ConfigRead(kIoBase, 2), 0xf1f1u);
  bridge->ConfigWrite(kMemoryBase, 0xffffffff, 4);
  EXPECT_EQ(bridge->ConfigRead(kMemoryBase, 4), 0xfff0fff0u);
  bridge->ConfigWrite(kPrefetchBase, 0xffffffff, 4);
  EXPECT_EQ(bridge->ConfigRead(kPrefetchBase, 4), 0xfff1fff1u);
  bridge->ConfigWrite(kBridgeControl, 0xffff, 2);
  EXPECT_EQ(bridge->ConfigRead(kBridgeControl, 2), 0x0fffu);
  EXPECT_EQ(bridge->ConfigRead(kSubsystemVendorId, 4), 0u);  // type 1: prefetch upper, not IDs
}

TEST_F(PciTest, BridgeResetClearsBusNumbers) {
  auto added = m_->DeviceAdd("pci-bridge,id=br0");
  ASSERT_TRUE(added.ok()) << added.status();
  auto* bridge = static_cast<PCIBridge*>(*added);
  bridge->ConfigWrite(kSecondaryBus, 5, 1);
  m_->Reset();
  EXPECT_EQ(bridge->ConfigRead(kSecondaryBus, 1), 0u);
  EXPECT_EQ(bridge->ConfigRead(kIoBase, 1), 0x01u);
}

TEST_F(PciTest, DeletingBridgeRemovesDevicesBehindIt) {
  ASSERT_TRUE(m_->DeviceAdd("pci-bridge,id=br0,addr=3").ok());
  ASSERT_NE(Add("id=behind,bus=br0"), nullptr);
  ASSERT_TRUE(m_->DeviceDel("br0").ok());
  EXPECT_EQ(m_->FindDevice("behind"), nullptr);
  EXPECT_EQ(m_->FindDevice("br0"), nullptr);
  EXPECT_EQ(m_->FindBus("br0"), nullptr);
  EXPECT_EQ(bus_->device_at(3 * 8), nullptr);
  EXPECT_TRUE(m_->DeviceAdd("pci-bridge,id=br0,addr=3").ok());  // everything is free again
}

TEST_F(PciTest, NestedBridgesAndAnonymousBridgeBus) {
  ASSERT_TRUE(m_->DeviceAdd("pci-bridge,id=br0").ok());
  ASSERT_TRUE(m_->DeviceAdd("pci-bridge,id=br1,bus=br0").ok());
  ASSERT_NE(Add("id=deep,bus=br1"), nullptr);
  auto anon = m_->DeviceAdd("pci-bridge");
  ASSERT_TRUE(anon.ok());
  EXPECT_THAT(static_cast<PCIBridge*>(*anon)->secondary_bus()->bus_name(),
              ::testing::StartsWith("pci-bridge-bus."));
  // Teardown with nested buses: the ASan/UBSan preset (run by scripts/test) checks it touches no
  // half-destroyed device.
  m_.reset();
}

TEST_F(PciTest, BridgeIdThatCannotNameABusIsRefusedNotFatal) {
  auto prop_clash = m_->DeviceAdd("pci-bridge,id=addr");  // a property of the bridge
  EXPECT_EQ(prop_clash.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(prop_clash.status().message(), HasSubstr("cannot name its secondary bus 'addr'"));
  auto bus_clash = m_->DeviceAdd("pci-bridge,id=pci.0");
  EXPECT_EQ(bus_clash.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(bus_clash.status().message(), HasSubstr("a bus named 'pci.0' already exists"));
  ASSERT_TRUE(m_->DeviceAdd("pci-bridge").ok());  // takes pci-bridge-bus.1
  EXPECT_FALSE(m_->DeviceAdd("pci-bridge,id=pci-bridge-bus.1").ok());
  auto second = m_->DeviceAdd("pci-bridge");
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(static_cast<PCIBridge*>(*second)->secondary_bus()->bus_name(), "pci-bridge-bus.2");
  EXPECT_EQ(m_->FindDevice("addr"), nullptr);
  EXPECT_EQ(m_->FindDevice("pci.0"), nullptr);
}

TEST_F(PciTest, DeviceDelIsAllOrNothingWhenSomethingBehindIsInUse) {
  ASSERT_TRUE(m_->DeviceAdd("pci-bridge,id=br0").ok());
  ASSERT_NE(Add("id=first,bus=br0"), nullptr);
  ASSERT_NE(Add("id=behind,bus=br0"), nullptr);
  ASSERT_NE(Add("id=outside,peer=behind"), nullptr);
  absl::Status s = m_->DeviceDel("br0");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("is in use by /machine/peripheral/outside.peer"));
  for (const char* id : {"br0", "first", "behind"}) {
    ASSERT_NE(m_->FindDevice(id), nullptr) << id;
    EXPECT_TRUE(m_->FindDevice(id)->realized()) << id;
  }
  ASSERT_TRUE(m_->DeviceDel("outside").ok());
  EXPECT_TRUE(m_->DeviceDel("br0").ok());
  EXPECT_EQ(m_->FindDevice("behind"), nullptr);
}

TEST_F(PciTest, AmbiguousDeviceDelSaysSo) {
  ASSERT_NE(Add(""),
            nullptr);  // /machine/peripheral-anon/device[0]; the board has unattached/device[0]
  absl::Status s = m_->DeviceDel("device[0]");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("ambiguous"));
  EXPECT_TRUE(m_->DeviceDel("peripheral-anon/device[0]").ok());
}

TEST_F(PciTest, ResetKeepsReadOnlyStatusBits) {
  PCIDevice* d = Add("id=a");
  ASSERT_NE(d, nullptr);
  d->config()[kStatus] = kStatusCapList;  // as a device with capabilities sets it
  d->ConfigWrite(kCommand, kCommandMemory, 2);
  m_->Reset();
  EXPECT_EQ(d->ConfigRead(kStatus, 2), kStatusCapList);
  EXPECT_EQ(d->ConfigRead(kCommand, 2), 0u);
}

}  // namespace
}  // namespace vdev::pci
