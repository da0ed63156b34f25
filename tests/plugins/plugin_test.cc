#include "core/qdev/plugin.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
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

  // Loading it again, by the same path or another, does nothing.
  auto again = LoadPlugin(VDEV_EXAMPLE_PLUGIN);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->path, loaded->path);
  EXPECT_THAT(again->types, ElementsAre("example-pci"));
  const std::string dir = std::filesystem::path(VDEV_EXAMPLE_PLUGIN).parent_path();
  auto other_name =
      LoadPlugin(dir + "/./" + std::filesystem::path(VDEV_EXAMPLE_PLUGIN).filename().string());
  ASSERT_TRUE(other_name.ok()) << other_name.status();
  EXPECT_EQ(LoadedPlugins().size(), 1u);
}

// A bare name: the working directory, then VDEV_PLUGIN_PATH, then the installed directory.
class PluginSearchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    old_cwd_ = std::filesystem::current_path();
    if (const char* p = getenv("VDEV_PLUGIN_PATH")) old_env_ = p;
    unsetenv("VDEV_PLUGIN_PATH");
  }
  void TearDown() override {
    std::filesystem::current_path(old_cwd_);
    if (old_env_) {
      setenv("VDEV_PLUGIN_PATH", old_env_->c_str(), 1);
    } else {
      unsetenv("VDEV_PLUGIN_PATH");
    }
  }
  const std::filesystem::path plugin_{VDEV_EXAMPLE_PLUGIN};
  std::filesystem::path old_cwd_;
  std::optional<std::string> old_env_;
};

TEST_F(PluginSearchTest, ABareNameIsFoundInTheWorkingDirectory) {
  std::filesystem::current_path(plugin_.parent_path());
  auto r = LoadPlugin(plugin_.filename().string());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->name, "example");
  EXPECT_EQ(r->path, std::filesystem::canonical(plugin_).string());
}

TEST_F(PluginSearchTest, ABareNameIsFoundAlongVdevPluginPath) {
  std::filesystem::current_path(::testing::TempDir());
  setenv("VDEV_PLUGIN_PATH", ("/nonexistent-dir::" + plugin_.parent_path().string()).c_str(), 1);
  auto r = LoadPlugin(plugin_.filename().string());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->name, "example");
}

TEST_F(PluginSearchTest, ABareNameNotFoundSaysWhereItLooked) {
  std::filesystem::current_path(::testing::TempDir());
  setenv("VDEV_PLUGIN_PATH", "/a-dir:/b-dir", 1);
  auto r = LoadPlugin("libnope.so");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  const std::string cwd = std::filesystem::current_path().string();
  EXPECT_EQ(
      r.status().message(),
      absl::StrCat("plugin 'libnope.so': not found; looked for ", cwd,
                   "/libnope.so, /a-dir/libnope.so, /b-dir/libnope.so, ", PluginSearchPath().back(),
                   "/libnope.so (VDEV_PLUGIN_PATH adds directories)"));
  EXPECT_THAT(PluginSearchPath().back(), HasSubstr("vdev/plugins"));
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
  EXPECT_EQ(r.status().message(), "plugin '/nonexistent/libnope.so': no such file");
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
