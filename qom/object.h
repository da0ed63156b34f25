// Object: the root of every QOM type, the composition tree, properties, links and casts.
//
// The composition tree owns objects: a child<> is held by its parent as a std::unique_ptr and is
// destroyed with it. A link<> borrows: it points at an object elsewhere in the tree, and the
// target knows who links to it, so a target that is destroyed clears the links into it and a
// management operation can refuse to delete an object that is still in use.
//
// Canonical paths start at a root object: "/machine/peripheral/nic0". An absolute path walks
// children from the root; a partial path ("nic0", "peripheral/nic0") matches the unique object
// whose path ends with it.
//
// Example:
//   auto root = qom::NewRoot();
//   VDEV_ASSIGN_OR_RETURN(auto obj, TypeRegistry::Global().Create("container"));
//   VDEV_RETURN_IF_ERROR(root->AddChild("machine", std::move(obj)).status());
//   root->Resolve("/machine");   // the container
//   EduDevice* edu = qom::DynamicCast<EduDevice>(some_object);  // nullptr when not an edu
//
// Thread-safety: an object tree is owned by the control-plane thread; not thread-safe.
#ifndef VDEV_QOM_OBJECT_H_
#define VDEV_QOM_OBJECT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/base/logging.h"
#include "qom/property.h"
#include "qom/type.h"

namespace vdev::qom {

class Object {
 public:
  static constexpr char kTypeName[] = "object";
  using Class = ObjectClass;

  Object();
  Object(const Object&) = delete;
  Object& operator=(const Object&) = delete;
  virtual ~Object();

  // ---- type ----
  const TypeImpl& type() const { return *type_; }
  const std::string& type_name() const { return type_->name(); }
  const ObjectClass& object_class() const { return type_->klass(); }
  // True when this object is, derives from, or implements the type named `name`.
  bool IsA(absl::string_view name) const;

  // ---- composition tree ----
  Object* parent() const { return parent_; }
  // This object's name in its parent ("" for a root or a detached object).
  const std::string& name() const { return name_; }
  // Makes this object the root of a tree ("/").
  void MakeRoot() { is_root_ = true; }
  bool is_root() const { return is_root_; }
  // The root of the tree this object is in, or nullptr when its top ancestor is not a root.
  Object* Root();
  // "/a/b/c", "/" for a root, "" when not attached to a tree.
  std::string CanonicalPath() const;

  // Adopts `child` under `name`. AlreadyExists when the name is taken by a child or property;
  // InvalidArgument for an empty name or one containing '/'; FailedPrecondition when `child`
  // already has a parent. Returns the child.
  absl::StatusOr<Object*> AddChild(std::string name, std::unique_ptr<Object> child);
  // Hangs `child` in the tree without owning it (used for a tree's top object owned elsewhere).
  absl::Status AddBorrowedChild(std::string name, Object* child);
  // Removes the child and hands it back (nullptr when absent). Its subtree goes with it.
  std::unique_ptr<Object> DetachChild(absl::string_view name);
  // Removes and destroys the child. False when absent.
  bool DeleteChild(absl::string_view name);
  Object* FindChild(absl::string_view name) const;
  // Children in the order they were added.
  std::vector<Object*> children() const;
  size_t child_count() const { return children_.size(); }

  // Resolves an absolute ("/machine/x") or partial ("x", "peripheral/x") path in this object's
  // tree. NotFound when nothing matches; InvalidArgument when a partial path is ambiguous.
  absl::StatusOr<Object*> Resolve(absl::string_view path);

  // ---- properties ----
  // Instance property first, then class property; nullptr when neither exists.
  const PropertyInfo* FindProperty(absl::string_view name) const;
  // Class then instance properties (each in declaration order).
  std::vector<const PropertyInfo*> ListProperties() const;
  // NotFound for property `name`, QEMU's message plus a suggestion for a near miss.
  absl::Status PropertyNotFound(absl::string_view name) const;
  // Adds a dynamic property to this object only; its `init` runs immediately.
  absl::Status AddInstanceProperty(PropertyInfo prop);
  bool RemoveInstanceProperty(absl::string_view name);

  // Sets a property from its string form. NotFound ("Property 'edu.x' not found"),
  // FailedPrecondition for read-only properties and, after realize, for properties that are not
  // runtime-settable; InvalidArgument for a bad value.
  absl::Status SetProperty(absl::string_view name, absl::string_view value);
  absl::StatusOr<std::string> GetProperty(absl::string_view name) const;

  // True once properties are frozen (devices: after realize).
  virtual bool PropertiesFrozen() const { return false; }

  // ---- links ----
  // True when some link property elsewhere points at this object.
  bool HasIncomingLinks() const { return !incoming_.empty(); }
  // "<canonical path of source>.<property>" for each link pointing here.
  std::vector<std::string> IncomingLinkNames() const;
  // Records that property `prop` of this object now links to `target` (nullptr: to nothing).
  // Called by link setters; maintains both sides' bookkeeping.
  void TrackLink(const PropertyInfo* prop, Object* target);

 protected:
  // Runs once the object knows its type and class, before its property defaults are applied
  // (QEMU's instance_post_init): builds what the class decides, such as a child whose type a
  // class field names. An error fails TypeRegistry::Create.
  virtual absl::Status InstancePostInit() { return absl::OkStatus(); }

