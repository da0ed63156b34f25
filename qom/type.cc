#include "qom/type.h"

#include <algorithm>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "qom/object.h"

namespace vdev::qom {
namespace {

constexpr int kMaxTypeDepth = 64;

bool ValidTypeName(absl::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name) {
    if (!(absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':')) return false;
  }
  return true;
}

}  // namespace

// ---- ObjectClass ----

const std::string& ObjectClass::type_name() const { return type_->name(); }

bool ObjectClass::IsA(absl::string_view name) const {
  const TypeImpl* t = type_->registry().Find(name);
  return t != nullptr && type_->IsA(t);
}

void ObjectClass::AddProperty(PropertyInfo prop) {
  if (prop.name.empty()) {
    SetInitError("a property has an empty name");
    return;
  }
  if (prop_index_.contains(prop.name)) {
    SetInitError(absl::StrCat("property '", prop.name, "' is declared twice"));
    return;
  }
  prop_index_[prop.name] = props_.size();
  props_.push_back(std::make_unique<PropertyInfo>(std::move(prop)));
}

void ObjectClass::SetPropertyDefault(absl::string_view name, absl::string_view value) {
  auto it = prop_index_.find(name);
  if (it == prop_index_.end()) {
    SetInitError(absl::StrCat("default set for unknown property '", name, "'"));
    return;
  }
  PropertyInfo& p = *props_[it->second];
  if (!p.set) {
    SetInitError(absl::StrCat("default set for read-only property '", name, "'"));
    return;
  }
  p.default_value = std::string(value);
  // The new default is applied by parsing it; a bad one makes every Create() of the type fail
  // with the parse error, rather than leaving the field at some other value.
  auto setter = p.set;
  std::string v(value);
  std::string prop_name = p.name;
  p.init = [setter, v, prop_name](Object& o) -> absl::Status {
    absl::Status s = setter(o, v);
    if (!s.ok()) {
      return absl::InternalError(absl::StrCat("default of property '", prop_name, "' of type '",
                                              o.type_name(), "': ", s.message()));
    }
    return absl::OkStatus();
  };
}

const PropertyInfo* ObjectClass::FindProperty(absl::string_view name) const {
  auto it = prop_index_.find(name);
  return it == prop_index_.end() ? nullptr : props_[it->second].get();
}

void ObjectClass::SetInitError(std::string message) {
  if (init_error_.empty()) init_error_ = std::move(message);
}

// ---- TypeImpl ----

std::vector<std::string> TypeImpl::AllInterfaces() const {
  std::vector<std::string> out;
  for (const TypeImpl* i : interfaces_) out.push_back(i->name());
  return out;
}

// ---- TypeRegistry ----

TypeRegistry& TypeRegistry::Global() {
  static TypeRegistry* registry = new TypeRegistry();
  return *registry;
}

TypeRegistry::TypeRegistry() {
  TypeInfo object;
  object.name = Object::kTypeName;
  object.abstract = true;
  object.class_new = [] { return std::make_unique<ObjectClass>(); };
  (void)Register(std::move(object));

  TypeInfo interface;
  interface.name = "interface";
  interface.abstract = true;
  interface.class_new = [] { return std::make_unique<ObjectClass>(); };
  (void)Register(std::move(interface));

  TypeInfo container;
  container.name = "container";
  container.parent = Object::kTypeName;
  container.class_init = [](ObjectClass& k) { k.description = "a node of the composition tree"; };
  container.instance_init = [] { return std::make_unique<Object>(); };
  (void)Register(std::move(container));
}

TypeRegistry::~TypeRegistry() = default;

absl::Status TypeRegistry::Register(TypeInfo info) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  if (batching_ && std::this_thread::get_id() == batch_thread_) {
    // Validated in CommitBatch(), so that every problem fails the whole batch.
    pending_.push_back(std::move(info));
    return absl::OkStatus();
  }
  return RegisterLocked(std::move(info));
}

absl::Status TypeRegistry::RegisterLocked(TypeInfo info) {
  if (!ValidTypeName(info.name)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid type name '", info.name, "'"));
  }
  if (types_.contains(info.name)) {
    return absl::AlreadyExistsError(absl::StrCat("type '", info.name, "' is already registered"));
  }
  const bool is_root = info.name == Object::kTypeName || info.name == "interface";
  if (info.parent.empty() && !is_root) {
    return absl::InvalidArgumentError(absl::StrCat("type '", info.name, "' has no parent"));
  }
  if (!info.abstract && !info.instance_init && !is_root) {
    return absl::InvalidArgumentError(
        absl::StrCat("type '", info.name, "' is not abstract but has no instance_init"));
  }
  auto t = std::make_unique<TypeImpl>();
  t->registry_ = this;
  t->generation_ = generation_;
  t->info_ = std::move(info);
  std::string name = t->info_.name;
  types_.emplace(std::move(name), std::move(t));
  return absl::OkStatus();
}

