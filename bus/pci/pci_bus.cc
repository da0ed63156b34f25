#include "bus/pci/pci_bus.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/checked_math.h"
#include "core/base/logging.h"

namespace vdev::pci {
namespace {

std::string Occupant(const PCIDevice& d) {
  return d.id().empty() ? d.type_name() : absl::StrCat(d.type_name(), ",id=", d.id());
}

}  // namespace

void PCIBus::ClassInit(BusClass& k) {
  k.description = "a conventional PCI bus";
  k.max_children = kSlotsPerBus * kFunctionsPerSlot;
}

absl::Status PCIBus::CheckPlug(DeviceState& dev) {
  auto* pd = qom::DynamicCast<PCIDevice>(&dev);
  if (pd == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(dev.type_name(), " is not a PCI device"));
  }
  qom::PciDevFn want = pd->addr_;
  if (want.is_auto()) {
    bool found = false;
    for (int slot = first_auto_slot_; slot < kSlotsPerBus && !found; ++slot) {
      bool empty = true;
      for (int fn = 0; fn < kFunctionsPerSlot; ++fn) {
        if (slots_[static_cast<size_t>(slot * 8 + fn)] != nullptr) empty = false;
      }
      if (empty) {
        want = qom::PciDevFn::Of(slot, 0);
        found = true;
      }
    }
    if (!found) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "PCI: no slot/function available for ", dev.type_name(), ", all in use or reserved"));
    }
  }
  if (PCIDevice* other = device_at(want.devfn)) {
    return absl::AlreadyExistsError(
        absl::StrFormat("PCI: slot %d function %d not available for %s, in use by %s", want.slot(),
                        want.fn(), dev.type_name(), Occupant(*other)));
  }
  // Multifunction: function 0 decides whether the other functions of the slot may exist.
  if (want.fn() != 0) {
    PCIDevice* f0 = device_at(want.slot() * 8);
    if (f0 != nullptr && !f0->multifunction()) {
      return absl::FailedPreconditionError(
          absl::StrFormat("PCI: single function device can't be populated in function %x.%x",
                          want.slot(), want.fn()));
    }
  } else if (!pd->multifunction()) {
    for (int fn = 1; fn < kFunctionsPerSlot; ++fn) {
      if (slots_[static_cast<size_t>(want.slot() * 8 + fn)] != nullptr) {
        return absl::FailedPreconditionError(
            absl::StrFormat("PCI: %x.0 indicates single function, but %x.%x is already populated",
                            want.slot(), want.slot(), fn));
      }
    }
  }
  pd->addr_ = want;
  return absl::OkStatus();
}

void PCIBus::OnAttach(DeviceState& dev) {
  auto* pd = static_cast<PCIDevice*>(&dev);  // CheckPlug verified the type
  absl::WriterMutexLock l(&config_mutex());
  slots_[static_cast<size_t>(pd->addr_.devfn)] = &dev;
}

void PCIBus::OnDetach(DeviceState& dev) {
  // No downcast here: a device can be detached from its own destructor, when only its
  // DeviceState part is left. Compare base pointers instead.
  absl::WriterMutexLock l(&config_mutex());
  for (DeviceState*& slot : slots_) {
    if (slot == &dev) slot = nullptr;
  }
}

void PCIBus::BeforeUnrealize(DeviceState& dev) {
  auto* pd = static_cast<PCIDevice*>(&dev);
  {
    // Exclusive: config cycles already looking at the device finish first; later ones skip it.
    absl::WriterMutexLock l(&config_mutex());
    pd->unplugging_.store(true);
  }
  UnmapDevice(*pd);
}

const PciHostContext* PCIBus::host_context() const {
  const PCIBus* b = this;
  for (int depth = 0; b != nullptr && depth < 256; ++depth) {
    if (b->host_context_ != nullptr) return b->host_context_;
    PCIDevice* br = b->bridge();
    b = br ? br->pci_bus() : nullptr;
  }
  return nullptr;
}

PCIDevice* PCIBus::bridge() const { return qom::DynamicCast<PCIDevice>(parent_device()); }

PCIBus* PCIBus::root_bus() {
  PCIBus* b = this;
  for (int depth = 0; depth < 256; ++depth) {
    PCIDevice* br = b->bridge();
    if (br == nullptr || br->pci_bus() == nullptr) return b;
    b = br->pci_bus();
  }
  return b;
}