 private:
  friend class TypeRegistry;
  struct Child {
    std::string name;
    std::unique_ptr<Object> owned;  // empty for borrowed children
    Object* ptr = nullptr;
  };
  struct LinkRef {
    Object* other;
    const PropertyInfo* prop;
  };
  void ForgetChild(size_t index);
  void ResolvePartial(absl::string_view path, Object** found, int* matches);

  const TypeImpl* type_ = nullptr;
  Object* parent_ = nullptr;
  std::string name_;
  bool is_root_ = false;
  std::vector<Child> children_;
  absl::flat_hash_map<std::string, size_t> child_index_;
  std::vector<std::unique_ptr<PropertyInfo>> instance_props_;
  std::vector<LinkRef> outgoing_;  // links this object holds: {target, property}
  std::vector<LinkRef> incoming_;  // links into this object: {source, property}
};

// ---- casts ----

namespace internal {
template <typename T>
const TypeImpl* TargetType(const TypeImpl& of) {
  static std::atomic<const TypeImpl*> cached{nullptr};
  static TypeRegistry* const global = &TypeRegistry::Global();
  TypeRegistry* reg = &of.registry();
  if (reg != global) return reg->Find(T::kTypeName);
  const TypeImpl* t = cached.load(std::memory_order_acquire);
  if (t == nullptr) {
    t = reg->Find(T::kTypeName);
    if (t != nullptr) cached.store(t, std::memory_order_release);
  }
  return t;
}
}  // namespace internal

// The one checked cast: returns `o` as a T when its registered type is T's type (T::kTypeName),
// derives from it, or implements it (interfaces); nullptr otherwise. Works for types registered
// by plugins exactly as for built-ins.
template <typename T>
T* DynamicCast(Object* o) {
  if (o == nullptr) return nullptr;
  const TypeImpl* t = internal::TargetType<T>(o->type());
  if (t == nullptr || !o->type().IsA(t)) return nullptr;
  if constexpr (std::is_base_of_v<Object, T>) {
    return static_cast<T*>(o);  // safe: Create() verified the C++ class against the type
  } else {
    return dynamic_cast<T*>(o);  // interfaces are C++ mixins
  }
}
template <typename T>
const T* DynamicCast(const Object* o) {
  return DynamicCast<T>(const_cast<Object*>(o));
}

// Creates a registered built-in type from code that cannot fail (e.g. a constructor making its
// fixed children). A failure here is a programmer error.
template <typename T>
std::unique_ptr<T> MakeChecked() {
  auto obj = TypeRegistry::Global().Create(T::kTypeName);
  VDEV_CHECK(obj.ok());
  T* t = DynamicCast<T>(obj->get());
  VDEV_CHECK(t != nullptr);
  (void)obj->release();
  return std::unique_ptr<T>(t);
}

// A new root container ("/").
std::unique_ptr<Object> NewRoot(TypeRegistry& registry = TypeRegistry::Global());

// A link property: `member` holds a borrowed T* set by id or path ("netdev=n0"). Setting checks
// that the target is a T; the target's destruction clears the field.
template <typename T, typename Owner>
PropertyInfo LinkProp(std::string name, T* Owner::*member, std::string description);

namespace internal {
template <typename Owner>
Owner& OwnerOf(Object& o) {
#ifndef NDEBUG
  VDEV_CHECK(dynamic_cast<Owner*>(&o) != nullptr);
#endif
  return static_cast<Owner&>(o);
}
template <typename Owner>
const Owner& OwnerOf(const Object& o) {
#ifndef NDEBUG
  VDEV_CHECK(dynamic_cast<const Owner*>(&o) != nullptr);
#endif
  return static_cast<const Owner&>(o);
}
// Resolves `value` for link property `name` of `o`, checking the target's type.
absl::StatusOr<Object*> ResolveLinkTarget(Object& o, absl::string_view name,
                                          absl::string_view target_type, absl::string_view value);
}  // namespace internal

template <typename T, typename Owner>
PropertyInfo LinkProp(std::string name, T* Owner::*member, std::string description) {
  PropertyInfo p;
  p.type = absl::StrCat("link<", T::kTypeName, ">");
  p.description = std::move(description);
  p.set = [member, n = name](Object& o, absl::string_view value) -> absl::Status {
    const PropertyInfo* self = o.FindProperty(n);
    if (value.empty()) {
      internal::OwnerOf<Owner>(o).*member = nullptr;
      o.TrackLink(self, nullptr);
      return absl::OkStatus();
    }
    auto target = internal::ResolveLinkTarget(o, n, T::kTypeName, value);
    if (!target.ok()) return target.status();
    internal::OwnerOf<Owner>(o).*member = DynamicCast<T>(*target);
    o.TrackLink(self, *target);
    return absl::OkStatus();
  };
  p.get = [member](const Object& o) -> std::string {
    const T* t = internal::OwnerOf<Owner>(o).*member;
    return t ? static_cast<const Object*>(t)->CanonicalPath() : "";
  };
  p.init = [member](Object& o) {
    internal::OwnerOf<Owner>(o).*member = nullptr;
    return absl::OkStatus();
  };
  p.clear_link = [member](Object& o) { internal::OwnerOf<Owner>(o).*member = nullptr; };
  p.name = std::move(name);
  return p;
}

// " (did you mean 'x'?)" for the candidate within two edits of `name` (and fewer than half of
// it), else "". Appended to "not found" messages.
std::string DidYouMean(absl::string_view name, const std::vector<std::string>& candidates);

}  // namespace vdev::qom

#endif  // VDEV_QOM_OBJECT_H_
