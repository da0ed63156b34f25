// Introspection of a machine: `info qtree` (buses and devices), `info qom-tree` (the composition
// tree), qom-list (one object's properties and children), and the list of registered types.
#ifndef VDEV_CORE_QDEV_INTROSPECT_H_
#define VDEV_CORE_QDEV_INTROSPECT_H_

#include <string>

#include "core/memory/memory.h"
#include "core/qdev/machine.h"
#include "qom/object.h"

namespace vdev {

// QEMU's `info qtree`: from the system bus down, each device with its properties and the lines
// its bus adds (e.g. PCI address and IDs), each bus with its type.
std::string FormatQtree(Machine& machine);
// QEMU's `info qom-tree`: every object under `root` as "/name (type)", indented by depth.
std::string FormatQomTree(qom::Object& root);
// qom-list: "name (type) = value" for each property, then "name (child<type>)" per child.
std::string FormatQomList(const qom::Object& obj);
// Every registered type: "name: parent [abstract] [interfaces: a, b]", sorted.
std::string FormatTypes(qom::TypeRegistry& registry = qom::TypeRegistry::Global());
// The composition tree as a Graphviz digraph (children solid, links dashed).
std::string FormatQomDot(qom::Object& root);
// The flat view of an address space, one range per line (QEMU's `info mtree -f`):
//   address-space (flat view): memory
//     0000000000000000-0000000007ffffff (ram): pc.ram
std::string FormatFlatView(const AddressSpace& as);

}  // namespace vdev

#endif  // VDEV_CORE_QDEV_INTROSPECT_H_
