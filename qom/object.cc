#include "qom/object.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace vdev::qom {
namespace {

// Removes the entry {other, prop} from a link list.
template <typename Ref>
void EraseRef(std::vector<Ref>& refs, const Object* other, const PropertyInfo* prop) {
  refs.erase(std::remove_if(refs.begin(), refs.end(),
                            [&](const Ref& r) { return r.other == other && r.prop == prop; }),
             refs.end());
}

}  // namespace
Object::Object() = default;

Object::~Object() {
  // A borrowed child destroyed by its owner leaves its parent's tree first.
  if (parent_ != nullptr) {
    auto it = parent_->child_index_.find(name_);
    if (it != parent_->child_index_.end() && parent_->children_[it->second].ptr == this) {
      (void)parent_->children_[it->second].owned.release();  // not ours to delete twice
      parent_->ForgetChild(it->second);
    }
    parent_ = nullptr;
  }
  // Links first, while the whole subtree is intact: a link from this object into one of its
  // own descendants must not be cleared on a half-destroyed object. First the links this object
  // holds: forget them at their targets.
  for (const LinkRef& out : outgoing_) EraseRef(out.other->incoming_, this, out.prop);
  // Links into this object: clear the sources' fields.
  for (const LinkRef& in : incoming_) {
    if (in.prop->clear_link) in.prop->clear_link(*in.other);
    EraseRef(in.other->outgoing_, this, in.prop);
  }
  outgoing_.clear();
  incoming_.clear();
  // Then the children (in reverse order of addition), so that a subtree dies bottom-up.
  while (!children_.empty()) {
    Child c = std::move(children_.back());
    children_.pop_back();
    child_index_.erase(c.name);
    if (c.ptr != nullptr) {
      c.ptr->parent_ = nullptr;
      c.ptr->name_.clear();
    }
    c.owned.reset();
  }
}

bool Object::IsA(absl::string_view name) const {
  const TypeImpl* t = type_->registry().Find(name);
  return t != nullptr && type_->IsA(t);
}

Object* Object::Root() {
  Object* o = this;
  while (o->parent_ != nullptr) o = o->parent_;
  return o->is_root_ ? o : nullptr;
}

std::string Object::CanonicalPath() const {
  if (is_root_) return "/";
  std::vector<const Object*> chain;
  const Object* o = this;
  while (o->parent_ != nullptr) {
    chain.push_back(o);
    o = o->parent_;
  }
  if (!o->is_root_) return "";
  std::string path;
  for (auto it = chain.rbegin(); it != chain.rend(); ++it)
    absl::StrAppend(&path, "/", (*it)->name_);
  return path;
}

absl::StatusOr<Object*> Object::AddChild(std::string name, std::unique_ptr<Object> child) {
  if (child == nullptr) return absl::InvalidArgumentError("AddChild: null child");
  Object* raw = child.get();
  absl::Status s = AddBorrowedChild(std::move(name), raw);
  if (!s.ok()) return s;
  children_.back().owned = std::move(child);
  return raw;
}

absl::Status Object::AddBorrowedChild(std::string name, Object* child) {
  if (name.empty() || name.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("invalid child name '", name, "'"));
  }
  if (child->parent_ != nullptr || child->is_root_) {
    return absl::FailedPreconditionError(
        absl::StrCat("object '", child->CanonicalPath(), "' already has a parent"));
  }
  if (child_index_.contains(name) || FindProperty(name) != nullptr) {
    return absl::AlreadyExistsError(
        absl::StrCat("'", CanonicalPath(), "' already has a child or property '", name, "'"));
  }
  child_index_[name] = children_.size();
  child->parent_ = this;
  child->name_ = name;
  children_.push_back(Child{std::move(name), nullptr, child});
  return absl::OkStatus();
}

void Object::ForgetChild(size_t index) {
  child_index_.erase(children_[index].name);
  children_.erase(children_.begin() + static_cast<ptrdiff_t>(index));
  for (size_t i = index; i < children_.size(); ++i) child_index_[children_[i].name] = i;
}

