#include "tests/testing/pci_guest.h"

#include "bus/pci/pci_regs.h"

namespace vdev::testing {

using namespace vdev::pci;  // register names

namespace {
uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }
}  // namespace

PciGuest::PciGuest(AddressSpace& io, AddressSpace& mem, Mechanism mechanism, uint64_t ecam_base,
                   std::function<int(int, int)> route_intx)
    : io_(io),
      mem_(mem),
      mechanism_(mechanism),
      ecam_base_(ecam_base),
      route_intx_(std::move(route_intx)) {}

uint32_t PciGuest::ConfigRead(uint8_t bus, uint8_t devfn, uint16_t off, int size) {
  if (mechanism_ == Mechanism::kEcam) {
    const uint64_t a = ecam_base_ + (uint64_t{bus} << 20) + (uint64_t{devfn} << 12) + off;
    return static_cast<uint32_t>(mem_.ReadValue(a, static_cast<unsigned>(size)));
  }
  io_.Write(0xcf8, 0x80000000u | uint32_t{bus} << 16 | uint32_t{devfn} << 8 | (off & 0xfc), 4);
  return static_cast<uint32_t>(io_.ReadValue(0xcfc + (off & 3), static_cast<unsigned>(size)));
}

void PciGuest::ConfigWrite(uint8_t bus, uint8_t devfn, uint16_t off, uint32_t value, int size) {
  if (mechanism_ == Mechanism::kEcam) {
    const uint64_t a = ecam_base_ + (uint64_t{bus} << 20) + (uint64_t{devfn} << 12) + off;
    mem_.Write(a, value, static_cast<unsigned>(size));
    return;
  }
  io_.Write(0xcf8, 0x80000000u | uint32_t{bus} << 16 | uint32_t{devfn} << 8 | (off & 0xfc), 4);
  io_.Write(0xcfc + (off & 3), value, static_cast<unsigned>(size));
}

const std::vector<PciGuest::Function>& PciGuest::Enumerate() {
  functions_.clear();
  next_bus_ = 1;
  ScanBus(
      0, false, route_intx_ ? route_intx_ : [](int, int) { return -1; });
  return functions_;
}

void PciGuest::ScanBus(uint8_t bus, bool behind_bridge, const std::function<int(int, int)>& route) {
  for (int slot = 0; slot < 32; ++slot) {
    for (int fn = 0; fn < 8; ++fn) {
      const uint8_t devfn = static_cast<uint8_t>(slot << 3 | fn);
      const uint32_t id = ConfigRead(bus, devfn, kVendorId, 4);
      if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0) {
        if (fn == 0) break;  // no function 0: nothing else in the slot
        continue;
      }
      Function f;
      f.bus = bus;
      f.devfn = devfn;
      f.vendor = static_cast<uint16_t>(id);
      f.device = static_cast<uint16_t>(id >> 16);
      f.class_code = ConfigRead(bus, devfn, kRevisionId, 4) >> 8;
      f.header_type = static_cast<uint8_t>(ConfigRead(bus, devfn, kHeaderType, 1));
      SetupFunction(f, behind_bridge, route);
      functions_.push_back(f);
      if ((f.header_type & 0x7f) == kHeaderTypeBridge) {
        // Number the secondary bus, scan behind it, then close the windows around what was
        // allocated there (memory windows have 1 MiB granularity, I/O 4 KiB).
        const uint8_t secondary = next_bus_++;
        ConfigWrite(bus, devfn, kPrimaryBus, bus, 1);
        ConfigWrite(bus, devfn, kSecondaryBus, secondary, 1);
        ConfigWrite(bus, devfn, kSubordinateBus, 0xff, 1);
        mem32_next = AlignUp(mem32_next, 1 << 20);
        io_next = AlignUp(io_next, 1 << 12);
        const uint64_t mem_start = mem32_next, io_start = io_next;
        const int bridge_slot = slot;
        ScanBus(secondary, true,
                [route, bridge_slot](int s, int pin) { return route(bridge_slot, (pin + s) % 4); });
        ConfigWrite(bus, devfn, kSubordinateBus, next_bus_ - 1u, 1);
        mem32_next = AlignUp(mem32_next, 1 << 20);
        io_next = AlignUp(io_next, 1 << 12);
        if (mem32_next > mem_start) {
          ConfigWrite(bus, devfn, kMemoryBase, static_cast<uint32_t>(mem_start >> 16) & 0xfff0, 2);
          ConfigWrite(bus, devfn, kMemoryLimit,
                      static_cast<uint32_t>((mem32_next - 1) >> 16) & 0xfff0, 2);
        } else {  // empty: base above limit
          ConfigWrite(bus, devfn, kMemoryBase, 0xfff0, 2);
          ConfigWrite(bus, devfn, kMemoryLimit, 0, 2);
        }
        if (io_next > io_start) {
          ConfigWrite(bus, devfn, kIoBase, static_cast<uint32_t>(io_start >> 8) & 0xf0, 1);
          ConfigWrite(bus, devfn, kIoLimit, static_cast<uint32_t>((io_next - 1) >> 8) & 0xf0, 1);
        } else {
          ConfigWrite(bus, devfn, kIoBase, 0xf0, 1);
          ConfigWrite(bus, devfn, kIoLimit, 0, 1);
        }
        ConfigWrite(bus, devfn, kPrefetchBase, 0xfff0, 2);  // no prefetchable window
        ConfigWrite(bus, devfn, kPrefetchLimit, 0, 2);
        ConfigWrite(bus, devfn, kCommand, kCommandIo | kCommandMemory | kCommandMaster, 2);
      }
      if (fn == 0 && !(f.header_type & kHeaderTypeMultiFunction)) break;
    }
  }
}