namespace {

uint32_t Cfg(PCIDevice& d, uint32_t off, int size) { return d.ConfigRead(off, size); }

// Child buses of the bridges plugged on `bus`.
// Realized functions of `bus` that are not leaving, in devfn order.
std::vector<PCIDevice*> LiveFunctions(const PCIBus& bus) {
  std::vector<PCIDevice*> out;
  for (int devfn = 0; devfn < kSlotsPerBus * kFunctionsPerSlot; ++devfn) {
    PCIDevice* pd = bus.device_at(devfn);
    if (pd != nullptr && pd->live()) out.push_back(pd);
  }
  return out;
}

std::vector<std::pair<PCIDevice*, PCIBus*>> BridgesOn(const PCIBus& bus) {
  std::vector<std::pair<PCIDevice*, PCIBus*>> out;
  for (PCIDevice* pd : LiveFunctions(bus)) {
    if (pd->pci_class().header_type != kHeaderTypeBridge) continue;
    for (BusState* c : pd->child_buses()) {
      if (auto* pb = qom::DynamicCast<PCIBus>(c)) out.emplace_back(pd, pb);
    }
  }
  return out;
}

}  // namespace

PCIBus* PCIBus::FindBusByNumber(uint8_t bus) {
  if (bus_number() == bus) return this;
  for (auto [br, child] : BridgesOn(*this)) {
    const uint8_t secondary = static_cast<uint8_t>(Cfg(*br, kSecondaryBus, 1));
    const uint8_t subordinate = static_cast<uint8_t>(Cfg(*br, kSubordinateBus, 1));
    if (secondary == 0 || bus < secondary || bus > subordinate) continue;
    if (PCIBus* b = child->FindBusByNumber(bus)) return b;
  }
  return nullptr;
}

int PCIBus::RouteIntx(int slot, int pin) {
  PCIBus* b = this;
  for (int depth = 0; depth < 256; ++depth) {
    PCIDevice* br = b->bridge();
    if (br == nullptr || br->pci_bus() == nullptr) {
      const PciHostContext* ctx = b->host_context();
      return ctx && ctx->route_intx ? ctx->route_intx(slot, pin) : -1;
    }
    pin = (pin + slot) % 4;
    slot = br->devfn().slot();
    b = br->pci_bus();
  }
  return -1;
}

