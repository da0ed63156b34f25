#include "bus/pci/pci_device.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bus/pci/pci_bus.h"
#include "bus/pci/pci_device_internal.h"
#include "core/base/byte_order.h"
#include "core/base/checked_math.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"
#include "core/memory/irq.h"

namespace vdev::pci {
void PCIDevice::ClassInit(PCIDeviceClass& k) {
  k.bus_type = PCIBus::kTypeName;
  k.AddProperty(qom::Prop("addr", &PCIDevice::addr_, qom::PciDevFn::Auto(),
                          "Slot and optional function number, example: 06.0 or 06"));
  k.AddProperty(qom::Prop("multifunction", &PCIDevice::multifunction_, false,
                          "on: other functions of this slot may be populated"));
  // Identity overrides, as QEMU's x-pci-* properties; kIdFromClass keeps the class's value.
  k.AddProperty(qom::HexProp("x-pci-vendor-id", &PCIDevice::vendor_id_prop_, kIdFromClass,
                             "vendor ID override (0xffffffff: the device type's)"));
  k.AddProperty(qom::HexProp("x-pci-device-id", &PCIDevice::device_id_prop_, kIdFromClass,
                             "device ID override (0xffffffff: the device type's)"));
  k.AddProperty(qom::HexProp("x-pci-sub-vendor-id", &PCIDevice::sub_vendor_id_prop_, kIdFromClass,
                             "subsystem vendor ID override (0xffffffff: the device type's)"));
  k.AddProperty(qom::HexProp("x-pci-sub-device-id", &PCIDevice::sub_device_id_prop_, kIdFromClass,
                             "subsystem ID override (0xffffffff: the device type's)"));
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
  StoreLe16(c + kVendorId, pick(vendor_id_prop_, k.vendor_id));
  StoreLe16(c + kDeviceId, pick(device_id_prop_, k.device_id));
  c[kRevisionId] = k.revision;
  c[kClassProg] = k.prog_if;
  StoreLe16(c + kClassDevice, k.class_id);
  c[kHeaderType] =
      static_cast<uint8_t>(k.header_type | (multifunction_ ? kHeaderTypeMultiFunction : 0));
  if (k.header_type == 0) {  // type 1 headers use these bytes for the prefetch window
    StoreLe16(c + kSubsystemVendorId, pick(sub_vendor_id_prop_, k.subsystem_vendor_id));
    StoreLe16(c + kSubsystemId, pick(sub_device_id_prop_, k.subsystem_id));
  }
  c[kInterruptPin] = k.interrupt_pin;
  const uint16_t cmd_mask =
      kCommandIo | kCommandMemory | kCommandMaster | kCommandSerr | kCommandIntxDisable;
  StoreLe16(wmask_.data() + kCommand, cmd_mask);
  StoreLe16(w1cmask_.data() + kStatus, kStatusW1cMask);
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
    command_.store(CommandLocked(), std::memory_order_release);
    if (msix_vectors_ > 0) {
      for (unsigned v = 0; v < msix_vectors_; ++v) {
        uint8_t* e = msix_table_.data() + v * kMsixEntrySize;
        std::fill(e, e + kMsixEntrySize, 0);
        e[kMsixEntryVectorCtrl] = kMsixEntryCtrlMasked;
      }
      std::fill(msix_pba_.begin(), msix_pba_.end(), 0);
    }
    if (msi_cap_ != 0) {  // the pending bits are read-only: the mask-based reset keeps them
      const MsiLayout m = LayoutOf(LoadLe16(config_.data() + msi_cap_ + kMsiFlags), msi_cap_);
      if (m.maskable) StoreLe32(config_.data() + m.pending_off, 0);
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
    command_.store(CommandLocked(), std::memory_order_release);
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
        msi_cap_ != 0 && (LoadLe16(config_.data() + msi_cap_ + kMsiFlags) & kMsiFlagsEnable);
    const bool msix_on =
        msix_cap_ != 0 && (LoadLe16(config_.data() + msix_cap_ + kMsixFlags) & kMsixFlagsEnable);
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
  StoreLe32(config_.data() + off, b.type);
  StoreLe32(wmask_.data() + off, static_cast<uint32_t>(mask));
  if (is64) {
    StoreLe32(config_.data() + off + 4, 0);
    StoreLe32(wmask_.data() + off + 4, static_cast<uint32_t>(mask >> 32));
  }
  return b.region.get();
}

uint64_t PCIDevice::BarAddress(int i) const {
  const PciBar& b = bars_[static_cast<size_t>(i)];
  if (b.size == 0) return 0;
  absl::MutexLock l(&mu_);
  const uint32_t off = kBar0 + 4 * static_cast<uint32_t>(i);
  uint64_t v = LoadLe32(config_.data() + off) & (b.is_io() ? kBarIoMask : kBarMemMask);
  if (b.is_64bit()) v |= uint64_t{LoadLe32(config_.data() + off + 4)} << 32;
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
  StoreLe16(config_.data() + kStatus, LoadLe16(config_.data() + kStatus) | kStatusCapList);
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
      const uint16_t flags = LoadLe16(c + kMsiFlags);
      return absl::StrFormat("MSI, %u vector(s), %s-bit%s%s", 1u << ((flags >> 1) & 7),
                             (flags & kMsiFlags64Bit) ? "64" : "32",
                             (flags & kMsiFlagsMaskBit) ? ", maskable" : "",
                             (flags & kMsiFlagsEnable) ? ", enabled" : "");
    }
    case kCapIdMsix: {
      const uint16_t flags = LoadLe16(c + kMsixFlags);
      const uint32_t table = LoadLe32(c + kMsixTable), pba = LoadLe32(c + kMsixPba);
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
  uint16_t status = LoadLe16(config_.data() + kStatus);
  status = intx_level_ ? (status | kStatusInterrupt) : (status & ~kStatusInterrupt);
  StoreLe16(config_.data() + kStatus, status);
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
