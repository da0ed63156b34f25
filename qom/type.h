// The type registry: QOM's TypeInfo / TypeImpl / ObjectClass in C++.
//
// A type is registered once by name with its parent, whether it is abstract, the interfaces it
// implements, a `class_init` that fills class metadata and the property schema, and an
// `instance_init` that constructs an instance (the C++ constructor). Every ancestor's class_init
// runs on the type's class object before the type's own, so a class starts as its parent left it.
//
// Most types register with one line next to their definition:
//
//   class EduDevice : public pci::PCIDevice {
//    public:
//     static constexpr char kTypeName[] = "edu";
//     using Parent = pci::PCIDevice;
//     static void ClassInit(pci::PCIDeviceClass& k);
//     ...
//   };
//   VDEV_REGISTER_TYPE(EduDevice);
//
// Registration errors (duplicate names, unknown parents, a class_init that declares a property
// twice) are statuses, never aborts: Register() returns them, and type initialisation reports the
// rest (TypeRegistry::InitializeAll() lists every broken type).
//
// Thread-safety: TypeRegistry is thread-safe. A TypeImpl and its ObjectClass are immutable once
// initialised, so casts and property lookups on them take no lock.
#ifndef VDEV_QOM_TYPE_H_
#define VDEV_QOM_TYPE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "qom/property.h"

namespace vdev::qom {

class Object;
class ObjectClass;
class TypeImpl;
class TypeRegistry;

// Everything a type registration says. Only `name` is always required; `parent` is required for
// every type but the roots ("object", "interface").
struct TypeInfo {
  std::string name;
  std::string parent;
  bool abstract = false;
  // Names of interface types (types whose root is "interface") this type implements.
  std::vector<std::string> interfaces;
  // Creates the class object. Inherited from the nearest ancestor that sets it.
  std::function<std::unique_ptr<ObjectClass>()> class_new;
  // Fills class metadata and the property schema. Runs after every ancestor's class_init.
  std::function<void(ObjectClass&)> class_init;
  // Constructs an instance. Required for non-abstract types. Must not fail or touch host resources.
  std::function<std::unique_ptr<Object>()> instance_init;
  // Checks that an instance's C++ class is this type's C++ class (set by TypeInfoFor<T>). Used at
  // creation so that DynamicCast can use static_cast safely, even for plugin subclasses.
  std::function<bool(const Object&)> cxx_check;
};

// Class data shared by all instances of a type: description, the property schema, and (in
// subclasses such as DeviceClass) metadata that tools read without an instance.
class ObjectClass {
 public:
  ObjectClass() = default;
  ObjectClass(const ObjectClass&) = delete;
  ObjectClass& operator=(const ObjectClass&) = delete;
  virtual ~ObjectClass() = default;

  const TypeImpl& type() const { return *type_; }
  const std::string& type_name() const;
  // True when this class's type is `name` or derives from or implements it.
  bool IsA(absl::string_view name) const;

  // Human-readable one-line description (shown by `help`).
  std::string description;

  // Adds a class property. A name already declared (here or by an ancestor) makes the type invalid
  // with an error reported at initialisation.
  void AddProperty(PropertyInfo prop);
  // Replaces the default of an inherited property (printed form, parsed with the property's
  // codec when instances are created). Unknown names make the type invalid.
  void SetPropertyDefault(absl::string_view name, absl::string_view value);
  const PropertyInfo* FindProperty(absl::string_view name) const;
  // In declaration order, ancestors' properties first.
  const std::vector<std::unique_ptr<PropertyInfo>>& properties() const { return props_; }

  // Marks the class as invalid; reported when the type is initialised. For class_init code.
  void SetInitError(std::string message);

 private:
  friend class TypeRegistry;
  const TypeImpl* type_ = nullptr;
  std::vector<std::unique_ptr<PropertyInfo>> props_;
  absl::flat_hash_map<std::string, size_t> prop_index_;
  std::string init_error_;
};

// A registered type. Obtained from TypeRegistry::Lookup(); immutable once initialised.
class TypeImpl {
 public:
  const std::string& name() const { return info_.name; }
  const TypeImpl* parent() const { return parent_; }
  bool abstract() const { return info_.abstract || is_interface_; }
  bool is_interface() const { return is_interface_; }
  const ObjectClass& klass() const { return *class_; }
  TypeRegistry& registry() const { return *registry_; }
  const std::vector<std::string>& declared_interfaces() const { return info_.interfaces; }
  // Every interface implemented, including inherited ones, by name.
  std::vector<std::string> AllInterfaces() const;

