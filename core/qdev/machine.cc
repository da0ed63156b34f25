#include "core/qdev/machine.h"

#include <algorithm>
#include <deque>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"

namespace vdev {

bool IsWellFormedId(absl::string_view id) {
  if (id.empty() || !absl::ascii_isalpha(id[0])) return false;
  for (char c : id) {
    if (!(absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_')) return false;
  }
  return true;
}

std::string Machine::DefaultType(qom::TypeRegistry& registry) {
  for (const qom::TypeImpl* t : registry.TypesOf(kTypeName)) {
    if (static_cast<const MachineClass&>(t->klass()).is_default) return t->name();
  }
  return NoneMachine::kTypeName;
}

absl::StatusOr<std::unique_ptr<Machine>> Machine::Create(absl::string_view options,
                                                         qom::TypeRegistry& registry) {
  QemuOpts opts;
  if (!options.empty()) {
    VDEV_ASSIGN_OR_RETURN(opts, QemuOpts::Parse(options, "type"));
  }
  std::string type = opts.Take("type").value_or(DefaultType(registry));
  const qom::TypeImpl* t = registry.Find(type);
  const qom::TypeImpl* base = registry.Find(kTypeName);
  if (t == nullptr || base == nullptr || !t->IsA(base) || t->abstract()) {
    return absl::NotFoundError(
        absl::StrCat("unsupported machine type '", type, "' (use -machine help to list them)"));
  }
  VDEV_ASSIGN_OR_RETURN(std::unique_ptr<qom::Object> obj, registry.Create(type));
  std::unique_ptr<Machine> m(qom::DynamicCast<Machine>(obj.release()));

  m->root_ = qom::NewRoot(registry);
  VDEV_RETURN_IF_ERROR(m->root_->AddBorrowedChild("machine", m.get()));
  auto container = [&](qom::Object& parent, std::string name) -> absl::StatusOr<qom::Object*> {
    VDEV_ASSIGN_OR_RETURN(auto c, registry.Create("container"));
    return parent.AddChild(std::move(name), std::move(c));
  };
  for (const qom::ObjectGroup& g : qom::AllObjectGroups()) {
    VDEV_RETURN_IF_ERROR(container(*m->root_, g.container).status());
  }
  VDEV_ASSIGN_OR_RETURN(m->peripheral_, container(*m, "peripheral"));
  VDEV_ASSIGN_OR_RETURN(m->peripheral_anon_, container(*m, "peripheral-anon"));
  VDEV_ASSIGN_OR_RETURN(m->unattached_, container(*m, "unattached"));

  for (const auto& [k, v] : opts.entries()) VDEV_RETURN_IF_ERROR(m->SetProperty(k, v));
  VDEV_RETURN_IF_ERROR(m->Init());
  return m;
}

void Machine::ClassInit(MachineClass& k) {
  k.AddProperty(qom::Prop("ram-size", &Machine::ram_size_, qom::Size{0},
                          "guest RAM (memfd-backed), e.g. 128M or 2G"));
}

Machine::Machine()
    : system_memory_(MemoryRegion::CreateContainer("system", ~uint64_t{0})),
      system_io_(MemoryRegion::CreateContainer("io", 0x10000)),
      memory_space_(std::make_unique<AddressSpace>("memory", system_memory_.get())),
      io_space_(std::make_unique<AddressSpace>("I/O", system_io_.get())) {}

absl::Status Machine::AddRamRegion(GuestAddr gpa, uint64_t size, std::string name) {
  if (absl::Status s = guest_memory_->AddRam(gpa, size, name); !s.ok()) {
    return Annotate(s, absl::StrFormat("machine '%s': cannot provide %u bytes of guest RAM '%s'",
                                       type_name(), size, name));
  }
  uint8_t* host = guest_memory_->HostPointer(gpa, size, true);
  ram_regions_.push_back(MemoryRegion::CreateRam(std::move(name), size, host));
  system_memory_->AddSubregion(gpa.value(), ram_regions_.back().get());
  return absl::OkStatus();
}

Machine::~Machine() {
  // Unrealize everything, last plugged first, while the tree is intact.
  for (auto it = busless_.rbegin(); it != busless_.rend(); ++it) (*it)->UnrealizeDevice();
  if (sysbus_ != nullptr) {
    std::vector<DeviceState*> devs = sysbus_->devices();
    for (auto it = devs.rbegin(); it != devs.rend(); ++it) (*it)->UnrealizeDevice();
  }
  // Take every device off its bus, deepest buses first, so that no device is destroyed while
  // still plugged (buses must never see a half-destroyed device).
  std::vector<BusState*> buses = AllBuses();
  for (auto b = buses.rbegin(); b != buses.rend(); ++b) {
    std::vector<DeviceState*> devs = (*b)->devices();
    for (auto d = devs.rbegin(); d != devs.rend(); ++d) (*b)->Detach(**d);
  }
  // Then destroy: user devices, board devices, and last the backends they linked to.
  if (peripheral_) DeleteChild("peripheral");
  if (peripheral_anon_) DeleteChild("peripheral-anon");
  for (qom::Object* c : children()) DeleteChild(c->name());
  root_.reset();
  main_loop_.reset();  // after everything that could be registered on it
}

EventLoop& Machine::main_loop() {
  if (main_loop_ == nullptr) {
    auto t = qom::MakeChecked<IOThread>();
    absl::Status s = t->Complete();
    VDEV_CHECK(s.ok() && "cannot start the main loop thread");
    main_loop_ = std::move(t);
  }
  return main_loop_->loop();
}

absl::Status Machine::Init() {
  VDEV_ASSIGN_OR_RETURN(guest_memory_, GuestMemory::Create());
  VDEV_ASSIGN_OR_RETURN(auto bus_obj, registry().Create(SystemBus::kTypeName));
  std::unique_ptr<SystemBus> bus(qom::DynamicCast<SystemBus>(bus_obj.release()));
  // QEMU's qtree root is "main-system-bus"; in the QOM tree it sits at /machine/unattached/sysbus.
  VDEV_ASSIGN_OR_RETURN(qom::Object * holder, ([&]() -> absl::StatusOr<qom::Object*> {
                          VDEV_ASSIGN_OR_RETURN(auto c, registry().Create("container"));
                          return unattached_->AddChild("sysbus", std::move(c));
                        }()));
  VDEV_ASSIGN_OR_RETURN(qom::Object * added, holder->AddChild("main-system-bus", std::move(bus)));
  sysbus_ = static_cast<SystemBus*>(added);
  return absl::OkStatus();
}

std::vector<BusState*> Machine::AllBuses() {
  std::vector<BusState*> out;
  std::deque<BusState*> queue;
  if (sysbus_) queue.push_back(sysbus_);
  for (DeviceState* d : busless_) {
    for (BusState* b : d->child_buses()) queue.push_back(b);
  }
  while (!queue.empty()) {
    BusState* b = queue.front();
    queue.pop_front();
    out.push_back(b);
    for (DeviceState* d : b->devices()) {
      for (BusState* c : d->child_buses()) queue.push_back(c);
    }
  }
  return out;
}

BusState* Machine::FindBus(absl::string_view name) {
  if (name.find('/') != absl::string_view::npos) {
    auto o = root_->Resolve(name);
    return o.ok() ? qom::DynamicCast<BusState>(*o) : nullptr;
  }
  for (BusState* b : AllBuses()) {
    if (b->bus_name() == name) return b;
  }
  return nullptr;
}

DeviceState* Machine::FindDevice(absl::string_view id) const {
  return qom::DynamicCast<DeviceState>(peripheral_->FindChild(id));
}

absl::StatusOr<BusState*> Machine::ChooseBus(const DeviceClass& dc, const std::string& driver,
                                             std::optional<std::string> bus_name) {
  if (dc.bus_type.empty()) {
    if (bus_name) {
      return absl::InvalidArgumentError(
          absl::StrCat("Device '", driver, "' does not plug into a bus"));
    }
    return nullptr;
  }
  if (bus_name) {
    BusState* b = FindBus(*bus_name);
    if (b == nullptr) return absl::NotFoundError(absl::StrCat("Bus '", *bus_name, "' not found"));
    if (!b->IsA(dc.bus_type)) {
      return absl::InvalidArgumentError(absl::StrCat("Device '", driver, "' can't go on ",
                                                     b->type_name(), " bus '", b->bus_name(), "'"));
    }
    if (b->full())
      return absl::ResourceExhaustedError(absl::StrCat("Bus '", *bus_name, "' is full"));
    return b;
  }
  bool saw_full = false;
  for (BusState* b : AllBuses()) {
    if (!b->IsA(dc.bus_type)) continue;
    if (b->full()) {
      saw_full = true;
      continue;
    }
    return b;
  }
  if (saw_full) {
    return absl::ResourceExhaustedError(
        absl::StrCat("every '", dc.bus_type, "' bus is full; no room for device '", driver, "'"));
  }
  return absl::NotFoundError(
      absl::StrCat("No '", dc.bus_type, "' bus found for device '", driver, "'"));
}

absl::StatusOr<DeviceState*> Machine::DeviceAdd(absl::string_view options) {
  VDEV_ASSIGN_OR_RETURN(QemuOpts opts, QemuOpts::Parse(options, "driver"));
  return DeviceAdd(std::move(opts));
}

absl::StatusOr<DeviceState*> Machine::DeviceAdd(QemuOpts opts) {
  if (opts.help()) return absl::InvalidArgumentError("help was requested; see DeviceHelp()");
  std::optional<std::string> driver = opts.Take("driver");
  if (!driver) return absl::InvalidArgumentError("Parameter 'driver' is missing");
  const qom::TypeImpl* t = registry().Find(*driver);
  if (t == nullptr || !t->klass().IsA(DeviceState::kTypeName)) {
    return absl::NotFoundError(absl::StrCat("'", *driver, "' is not a valid device model name"));
  }
  const auto& dc = static_cast<const DeviceClass&>(t->klass());
  if (t->abstract() || !dc.user_creatable) {
    return absl::InvalidArgumentError(
        absl::StrCat("Parameter 'driver' expects a pluggable device type, got '", *driver, "'"));
  }
  std::optional<std::string> given_id = opts.Take("id");
  std::string id = given_id.value_or("");
  if (given_id) {
    if (!IsWellFormedId(id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("Parameter 'id' expects an identifier, got '", id, "'"));
    }
    if (peripheral_->FindChild(id) != nullptr) {
      return absl::AlreadyExistsError(absl::StrCat("Duplicate ID '", id, "' for device"));
    }
  }
  VDEV_ASSIGN_OR_RETURN(BusState * bus, ChooseBus(dc, *driver, opts.Take("bus")));
  if (done_) {
    if (!dc.hotpluggable) {
      return absl::FailedPreconditionError(
          absl::StrCat("Device '", *driver, "' does not support hotplugging"));
    }
    if (bus != nullptr && bus->hotplug_handler() == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("Bus '", bus->bus_name(), "' does not support hotplugging"));
    }
  }

  VDEV_ASSIGN_OR_RETURN(std::unique_ptr<qom::Object> obj, registry().Create(*driver));
  std::unique_ptr<DeviceState> dev(qom::DynamicCast<DeviceState>(obj.release()));
  dev->set_id(id);
  std::string anon_name;
  VDEV_ASSIGN_OR_RETURN(qom::Object * placed, AttachToTree(std::move(dev), id, &anon_name));
  DeviceState& d = *static_cast<DeviceState*>(placed);

  // Properties are set in the tree so that links resolve; on any failure the device leaves it.
  for (const auto& [key, value] : opts.entries()) {
    absl::Status s = d.SetProperty(key, value);
    if (!s.ok()) {
      RemoveFromTree(d);
      return s;
    }
  }
  absl::Status s = PlugAndRealize(d, bus);
  if (!s.ok()) {
    RemoveFromTree(d);
    return s;
  }
  if (!anon_name.empty()) ++next_anon_;
  return &d;
}

absl::StatusOr<qom::Object*> Machine::AttachToTree(std::unique_ptr<DeviceState> dev,
                                                   const std::string& id, std::string* anon_name) {
  if (!id.empty()) return peripheral_->AddChild(id, std::move(dev));
  // The counter only advances when the device is kept (see DeviceAdd), so a failed add
  // leaves no trace, not even a gap in the numbering.
  *anon_name = absl::StrCat("device[", next_anon_, "]");
  return peripheral_anon_->AddChild(*anon_name, std::move(dev));
}

absl::Status Machine::PlugAndRealize(DeviceState& dev, BusState* bus) {
  HotplugHandler* handler = nullptr;
  if (bus != nullptr) {
    VDEV_RETURN_IF_ERROR(bus->Attach(dev));
    handler = bus->hotplug_handler();
    if (handler != nullptr) {
      absl::Status s = handler->PrePlug(*bus, dev);
      if (!s.ok()) {
        bus->Detach(dev);
        return s;
      }
    }
  }
  absl::Status s = dev.RealizeDevice(this);
  if (!s.ok()) {
    if (bus != nullptr) bus->Detach(dev);
    return s;
  }
  if (handler != nullptr) handler->Plug(*bus, dev);
  if (bus == nullptr) busless_.push_back(&dev);
  return absl::OkStatus();
}

void Machine::UnplugAndUnrealize(DeviceState& dev) {
  BusState* bus = dev.parent_bus();
  dev.UnrealizeDevice();
  if (bus != nullptr) {
    if (HotplugHandler* h = bus->hotplug_handler()) h->Unplug(*bus, dev);
    bus->Detach(dev);
  }
  busless_.erase(std::remove(busless_.begin(), busless_.end(), &dev), busless_.end());
}

void Machine::RemoveFromTree(DeviceState& dev) {
  qom::Object* parent = dev.parent();
  if (parent != nullptr) parent->DeleteChild(dev.name());
}

void Machine::CollectUserDevicesBehind(DeviceState& dev, std::vector<DeviceState*>* out) {
  for (BusState* bus : dev.child_buses()) {
    for (DeviceState* c : bus->devices()) {
      if (c->parent() == peripheral_ || c->parent() == peripheral_anon_) {
        CollectUserDevicesBehind(*c, out);
        out->push_back(c);  // deepest first
      }
    }
  }
}

// Finds an object of the subtree of `root` that some object outside it links to.
static const qom::Object* LinkedFromOutside(qom::Object& root, std::string* user) {
  const std::string prefix = root.CanonicalPath() + "/";
  std::vector<qom::Object*> stack = {&root};
  while (!stack.empty()) {
    qom::Object* o = stack.back();
    stack.pop_back();
    for (const std::string& u : o->IncomingLinkNames()) {
      if (u.rfind(prefix, 0) != 0) {
        *user = u;
        return o;
      }
    }
    for (qom::Object* c : o->children()) stack.push_back(c);
  }
  return nullptr;
}

absl::Status Machine::DeviceDel(absl::string_view id_or_path) {
  DeviceState* dev = FindDevice(id_or_path);
  if (dev == nullptr && !id_or_path.empty()) {
    auto o = root_->Resolve(id_or_path);
    if (!o.ok() && o.status().code() == absl::StatusCode::kInvalidArgument) return o.status();
    if (o.ok()) dev = qom::DynamicCast<DeviceState>(*o);
  }
  if (dev == nullptr) {
    return absl::NotFoundError(absl::StrCat("Device '", id_or_path, "' not found"));
  }
  if (dev->parent() != peripheral_ && dev->parent() != peripheral_anon_) {
    return absl::FailedPreconditionError(
        absl::StrCat(dev->DisplayName(), " is part of the board and cannot be removed"));
  }
  BusState* bus = dev->parent_bus();
  if (done_) {
    if (!dev->device_class().hotpluggable) {
      return absl::FailedPreconditionError(
          absl::StrCat("Device '", dev->type_name(), "' does not support hotplugging"));
    }
    if (bus != nullptr && bus->hotplug_handler() == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("Bus '", bus->bus_name(), "' does not support hotplugging"));
    }
  }
  // Everything that goes with the device is checked before anything changes, so a refused
  // device_del changes nothing: the device, the user devices behind its buses, their subtrees.
  std::vector<DeviceState*> behind;
  CollectUserDevicesBehind(*dev, &behind);
  behind.push_back(dev);
  for (DeviceState* d : behind) {
    std::string user;
    if (const qom::Object* used = LinkedFromOutside(*d, &user)) {
      return absl::FailedPreconditionError(absl::StrCat(
          d == dev ? dev->DisplayName() : absl::StrCat(dev->DisplayName(), ": ", d->DisplayName()),
          used == d ? "" : absl::StrCat(" ('", used->CanonicalPath(), "')"), " is in use by ",
          user));
    }
  }
  if (bus != nullptr && bus->hotplug_handler() != nullptr) {
    VDEV_RETURN_IF_ERROR(bus->hotplug_handler()->UnplugRequest(*bus, *dev));
  }
  // The parent's unplug carries the devices behind it (deepest first).
  for (DeviceState* d : behind) {
    UnplugAndUnrealize(*d);
    RemoveFromTree(*d);
  }
  return absl::OkStatus();
}

absl::StatusOr<DeviceState*> Machine::AddBoardDevice(std::unique_ptr<DeviceState> dev,
                                                     BusState* bus, std::string child_name) {
  const bool anon = child_name.empty();
  if (anon) child_name = absl::StrCat("device[", next_unattached_, "]");
  qom::Object& parent = anon ? *unattached_ : static_cast<qom::Object&>(*this);
  VDEV_ASSIGN_OR_RETURN(qom::Object * placed, parent.AddChild(child_name, std::move(dev)));
  DeviceState& d = *static_cast<DeviceState*>(placed);
  absl::Status s = PlugAndRealize(d, bus);
  if (!s.ok()) {
    RemoveFromTree(d);
    return s;
  }
  if (anon) ++next_unattached_;
  return &d;
}

absl::StatusOr<qom::Object*> Machine::ObjectAdd(absl::string_view option,
                                                absl::string_view options) {
  const qom::ObjectGroup& g = qom::ObjectGroupFor(option);
  VDEV_ASSIGN_OR_RETURN(QemuOpts opts, QemuOpts::Parse(options, g.implied_key));
  return ObjectAdd(option, std::move(opts));
}

absl::StatusOr<qom::Object*> Machine::ObjectAdd(absl::string_view option, QemuOpts opts) {
  const qom::ObjectGroup& g = qom::ObjectGroupFor(option);
  if (opts.help()) return absl::InvalidArgumentError("help was requested");
  std::optional<std::string> kind = opts.Take(g.implied_key);
  if (!kind)
    return absl::InvalidArgumentError(absl::StrCat("Parameter '", g.implied_key, "' is missing"));
  const std::string type_name = g.type_prefix + *kind;
  const qom::TypeImpl* t = registry().Find(type_name);
  if (t == nullptr || t->abstract() || !t->klass().IsA(g.base_type)) {
    return absl::InvalidArgumentError(absl::StrCat("Parameter '", g.implied_key, "' expects a ",
                                                   g.noun, " type, got '", *kind, "'"));
  }
  std::optional<std::string> id = opts.Take("id");
  if (!id) return absl::InvalidArgumentError("Parameter 'id' is missing");
  if (!IsWellFormedId(*id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Parameter 'id' expects an identifier, got '", *id, "'"));
  }
  qom::Object* container = root_->FindChild(g.container);
  if (container->FindChild(*id) != nullptr) {
    return absl::AlreadyExistsError(absl::StrCat("Duplicate ID '", *id, "' for ", g.option));
  }
  VDEV_ASSIGN_OR_RETURN(std::unique_ptr<qom::Object> obj, registry().Create(type_name));
  qom::UserCreatable* uc = qom::DynamicCast<qom::UserCreatable>(obj.get());
  if (uc == nullptr) {
    return absl::InternalError(absl::StrCat("type '", type_name, "' does not implement ",
                                            qom::UserCreatable::kTypeName, " in C++"));
  }
  VDEV_ASSIGN_OR_RETURN(qom::Object * placed, container->AddChild(*id, std::move(obj)));
  // An object that serves fds gets the machine's loop the way a device does (realize context).
  if (auto* user = dynamic_cast<ContextUser*>(placed); user != nullptr) {
    user->set_realize_context(this);
  }
  absl::Status s;
  for (const auto& [key, value] : opts.entries()) {
    s = placed->SetProperty(key, value);
    if (!s.ok()) break;
  }
  if (s.ok()) s = uc->Complete();
  if (!s.ok()) {
    container->DeleteChild(*id);
    return s;
  }
  return placed;
}

absl::Status Machine::ObjectDel(absl::string_view option, absl::string_view id) {
  const qom::ObjectGroup& g = qom::ObjectGroupFor(option);
  qom::Object* container = root_->FindChild(g.container);
  qom::Object* obj = container->FindChild(id);
  if (obj == nullptr) {
    return absl::NotFoundError(absl::StrCat(g.option, " '", id, "' not found"));
  }
  if (obj->HasIncomingLinks()) {
    return absl::FailedPreconditionError(
        absl::StrCat(g.option, " '", id, "' is in use by ", obj->IncomingLinkNames().front()));
  }
  if (auto* uc = qom::DynamicCast<qom::UserCreatable>(obj); uc && !uc->CanBeDeleted()) {
    return absl::FailedPreconditionError(
        absl::StrCat(g.option, " '", id, "' cannot be deleted now"));
  }
  container->DeleteChild(id);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> Machine::GenerateDtb() {
  return absl::UnimplementedError(
      absl::StrCat("machine '", type_name(), "' has no device tree (-machine virt has one)"));
}

void Machine::Reset() {
  for (DeviceState* d : sysbus_->devices()) d->ResetDevice();
  for (DeviceState* d : busless_) d->ResetDevice();
}

void NoneMachine::ClassInit(MachineClass& k) { k.description = "empty machine"; }

VDEV_REGISTER_TYPE(Machine);
VDEV_REGISTER_TYPE(NoneMachine);

}  // namespace vdev