namespace {

struct Window {
  uint64_t base = 1, limit = 0;  // empty
  // A window with base above limit is closed (how firmware and OSes turn one off).
  bool Contains(uint64_t a, uint64_t size) const {
    return size != 0 && base <= limit && a >= base && a <= limit && size - 1 <= limit - a;
  }
};

struct Windows {
  bool io_on = true, mem_on = true;
  Window io{0, ~uint64_t{0}}, mem{0, ~uint64_t{0}}, pref{0, ~uint64_t{0}};
};

// The windows a bridge forwards, as programmed (PCI-to-PCI Bridge Architecture 1.2 §3.2.5).
Windows BridgeWindows(PCIDevice& br) {
  Windows w;
  const uint16_t cmd = static_cast<uint16_t>(Cfg(br, kCommand, 2));
  w.io_on = cmd & kCommandIo;
  w.mem_on = cmd & kCommandMemory;
  const uint32_t io_base = Cfg(br, kIoBase, 1), io_limit = Cfg(br, kIoLimit, 1);
  w.io.base = (io_base & 0xf0) << 8;
  w.io.limit = ((io_limit & 0xf0) << 8) | 0xfff;
  if ((io_base & 0xf) == 1) {
    w.io.base |= uint64_t{Cfg(br, kIoBaseUpper, 2)} << 16;
    w.io.limit |= uint64_t{Cfg(br, kIoLimitUpper, 2)} << 16;
  }
  w.mem.base = uint64_t{Cfg(br, kMemoryBase, 2) & 0xfff0} << 16;
  w.mem.limit = (uint64_t{Cfg(br, kMemoryLimit, 2) & 0xfff0} << 16) | 0xfffff;
  const uint32_t pb = Cfg(br, kPrefetchBase, 2), pl = Cfg(br, kPrefetchLimit, 2);
  w.pref.base = uint64_t{pb & 0xfff0} << 16;
  w.pref.limit = (uint64_t{pl & 0xfff0} << 16) | 0xfffff;
  if ((pb & 0xf) == 1) {
    w.pref.base |= uint64_t{Cfg(br, kPrefetchBaseUpper, 4)} << 32;
    w.pref.limit |= uint64_t{Cfg(br, kPrefetchLimitUpper, 4)} << 32;
  }
  return w;
}

struct Placement {
  PCIDevice* dev;
  int bar;
  uint64_t addr;  // kBarUnmapped: stays unmapped
};

// Where each BAR of the devices on `bus` (and behind its bridges) should be, given the windows
// of every bridge above (`up`).
void Collect(PCIBus& bus, const std::vector<Windows>& up, PCIDevice* skip,
             std::vector<Placement>* out) {
  for (PCIDevice* pd : LiveFunctions(bus)) {
    if (pd == skip) continue;
    const uint16_t cmd = pd->command();
    for (int i = 0; i < kNumBars; ++i) {
      const PciBar& b = pd->bar(i);
      if (b.size == 0) continue;
      uint64_t addr = pd->BarAddress(i);
      const bool on = b.is_io() ? (cmd & kCommandIo) : (cmd & kCommandMemory);
      const uint64_t space_last = b.is_io() ? 0xffff : b.is_64bit() ? ~uint64_t{0} : 0xffffffff;
      auto last = CheckedAdd<uint64_t>(addr, b.size - 1);
      // QEMU's rule: a BAR whose last byte is the top of its space is unmapped (sizing values).
      bool valid = on && addr != 0 && last && *last < space_last;
      for (const Windows& w : up) {
        if (!valid) break;
        if (b.is_io()) {
          valid = w.io_on && w.io.Contains(addr, b.size);
        } else {
          valid = w.mem_on && (w.mem.Contains(addr, b.size) ||
                               ((b.type & kBarMemPrefetch) && w.pref.Contains(addr, b.size)));
        }
      }
      out->push_back(Placement{pd, i, valid ? addr : kBarUnmapped});
    }
  }
  for (auto [br, child] : BridgesOn(bus)) {
    if (br == skip) continue;
    std::vector<Windows> deeper = up;
    deeper.push_back(BridgeWindows(*br));
    Collect(*child, deeper, skip, out);
  }
}

}  // namespace

void PCIBus::UnmapDevice(PCIDevice& dev) {
  PCIBus* root = root_bus();
  const PciHostContext* ctx = root->host_context();
  {
    absl::MutexLock l(&root->remap_mu_);
    MemoryTransaction t;
    for (PciBar& b : dev.bars_) {
      if (b.mapped_at == kBarUnmapped) continue;
      MemoryRegion* space = b.is_io() ? (ctx ? ctx->io : nullptr) : (ctx ? ctx->memory : nullptr);
      if (space != nullptr && b.region->container() == space)
        space->RemoveSubregion(b.region.get());
      b.mapped_at = kBarUnmapped;
    }
  }
  // BARs that overlapped this device's may map now. The device itself is skipped: it is leaving.
  root->UpdateMappingsSkipping(&dev);
}

void PCIBus::UpdateMappings() { root_bus()->UpdateMappingsSkipping(nullptr); }