std::unique_ptr<Object> Object::DetachChild(absl::string_view name) {
  auto it = child_index_.find(name);
  if (it == child_index_.end()) return nullptr;
  size_t index = it->second;
  std::unique_ptr<Object> owned = std::move(children_[index].owned);
  Object* ptr = children_[index].ptr;
  ForgetChild(index);
  ptr->parent_ = nullptr;
  ptr->name_.clear();
  return owned;
}

bool Object::DeleteChild(absl::string_view name) {
  if (!child_index_.contains(name)) return false;
  DetachChild(name).reset();
  return true;
}

Object* Object::FindChild(absl::string_view name) const {
  auto it = child_index_.find(name);
  return it == child_index_.end() ? nullptr : children_[it->second].ptr;
}

std::vector<Object*> Object::children() const {
  std::vector<Object*> out;
  out.reserve(children_.size());
  for (const Child& c : children_) out.push_back(c.ptr);
  return out;
}

void Object::ResolvePartial(absl::string_view path, Object** found, int* matches) {
  // Does the path end at this object? Compare components from the end, walking up.
  std::vector<absl::string_view> parts = absl::StrSplit(path, '/');
  Object* o = this;
  bool match = true;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (o == nullptr || o->parent_ == nullptr || o->name_ != *it) {
      match = false;
      break;
    }
    o = o->parent_;
  }
  if (match && *found != this) {
    ++*matches;
    *found = this;
  }
  for (const Child& c : children_) c.ptr->ResolvePartial(path, found, matches);
}

absl::StatusOr<Object*> Object::Resolve(absl::string_view path) {
  Object* root = Root();
  if (root == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot resolve '", path, "': object is not in a tree"));
  }
  if (path.empty()) return absl::InvalidArgumentError("empty path");
  if (path[0] == '/') {
    Object* o = root;
    for (absl::string_view part : absl::StrSplit(path.substr(1), '/', absl::SkipEmpty())) {
      o = o->FindChild(part);
      if (o == nullptr) return absl::NotFoundError(absl::StrCat("path '", path, "' not found"));
    }
    return o;
  }
  if (path.back() == '/' || path.find("//") != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("invalid path '", path, "'"));
  }
  Object* found = nullptr;
  int matches = 0;
  root->ResolvePartial(path, &found, &matches);
  if (matches == 0) return absl::NotFoundError(absl::StrCat("path '", path, "' not found"));
  if (matches > 1) {
    return absl::InvalidArgumentError(absl::StrCat("path '", path, "' is ambiguous"));
  }
  return found;
}

const PropertyInfo* Object::FindProperty(absl::string_view name) const {
  for (const auto& p : instance_props_) {
    if (p->name == name) return p.get();
  }
  return type_ ? type_->klass().FindProperty(name) : nullptr;
}

std::vector<const PropertyInfo*> Object::ListProperties() const {
  std::vector<const PropertyInfo*> out;
  if (type_) {
    for (const auto& p : type_->klass().properties()) out.push_back(p.get());
  }
  for (const auto& p : instance_props_) out.push_back(p.get());
  return out;
}

absl::Status Object::AddInstanceProperty(PropertyInfo prop) {
  if (prop.name.empty()) return absl::InvalidArgumentError("property with an empty name");
  if (FindProperty(prop.name) != nullptr || child_index_.contains(prop.name)) {
    return absl::AlreadyExistsError(absl::StrCat("Property '", type_ ? type_name() : "object", ".",
                                                 prop.name, "' already exists"));
  }
  instance_props_.push_back(std::make_unique<PropertyInfo>(std::move(prop)));
  if (instance_props_.back()->init) {
    absl::Status s = instance_props_.back()->init(*this);
    if (!s.ok()) {
      instance_props_.pop_back();
      return s;
    }
  }
  return absl::OkStatus();
}

bool Object::RemoveInstanceProperty(absl::string_view name) {
  for (auto it = instance_props_.begin(); it != instance_props_.end(); ++it) {
    if ((*it)->name == name) {
      const PropertyInfo* p = it->get();
      // Drop any link the property holds before the descriptor goes away.
      for (const LinkRef& out : outgoing_) {
        if (out.prop == p) {
          if (p->clear_link) p->clear_link(*this);
          TrackLink(p, nullptr);
          break;
        }
      }
      instance_props_.erase(it);
      return true;
    }
  }
  return false;
}

