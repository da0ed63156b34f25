#include "bus/pci/pci_device.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bus/pci/pci_bus.h"
#include "core/base/checked_math.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"
#include "core/memory/irq.h"

namespace vdev::pci {
namespace {

void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
void Put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint32_t Get32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
bool Touches(uint32_t off, int size, uint32_t reg, uint32_t reg_size) {
  return RangesOverlap(off, static_cast<uint64_t>(size), reg, reg_size);
}

struct MsiLayout {
  bool is64, maskable;
  unsigned data_off, mask_off, pending_off;
};
MsiLayout LayoutOf(uint16_t flags, uint8_t cap) {
  MsiLayout m;
  m.is64 = flags & kMsiFlags64Bit;
  m.maskable = flags & kMsiFlagsMaskBit;
  m.data_off = cap + (m.is64 ? 12u : 8u);
  m.mask_off = m.data_off + 4;
  m.pending_off = m.data_off + 8;
  return m;
}

}  // namespace

void PCIDevice::ClassInit(PCIDeviceClass& k) {
  k.bus_type = PCIBus::kTypeName;
  k.AddProperty(qom::Prop("addr", &PCIDevice::addr_, qom::PciDevFn::Auto(),
                          "Slot and optional function number, example: 06.0 or 06"));
  k.AddProperty(qom::Prop("multifunction", &PCIDevice::multifunction_, false,
                          "on: other functions of this slot may be populated"));
  // Identity overrides, as QEMU's x-pci-* properties; kIdFromClass keeps the class's value.
  k.AddProperty(qom::Prop("x-pci-vendor-id", &PCIDevice::vendor_id_prop_, kIdFromClass,
                          "vendor ID override (4294967295: the device type's)"));
  k.AddProperty(qom::Prop("x-pci-device-id", &PCIDevice::device_id_prop_, kIdFromClass,
                          "device ID override (4294967295: the device type's)"));
  k.AddProperty(qom::Prop("x-pci-sub-vendor-id", &PCIDevice::sub_vendor_id_prop_, kIdFromClass,
                          "subsystem vendor ID override (4294967295: the device type's)"));
  k.AddProperty(qom::Prop("x-pci-sub-device-id", &PCIDevice::sub_device_id_prop_, kIdFromClass,
                          "subsystem ID override (4294967295: the device type's)"));
}

PCIDevice::PCIDevice() = default;
PCIDevice::~PCIDevice() = default;

PCIBus* PCIDevice::pci_bus() const { return static_cast<PCIBus*>(parent_bus()); }

const PciHostContext* PCIDevice::host_context() const {
  PCIBus* b = pci_bus();
  return b ? b->host_context() : nullptr;
}

absl::Status PCIDevice::Realize() {
  VDEV_RETURN_IF_ERROR(DeviceState::Realize());
  unplugging_.store(false);
  for (auto [name, v] : {std::pair{"x-pci-vendor-id", vendor_id_prop_},
                         std::pair{"x-pci-device-id", device_id_prop_},
                         std::pair{"x-pci-sub-vendor-id", sub_vendor_id_prop_},
                         std::pair{"x-pci-sub-device-id", sub_device_id_prop_}}) {
    if (v != kIdFromClass && v > 0xffff) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: property '%s' expects an ID in [0, 0xffff], got 0x%x", DisplayName(), name, v));
    }
  }
  InitConfigHeader();
  return absl::OkStatus();
}

void PCIDevice::Unrealize() {
  {
    absl::MutexLock l(&mu_);
    intx_level_ = false;
    UpdateIntxLocked();
  }
  // The bus already hid the device and unmapped its BARs (PCIBus::BeforeUnrealize). Destroying
  // the regions waits for accesses still running in them; then the state they use can go.
  msix_table_region_.reset();
  msix_pba_region_.reset();
  for (PciBar& b : bars_) b = PciBar{};
  {
    absl::MutexLock l(&mu_);
    msix_table_.clear();
    msix_pba_.clear();
    msix_cap_ = 0;
    msix_vectors_ = 0;
    msi_cap_ = 0;
    msi_vectors_ = 0;
  }
  DeviceState::Unrealize();
}

