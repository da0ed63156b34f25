#include "qom/user_creatable.h"

#include "core/base/logging.h"
#include "qom/object.h"

namespace vdev::qom {

const std::vector<ObjectGroup>& AllObjectGroups() {
  static const auto* groups = new std::vector<ObjectGroup>{
      {"object", "qom-type", UserCreatable::kTypeName, "", "objects", "user-creatable object"},
      {"netdev", "type", "netdev", "netdev-", "netdevs", "netdev backend"},
      {"chardev", "backend", "chardev", "chardev-", "chardevs", "chardev backend"},
  };
  return *groups;
}

const ObjectGroup& ObjectGroupFor(absl::string_view option) {
  for (const ObjectGroup& g : AllObjectGroups()) {
    if (g.option == option) return g;
  }
  VDEV_CHECK(false && "unknown object group");
  __builtin_unreachable();
}

VDEV_REGISTER_TYPE_INFO((qom::TypeInfo{
    .name = UserCreatable::kTypeName, .parent = "interface", .abstract = true}));
// The -chardev group's base is vdev::Chardev (core/backends/chardev.h); the -netdev group's,
// net::Netdev.

}  // namespace vdev::qom