void PciGuest::SetupFunction(Function& f, bool behind_bridge,
                             const std::function<int(int, int)>& route) {
  const uint8_t b = f.bus, d = f.devfn;
  // Decode off while sizing, as an OS does.
  const uint32_t cmd = ConfigRead(b, d, kCommand, 2);
  ConfigWrite(b, d, kCommand, cmd & ~(kCommandIo | kCommandMemory), 2);
  const int nbars = (f.header_type & 0x7f) == 0 ? 6 : 2;
  for (int i = 0; i < nbars; ++i) {
    const uint16_t off = static_cast<uint16_t>(kBar0 + 4 * i);
    const uint32_t orig = ConfigRead(b, d, off, 4);
    ConfigWrite(b, d, off, 0xffffffff, 4);
    const uint32_t lo = ConfigRead(b, d, off, 4);
    ConfigWrite(b, d, off, orig, 4);
    if (lo == 0) continue;
    Bar& bar = f.bars[static_cast<size_t>(i)];
    bar.io = lo & kBarSpaceIo;
    if (bar.io) {
      bar.size = ~(uint64_t{lo & kBarIoMask} | 0xffffffff00000000ull) + 1;
      bar.size &= 0xffff;  // x86 I/O space
      bar.addr = AlignUp(io_next, bar.size);
      io_next = bar.addr + bar.size;
      ConfigWrite(b, d, off, static_cast<uint32_t>(bar.addr), 4);
      continue;
    }
    bar.is64 = (lo & 0x6) == kBarMemType64;
    bar.prefetch = lo & kBarMemPrefetch;
    uint64_t mask = lo & kBarMemMask;
    if (bar.is64) {
      const uint16_t hi_off = static_cast<uint16_t>(off + 4);
      const uint32_t orig_hi = ConfigRead(b, d, hi_off, 4);
      ConfigWrite(b, d, hi_off, 0xffffffff, 4);
      mask |= uint64_t{ConfigRead(b, d, hi_off, 4)} << 32;
      ConfigWrite(b, d, hi_off, orig_hi, 4);
    } else {
      mask |= 0xffffffff00000000ull;
    }
    bar.size = ~mask + 1;
    uint64_t& cursor = (bar.is64 && !behind_bridge) ? mem64_next : mem32_next;
    bar.addr = AlignUp(cursor, bar.size);
    cursor = bar.addr + bar.size;
    ConfigWrite(b, d, off, static_cast<uint32_t>(bar.addr), 4);
    if (bar.is64) {
      ConfigWrite(b, d, static_cast<uint16_t>(off + 4), static_cast<uint32_t>(bar.addr >> 32), 4);
      ++i;  // the upper half is not a BAR of its own
    }
  }
  f.irq_pin = static_cast<uint8_t>(ConfigRead(b, d, kInterruptPin, 1));
  if (f.irq_pin != 0) {
    const int irq = route(f.slot(), f.irq_pin - 1);
    f.irq_line = static_cast<uint8_t>(irq < 0 ? 0xff : irq);
    ConfigWrite(b, d, kInterruptLine, f.irq_line, 1);
  }
  f.caps = WalkCapabilities(b, d);
  ConfigWrite(b, d, kCommand, cmd | kCommandIo | kCommandMemory | kCommandMaster, 2);
}