void PCIDevice::InitConfigHeader() {
  const PCIDeviceClass& k = pci_class();
  absl::MutexLock l(&mu_);
  config_.fill(0);
  wmask_.fill(0);
  w1cmask_.fill(0);
  cap_used_.fill(false);
  uint8_t* c = config_.data();
  auto pick = [](uint32_t prop, uint16_t klass) {
    return prop == kIdFromClass ? klass : static_cast<uint16_t>(prop);
  };
  Put16(c + kVendorId, pick(vendor_id_prop_, k.vendor_id));
  Put16(c + kDeviceId, pick(device_id_prop_, k.device_id));
  c[kRevisionId] = k.revision;
  c[kClassProg] = k.prog_if;
  Put16(c + kClassDevice, k.class_id);
  c[kHeaderType] =
      static_cast<uint8_t>(k.header_type | (multifunction_ ? kHeaderTypeMultiFunction : 0));
  if (k.header_type == 0) {  // type 1 headers use these bytes for the prefetch window
    Put16(c + kSubsystemVendorId, pick(sub_vendor_id_prop_, k.subsystem_vendor_id));
    Put16(c + kSubsystemId, pick(sub_device_id_prop_, k.subsystem_id));
  }
  c[kInterruptPin] = k.interrupt_pin;
  const uint16_t cmd_mask =
      kCommandIo | kCommandMemory | kCommandMaster | kCommandSerr | kCommandIntxDisable;
  Put16(wmask_.data() + kCommand, cmd_mask);
  Put16(w1cmask_.data() + kStatus, kStatusW1cMask);
  wmask_[kCacheLineSize] = 0xff;
  wmask_[kInterruptLine] = 0xff;
  for (int i = 0; i < kConfigHeaderSize / 4; ++i) cap_used_[static_cast<size_t>(i)] = true;
}

void PCIDevice::Reset() {
  {
    absl::MutexLock l(&mu_);
    // Everything the guest can write or clear goes back to its power-on value; read-only bits
    // (IDs, Capabilities List, BAR type bits) stay.
    for (uint32_t r = 0; r < config_size(); ++r) {
      config_[r] = static_cast<uint8_t>(config_[r] & ~(wmask_[r] | w1cmask_[r]));
    }
    if (msix_vectors_ > 0) {
      for (unsigned v = 0; v < msix_vectors_; ++v) {
        uint8_t* e = msix_table_.data() + v * kMsixEntrySize;
        std::fill(e, e + kMsixEntrySize, 0);
        e[kMsixEntryVectorCtrl] = kMsixEntryCtrlMasked;
      }
      std::fill(msix_pba_.begin(), msix_pba_.end(), 0);
    }
    if (msi_cap_ != 0) {  // the pending bits are read-only: the mask-based reset keeps them
      const MsiLayout m = LayoutOf(Get16(config_.data() + msi_cap_ + kMsiFlags), msi_cap_);
      if (m.maskable) Put32(config_.data() + m.pending_off, 0);
    }
    intx_level_ = false;
    UpdateIntxLocked();
  }
  RequestRemap();  // decode is off now: every BAR leaves the address spaces
  DeviceState::Reset();
}

// ---- configuration space ----

uint32_t PCIDevice::ConfigReadLocked(uint32_t offset, int size) {
  uint32_t v = 0;
  for (int i = 0; i < size; ++i) v |= uint32_t{config_[offset + i]} << (8 * i);
  return v;
}

uint32_t PCIDevice::ConfigRead(uint32_t offset, int size) {
  if ((size != 1 && size != 2 && size != 4) || offset % static_cast<uint32_t>(size) != 0 ||
      offset > config_size() - static_cast<uint32_t>(size)) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_config_access", "%s: config read of %d bytes at 0x%x",
                         DisplayName(), size, offset);
    return 0xffffffffu;
  }
  BeforeConfigRead(offset, size);
  absl::MutexLock l(&mu_);
  return ConfigReadLocked(offset, size);
}