  // True when this type is `t`, derives from `t`, or implements interface `t`. O(1) for classes.
  bool IsA(const TypeImpl* t) const {
    if (t->is_interface_) {
      for (const TypeImpl* i : interfaces_) {
        if (i == t) return true;
      }
      return false;
    }
    return t->depth_ < ancestors_.size() && ancestors_[t->depth_] == t;
  }

 private:
  friend class TypeRegistry;
  TypeInfo info_;
  TypeRegistry* registry_ = nullptr;
  const TypeImpl* parent_ = nullptr;
  size_t depth_ = 0;
  std::vector<const TypeImpl*> ancestors_;   // root first, this type last
  std::vector<const TypeImpl*> interfaces_;  // all implemented interface types (and their parents)
  std::unique_ptr<ObjectClass> class_;
  bool is_interface_ = false;
  bool initialized_ = false;
  bool initializing_ = false;  // on the stack of InitializeLocked (cycle detection)
  std::string init_error_;     // sticky initialisation failure
  uint64_t generation_ = 0;    // registration batch, for rolling back a failed plugin
};

class TypeRegistry {
 public:
  // The registry that VDEV_REGISTER_TYPE and plugins use.
  static TypeRegistry& Global();

  // A registry holding only the root types "object" and "interface" (and "container").
  TypeRegistry();
  TypeRegistry(const TypeRegistry&) = delete;
  TypeRegistry& operator=(const TypeRegistry&) = delete;
  ~TypeRegistry();

  // Registers a type. AlreadyExists for a duplicate name; InvalidArgument for an empty or
  // malformed name, a missing parent name, or a non-abstract type without instance_init.
  // The parent need not be registered yet; that is checked when the type is initialised.
  absl::Status Register(TypeInfo info);

  // The type named `name`, initialised (class_init run for it and its ancestors). NotFound for an
  // unknown name; FailedPrecondition when the type or an ancestor is broken (unknown parent,
  // cycle, unknown interface, class_init error).
  absl::StatusOr<const TypeImpl*> Lookup(absl::string_view name);
  // Lookup() without the error: nullptr when absent or broken.
  const TypeImpl* Find(absl::string_view name);

  // Initialises every type. Returns one error listing every broken type and every error from
  // static registration, or OK.
  absl::Status InitializeAll();

  // All initialised types that are, derive from, or implement `base`, sorted by name.
  std::vector<const TypeImpl*> TypesOf(absl::string_view base, bool include_abstract = false);

  // Creates an instance: runs instance_init, verifies its C++ class, runs the object's
  // InstancePostInit, applies property defaults.
  // NotFound for unknown names; FailedPrecondition for abstract or broken types.
  absl::StatusOr<std::unique_ptr<Object>> Create(absl::string_view name);

  // Batching for plugins: between BeginBatch() and CommitBatch()/AbortBatch() registrations made
  // on the calling thread are queued (other threads register directly). CommitBatch registers and
  // initialises them all or none (a failure rolls back the whole batch and returns the error).
  void BeginBatch();
  absl::Status CommitBatch();
  void AbortBatch();
  // Names of the types registered by the last successful CommitBatch().
  std::vector<std::string> last_batch() const;

  // Records an error from static registration (see VDEV_REGISTER_TYPE).
  void RecordStaticError(absl::Status status);

 private:
  absl::Status RegisterLocked(TypeInfo info);
  absl::Status InitializeLocked(TypeImpl* t, int depth_guard);
  absl::StatusOr<TypeImpl*> LookupLocked(absl::string_view name);