absl::StatusOr<TypeImpl*> TypeRegistry::LookupLocked(absl::string_view name) {
  auto it = types_.find(name);
  if (it == types_.end()) return absl::NotFoundError(absl::StrCat("type '", name, "' not found"));
  TypeImpl* t = it->second.get();
  if (!t->initialized_) {
    absl::Status s = InitializeLocked(t, 0);
    if (!s.ok()) return s;
  }
  if (!t->init_error_.empty()) return absl::FailedPreconditionError(t->init_error_);
  return t;
}

absl::Status TypeRegistry::InitializeLocked(TypeImpl* t, int depth_guard) {
  if (t->initialized_) {
    return t->init_error_.empty() ? absl::OkStatus()
                                  : absl::FailedPreconditionError(t->init_error_);
  }
  auto fail = [this, t](std::string msg) {
    t->initialized_ = true;
    if (init_log_ != nullptr) init_log_->push_back(t->name());
    t->init_error_ = std::move(msg);
    t->class_.reset();
    return absl::FailedPreconditionError(t->init_error_);
  };
  if (depth_guard > kMaxTypeDepth) {
    return fail(absl::StrCat("type '", t->name(), "': parent chain is cyclic or deeper than ",
                             kMaxTypeDepth));
  }
  // Parent first.
  const TypeImpl* parent = nullptr;
  if (!t->info_.parent.empty()) {
    auto it = types_.find(t->info_.parent);
    if (it == types_.end()) {
      return fail(
          absl::StrCat("type '", t->name(), "': parent type '", t->info_.parent, "' not found"));
    }
    TypeImpl* p = it->second.get();
    if (p->initializing_) {
      return fail(absl::StrCat("type '", t->name(), "': parent chain is cyclic"));
    }
    t->initializing_ = true;
    absl::Status s = InitializeLocked(p, depth_guard + 1);
    t->initializing_ = false;
    if (!s.ok()) {
      return fail(absl::StrCat("type '", t->name(), "': parent type '", p->name(),
                               "' is broken: ", s.message()));
    }
    parent = p;
  }
  t->parent_ = parent;
  t->ancestors_ = parent ? parent->ancestors_ : std::vector<const TypeImpl*>{};
  t->ancestors_.push_back(t);
  t->depth_ = t->ancestors_.size() - 1;
  t->is_interface_ = t->name() == "interface" || (parent != nullptr && parent->is_interface_);
  if (t->is_interface_ && !t->info_.interfaces.empty()) {
    return fail(absl::StrCat("interface type '", t->name(), "' cannot implement interfaces"));
  }

  // Interfaces: inherited ones, then declared ones with their interface ancestors.
  t->interfaces_ = parent ? parent->interfaces_ : std::vector<const TypeImpl*>{};
  if (t->is_interface_) {
    // An interface "implements" itself and its parents so IsA works on interface types too.
    for (const TypeImpl* a : t->ancestors_) t->interfaces_.push_back(a);
  }
  for (const std::string& iname : t->info_.interfaces) {
    auto it = types_.find(iname);
    if (it == types_.end()) {
      return fail(absl::StrCat("type '", t->name(), "': interface '", iname, "' not found"));
    }
    TypeImpl* i = it->second.get();
    if (i == t || i->initializing_) {
      return fail(absl::StrCat("type '", t->name(), "': interface '", iname, "' is cyclic"));
    }
    t->initializing_ = true;
    absl::Status s = InitializeLocked(i, depth_guard + 1);
    t->initializing_ = false;
    if (!s.ok()) return fail(absl::StrCat("type '", t->name(), "': ", s.message()));
    if (!i->is_interface_) {
      return fail(absl::StrCat("type '", t->name(), "': '", iname, "' is not an interface type"));
    }
    for (const TypeImpl* a : i->ancestors_) {
      // The root "interface" is what interface types are, not something classes implement.
      if (a->ancestors_.size() == 1) continue;
      if (std::find(t->interfaces_.begin(), t->interfaces_.end(), a) == t->interfaces_.end()) {
        t->interfaces_.push_back(a);
      }
    }
  }

  // The class: made by the nearest class_new, then every class_init from the root down.
  std::function<std::unique_ptr<ObjectClass>()> class_new;
  for (auto it = t->ancestors_.rbegin(); it != t->ancestors_.rend() && !class_new; ++it) {
    class_new = (*it)->info_.class_new;
  }
  if (!class_new) return fail(absl::StrCat("type '", t->name(), "' has no class"));
  t->class_ = class_new();
  t->class_->type_ = t;
  for (const TypeImpl* a : t->ancestors_) {
    if (a->info_.class_init) a->info_.class_init(*t->class_);
    if (!t->class_->init_error_.empty()) {
      return fail(absl::StrCat("type '", t->name(), "': class_init of '", a->name(),
                               "': ", t->class_->init_error_));
    }
  }
  t->initialized_ = true;
  if (init_log_ != nullptr) init_log_->push_back(t->name());
  return absl::OkStatus();
}

absl::StatusOr<const TypeImpl*> TypeRegistry::Lookup(absl::string_view name) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  auto t = LookupLocked(name);
  if (!t.ok()) return t.status();
  return *t;
}

const TypeImpl* TypeRegistry::Find(absl::string_view name) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  auto t = LookupLocked(name);
  return t.ok() ? *t : nullptr;
}