void PCIDevice::ConfigWrite(uint32_t offset, uint32_t value, int size) {
  if ((size != 1 && size != 2 && size != 4) || offset % static_cast<uint32_t>(size) != 0 ||
      offset > config_size() - static_cast<uint32_t>(size)) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_config_access", "%s: config write of %d bytes at 0x%x",
                         DisplayName(), size, offset);
    return;
  }
  {
    absl::MutexLock l(&mu_);
    for (int i = 0; i < size; ++i) {
      const uint32_t o = offset + static_cast<uint32_t>(i);
      const uint8_t b = static_cast<uint8_t>(value >> (8 * i));
      const uint8_t wm = wmask_[o];
      const uint8_t w1c = w1cmask_[o];
      config_[o] = static_cast<uint8_t>((config_[o] & ~wm) | (b & wm));
      config_[o] = static_cast<uint8_t>(config_[o] & ~(b & w1c));
    }
  }
  ConfigWritten(offset, size);
}

void PCIDevice::ConfigWritten(uint32_t offset, int size) {
  bool remap = Touches(offset, size, kCommand, 2);
  if (pci_class().header_type == 0) remap |= Touches(offset, size, kBar0, 4 * kNumBars);
  {
    absl::MutexLock l(&mu_);
    if (Touches(offset, size, kCommand, 2)) UpdateIntxLocked();
    const bool msix_ctl = msix_cap_ != 0 && Touches(offset, size, msix_cap_ + kMsixFlags, 2);
    const bool msi_ctl = msi_cap_ != 0 && Touches(offset, size, msi_cap_ + kMsiFlags, 2);
    if (msix_ctl) MsixDeliverPendingLocked();
    if (msi_cap_ != 0 && Touches(offset, size, msi_cap_, 24)) MsiDeliverPendingLocked();
    // A function using MSI or MSI-X does not drive INTx (QEMU's pci_device_deassert_intx): a
    // level latched before the switch would otherwise stay on a shared line nobody acknowledges.
    const bool msi_on =
        msi_cap_ != 0 && (Get16(config_.data() + msi_cap_ + kMsiFlags) & kMsiFlagsEnable);
    const bool msix_on =
        msix_cap_ != 0 && (Get16(config_.data() + msix_cap_ + kMsixFlags) & kMsixFlagsEnable);
    if ((msi_ctl && msi_on) || (msix_ctl && msix_on)) {
      intx_level_ = false;
      UpdateIntxLocked();
    }
  }
  if (remap) RequestRemap();
}

void PCIDevice::RequestRemap() {
  if (PCIBus* b = pci_bus()) b->UpdateMappings();
}

// ---- BARs ----

MemoryRegion* PCIDevice::RegisterBar(int bar, uint64_t size, uint32_t type) {
  const bool io = type & kBarSpaceIo;
  const bool is64 = !io && (type & kBarMemType64);
  VDEV_CHECK(bar >= 0 && bar < kNumBars && (!is64 || bar + 1 < kNumBars));
  VDEV_CHECK(IsPowerOfTwo(size) && size >= (io ? 4u : 16u) && (is64 || size <= (1ull << 31)));
  VDEV_CHECK(bars_[static_cast<size_t>(bar)].size == 0);
  PciBar& b = bars_[static_cast<size_t>(bar)];
  b.size = size;
  b.type = io ? kBarSpaceIo : (type & (kBarMemType64 | kBarMemPrefetch));
  b.region = MemoryRegion::CreateContainer(absl::StrFormat("%s BAR%d", type_name(), bar), size);
  const uint32_t off = kBar0 + 4 * static_cast<uint32_t>(bar);
  const uint64_t mask = ~(size - 1) & ~uint64_t{io ? 0x3u : 0xfu};
  absl::MutexLock l(&mu_);
  Put32(config_.data() + off, b.type);
  Put32(wmask_.data() + off, static_cast<uint32_t>(mask));
  if (is64) {
    Put32(config_.data() + off + 4, 0);
    Put32(wmask_.data() + off + 4, static_cast<uint32_t>(mask >> 32));
  }
  return b.region.get();
}

uint64_t PCIDevice::BarAddress(int i) const {
  const PciBar& b = bars_[static_cast<size_t>(i)];
  if (b.size == 0) return 0;
  absl::MutexLock l(&mu_);
  const uint32_t off = kBar0 + 4 * static_cast<uint32_t>(i);
  uint64_t v = Get32(config_.data() + off) & (b.is_io() ? kBarIoMask : kBarMemMask);
  if (b.is_64bit()) v |= uint64_t{Get32(config_.data() + off + 4)} << 32;
  return v;
}

// ---- capabilities ----

