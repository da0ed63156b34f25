#include "core/qdev/help.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/qdev/device.h"
#include "core/qdev/machine.h"
#include "core/qdev/options.h"
#include "qom/object.h"
#include "qom/user_creatable.h"

namespace vdev {

std::string DeviceListHelp(qom::TypeRegistry& registry) {
  std::map<DeviceCategory, std::vector<const qom::TypeImpl*>> by_category;
  for (const qom::TypeImpl* t : registry.TypesOf(DeviceState::kTypeName)) {
    const auto& dc = static_cast<const DeviceClass&>(t->klass());
    if (!dc.user_creatable) continue;
    by_category[dc.category].push_back(t);
  }
  std::string out;
  for (const auto& [category, types] : by_category) {
    if (!out.empty()) out += "\n";
    absl::StrAppend(&out, DeviceCategoryTitle(category), ":\n");
    for (const qom::TypeImpl* t : types) {
      const auto& dc = static_cast<const DeviceClass&>(t->klass());
      absl::StrAppend(&out, "name \"", t->name(), "\"");
      if (!dc.bus_type.empty()) absl::StrAppend(&out, ", bus ", dc.bus_type);
      if (!dc.description.empty()) absl::StrAppend(&out, ", desc \"", dc.description, "\"");
      out += "\n";
    }
  }
  if (out.empty()) out = "No user-creatable devices are registered.\n";
  return out;
}

absl::StatusOr<std::string> PropertiesHelp(absl::string_view type_name,
                                           qom::TypeRegistry& registry) {
  const qom::TypeImpl* t = registry.Find(type_name);
  if (t == nullptr) return absl::NotFoundError(absl::StrCat("type '", type_name, "' not found"));
  std::vector<const qom::PropertyInfo*> props;
  for (const auto& p : t->klass().properties()) props.push_back(p.get());
  std::sort(props.begin(), props.end(), [](const qom::PropertyInfo* a, const qom::PropertyInfo* b) {
    return a->name < b->name;
  });
  if (props.empty()) return absl::StrCat("There are no options for ", type_name, ".\n");
  std::string out = absl::StrCat(type_name, " options:\n");
  for (const qom::PropertyInfo* p : props) {
    std::string head = absl::StrCat(p->name, "=<", p->type, ">");
    std::string line = absl::StrFormat("  %-26s", head);
    std::string tail = p->description;
    if (!p->enum_values.empty()) {
      absl::StrAppend(&tail, tail.empty() ? "" : " ", "(", absl::StrJoin(p->enum_values, "/"), ")");
    }
    if (p->default_value)
      absl::StrAppend(&tail, tail.empty() ? "" : " ",
                      "(default: ", p->default_value->empty() ? "\"\"" : *p->default_value, ")");
    if (!p->set)
      absl::StrAppend(&tail, tail.empty() ? "" : " ", "[read-only]");
    else if (p->runtime_settable)
      absl::StrAppend(&tail, " [runtime-settable]");
    if (!tail.empty()) absl::StrAppend(&line, " - ", tail);
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

std::string MachineListHelp(qom::TypeRegistry& registry) {
  std::string out = "Supported machines are:\n";
  for (const qom::TypeImpl* t : registry.TypesOf(Machine::kTypeName)) {
    const auto& mc = static_cast<const MachineClass&>(t->klass());
    absl::StrAppend(&out, absl::StrFormat("%-20s %s%s\n", t->name(), mc.description,
                                          mc.is_default ? " (default)" : ""));
  }
  return out;
}

std::string ObjectListHelp(absl::string_view option, qom::TypeRegistry& registry) {
  const qom::ObjectGroup& g = qom::ObjectGroupFor(option);
  std::string out = absl::StrCat("Available ", g.noun, " types:\n");
  int n = 0;
  for (const qom::TypeImpl* t : registry.TypesOf(g.base_type)) {
    absl::string_view name = t->name();
    if (!g.type_prefix.empty()) {
      if (name.substr(0, g.type_prefix.size()) != g.type_prefix) continue;
      name.remove_prefix(g.type_prefix.size());
    }
    absl::StrAppend(&out, absl::StrFormat("  %-20s %s\n", name, t->klass().description));
    ++n;
  }
  if (n == 0) absl::StrAppend(&out, "  (none in this build)\n");
  return out;
}

absl::StatusOr<std::string> HelpFor(absl::string_view option, absl::string_view text,
                                    qom::TypeRegistry& registry) {
  std::string implied = "driver";
  std::string prefix;
  if (option == "machine") {
    implied = "type";
  } else if (option != "device") {
    const qom::ObjectGroup& g = qom::ObjectGroupFor(option);
    implied = g.implied_key;
    prefix = g.type_prefix;
  }
  VDEV_ASSIGN_OR_RETURN(QemuOpts opts, QemuOpts::Parse(text, implied));
  std::optional<std::string> type = opts.Get(implied);
  if (!type) {
    if (option == "device") return DeviceListHelp(registry);
    if (option == "machine") return MachineListHelp(registry);
    return ObjectListHelp(option, registry);
  }
  if (option == "device") {
    const qom::TypeImpl* t = registry.Find(*type);
    if (t == nullptr || !t->klass().IsA(DeviceState::kTypeName)) {
      return absl::NotFoundError(absl::StrCat("'", *type, "' is not a valid device model name"));
    }
  }
  return PropertiesHelp(prefix + *type, registry);
}

}  // namespace vdev
