#include "core/qdev/plugin.h"

#include <fstream>

#include "bus/pci/pci_device.h"
#include "core/qdev/help.h"
#include "core/qdev/machine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qom/object.h"

namespace vdev {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

qom::TypeRegistry& R() { return qom::TypeRegistry::Global(); }

TEST(PluginTest, ExamplePluginRegistersItsTypeAndCreatesDevices) {
  auto loaded = LoadPlugin(VDEV_EXAMPLE_PLUGIN);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->name, "example");
  EXPECT_EQ(loaded->vdev_version, VDEV_VERSION_STRING);
  EXPECT_THAT(loaded->types, ElementsAre("example-pci"));

  auto help = HelpFor("device", "example-pci,help");
  ASSERT_TRUE(help.ok());
  EXPECT_THAT(*help, HasSubstr("serial=<str>"));
  EXPECT_THAT(*help, HasSubstr("addr=<pci-devfn>"));  // inherited from pci-device
  EXPECT_THAT(DeviceListHelp(), HasSubstr("name \"example-pci\", bus PCI"));

  auto m = Machine::Create("pc");
  ASSERT_TRUE(m.ok());
  auto dev = (*m)->DeviceAdd("example-pci,id=ex0,serial=SN1,rev=3,addr=5");
  ASSERT_TRUE(dev.ok()) << dev.status();
  // The plugin's subclass casts like a built-in.
  auto* pci = qom::DynamicCast<pci::PCIDevice>(*dev);
  ASSERT_NE(pci, nullptr);
  EXPECT_EQ(pci->ConfigRead(pci::kVendorId, 4), 0x00f01b36u);
  EXPECT_EQ(pci->ConfigRead(pci::kRevisionId, 1), 3u);
  EXPECT_EQ(pci->devfn(), qom::PciDevFn::Of(5, 0));
  // Its own realize error path.
  EXPECT_THAT((*m)->DeviceAdd("example-pci,serial=").status().message(),
              HasSubstr("property 'serial' must not be empty"));

  auto again = LoadPlugin(VDEV_EXAMPLE_PLUGIN);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(LoadedPlugins().size(), 1u);
}

TEST(PluginTest, OnlyTheGlobalRegistryTakesPlugins) {
  qom::TypeRegistry private_registry;
  auto r = LoadPlugin(VDEV_EXAMPLE_PLUGIN, private_registry);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("global type registry only"));
}

TEST(PluginTest, MissingFile) {
  auto r = LoadPlugin("/nonexistent/libnope.so");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("plugin '/nonexistent/libnope.so': "));
}

TEST(PluginTest, NotASharedObject) {
  std::string path = ::testing::TempDir() + "/not-a-plugin.so";
  std::ofstream(path) << "hello";
  auto r = LoadPlugin(path);
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("plugin '" + path + "': "));
}

TEST(PluginTest, MissingStampIsRefusedAndRegistersNothing) {
  auto r = LoadPlugin(VDEV_bad_no_stamp);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("missing symbol 'vdev_plugin_abi'"));
  EXPECT_EQ(R().Find("bad-no-stamp-device"), nullptr);
}

TEST(PluginTest, AbiMismatchIsRefusedAndRegistersNothing) {
  auto r = LoadPlugin(VDEV_bad_abi);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("ABI version 999 does not match vdev's 1"));
  EXPECT_EQ(R().Find("bad-abi-device"), nullptr);
}

TEST(PluginTest, DuplicateTypeRollsBackTheWholePlugin) {
  auto r = LoadPlugin(VDEV_bad_duplicate);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(r.status().message(), HasSubstr("type 'pc' is already registered"));
  EXPECT_EQ(R().Find("dup-plugin-fine-device"), nullptr);
  // The built-in "pc" is untouched.
  auto m = Machine::Create("pc");
  EXPECT_TRUE(m.ok());
}

TEST(PluginTest, BrokenClassInitRollsBack) {
  auto r = LoadPlugin(VDEV_bad_class_init);
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("property 'x' is declared twice"));
  EXPECT_EQ(R().Find("bad-class-init-device"), nullptr);
  EXPECT_TRUE(R().InitializeAll().ok());
}

}  // namespace
}  // namespace vdev