absl::StatusOr<uint8_t> PCIDevice::AddCapability(uint8_t id, uint8_t size, uint8_t offset) {
  if (size < 2) return absl::InvalidArgumentError("capability size must be at least 2");
  absl::MutexLock l(&mu_);
  const unsigned dwords = (size + 3u) / 4;
  if (offset == 0) {
    for (unsigned d = kConfigHeaderSize / 4; d + dwords <= 256 / 4 && offset == 0; ++d) {
      bool free = true;
      for (unsigned j = 0; j < dwords; ++j) free &= !cap_used_[d + j];
      if (free) offset = static_cast<uint8_t>(d * 4);
    }
    if (offset == 0) {
      return absl::ResourceExhaustedError(
          absl::StrFormat("%s: no room for a %u-byte capability 0x%02x in configuration space",
                          DisplayName(), size, id));
    }
  } else {
    if (offset < kConfigHeaderSize || offset % 4 != 0 || offset + size > 256) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: capability offset 0x%x is not a dword in 0x40..0xff", DisplayName(), offset));
    }
    for (unsigned j = 0; j < dwords; ++j) {
      if (cap_used_[offset / 4u + j]) {
        return absl::AlreadyExistsError(
            absl::StrFormat("%s: capability 0x%02x at 0x%x overlaps another capability",
                            DisplayName(), id, offset));
      }
    }
  }
  for (unsigned j = 0; j < dwords; ++j) cap_used_[offset / 4u + j] = true;
  config_[offset] = id;
  config_[offset + kCapListNext] = 0;
  // Append to the end of the list so capabilities appear in the order they were added.
  uint8_t* link = &config_[kCapabilityList];
  for (int n = 0; *link != 0 && n < kMaxCapabilities; ++n) link = &config_[*link + kCapListNext];
  *link = offset;
  Put16(config_.data() + kStatus, Get16(config_.data() + kStatus) | kStatusCapList);
  return offset;
}

uint8_t PCIDevice::FindCapability(uint8_t id) const {
  absl::MutexLock l(&mu_);
  uint8_t pos = config_[kCapabilityList] & 0xfc;
  for (int n = 0; pos >= kConfigHeaderSize && n < kMaxCapabilities; ++n) {
    if (config_[pos] == id) return pos;
    pos = config_[pos + kCapListNext] & 0xfc;
  }
  return 0;
}

std::vector<std::pair<uint8_t, uint8_t>> PCIDevice::Capabilities() const {
  std::vector<std::pair<uint8_t, uint8_t>> out;
  absl::MutexLock l(&mu_);
  uint8_t pos = config_[kCapabilityList] & 0xfc;
  for (int n = 0; pos >= kConfigHeaderSize && n < kMaxCapabilities; ++n) {
    out.emplace_back(pos, config_[pos]);
    pos = config_[pos + kCapListNext] & 0xfc;
  }
  return out;
}

std::string PCIDevice::DescribeCapability(uint8_t pos) const {
  absl::MutexLock l(&mu_);
  const uint8_t* c = config_.data() + pos;
  switch (c[0]) {
    case kCapIdMsi: {
      const uint16_t flags = Get16(c + kMsiFlags);
      return absl::StrFormat("MSI, %u vector(s), %s-bit%s%s", 1u << ((flags >> 1) & 7),
                             (flags & kMsiFlags64Bit) ? "64" : "32",
                             (flags & kMsiFlagsMaskBit) ? ", maskable" : "",
                             (flags & kMsiFlagsEnable) ? ", enabled" : "");
    }
    case kCapIdMsix: {
      const uint16_t flags = Get16(c + kMsixFlags);
      const uint32_t table = Get32(c + kMsixTable), pba = Get32(c + kMsixPba);
      return absl::StrFormat("MSI-X, %u vectors, table BAR%u+0x%x, PBA BAR%u+0x%x%s",
                             (flags & kMsixFlagsQsizeMask) + 1u, table & 7, table & ~7u, pba & 7,
                             pba & ~7u, (flags & kMsixFlagsEnable) ? ", enabled" : "");
    }
    case kCapIdVendor:
      return absl::StrFormat("vendor-specific, %u bytes", c[2]);
    case kCapIdPm:
      return "power management";
    case kCapIdExpress:
      return "PCI Express";
    default:
      return absl::StrFormat("id 0x%02x", c[0]);
  }
}