absl::Status TypeRegistry::InitializeAll() {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  std::vector<std::string> errors;
  for (const absl::Status& s : static_errors_) errors.emplace_back(s.message());
  std::vector<TypeImpl*> all;
  for (auto& [name, t] : types_) all.push_back(t.get());
  std::sort(all.begin(), all.end(),
            [](const TypeImpl* a, const TypeImpl* b) { return a->name() < b->name(); });
  for (TypeImpl* t : all) {
    absl::Status s = InitializeLocked(t, 0);
    if (!s.ok()) errors.emplace_back(s.message());
  }
  if (errors.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrJoin(errors, "; "));
}

std::vector<const TypeImpl*> TypeRegistry::TypesOf(absl::string_view base, bool include_abstract) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  std::vector<const TypeImpl*> out;
  auto b = LookupLocked(base);
  if (!b.ok()) return out;
  for (auto& [name, t] : types_) {
    if (!InitializeLocked(t.get(), 0).ok()) continue;
    if (!include_abstract && t->abstract()) continue;
    if (t->IsA(*b)) out.push_back(t.get());
  }
  std::sort(out.begin(), out.end(),
            [](const TypeImpl* a, const TypeImpl* b) { return a->name() < b->name(); });
  return out;
}

absl::StatusOr<std::unique_ptr<Object>> TypeRegistry::Create(absl::string_view name) {
  const TypeImpl* t;
  {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    auto found = LookupLocked(name);
    if (!found.ok()) return found.status();
    t = *found;
  }
  if (t->abstract()) {
    return absl::FailedPreconditionError(
        absl::StrCat("type '", name, "' is abstract and cannot be instantiated"));
  }
  std::unique_ptr<Object> obj = t->info_.instance_init();
  if (obj == nullptr) {
    return absl::InternalError(absl::StrCat("type '", name, "': instance_init returned nothing"));
  }
  // The nearest ancestor with a C++ class check vouches for the object's C++ layout, which is
  // what makes DynamicCast's static_cast sound.
  for (auto it = t->ancestors_.rbegin(); it != t->ancestors_.rend(); ++it) {
    if ((*it)->info_.cxx_check) {
      if (!(*it)->info_.cxx_check(*obj)) {
        return absl::InternalError(absl::StrCat("type '", name,
                                                "': instance_init made an object "
                                                "whose C++ class is not that of type '",
                                                (*it)->name(), "'"));
      }
      break;
    }
  }
  obj->type_ = t;
  if (absl::Status s = obj->InstancePostInit(); !s.ok()) return s;
  for (const auto& p : t->klass().properties()) {
    if (!p->init) continue;
    absl::Status s = p->init(*obj);
    if (!s.ok()) return s;
  }
  return obj;
}

void TypeRegistry::BeginBatch() {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  batching_ = true;
  batch_thread_ = std::this_thread::get_id();
  pending_.clear();
}

void TypeRegistry::AbortBatch() {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  batching_ = false;
  pending_.clear();
}

absl::Status TypeRegistry::CommitBatch() {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  batching_ = false;
  const uint64_t gen = ++generation_;
  std::vector<TypeInfo> batch = std::move(pending_);
  pending_.clear();
  std::vector<std::string> names;
  std::vector<std::string> initialized;  // every type initialised while committing
  init_log_ = &initialized;
  absl::Status status;
  for (TypeInfo& info : batch) {
    std::string name = info.name;
    status = RegisterLocked(std::move(info));
    if (!status.ok()) break;
    names.push_back(name);
  }
  if (status.ok()) {
    for (const std::string& n : names) {
      auto t = LookupLocked(n);
      if (!t.ok()) {
        status = t.status();
        break;
      }
    }
  }
  init_log_ = nullptr;
  if (!status.ok()) {
    for (const std::string& n : names) {
      auto it = types_.find(n);
      if (it != types_.end() && it->second->generation_ == gen) types_.erase(it);
    }
    // Older types initialised against the batch's types (e.g. a built-in whose parent the plugin
    // supplied) must not keep pointers to them: they go back to uninitialised.
    for (const std::string& n : initialized) {
      auto it = types_.find(n);
      if (it == types_.end()) continue;
      TypeImpl* t = it->second.get();
      t->initialized_ = false;
      t->init_error_.clear();
      t->class_.reset();
      t->parent_ = nullptr;
      t->ancestors_.clear();
      t->interfaces_.clear();
    }
    ++generation_;
    return status;
  }
  last_batch_ = std::move(names);
  ++generation_;
  return absl::OkStatus();
}

std::vector<std::string> TypeRegistry::last_batch() const {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  return last_batch_;
}

void TypeRegistry::RecordStaticError(absl::Status status) {
  std::lock_guard<std::recursive_mutex> lock(mu_);
  static_errors_.push_back(std::move(status));
}

namespace internal {
bool RegisterStatic(TypeInfo info) {
  TypeRegistry& r = TypeRegistry::Global();
  absl::Status s = r.Register(std::move(info));
  const bool ok = s.ok();
  if (!ok) r.RecordStaticError(std::move(s));
  return ok;
}
}  // namespace internal

}  // namespace vdev::qom
