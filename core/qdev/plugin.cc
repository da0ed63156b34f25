#include "core/qdev/plugin.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "core/base/status_macros.h"

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

bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

std::vector<std::string> PluginSearchPath() {
  std::vector<std::string> dirs;
  char cwd[PATH_MAX];
  dirs.push_back(getcwd(cwd, sizeof(cwd)) != nullptr ? std::string(cwd) : ".");
  if (const char* env = getenv("VDEV_PLUGIN_PATH"); env != nullptr) {
    for (absl::string_view d : absl::StrSplit(env, ':', absl::SkipEmpty())) {
      dirs.emplace_back(d);
    }
  }
  dirs.push_back(VDEV_PLUGIN_DIR);
  return dirs;
}

absl::StatusOr<std::string> FindPlugin(const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError("plugin '': an empty file name");
  if (name.find('/') != std::string::npos) {
    if (IsFile(name)) return name;
    return absl::NotFoundError(absl::StrCat("plugin '", name, "': no such file"));
  }
  std::vector<std::string> tried;
  for (const std::string& dir : PluginSearchPath()) {
    std::string candidate = absl::StrCat(dir, "/", name);
    if (IsFile(candidate)) return candidate;
    tried.push_back(std::move(candidate));
  }
  return absl::NotFoundError(absl::StrCat("plugin '", name, "': not found; looked for ",
                                          absl::StrJoin(tried, ", "),
                                          " (VDEV_PLUGIN_PATH adds directories)"));
}

absl::StatusOr<LoadedPlugin> LoadPlugin(const std::string& path, qom::TypeRegistry& registry) {
  if (&registry != &qom::TypeRegistry::Global()) {
    // A plugin's VDEV_REGISTER_TYPE lines always register into the global registry.
    return absl::InvalidArgumentError(
        absl::StrCat("plugin '", path, "': plugins load into the global type registry only"));
  }
  VDEV_ASSIGN_OR_RETURN(const std::string found, FindPlugin(path));
  absl::MutexLock lock(&PluginsMutex());
  const std::string real = Resolve(found);
  for (const LoadedPlugin& p : Plugins()) {
    if (p.path == real) return p;  // loaded before: nothing to do
  }
  auto fail = [&](absl::StatusCode code, absl::string_view why) {
    return absl::Status(code, absl::StrCat("plugin '", path, "': ", why));
  };

  // Static initialisers of the plugin run inside dlopen; batch mode queues their registrations
  // until the stamp has been checked.
  registry.BeginBatch();
  dlerror();
  void* handle = dlopen(real.c_str(), RTLD_NOW | RTLD_LOCAL);
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