// ---- MSI ----

absl::Status PCIDevice::InitMsi(uint8_t offset, unsigned vectors, bool is_64bit,
                                bool per_vector_mask) {
  if (vectors == 0 || vectors > 32 || !IsPowerOfTwo(vectors)) {
    return absl::InvalidArgumentError(absl::StrCat(
        DisplayName(), ": MSI vector count must be a power of two in 1..32, got ", vectors));
  }
  const uint8_t size = static_cast<uint8_t>((is_64bit ? 14 : 10) + (per_vector_mask ? 10 : 0));
  VDEV_ASSIGN_OR_RETURN(uint8_t pos, AddCapability(kCapIdMsi, size, offset));
  absl::MutexLock l(&mu_);
  msi_cap_ = pos;
  msi_vectors_ = vectors;
  unsigned log2 = 0;
  while ((1u << log2) < vectors) ++log2;
  uint16_t flags = static_cast<uint16_t>(log2 << kMsiFlagsQmaskShift);
  if (is_64bit) flags |= kMsiFlags64Bit;
  if (per_vector_mask) flags |= kMsiFlagsMaskBit;
  Put16(config_.data() + pos + kMsiFlags, flags);
  Put16(wmask_.data() + pos + kMsiFlags, static_cast<uint16_t>(kMsiFlagsEnable | 0x70));
  Put32(wmask_.data() + pos + kMsiAddressLo, 0xfffffffc);
  uint8_t data = static_cast<uint8_t>(pos + 8);
  if (is_64bit) {
    Put32(wmask_.data() + pos + 8, 0xffffffff);
    data = static_cast<uint8_t>(pos + 12);
  }
  Put16(wmask_.data() + data, 0xffff);
  if (per_vector_mask) {
    const uint32_t bits = vectors == 32 ? 0xffffffffu : (1u << vectors) - 1;
    Put32(wmask_.data() + data + 4, bits);  // mask bits; the pending bits after them are RO
  }
  return absl::OkStatus();
}

bool PCIDevice::msi_enabled() const {
  absl::MutexLock l(&mu_);
  if (msi_cap_ == 0) return false;
  return Get16(config_.data() + msi_cap_ + kMsiFlags) & kMsiFlagsEnable;
}

void PCIDevice::MsiNotify(unsigned vector) {
  absl::MutexLock l(&mu_);
  if (msi_cap_ == 0) return;
  const uint16_t flags = Get16(config_.data() + msi_cap_ + kMsiFlags);
  if (!(flags & kMsiFlagsEnable)) return;
  const unsigned enabled = 1u << std::min<unsigned>((flags >> kMsiFlagsQsizeShift) & 7,
                                                    (flags >> kMsiFlagsQmaskShift) & 7);
  if (vector >= enabled) {
    VDEV_LOG_GUEST_ERROR(counters(), "msi_bad_vector", "%s: MSI vector %u of %u enabled",
                         DisplayName(), vector, enabled);
    return;
  }
  const MsiLayout m = LayoutOf(flags, msi_cap_);
  if (m.maskable && (Get32(config_.data() + m.mask_off) >> vector & 1)) {
    Put32(config_.data() + m.pending_off, Get32(config_.data() + m.pending_off) | 1u << vector);
    return;
  }
  MsiSendLocked(vector);
}

void PCIDevice::MsiSendLocked(unsigned vector) {
  const uint16_t flags = Get16(config_.data() + msi_cap_ + kMsiFlags);
  const unsigned enabled = 1u << std::min<unsigned>((flags >> kMsiFlagsQsizeShift) & 7,
                                                    (flags >> kMsiFlagsQmaskShift) & 7);
  const MsiLayout m = LayoutOf(flags, msi_cap_);
  uint64_t addr = Get32(config_.data() + msi_cap_ + kMsiAddressLo);
  if (m.is64) addr |= uint64_t{Get32(config_.data() + msi_cap_ + 8)} << 32;
  uint32_t data = Get16(config_.data() + m.data_off);
  data = (data & ~(enabled - 1)) | vector;
  const PciHostContext* ctx = host_context();
  if (ctx != nullptr && ctx->irq != nullptr) ctx->irq->SendMsi({addr, data});
  counters().Increment("msi_sent");
}