  mutable std::recursive_mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<TypeImpl>> types_;
  std::vector<absl::Status> static_errors_;
  bool batching_ = false;
  std::thread::id batch_thread_;  // registrations from other threads bypass the batch
  std::vector<std::string>* init_log_ = nullptr;  // set while committing a batch
  std::vector<TypeInfo> pending_;
  std::vector<std::string> last_batch_;
  uint64_t generation_ = 1;
};

namespace internal {
// Registers into the global registry at static-initialisation time; errors are recorded, not
// thrown (see TypeRegistry::InitializeAll()).
bool RegisterStatic(TypeInfo info);

template <typename T, typename = void>
struct HasClassInit : std::false_type {};
template <typename T>
struct HasClassInit<T, std::void_t<decltype(&T::ClassInit)>> : std::true_type {};
template <typename T, typename = void>
struct ClassOf {
  using type = ObjectClass;
};
template <typename T>
struct ClassOf<T, std::void_t<typename T::Class>> {
  using type = typename T::Class;
};
template <typename T, typename = void>
struct HasInterfaces : std::false_type {};
template <typename T>
struct HasInterfaces<T, std::void_t<decltype(T::kInterfaces)>> : std::true_type {};
template <typename T, typename = void>
struct HasAbstractFlag : std::false_type {};
template <typename T>
struct HasAbstractFlag<T, std::void_t<decltype(T::kAbstract)>> : std::true_type {};
// True when T is a C++ abstract class or declares (not inherits) `kAbstract = true`.
template <typename T>
bool IsAbstractType() {
  if constexpr (std::is_abstract_v<T>) {
    return true;
  } else if constexpr (!HasAbstractFlag<T>::value) {
    return false;
  } else if constexpr (!HasAbstractFlag<typename T::Parent>::value) {
    return T::kAbstract;
  } else {
    return T::kAbstract && &T::kAbstract != &T::Parent::kAbstract;
  }
}
// True when T declares its own ClassInit rather than inheriting its parent's.
template <typename T>
bool DeclaresOwnClassInit() {
  if constexpr (!HasClassInit<T>::value) {
    return false;
  } else if constexpr (!HasClassInit<typename T::Parent>::value) {
    return true;
  } else if constexpr (!std::is_same_v<decltype(&T::ClassInit), decltype(&T::Parent::ClassInit)>) {
    return true;
  } else {
    return &T::ClassInit != &T::Parent::ClassInit;
  }
}
template <typename F>
struct ClassInitArg;
template <typename C>
struct ClassInitArg<void (*)(C&)> {
  using type = C;
};
// True when T declares its own Class type rather than inheriting its parent's.
template <typename T>
constexpr bool DeclaresOwnClass() {
  return !std::is_same_v<typename ClassOf<T>::type, typename ClassOf<typename T::Parent>::type>;
}
}  // namespace internal

// Builds the TypeInfo for C++ class T from its members:
//   T::kTypeName (required), T::Parent (required: the C++ base class, itself a registered type),
//   T::Class (optional: its ObjectClass subclass), T::ClassInit(Class&) (optional),
//   T::kInterfaces (optional: array of interface type names), T::kAbstract (optional).
// T is instantiable when it is default-constructible and not abstract.
template <typename T>
TypeInfo TypeInfoFor() {
  static_assert(std::is_base_of_v<typename T::Parent, T>, "T::Parent must be a base of T");
  using Class = typename internal::ClassOf<T>::type;
  TypeInfo info;
  info.name = T::kTypeName;
  info.parent = T::Parent::kTypeName;
  info.abstract = internal::IsAbstractType<T>();
  if constexpr (internal::HasInterfaces<T>::value) {
    for (const char* i : T::kInterfaces) info.interfaces.emplace_back(i);
  }
  if constexpr (internal::DeclaresOwnClass<T>()) {
    info.class_new = [] { return std::make_unique<Class>(); };
  }
  if constexpr (internal::HasClassInit<T>::value) {
    if (internal::DeclaresOwnClassInit<T>())
      info.class_init = [](ObjectClass& oc) {
        using InitArg = typename internal::ClassInitArg<decltype(&T::ClassInit)>::type;
        auto* c = dynamic_cast<InitArg*>(&oc);
        if (c == nullptr) {
          oc.SetInitError(std::string("class object is not a ") + typeid(InitArg).name());
          return;
        }
        T::ClassInit(*c);
      };
  }
  if constexpr (!std::is_abstract_v<T> && std::is_default_constructible_v<T>) {
    info.instance_init = []() -> std::unique_ptr<Object> { return std::make_unique<T>(); };
  }
  info.cxx_check = [](const Object& o) { return dynamic_cast<const T*>(&o) != nullptr; };
  return info;
}

}  // namespace vdev::qom

#define VDEV_QOM_CONCAT_INNER_(a, b) a##b
#define VDEV_QOM_CONCAT_(a, b) VDEV_QOM_CONCAT_INNER_(a, b)

// Registers C++ class T (see TypeInfoFor) with the global registry when the program or plugin
// is loaded. Use at namespace scope in T's .cc file.
#define VDEV_REGISTER_TYPE(T)                                                            \
  [[maybe_unused]] static const bool VDEV_QOM_CONCAT_(vdev_type_registered_, __LINE__) = \
      ::vdev::qom::internal::RegisterStatic(::vdev::qom::TypeInfoFor<T>())

// Registers a hand-built TypeInfo (for interface types and types without a C++ class of their own).
#define VDEV_REGISTER_TYPE_INFO(info_expr)                                               \
  [[maybe_unused]] static const bool VDEV_QOM_CONCAT_(vdev_type_registered_, __LINE__) = \
      ::vdev::qom::internal::RegisterStatic(info_expr)

#endif  // VDEV_QOM_TYPE_H_
