// Device plugins: shared objects whose types register themselves when loaded.
//
// A plugin is built against libvdev (the vdev CMake package) and contains, besides its types,
// exactly one stamp:
//
//   #include "core/qdev/plugin.h"
//   VDEV_PLUGIN("mydev");                 // name shown by `vdev --print plugins`
//   class MyDev : public pci::PCIDevice { ... };
//   VDEV_REGISTER_TYPE(MyDev);
//
// LoadPlugin() dlopens the file with the registry in batch mode, checks the stamp (magic, ABI
// version, C++ library ABI), and only then commits the plugin's types, all or none. A missing
// file, a missing stamp, an ABI mismatch, a duplicate type name or a broken class_init is an
// error message and leaves the registry as it was. Plugins are never unloaded once committed.
#ifndef VDEV_CORE_QDEV_PLUGIN_H_
#define VDEV_CORE_QDEV_PLUGIN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "qom/type.h"

namespace vdev {

inline constexpr uint32_t kPluginMagic = 0x76646576;  // "vdev"
// Bump whenever a public type's layout or a virtual interface changes incompatibly.
inline constexpr uint32_t kPluginAbiVersion = 1;

// The stamp a plugin exports as `vdev_plugin_abi`.
struct PluginAbi {
  uint32_t magic;
  uint32_t abi_version;
  uint32_t cxx_abi;  // _GLIBCXX_USE_CXX11_ABI of the plugin's build
  uint32_t reserved;
  const char* vdev_version;  // VDEV_VERSION_STRING the plugin was built against
  const char* name;
};

#if defined(_GLIBCXX_USE_CXX11_ABI)
inline constexpr uint32_t kCxxAbi = _GLIBCXX_USE_CXX11_ABI;
#else
inline constexpr uint32_t kCxxAbi = 0;
#endif

struct LoadedPlugin {
  std::string path;
  std::string name;
  std::string vdev_version;
  std::vector<std::string> types;  // the types it registered
};

// Where a plugin given by a bare file name (no '/') is looked for, in order: the working
// directory, each directory of VDEV_PLUGIN_PATH (colon-separated), then the installed plugin
// directory (<libdir>/vdev/plugins).
std::vector<std::string> PluginSearchPath();
// The file a plugin name refers to: a name with a '/' is a path; a bare name is looked up along
// PluginSearchPath(). NotFound lists every place it looked.
absl::StatusOr<std::string> FindPlugin(const std::string& name);
// Loads the plugin `path` (a path, or a bare name found by FindPlugin) into `registry` (see
// above). Loading a file that is already loaded (by any name) returns it again and does nothing.
absl::StatusOr<LoadedPlugin> LoadPlugin(const std::string& path,
                                        qom::TypeRegistry& registry = qom::TypeRegistry::Global());
// Plugins loaded so far, in load order.
std::vector<LoadedPlugin> LoadedPlugins();

}  // namespace vdev

// The vdev version a plugin is built against: the CMake package defines VDEV_VERSION_STRING;
// `pkg-config --cflags vdev` defines VDEV_VERSION (a bare 1.2.3, which survives any shell).
#if !defined(VDEV_VERSION_STRING) && defined(VDEV_VERSION)
#define VDEV_STRINGIFY_(x) #x
#define VDEV_STRINGIFY(x) VDEV_STRINGIFY_(x)
#define VDEV_VERSION_STRING VDEV_STRINGIFY(VDEV_VERSION)
#endif

#define VDEV_PLUGIN(plugin_name)                                                              \
  extern "C" __attribute__((visibility("default"), used))                                     \
  const ::vdev::PluginAbi vdev_plugin_abi = {::vdev::kPluginMagic, ::vdev::kPluginAbiVersion, \
                                             ::vdev::kCxxAbi,      0,                         \
                                             VDEV_VERSION_STRING,  plugin_name}

#endif  // VDEV_CORE_QDEV_PLUGIN_H_