void PCIDevice::MsiDeliverPendingLocked() {
  const uint16_t flags = Get16(config_.data() + msi_cap_ + kMsiFlags);
  const MsiLayout m = LayoutOf(flags, msi_cap_);
  if (!m.maskable || !(flags & kMsiFlagsEnable)) return;
  const uint32_t pending = Get32(config_.data() + m.pending_off);
  const uint32_t deliver = pending & ~Get32(config_.data() + m.mask_off);
  if (deliver == 0) return;
  Put32(config_.data() + m.pending_off, pending & ~deliver);
  for (unsigned v = 0; v < 32; ++v) {
    if (deliver >> v & 1) MsiSendLocked(v);
  }
}

// ---- MSI-X ----

absl::Status PCIDevice::InitMsix(unsigned vectors, int bar, uint32_t table_offset,
                                 uint32_t pba_offset, uint8_t cap_offset) {
  if (vectors == 0 || vectors > kMsixMaxVectors) {
    return absl::InvalidArgumentError(
        absl::StrCat(DisplayName(), ": MSI-X vector count must be in 1..2048, got ", vectors));
  }
  if (bar < 0 || bar >= kNumBars || bars_[static_cast<size_t>(bar)].size == 0 ||
      bars_[static_cast<size_t>(bar)].is_io()) {
    return absl::InvalidArgumentError(
        absl::StrCat(DisplayName(), ": MSI-X needs a registered memory BAR, BAR", bar, " is not"));
  }
  const uint64_t table_size = uint64_t{vectors} * kMsixEntrySize;
  const uint64_t pba_size = (vectors + 63) / 64 * 8;
  const uint64_t bar_size = bars_[static_cast<size_t>(bar)].size;
  if (table_offset % 8 != 0 || pba_offset % 8 != 0 ||
      !RangeWithin(table_offset, table_size, 0, bar_size) ||
      !RangeWithin(pba_offset, pba_size, 0, bar_size) ||
      RangesOverlap(table_offset, table_size, pba_offset, pba_size)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: MSI-X table (0x%x, %u entries) and PBA (0x%x) do not fit BAR%d of 0x%x bytes",
        DisplayName(), table_offset, vectors, pba_offset, bar, bar_size));
  }
  VDEV_ASSIGN_OR_RETURN(uint8_t pos, AddCapability(kCapIdMsix, kMsixCapSize, cap_offset));
  {
    absl::MutexLock l(&mu_);
    msix_cap_ = pos;
    msix_vectors_ = vectors;
    msix_table_.assign(table_size, 0);
    for (unsigned v = 0; v < vectors; ++v) {
      msix_table_[v * kMsixEntrySize + kMsixEntryVectorCtrl] = kMsixEntryCtrlMasked;
    }
    msix_pba_.assign(pba_size / 8, 0);
    Put16(config_.data() + pos + kMsixFlags, static_cast<uint16_t>(vectors - 1));
    Put16(wmask_.data() + pos + kMsixFlags, kMsixFlagsEnable | kMsixFlagsMaskAll);
    Put32(config_.data() + pos + kMsixTable, table_offset | static_cast<uint32_t>(bar));
    Put32(config_.data() + pos + kMsixPba, pba_offset | static_cast<uint32_t>(bar));
  }
  MemoryRegionOps table_ops;
  table_ops.read = [this](MmioOffset off, unsigned size) {
    return MsixTableRead(off.value(), size);
  };
  table_ops.write = [this](MmioOffset off, uint64_t v, unsigned size) {
    MsixTableWrite(off.value(), v, size);
  };
  table_ops.valid = {4, 8, false};
  msix_table_region_ =
      MemoryRegion::CreateIo(absl::StrCat(type_name(), " msix-table"), table_size, table_ops);
  msix_table_region_->set_owner_counters(&counters());
  MemoryRegionOps pba_ops;
  pba_ops.read = [this](MmioOffset off, unsigned size) { return MsixPbaRead(off.value(), size); };
  pba_ops.write = [this](MmioOffset off, uint64_t v, unsigned size) {
    MsixPbaWrite(off.value(), v, size);
  };
  pba_ops.valid = {4, 8, false};
  msix_pba_region_ =
      MemoryRegion::CreateIo(absl::StrCat(type_name(), " msix-pba"), pba_size, pba_ops);
  msix_pba_region_->set_owner_counters(&counters());
  MemoryRegion* container = bars_[static_cast<size_t>(bar)].region.get();
  container->AddSubregion(table_offset, msix_table_region_.get());
  container->AddSubregion(pba_offset, msix_pba_region_.get());
  return absl::OkStatus();
}

