#include "core/qdev/help.h"

#include "core/qdev/introspect.h"
#include "core/qdev/machine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_types.h"

namespace vdev {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(HelpTest, DeviceListGroupsUserCreatableTypesByCategory) {
  std::string text = DeviceListHelp();
  EXPECT_THAT(text, HasSubstr("Misc devices:\n"));
  EXPECT_THAT(text, HasSubstr("name \"test-device\", bus test-bus, desc \"a device for tests\""));
  EXPECT_THAT(text, Not(HasSubstr("\"test-bus-host\"")));  // not user-creatable
  EXPECT_THAT(text, Not(HasSubstr("\"device\"")));         // abstract
  EXPECT_THAT(text, Not(HasSubstr("\"i440FX\"")));         // board only
}

TEST(HelpTest, DevicePropertiesShowTypeDefaultAndDescription) {
  auto text = HelpFor("device", "test-device,help");
  ASSERT_TRUE(text.ok());
  EXPECT_THAT(*text, HasSubstr("test-device options:\n"));
  EXPECT_THAT(*text, HasSubstr("  u32=<uint32>"));
  EXPECT_THAT(*text, HasSubstr("- a u32 (default: 7)"));
  EXPECT_THAT(*text, HasSubstr("mode=<TestMode>"));
  EXPECT_THAT(*text, HasSubstr("(fast/slow/auto) (default: auto)"));
  EXPECT_THAT(*text, HasSubstr("backend=<link<test-object>>"));
  EXPECT_THAT(*text, HasSubstr("[runtime-settable]"));
  // Sorted by name.
  EXPECT_LT(text->find("  addr="), text->find("  u32="));
}

TEST(HelpTest, UnknownDeviceHelp) {
  EXPECT_EQ(HelpFor("device", "nope,help").status().message(),
            "'nope' is not a valid device model name");
}

TEST(HelpTest, DeviceHelpListsWhenNoTypeGiven) {
  EXPECT_EQ(*HelpFor("device", "help"), DeviceListHelp());
  EXPECT_EQ(*HelpFor("device", "?"), DeviceListHelp());
}

TEST(HelpTest, MachineHelpMarksDefault) {
  std::string text = *HelpFor("machine", "help");
  EXPECT_THAT(text, HasSubstr("Supported machines are:\n"));
  EXPECT_THAT(text, HasSubstr("Standard PC (i440FX + PIIX, 1996) (default)"));
  EXPECT_THAT(text, HasSubstr("none"));
}

TEST(HelpTest, ObjectGroupsListTheirTypes) {
  EXPECT_THAT(*HelpFor("object", "help"), HasSubstr("test-object"));
  EXPECT_THAT(*HelpFor("object", "test-object,help"), HasSubstr("size=<uint32>"));
  EXPECT_THAT(*HelpFor("netdev", "help"), HasSubstr("Available netdev backend types:"));
}

TEST(HelpTest, TypeWithoutProperties) {
  EXPECT_EQ(*PropertiesHelp("container"), "There are no options for container.\n");
}

class IntrospectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = Machine::Create("test-machine");
    ASSERT_TRUE(m.ok());
    m_ = std::move(*m);
    ASSERT_TRUE(m_->ObjectAdd("object", "test-object,id=be0").ok());
    ASSERT_TRUE(m_->DeviceAdd("test-device,id=t0,label=x,backend=be0").ok());
  }
  std::unique_ptr<Machine> m_;
};

TEST_F(IntrospectTest, QtreeShowsBusesDevicesAndProperties) {
  std::string q = FormatQtree(*m_);
  EXPECT_THAT(
      q, HasSubstr("bus: main-system-bus\n  type System\n  dev: test-bus-host, id \"\"\n"
                   "    bus: tbus.0\n      type test-bus\n      dev: test-device, id \"t0\"\n"));
  EXPECT_THAT(q, HasSubstr("        label = \"x\"\n"));
  EXPECT_THAT(q, HasSubstr("        u32 = 7\n"));
  EXPECT_THAT(q, HasSubstr("        backend = \"/objects/be0\"\n"));
}

TEST_F(IntrospectTest, QomTreeShowsPathsAndTypes) {
  std::string t = FormatQomTree(m_->root());
  EXPECT_THAT(t, HasSubstr("/ (container)\n  /machine (test-machine)\n    /peripheral (container)\n"
                           "      /t0 (test-device)\n"));
  EXPECT_THAT(t, HasSubstr("  /objects (container)\n    /be0 (test-object)\n"));
}

TEST_F(IntrospectTest, QomListShowsTypedValues) {
  std::string l = FormatQomList(*m_->FindDevice("t0"));
  EXPECT_THAT(l, HasSubstr("type (string) = \"test-device\"\n"));
  EXPECT_THAT(l, HasSubstr("flag (bool) = off\n"));
  EXPECT_THAT(l, HasSubstr("mac (macaddr) = 00:00:00:00:00:00\n"));
}

TEST_F(IntrospectTest, DotGraphHasChildrenAndLinks) {
  std::string dot = FormatQomDot(m_->root());
  EXPECT_THAT(dot, HasSubstr("\"/machine/peripheral\" -> \"/machine/peripheral/t0\";"));
  EXPECT_THAT(dot, HasSubstr("\"/machine/peripheral/t0\" -> \"/objects/be0\" [style=dashed"));
}

TEST(TypesListTest, ShowsParentsAbstractAndInterfaces) {
  std::string t = FormatTypes();
  EXPECT_THAT(t, HasSubstr("device: object [abstract]\n"));
  EXPECT_THAT(t, HasSubstr("test-bus-host: sys-bus-device [interfaces: hotplug-handler]\n"));
  EXPECT_THAT(t, HasSubstr("hotplug-handler: interface [interface]\n"));
  // Types that implement interfaces are not listed as interfaces.
  EXPECT_THAT(t, Not(HasSubstr("test-bus-host: sys-bus-device [interface]")));
  EXPECT_THAT(t, Not(HasSubstr("netdev: object [interface]")));
}

}  // namespace
}  // namespace vdev

namespace vdev {
namespace {

// Ids and masks read in hex, as a device author writes them; set from hex or decimal.
TEST(HelpTest, IdsAndMasksAreShownInHex) {
  auto help = HelpFor("device", "edu,help");
  ASSERT_TRUE(help.ok()) << help.status();
  EXPECT_THAT(*help,
              ::testing::HasSubstr(
                  "vendor ID override (0xffffffff: the device type's) (default: 0xffffffff)"));
  EXPECT_THAT(*help, ::testing::HasSubstr("(default: 0xfffffff)"));  // dma_mask, 28 bits
  auto m = Machine::Create("pc");
  ASSERT_TRUE(m.ok());
  auto d = (*m)->DeviceAdd("edu,id=e0,x-pci-sub-vendor-id=0x1af4,x-pci-sub-device-id=4660");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*(*d)->GetProperty("x-pci-sub-vendor-id"), "0x1af4");
  EXPECT_EQ(*(*d)->GetProperty("x-pci-sub-device-id"), "0x1234");
  EXPECT_EQ(*(*d)->GetProperty("dma_mask"), "0xfffffff");
}

}  // namespace
}  // namespace vdev
