#include "core/qdev/plugin.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace vdev {
namespace {

absl::Mutex& PluginsMutex() {
  static absl::Mutex mu;
  return mu;
}
std::vector<LoadedPlugin>& Plugins() {
  static auto* plugins = new std::vector<LoadedPlugin>();
  return *plugins;
}

std::string Resolve(const std::string& path) {
  char buf[PATH_MAX];
  return realpath(path.c_str(), buf) ? std::string(buf) : path;
}

}  // namespace

absl::StatusOr<LoadedPlugin> LoadPlugin(const std::string& path, qom::TypeRegistry& registry) {
  if (&registry != &qom::TypeRegistry::Global()) {
    // A plugin's VDEV_REGISTER_TYPE lines always register into the global registry.
    return absl::InvalidArgumentError(
        absl::StrCat("plugin '", path, "': plugins load into the global type registry only"));
  }
  absl::MutexLock lock(&PluginsMutex());
  const std::string real = Resolve(path);
  for (const LoadedPlugin& p : Plugins()) {
    if (p.path == real) {
      return absl::AlreadyExistsError(absl::StrCat("plugin '", path, "' is already loaded"));
    }
  }
  auto fail = [&](absl::StatusCode code, absl::string_view why) {
    return absl::Status(code, absl::StrCat("plugin '", path, "': ", why));
  };

  // Static initialisers of the plugin run inside dlopen; batch mode queues their registrations
  // until the stamp has been checked.
  registry.BeginBatch();
  dlerror();
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    registry.AbortBatch();
    const char* err = dlerror();
    return fail(absl::StatusCode::kNotFound, err ? err : "dlopen failed");
  }
  auto* abi = static_cast<const PluginAbi*>(dlsym(handle, "vdev_plugin_abi"));
  absl::Status problem;
  if (abi == nullptr) {
    problem = fail(absl::StatusCode::kFailedPrecondition,
                   "missing symbol 'vdev_plugin_abi' (was it built with VDEV_PLUGIN?)");
  } else if (abi->magic != kPluginMagic) {
    problem = fail(absl::StatusCode::kFailedPrecondition, "bad magic in 'vdev_plugin_abi'");
  } else if (abi->abi_version != kPluginAbiVersion) {
    problem = fail(
        absl::StatusCode::kFailedPrecondition,
        absl::StrCat("ABI version ", abi->abi_version, " does not match vdev's ", kPluginAbiVersion,
                     " (rebuild the plugin against vdev ", VDEV_VERSION_STRING, ")"));
  } else if (abi->cxx_abi != kCxxAbi) {
    problem =
        fail(absl::StatusCode::kFailedPrecondition,
             absl::StrCat("C++ library ABI ", abi->cxx_abi, " does not match vdev's ", kCxxAbi));
  }
  if (!problem.ok()) {
    registry.AbortBatch();
    dlclose(handle);
    return problem;
  }
  absl::Status s = registry.CommitBatch();
  if (!s.ok()) {
    dlclose(handle);
    return fail(s.code(), s.message());
  }
  LoadedPlugin loaded{real, abi->name ? abi->name : "", abi->vdev_version ? abi->vdev_version : "",
                      registry.last_batch()};
  Plugins().push_back(loaded);
  return loaded;
}

std::vector<LoadedPlugin> LoadedPlugins() {
  absl::MutexLock lock(&PluginsMutex());
  return Plugins();
}

}  // namespace vdev