void PCIBus::UpdateMappingsSkipping(PCIDevice* skip) {
  const PciHostContext* ctx = host_context();
  if (ctx == nullptr) return;
  absl::MutexLock l(&remap_mu_);
  std::vector<Placement> want;
  Collect(*this, {}, skip, &want);
  // Every BAR container of the hierarchy, to tell BARs from board regions in the address spaces.
  absl::flat_hash_set<const MemoryRegion*> bar_regions;
  for (const Placement& p : want) bar_regions.insert(p.dev->bar(p.bar).region.get());
  auto space_of = [&](const Placement& p) {
    return p.dev->bar(p.bar).is_io() ? ctx->io : ctx->memory;
  };
  // Overlaps: with board regions (RAM, config ports, ECAM), then between BARs.
  for (Placement& p : want) {
    if (p.addr == kBarUnmapped) continue;
    MemoryRegion* space = space_of(p);
    if (space == nullptr) {
      p.addr = kBarUnmapped;
      continue;
    }
    const uint64_t size = p.dev->bar(p.bar).size;
    for (MemoryRegion* r : space->subregions()) {
      if (bar_regions.contains(r) || !r->enabled()) continue;
      if (RangesOverlap(p.addr, size, r->offset(), r->size())) {
        VDEV_LOG_GUEST_ERROR(p.dev->counters(), "bar_overlap",
                             "%s: BAR%d at 0x%x overlaps '%s'; left unmapped", p.dev->DisplayName(),
                             p.bar, p.addr, r->name());
        p.addr = kBarUnmapped;
        break;
      }
    }
  }
  std::vector<bool> clash(want.size(), false);
  for (size_t i = 0; i < want.size(); ++i) {
    for (size_t j = i + 1; j < want.size(); ++j) {
      const Placement &a = want[i], &b = want[j];
      if (a.addr == kBarUnmapped || b.addr == kBarUnmapped || space_of(a) != space_of(b)) continue;
      if (RangesOverlap(a.addr, a.dev->bar(a.bar).size, b.addr, b.dev->bar(b.bar).size)) {
        clash[i] = clash[j] = true;
      }
    }
  }
  for (size_t i = 0; i < want.size(); ++i) {
    if (!clash[i]) continue;
    VDEV_LOG_GUEST_ERROR(want[i].dev->counters(), "bar_overlap",
                         "%s: BAR%d at 0x%x overlaps another BAR; left unmapped",
                         want[i].dev->DisplayName(), want[i].bar, want[i].addr);
    want[i].addr = kBarUnmapped;
  }
  // Apply, as one change of the address spaces.
  MemoryTransaction t;
  for (const Placement& p : want) {
    PciBar& b = p.dev->bars_[static_cast<size_t>(p.bar)];
    if (b.mapped_at == p.addr) continue;
    MemoryRegion* space = space_of(p);
    if (b.mapped_at != kBarUnmapped && b.region->container() != nullptr) {
      b.region->container()->RemoveSubregion(b.region.get());
    }
    b.mapped_at = kBarUnmapped;
    if (p.addr != kBarUnmapped && space != nullptr) {
      space->AddSubregion(p.addr, b.region.get(), /*priority=*/1);
      b.mapped_at = p.addr;
    }
  }
}

uint8_t PCIBus::bus_number() const {
  auto* bridge = qom::DynamicCast<PCIDevice>(parent_device());
  if (bridge == nullptr) return 0;
  return static_cast<uint8_t>(bridge->ConfigRead(kSecondaryBus, 1));
}

std::vector<std::string> PCIBus::DescribeDevice(const DeviceState& dev) const {
  const auto* pd = qom::DynamicCast<PCIDevice>(&dev);
  if (pd == nullptr) return {};
  const PCIDeviceClass& k = pd->pci_class();
  return {absl::StrFormat("class %s, addr %02x:%02x.%x, pci id %04x:%04x (sub %04x:%04x)",
                          PciClassName(k.class_id), bus_number(), pd->devfn().slot(),
                          pd->devfn().fn(), pd->vendor_id(), pd->device_id(),
                          pd->subsystem_vendor_id(), pd->subsystem_id())};
}

std::string PciClassName(uint16_t class_id) {
  switch (class_id) {
    case 0x0100:
      return "SCSI controller";
    case 0x0101:
      return "IDE controller";
    case 0x0106:
      return "SATA controller";
    case 0x0108:
      return "NVMe controller";
    case 0x0200:
      return "Ethernet controller";
    case 0x0280:
      return "Network controller";
    case 0x0300:
      return "VGA controller";
    case 0x0600:
      return "Host bridge";
    case 0x0601:
      return "ISA bridge";
    case 0x0604:
      return "PCI bridge";
    case 0x0780:
      return "Communication controller";
    case 0x00ff:
      return "Unclassified device";
    case 0x00ff << 8:
      return "Class ff00";
    default:
      break;
  }
  switch (class_id >> 8) {
    case 0x00:
      return "Unclassified device";
    case 0x01:
      return "Mass storage controller";
    case 0x02:
      return "Network controller";
    case 0x03:
      return "Display controller";
    case 0x06:
      return "Bridge";
    case 0x08:
      return "System peripheral";
    case 0x0c:
      return "Serial bus controller";
    case 0xff:
      return absl::StrFormat("Class %04x", class_id);
    default:
      return absl::StrFormat("Class %04x", class_id);
  }
}

VDEV_REGISTER_TYPE(PCIBus);

}  // namespace vdev::pci
