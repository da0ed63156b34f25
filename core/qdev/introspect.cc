#include "core/qdev/introspect.h"

#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace vdev {
namespace {

std::string Indent(int n) { return std::string(static_cast<size_t>(n) * 2, ' '); }

std::string PrintValue(const qom::PropertyInfo& p, const qom::Object& o) {
  if (!p.get) return "<unreadable>";
  std::string v = p.get(o);
  if (p.type == "str" || p.type.rfind("link<", 0) == 0) return absl::StrCat("\"", v, "\"");
  return v;
}

void FormatBus(const BusState& bus, int depth, std::string* out);

void FormatDevice(const DeviceState& dev, int depth, std::string* out) {
  absl::StrAppend(out, Indent(depth), "dev: ", dev.type_name(), ", id \"", dev.id(), "\"\n");
  for (const qom::PropertyInfo* p : dev.ListProperties()) {
    absl::StrAppend(out, Indent(depth + 1), p->name, " = ", PrintValue(*p, dev), "\n");
  }
  if (dev.parent_bus() != nullptr) {
    for (const std::string& line : dev.parent_bus()->DescribeDevice(dev)) {
      absl::StrAppend(out, Indent(depth + 1), line, "\n");
    }
  }
  for (const BusState* b : dev.child_buses()) FormatBus(*b, depth + 1, out);
}

void FormatBus(const BusState& bus, int depth, std::string* out) {
  absl::StrAppend(out, Indent(depth), "bus: ", bus.bus_name(), "\n");
  absl::StrAppend(out, Indent(depth + 1), "type ", bus.type_name(), "\n");
  for (const DeviceState* d : bus.devices()) FormatDevice(*d, depth + 1, out);
}

}  // namespace

std::string FormatQtree(Machine& machine) {
  std::string out;
  FormatBus(machine.sysbus(), 0, &out);
  return out;
}

std::string FormatQomTree(qom::Object& root) {
  std::string out;
  std::function<void(qom::Object&, int)> walk = [&](qom::Object& o, int depth) {
    std::string name = o.is_root() ? "/" : absl::StrCat("/", o.name());
    absl::StrAppend(&out, Indent(depth), name, " (", o.type_name(), ")\n");
    for (qom::Object* c : o.children()) walk(*c, depth + 1);
  };
  walk(root, 0);
  return out;
}

std::string FormatQomList(const qom::Object& obj) {
  std::string out;
  absl::StrAppend(&out, "type (string) = \"", obj.type_name(), "\"\n");
  for (const qom::PropertyInfo* p : obj.ListProperties()) {
    absl::StrAppend(&out, p->name, " (", p->type, ") = ", PrintValue(*p, obj), "\n");
  }
  for (const qom::Object* c : obj.children()) {
    absl::StrAppend(&out, c->name(), " (child<", c->type_name(), ">)\n");
  }
  return out;
}

std::string FormatTypes(qom::TypeRegistry& registry) {
  std::string out;
  for (const qom::TypeImpl* t : registry.TypesOf(qom::Object::kTypeName, true)) {
    absl::StrAppend(&out, t->name(), ": ", t->parent() ? t->parent()->name() : "-");
    if (t->abstract()) out += " [abstract]";
    std::vector<std::string> ifaces = t->declared_interfaces();
    if (!ifaces.empty()) absl::StrAppend(&out, " [interfaces: ", absl::StrJoin(ifaces, ", "), "]");
    out += "\n";
  }
  for (const qom::TypeImpl* t : registry.TypesOf("interface", true)) {
    absl::StrAppend(&out, t->name(), ": ", t->parent() ? t->parent()->name() : "-",
                    " [interface]\n");
  }
  return out;
}

std::string FormatQomDot(qom::Object& root) {
  std::string out = "digraph qom {\n  rankdir=LR;\n  node [shape=box, fontname=monospace];\n";
  std::function<void(qom::Object&)> walk = [&](qom::Object& o) {
    std::string path = o.CanonicalPath();
    absl::StrAppend(&out, "  \"", path, "\" [label=\"", o.is_root() ? "/" : o.name(), "\\n(",
                    o.type_name(), ")\"];\n");
    for (qom::Object* c : o.children()) {
      absl::StrAppend(&out, "  \"", path, "\" -> \"", c->CanonicalPath(), "\";\n");
      walk(*c);
    }
    for (const qom::PropertyInfo* p : o.ListProperties()) {
      if (p->type.rfind("link<", 0) == 0 && p->get) {
        std::string target = p->get(o);
        if (!target.empty()) {
          absl::StrAppend(&out, "  \"", path, "\" -> \"", target, "\" [style=dashed, label=\"",
                          p->name, "\"];\n");
        }
      }
    }
  };
  walk(root);
  out += "}\n";
  return out;
}

std::string FormatFlatView(const AddressSpace& as) {
  std::string out = absl::StrCat("address-space (flat view): ", as.name(), "\n");
  for (const FlatRange& r : as.FlatRanges()) {
    const char* kind = r.mr->kind() == MemoryRegion::Kind::kRam ? "ram" : "i/o";
    absl::StrAppendFormat(&out, "  %016x-%016x (%s): %s", r.start, r.start + (r.size - 1), kind,
                          r.mr->name());
    if (r.offset_in_mr != 0) absl::StrAppendFormat(&out, " @%016x", r.offset_in_mr);
    out += "\n";
  }
  return out;
}

}  // namespace vdev
