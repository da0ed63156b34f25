// Objects created from the command line by group: -object, -netdev, -chardev.
//
// Each group maps its implied key to a QOM type: "-object TYPE,id=x" creates TYPE, which must
// implement "user-creatable"; "-netdev tap,id=n0" creates "netdev-tap" (a "netdev");
// "-chardev socket,id=c0" creates "chardev-socket" (a "chardev"). The object lands at
// /objects/<id>, /netdevs/<id> or /chardevs/<id>, its properties are set from the options, and
// Complete() is its realize.
#ifndef VDEV_QOM_USER_CREATABLE_H_
#define VDEV_QOM_USER_CREATABLE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace vdev::qom {

class UserCreatable {
 public:
  static constexpr char kTypeName[] = "user-creatable";
  virtual ~UserCreatable() = default;
  // Acquires what the object needs once its properties are set (like a device's Realize).
  virtual absl::Status Complete() { return absl::OkStatus(); }
  // Whether the object may be deleted now (besides nobody linking to it).
  virtual bool CanBeDeleted() const { return true; }
};

// One command-line group of user-creatable objects.
struct ObjectGroup {
  std::string option;       // "object", "netdev", "chardev"
  std::string implied_key;  // "qom-type", "type", "backend"
  std::string base_type;    // every type of the group is one of these
  std::string type_prefix;  // "" / "netdev-" / "chardev-": QOM type = prefix + option value
  std::string container;    // child of the root holding the group's objects
  std::string noun;         // for messages: "object", "netdev backend", "chardev backend"
};

const ObjectGroup& ObjectGroupFor(absl::string_view option);  // CHECKs a known option
const std::vector<ObjectGroup>& AllObjectGroups();

}  // namespace vdev::qom

#endif  // VDEV_QOM_USER_CREATABLE_H_