const PciGuest::Function* PciGuest::Find(uint16_t vendor, uint16_t device, int nth) const {
  for (const Function& f : functions_) {
    if (f.vendor == vendor && f.device == device && nth-- == 0) return &f;
  }
  return nullptr;
}

uint64_t PciGuest::BarRead(const Function& f, int bar, uint64_t off, unsigned size) {
  const Bar& b = f.bars[static_cast<size_t>(bar)];
  return (b.io ? io_ : mem_).ReadValue(b.addr + off, size);
}

MemTxResult PciGuest::BarWrite(const Function& f, int bar, uint64_t off, uint64_t value,
                               unsigned size) {
  const Bar& b = f.bars[static_cast<size_t>(bar)];
  return (b.io ? io_ : mem_).Write(b.addr + off, value, size);
}

std::vector<std::pair<uint8_t, uint8_t>> PciGuest::WalkCapabilities(uint8_t bus, uint8_t devfn) {
  std::vector<std::pair<uint8_t, uint8_t>> out;
  if (!(ConfigRead(bus, devfn, kStatus, 2) & kStatusCapList)) return out;
  uint8_t pos = static_cast<uint8_t>(ConfigRead(bus, devfn, kCapabilityList, 1) & 0xfc);
  for (int n = 0; pos >= 0x40 && n < kMaxCapabilities; ++n) {
    const uint16_t hdr = static_cast<uint16_t>(ConfigRead(bus, devfn, pos, 2));
    out.emplace_back(static_cast<uint8_t>(hdr), pos);
    pos = static_cast<uint8_t>((hdr >> 8) & 0xfc);
  }
  return out;
}

uint8_t PciGuest::FindCapability(const Function& f, uint8_t id) {
  for (auto [cid, pos] : WalkCapabilities(f.bus, f.devfn)) {
    if (cid == id) return pos;
  }
  return 0;
}

void PciGuest::EnableMsi(const Function& f, uint64_t address, uint32_t data) {
  const uint8_t pos = FindCapability(f, kCapIdMsi);
  if (pos == 0) return;
  const uint16_t flags = static_cast<uint16_t>(ConfigRead(f, pos + kMsiFlags, 2));
  ConfigWrite(f, pos + kMsiAddressLo, static_cast<uint32_t>(address), 4);
  uint16_t data_off = pos + 8;
  if (flags & kMsiFlags64Bit) {
    ConfigWrite(f, pos + 8, static_cast<uint32_t>(address >> 32), 4);
    data_off = pos + 12;
  }
  ConfigWrite(f, data_off, data, 2);
  ConfigWrite(f, pos + kMsiFlags, (flags & ~0x70u) | kMsiFlagsEnable, 2);
}

uint64_t PciGuest::MsixEntryAddress(const Function& f, unsigned v) {
  const uint8_t pos = FindCapability(f, kCapIdMsix);
  const uint32_t table = ConfigRead(f, pos + kMsixTable, 4);
  return f.bars[table & 7].addr + (table & ~7u) + uint64_t{v} * kMsixEntrySize;
}

uint64_t PciGuest::MsixPbaAddress(const Function& f) {
  const uint8_t pos = FindCapability(f, kCapIdMsix);
  const uint32_t pba = ConfigRead(f, pos + kMsixPba, 4);
  return f.bars[pba & 7].addr + (pba & ~7u);
}

bool PciGuest::EnableMsix(const Function& f,
                          const std::vector<std::pair<uint64_t, uint32_t>>& vectors) {
  const uint8_t pos = FindCapability(f, kCapIdMsix);
  if (pos == 0) return false;
  const uint16_t flags = static_cast<uint16_t>(ConfigRead(f, pos + kMsixFlags, 2));
  // Enable with the function masked, program the entries, then unmask (Linux's order).
  ConfigWrite(f, pos + kMsixFlags, flags | kMsixFlagsEnable | kMsixFlagsMaskAll, 2);
  for (unsigned v = 0; v < vectors.size(); ++v) {
    const uint64_t e = MsixEntryAddress(f, v);
    mem_.Write(e + kMsixEntryLowerAddr, static_cast<uint32_t>(vectors[v].first), 4);
    mem_.Write(e + kMsixEntryUpperAddr, static_cast<uint32_t>(vectors[v].first >> 32), 4);
    mem_.Write(e + kMsixEntryData, vectors[v].second, 4);
    mem_.Write(e + kMsixEntryVectorCtrl, 0, 4);
  }
  ConfigWrite(f, pos + kMsixFlags, (flags | kMsixFlagsEnable) & ~kMsixFlagsMaskAll, 2);
  return true;
}

}  // namespace vdev::testing
