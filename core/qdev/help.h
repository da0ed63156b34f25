// The text of the `help` forms: -device help, -device TYPE,help, -machine help, -object help,
// -netdev help, -chardev help. Generated from the type registry and the property schema.
#ifndef VDEV_CORE_QDEV_HELP_H_
#define VDEV_CORE_QDEV_HELP_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "qom/type.h"

namespace vdev {

// User-creatable device types, grouped by category (QEMU's `-device help` layout).
std::string DeviceListHelp(qom::TypeRegistry& registry = qom::TypeRegistry::Global());
// The properties of `type_name` with type, default and description. NotFound for unknown types.
absl::StatusOr<std::string> PropertiesHelp(
    absl::string_view type_name, qom::TypeRegistry& registry = qom::TypeRegistry::Global());
// Machine types (the default marked).
std::string MachineListHelp(qom::TypeRegistry& registry = qom::TypeRegistry::Global());
// Types of an object group ("object", "netdev", "chardev").
std::string ObjectListHelp(absl::string_view option,
                           qom::TypeRegistry& registry = qom::TypeRegistry::Global());

// Answers a `help` request for option `option` ("device", "machine", "object", "netdev",
// "chardev") whose text was `text`: the list when no type is named, else the type's properties.
absl::StatusOr<std::string> HelpFor(absl::string_view option, absl::string_view text,
                                    qom::TypeRegistry& registry = qom::TypeRegistry::Global());

}  // namespace vdev

#endif  // VDEV_CORE_QDEV_HELP_H_
