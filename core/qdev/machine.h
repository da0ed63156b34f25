// Machine: the root of the composition tree, the system bus, and device_add / device_del.
//
// A Machine owns the whole tree:
//   /                       root container
//   /machine                the Machine itself
//   /machine/peripheral/<id>, /machine/peripheral-anon/device[N]   user devices
//   /machine/unattached     board devices without a name of their own (and the system bus)
//   /objects, /netdevs, /chardevs                                 -object / -netdev / -chardev
//
// and the machine's hardware view: guest RAM (GuestMemory, memfd-backed, `ram-size`), the
// guest-physical memory and port-I/O address spaces a VMM forwards its trapped accesses into,
// and the interrupt router that ends in the VMM's IrqSink.
//
// Example:
//   VDEV_ASSIGN_OR_RETURN(std::unique_ptr<Machine> m, Machine::Create("pc"));
//   VDEV_ASSIGN_OR_RETURN(DeviceState* nic, m->DeviceAdd("virtio-net-pci,id=nic0"));
//   m->Done();                       // cold plug over; later device_add is hotplug
//   VDEV_RETURN_IF_ERROR(m->DeviceDel("nic0"));
//
// A failed DeviceAdd or ObjectAdd leaves nothing behind: no object in the tree, no id taken, no
// bus slot or other resource held.
//
// Thread-safety: control-plane thread only.
#ifndef VDEV_CORE_QDEV_MACHINE_H_
#define VDEV_CORE_QDEV_MACHINE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/loop/iothread.h"
#include "core/memory/guest_memory.h"
#include "core/memory/irq.h"
#include "core/memory/memory.h"
#include "core/qdev/bus.h"
#include "core/qdev/device.h"
#include "core/qdev/options.h"
#include "core/qdev/realize_context.h"
#include "core/qdev/sysbus.h"
#include "qom/object.h"
#include "qom/user_creatable.h"

namespace vdev {

class Machine;
class MachineClass : public qom::ObjectClass {
 public:
  // Chosen when -machine names no type.
  bool is_default = false;
};

class Machine : public qom::Object, public RealizeContext {
 public:
  static constexpr char kTypeName[] = "machine";
  static constexpr bool kAbstract = true;
  using Parent = qom::Object;
  using Class = MachineClass;
  static void ClassInit(MachineClass& k);

  // Builds a machine from "-machine" options ("pc", "type=pc,...", or "" for the default type):
  // creates it, sets its properties, runs Init(). NotFound for an unknown type.
  static absl::StatusOr<std::unique_ptr<Machine>> Create(
      absl::string_view options, qom::TypeRegistry& registry = qom::TypeRegistry::Global());
  // The name of the default machine type ("" when none is registered).
  static std::string DefaultType(qom::TypeRegistry& registry = qom::TypeRegistry::Global());

  Machine();
  ~Machine() override;

  qom::Object& root() { return *root_; }
  SystemBus& sysbus() { return *sysbus_; }
  qom::Object& peripheral() { return *peripheral_; }
  qom::Object& peripheral_anon() { return *peripheral_anon_; }
  qom::Object& unattached() { return *unattached_; }

  // ---- devices ----
  // -device / device_add. See the error catalogue in docs/options.md.
  absl::StatusOr<DeviceState*> DeviceAdd(absl::string_view options);
  absl::StatusOr<DeviceState*> DeviceAdd(QemuOpts opts);
  // device_del by id or QOM path. Devices on the device's buses go first.
  absl::Status DeviceDel(absl::string_view id_or_path);
  // A user device by id, or nullptr.
  DeviceState* FindDevice(absl::string_view id) const;
  // A bus by name ("pci.0"), searching the qtree, or nullptr.
  BusState* FindBus(absl::string_view name);

  // Board construction: plugs `dev` on `bus` (nullptr: a bus-less device) and realizes it.
  // `child_name` places it at /machine/<child_name>; empty: /machine/unattached/device[N].
  absl::StatusOr<DeviceState*> AddBoardDevice(std::unique_ptr<DeviceState> dev, BusState* bus,
                                              std::string child_name = "");