namespace {

// Levenshtein distance, for suggestions.
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

std::string DidYouMean(absl::string_view name, const std::vector<std::string>& candidates) {
  // Close enough to be a typo: at most 2 edits, and fewer than half the name.
  const size_t limit = std::min<size_t>(2, (name.size() + 1) / 2);
  const std::string* best = nullptr;
  size_t best_d = limit + 1;
  for (const std::string& c : candidates) {
    const size_t d = EditDistance(name, c);
    if (d < best_d) {
      best_d = d;
      best = &c;
    }
  }
  return best != nullptr ? absl::StrCat(" (did you mean '", *best, "'?)") : "";
}

absl::Status Object::PropertyNotFound(absl::string_view name) const {
  std::vector<std::string> names;
  for (const PropertyInfo* p : ListProperties()) names.push_back(p->name);
  return absl::NotFoundError(
      absl::StrCat("Property '", type_name(), ".", name, "' not found", DidYouMean(name, names)));
}

absl::Status Object::SetProperty(absl::string_view name, absl::string_view value) {
  const PropertyInfo* p = FindProperty(name);
  if (p == nullptr) return PropertyNotFound(name);
  if (!p->set) {
    return absl::FailedPreconditionError(
        absl::StrCat("Property '", type_name(), ".", name, "' is read-only"));
  }
  if (PropertiesFrozen() && !p->runtime_settable) {
    return absl::FailedPreconditionError(absl::StrCat("Attempt to set property '", name, "' on '",
                                                      type_name(), "' after it was realized"));
  }
  return p->set(*this, value);
}

absl::StatusOr<std::string> Object::GetProperty(absl::string_view name) const {
  const PropertyInfo* p = FindProperty(name);
  if (p == nullptr) {
    if (Object* c = FindChild(name)) return c->CanonicalPath();
    return PropertyNotFound(name);
  }
  if (!p->get) {
    return absl::FailedPreconditionError(
        absl::StrCat("Property '", type_name(), ".", name, "' cannot be read"));
  }
  return p->get(*this);
}

std::vector<std::string> Object::IncomingLinkNames() const {
  std::vector<std::string> out;
  for (const LinkRef& r : incoming_)
    out.push_back(absl::StrCat(r.other->CanonicalPath(), ".", r.prop->name));
  return out;
}

void Object::TrackLink(const PropertyInfo* prop, Object* target) {
  // Forget the previous target of this property.
  for (auto it = outgoing_.begin(); it != outgoing_.end(); ++it) {
    if (it->prop == prop) {
      EraseRef(it->other->incoming_, this, prop);
      outgoing_.erase(it);
      break;
    }
  }
  if (target != nullptr) {
    outgoing_.push_back(LinkRef{target, prop});
    target->incoming_.push_back(LinkRef{this, prop});
  }
}

std::unique_ptr<Object> NewRoot(TypeRegistry& registry) {
  auto root = registry.Create("container");
  VDEV_CHECK(root.ok());
  (*root)->MakeRoot();
  return std::move(*root);
}

namespace internal {

absl::StatusOr<Object*> ResolveLinkTarget(Object& o, absl::string_view name,
                                          absl::string_view target_type, absl::string_view value) {
  auto target = o.Resolve(value);
  if (!target.ok() && target.status().code() == absl::StatusCode::kInvalidArgument) {
    return absl::InvalidArgumentError(absl::StrCat("Property '", o.type_name(), ".", name,
                                                   "' can't take value '", value,
                                                   "': ", target.status().message()));
  }
  if (!target.ok()) {
    return absl::NotFoundError(
        absl::StrCat("Property '", o.type_name(), ".", name, "' can't find value '", value, "'"));
  }
  if (!(*target)->IsA(target_type)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Property '", o.type_name(), ".", name, "' can't take value '", value, "': '",
                     (*target)->CanonicalPath(), "' is a '", (*target)->type_name(), "', not a '",
                     target_type, "'"));
  }
  if (*target == &o) {
    return absl::InvalidArgumentError(
        absl::StrCat("Property '", o.type_name(), ".", name, "' can't link an object to itself"));
  }
  return *target;
}

}  // namespace internal
}  // namespace vdev::qom