absl::Status PCIDevice::InitMsixExclusiveBar(unsigned vectors, int bar) {
  const uint64_t table_size = uint64_t{vectors} * kMsixEntrySize;
  uint64_t pba_offset = std::max<uint64_t>(table_size, 2048);  // QEMU puts the PBA at 2 KiB
  uint64_t size = 4096;
  while (size < pba_offset + (vectors + 63) / 64 * 8) size *= 2;
  if (vectors == 0 || vectors > kMsixMaxVectors) {
    return absl::InvalidArgumentError(
        absl::StrCat(DisplayName(), ": MSI-X vector count must be in 1..2048, got ", vectors));
  }
  RegisterBar(bar, size, 0);
  return InitMsix(vectors, bar, 0, static_cast<uint32_t>(pba_offset));
}

bool PCIDevice::msix_enabled() const {
  absl::MutexLock l(&mu_);
  if (msix_cap_ == 0) return false;
  return Get16(config_.data() + msix_cap_ + kMsixFlags) & kMsixFlagsEnable;
}

bool PCIDevice::MsixMaskedLocked(unsigned vector) const {
  const uint16_t flags = Get16(config_.data() + msix_cap_ + kMsixFlags);
  if (flags & kMsixFlagsMaskAll) return true;
  return msix_table_[vector * kMsixEntrySize + kMsixEntryVectorCtrl] & kMsixEntryCtrlMasked;
}

MsiMessage PCIDevice::MsixMessageLocked(unsigned vector) const {
  const uint8_t* e = msix_table_.data() + vector * kMsixEntrySize;
  return MsiMessage{
      uint64_t{Get32(e + kMsixEntryLowerAddr)} | uint64_t{Get32(e + kMsixEntryUpperAddr)} << 32,
      Get32(e + kMsixEntryData)};
}

void PCIDevice::MsixNotify(unsigned vector) {
  const PciHostContext* ctx = host_context();
  MsiMessage msg;
  {
    absl::MutexLock l(&mu_);
    if (vector >= msix_vectors_) {
      VDEV_LOG_GUEST_ERROR(counters(), "msix_bad_vector", "%s: MSI-X vector %u of %u",
                           DisplayName(), vector, msix_vectors_);
      return;
    }
    if (!(Get16(config_.data() + msix_cap_ + kMsixFlags) & kMsixFlagsEnable)) return;
    if (MsixMaskedLocked(vector)) {
      msix_pba_[vector / 64] |= uint64_t{1} << (vector % 64);
      return;
    }
    msg = MsixMessageLocked(vector);
  }
  if (ctx != nullptr && ctx->irq != nullptr) ctx->irq->SendMsi(msg);
  counters().Increment("msix_sent");
}

std::optional<MsiMessage> PCIDevice::MsixVectorMessage(unsigned vector) const {
  absl::MutexLock l(&mu_);
  if (vector >= msix_vectors_ || msix_table_.empty()) return std::nullopt;
  return MsixMessageLocked(vector);
}

bool PCIDevice::MsixPending(unsigned vector) const {
  absl::MutexLock l(&mu_);
  if (vector >= msix_vectors_) return false;
  return msix_pba_[vector / 64] >> (vector % 64) & 1;
}

void PCIDevice::MsixDeliverPendingLocked() {
  if (msix_vectors_ == 0 || msix_table_.empty()) return;
  if (!(Get16(config_.data() + msix_cap_ + kMsixFlags) & kMsixFlagsEnable)) return;
  const PciHostContext* ctx = host_context();
  for (unsigned v = 0; v < msix_vectors_; ++v) {
    uint64_t& word = msix_pba_[v / 64];
    if (!(word >> (v % 64) & 1) || MsixMaskedLocked(v)) continue;
    word &= ~(uint64_t{1} << (v % 64));
    if (ctx != nullptr && ctx->irq != nullptr) ctx->irq->SendMsi(MsixMessageLocked(v));
    counters().Increment("msix_sent");
  }
}