  // ---- -object / -netdev / -chardev ----
  // `option` is "object", "netdev" or "chardev".
  absl::StatusOr<qom::Object*> ObjectAdd(absl::string_view option, absl::string_view options);
  absl::StatusOr<qom::Object*> ObjectAdd(absl::string_view option, QemuOpts opts);
  absl::Status ObjectDel(absl::string_view option, absl::string_view id);

  // ---- hardware ----
  GuestMemory& guest_memory() { return *guest_memory_; }
  // Roots of the guest-physical memory map and of the port-I/O space (64 KiB).
  MemoryRegion& system_memory() { return *system_memory_; }
  MemoryRegion& system_io() { return *system_io_; }
  // Where a VMM dispatches trapped MMIO and port I/O.
  AddressSpace& memory_space() { return *memory_space_; }
  AddressSpace& io_space() { return *io_space_; }
  // Interrupts from devices; set the VMM's sink with irq().set_sink(&sink).
  IrqRouter& irq() { return irq_router_; }
  uint64_t ram_size() const { return ram_size_.bytes; }
  // The machine's main loop (QEMU's main loop): host fds of backends and devices that are not
  // linked to an iothread (a TAP, a socket) are served here, on a thread the machine starts on
  // first use and stops after every device and backend is gone.
  EventLoop& main_loop() override;

  // ---- lifecycle ----
  // Ends cold plug: later DeviceAdd/DeviceDel are hotplug and need hotpluggable devices and buses.
  void Done() { done_ = true; }
  bool done() const { return done_; }
  // Resets every device, bus by bus, children first.
  void Reset();

  // A device tree (DTB) describing the board for a kernel, for boards that have one (`virt`).
  // Unimplemented for the others.
  virtual absl::StatusOr<std::vector<uint8_t>> GenerateDtb();

 protected:
  // Builds the board. Overrides call Parent::Init() first (it creates the system bus).
  virtual absl::Status Init();

 private:
  absl::StatusOr<BusState*> ChooseBus(const DeviceClass& dc, const std::string& driver,
                                      std::optional<std::string> bus_name);
  absl::StatusOr<qom::Object*> AttachToTree(std::unique_ptr<DeviceState> dev, const std::string& id,
                                            std::string* anon_name);
  absl::Status PlugAndRealize(DeviceState& dev, BusState* bus);
  void UnplugAndUnrealize(DeviceState& dev);
  void RemoveFromTree(DeviceState& dev);
  // User devices plugged behind `dev`'s buses, recursively, deepest first.
  void CollectUserDevicesBehind(DeviceState& dev, std::vector<DeviceState*>* out);

  // Every bus in the qtree, breadth first from the system bus.
  std::vector<BusState*> AllBuses();
  qom::TypeRegistry& registry() { return type().registry(); }

  std::unique_ptr<qom::Object> root_;
  qom::Object* peripheral_ = nullptr;
  qom::Object* peripheral_anon_ = nullptr;
  qom::Object* unattached_ = nullptr;
  SystemBus* sysbus_ = nullptr;
  std::vector<DeviceState*> busless_;  // realized devices that sit on no bus, in plug order
  uint64_t next_anon_ = 0;
  uint64_t next_unattached_ = 0;
  bool done_ = false;

  qom::Size ram_size_;
  IrqRouter irq_router_{nullptr};
  std::unique_ptr<GuestMemory> guest_memory_;
  std::unique_ptr<MemoryRegion> system_memory_;
  std::unique_ptr<MemoryRegion> system_io_;
  std::unique_ptr<AddressSpace> memory_space_;
  std::unique_ptr<AddressSpace> io_space_;
  std::vector<std::unique_ptr<MemoryRegion>> ram_regions_;
  std::unique_ptr<IOThread> main_loop_;

 protected:
  // Maps guest RAM [gpa, gpa + size) (allocated in guest_memory()) into system_memory().
  absl::Status AddRamRegion(GuestAddr gpa, uint64_t size, std::string name);
};

// The empty machine: a system bus and nothing else ("-machine none").
class NoneMachine : public Machine {
 public:
  static constexpr char kTypeName[] = "none";
  using Parent = Machine;
  static void ClassInit(MachineClass& k);
};

// A well-formed id: a letter, then letters, digits, '-', '.', '_' (QEMU's id_wellformed).
bool IsWellFormedId(absl::string_view id);

}  // namespace vdev

#endif  // VDEV_CORE_QDEV_MACHINE_H_
