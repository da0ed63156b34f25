// The QEMU option grammar: "driver,key=value,key2=value2".
//
//  - The first element may omit its key: it is then the value of the group's implied key
//    ("virtio-net-pci" -> driver=virtio-net-pci for -device; "tap" -> type=tap for -netdev).
//  - ",," inside a key or value stands for one comma: "path=/tmp/a,,b" -> path "/tmp/a,b".
//  - "help" or "?" as the implied value or as a bare key asks for help.
//  - A later bare "key" means "key=on" (QEMU's legacy boolean shorthand).
//  - Keys are [A-Za-z0-9_.-]+ and may appear once.
//
// Example:
//   VDEV_ASSIGN_OR_RETURN(QemuOpts o, QemuOpts::Parse("virtio-net-pci,netdev=n0", "driver"));
//   o.Get("driver");   // "virtio-net-pci"
//   o.Get("netdev");   // "n0"
#ifndef VDEV_CORE_QDEV_OPTIONS_H_
#define VDEV_CORE_QDEV_OPTIONS_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace vdev {

class QemuOpts {
 public:
  // Parses `text`. `implied_key` names the key of a first element given without "key=" (empty:
  // every element needs a key). Errors are one line naming the offending part.
  static absl::StatusOr<QemuOpts> Parse(absl::string_view text, absl::string_view implied_key);

  // The value of `key`, if present.
  std::optional<std::string> Get(absl::string_view key) const;
  bool Has(absl::string_view key) const { return Get(key).has_value(); }
  // Sets or replaces `key`.
  void Set(std::string key, std::string value);
  // Removes `key` and returns its value, if present.
  std::optional<std::string> Take(absl::string_view key);

  // Every key=value pair in the order given.
  const std::vector<std::pair<std::string, std::string>>& entries() const { return entries_; }
  bool help() const { return help_; }

  // The canonical text form, with commas escaped; parses back to the same options.
  std::string ToString(absl::string_view implied_key = {}) const;

 private:
  std::vector<std::pair<std::string, std::string>> entries_;
  bool help_ = false;
};

// Escapes commas for embedding in an option string ("a,b" -> "a,,b").
std::string EscapeOptionValue(absl::string_view v);

}  // namespace vdev

#endif  // VDEV_CORE_QDEV_OPTIONS_H_