uint64_t PCIDevice::MsixTableRead(uint64_t off, unsigned size) {
  absl::MutexLock l(&mu_);
  uint64_t v = 0;
  for (unsigned i = 0; i < size; ++i) v |= uint64_t{msix_table_[off + i]} << (8 * i);
  return v;
}

void PCIDevice::MsixTableWrite(uint64_t off, uint64_t value, unsigned size) {
  absl::MutexLock l(&mu_);
  for (unsigned i = 0; i < size; ++i) {
    const uint64_t o = off + i;
    uint8_t b = static_cast<uint8_t>(value >> (8 * i));
    if (o % kMsixEntrySize >= kMsixEntryVectorCtrl) {
      // Vector control: only the mask bit is writable; the rest is reserved.
      if (o % kMsixEntrySize != kMsixEntryVectorCtrl) continue;
      b &= kMsixEntryCtrlMasked;
    }
    msix_table_[o] = b;
  }
  MsixDeliverPendingLocked();  // an unmasked vector with its pending bit set fires now
}

uint64_t PCIDevice::MsixPbaRead(uint64_t off, unsigned size) {
  absl::MutexLock l(&mu_);
  uint64_t v = 0;
  for (unsigned i = 0; i < size; ++i) {
    const uint64_t o = off + i;
    v |= (msix_pba_[o / 8] >> (8 * (o % 8)) & 0xff) << (8 * i);
  }
  return v;
}

void PCIDevice::MsixPbaWrite(uint64_t off, uint64_t value, unsigned size) {
  VDEV_LOG_GUEST_ERROR(counters(), "msix_pba_write", "%s: write to the read-only MSI-X PBA at 0x%x",
                       DisplayName(), off);
}

// ---- INTx ----

void PCIDevice::SetIrq(bool level) {
  absl::MutexLock l(&mu_);
  intx_level_ = level;
  UpdateIntxLocked();
}

bool PCIDevice::irq_level() const {
  absl::MutexLock l(&mu_);
  return intx_level_;
}

void PCIDevice::UpdateIntxLocked() {
  const uint8_t pin = config_[kInterruptPin];
  uint16_t status = Get16(config_.data() + kStatus);
  status = intx_level_ ? (status | kStatusInterrupt) : (status & ~kStatusInterrupt);
  Put16(config_.data() + kStatus, status);
  const bool assert_line = intx_level_ && pin != 0 && !(CommandLocked() & kCommandIntxDisable);
  if (assert_line == intx_asserted_) return;
  intx_asserted_ = assert_line;
  PCIBus* bus = pci_bus();
  const PciHostContext* ctx = host_context();
  if (bus == nullptr || ctx == nullptr || ctx->irq == nullptr || pin == 0) return;
  const int gsi = bus->RouteIntx(addr_.slot(), pin - 1);
  if (gsi >= 0) ctx->irq->SetLevel(static_cast<uint32_t>(gsi), this, assert_line);
}

// ---- DMA ----

GuestMemory* PCIDevice::dma_memory() const {
  const PciHostContext* ctx = host_context();
  return ctx ? ctx->dma : nullptr;
}

bool PCIDevice::DmaRead(GuestAddr addr, absl::Span<uint8_t> dst) {
  GuestMemory* mem = bus_master() ? dma_memory() : nullptr;
  return DmaDone(mem != nullptr && mem->Read(addr, dst), "read", addr, dst.size());
}

bool PCIDevice::DmaWrite(GuestAddr addr, absl::Span<const uint8_t> src) {
  GuestMemory* mem = bus_master() ? dma_memory() : nullptr;
  return DmaDone(mem != nullptr && mem->Write(addr, src), "write", addr, src.size());
}

bool PCIDevice::DmaDone(bool ok, const char* what, GuestAddr addr, size_t len) {
  if (!ok) {
    VDEV_LOG_GUEST_ERROR(counters(), "dma_error", "%s: DMA %s of %u bytes at 0x%x refused%s",
                         DisplayName(), what, len, addr.value(),
                         bus_master() ? "" : " (bus mastering disabled)");
  }
  return ok;
}

VDEV_REGISTER_TYPE(PCIDevice);

}  // namespace vdev::pci
