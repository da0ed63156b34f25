#include "hw/virtio/virtio_pci.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bus/pci/pci_regs.h"
#include "bus/virtio/virtio_uapi.h"
#include "core/base/checked_math.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"

// After virtio_uapi.h (it includes virtio_config.h, which virtio_pci.h needs).
#include <linux/virtio_pci.h>

namespace vdev::virtio {
namespace {

constexpr uint16_t kNoVector = VIRTIO_MSI_NO_VECTOR;
constexpr uint16_t kVirtioVendor = 0x1af4;
constexpr uint8_t kIsrQueue = 0x1;  // ISR bit 0: a used-buffer notification

// Transitional (legacy) PCI device IDs by virtio device ID (VIRTIO 1.2 §4.1.2.1).
int LegacyDeviceId(uint16_t virtio_id) {
  switch (virtio_id) {
    case VIRTIO_ID_NET:
      return 0x1000;
    case VIRTIO_ID_BLOCK:
      return 0x1001;
    case VIRTIO_ID_BALLOON:
      return 0x1002;
    case VIRTIO_ID_CONSOLE:
      return 0x1003;
    case VIRTIO_ID_SCSI:
      return 0x1004;
    case VIRTIO_ID_RNG:
      return 0x1005;
    case VIRTIO_ID_9P:
      return 0x1009;
    default:
      return -1;
  }
}

// Fields of the common configuration structure: offset and width.
struct Field {
  uint32_t off, size;
};
constexpr Field kCommonFields[] = {
    {VIRTIO_PCI_COMMON_DFSELECT, 4},  {VIRTIO_PCI_COMMON_DF, 4},
    {VIRTIO_PCI_COMMON_GFSELECT, 4},  {VIRTIO_PCI_COMMON_GF, 4},
    {VIRTIO_PCI_COMMON_MSIX, 2},      {VIRTIO_PCI_COMMON_NUMQ, 2},
    {VIRTIO_PCI_COMMON_STATUS, 1},    {VIRTIO_PCI_COMMON_CFGGENERATION, 1},
    {VIRTIO_PCI_COMMON_Q_SELECT, 2},  {VIRTIO_PCI_COMMON_Q_SIZE, 2},
    {VIRTIO_PCI_COMMON_Q_MSIX, 2},    {VIRTIO_PCI_COMMON_Q_ENABLE, 2},
    {VIRTIO_PCI_COMMON_Q_NOFF, 2},    {VIRTIO_PCI_COMMON_Q_DESCLO, 4},
    {VIRTIO_PCI_COMMON_Q_DESCHI, 4},  {VIRTIO_PCI_COMMON_Q_AVAILLO, 4},
    {VIRTIO_PCI_COMMON_Q_AVAILHI, 4}, {VIRTIO_PCI_COMMON_Q_USEDLO, 4},
    {VIRTIO_PCI_COMMON_Q_USEDHI, 4},
};
constexpr uint32_t kCommonSize = 0x38;

uint64_t Replace32(uint64_t v, bool high, uint64_t half) {
  return high ? (v & 0xffffffffull) | (half << 32) : (v & ~0xffffffffull) | (half & 0xffffffff);
}

void Put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace

void VirtIOPCIProxy::ClassInit(VirtIOPCIProxyClass& k) {
  k.vendor_id = kVirtioVendor;
  k.subsystem_vendor_id = kVirtioVendor;
  k.interrupt_pin = 1;
  k.AddProperty(qom::Prop("disable-legacy", &VirtIOPCIProxy::disable_legacy_, true,
                          "on: modern-only device (0x1040 + id); off: transitional, with the "
                          "legacy I/O BAR"));
  k.AddProperty(qom::Prop("disable-modern", &VirtIOPCIProxy::disable_modern_, false,
                          "on: no modern interface (legacy only; needs disable-legacy=off)"));
  k.AddProperty(
      qom::Prop("vectors", &VirtIOPCIProxy::vectors_, uint32_t{2}, "MSI-X vectors (0: INTx only)"));
  k.AddProperty(qom::Prop("ioeventfd", &VirtIOPCIProxy::ioeventfd_, true,
                          "let a VMM bind queue notifications to eventfds"));
  k.AddProperty(qom::Prop("modern-bar64", &VirtIOPCIProxy::modern_bar64_, false,
                          "make the modern BAR 64-bit (QEMU's proxy handles 32-bit BARs only)"));
}

void VirtIOPCIProxyClass::ForwardBackendProperties() {
  const qom::TypeImpl* t = qom::TypeRegistry::Global().Find(backend_type);
  if (t == nullptr) {
    SetInitError(absl::StrCat("backend type '", backend_type, "' is not registered"));
    return;
  }
  for (const auto& bp : t->klass().properties()) {
    if (FindProperty(bp->name) != nullptr || !bp->set) continue;
    qom::PropertyInfo p;
    p.name = bp->name;
    p.type = bp->type;
    p.description = bp->description;
    p.default_value = bp->default_value;
    p.enum_values = bp->enum_values;
    p.set = [name = bp->name](qom::Object& o, absl::string_view v) {
      qom::internal::OwnerOf<VirtIOPCIProxy>(o).forwarded_values_[name] = std::string(v);
      return absl::OkStatus();
    };
    p.get = [name = bp->name, def = bp->default_value](const qom::Object& o) {
      const auto& m = qom::internal::OwnerOf<VirtIOPCIProxy>(o).forwarded_values_;
      auto it = m.find(name);
      return it != m.end() ? it->second : def.value_or("");
    };
    forwarded_properties.push_back(bp->name);
    AddProperty(std::move(p));
  }
}

VirtIOPCIProxy::VirtIOPCIProxy() : bus_(CreateChildBus<VirtioBus>("virtio-bus")) {
  bus_->set_transport(this);
}

VirtIOPCIProxy::~VirtIOPCIProxy() = default;

const GuestMemory* VirtIOPCIProxy::dma_memory() const {
  return bus_master() ? PCIDevice::dma_memory() : nullptr;  // no DMA without bus mastering
}

absl::Status VirtIOPCIProxy::Realize() {
  const VirtIOPCIProxyClass& k = proxy_class();
  if (disable_legacy_ && disable_modern_) {
    return absl::InvalidArgumentError(
        absl::StrCat(type_name(), ": disable-legacy and disable-modern cannot both be on"));
  }
  if (vectors_ > pci::kMsixMaxVectors) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: property 'vectors' must be at most %u, got %u", type_name(),
                        pci::kMsixMaxVectors, vectors_));
  }
  VDEV_RETURN_IF_ERROR(PCIDevice::Realize());

  // The backend: created here, on our bus, with the properties the user gave the proxy.
  VDEV_ASSIGN_OR_RETURN(std::unique_ptr<qom::Object> obj, type().registry().Create(k.backend_type));
  std::unique_ptr<VirtIODevice> backend(qom::DynamicCast<VirtIODevice>(obj.release()));
  if (backend == nullptr) {
    return absl::InternalError(absl::StrCat(k.backend_type, " is not a virtio device"));
  }
  VDEV_ASSIGN_OR_RETURN(qom::Object * placed, AddChild("virtio-backend", std::move(backend)));
  auto* vdev = static_cast<VirtIODevice*>(placed);
  auto fail = [&](absl::Status s) {
    if (vdev->parent_bus() != nullptr) bus_->Detach(*vdev);
    DeleteChild("virtio-backend");
    return Annotate(s, DisplayName());
  };
  for (const std::string& name : k.forwarded_properties) {
    if (auto it = forwarded_values_.find(name); it != forwarded_values_.end()) {
      if (absl::Status s = vdev->SetProperty(name, it->second); !s.ok()) return fail(s);
      continue;
    }
    if (FindProperty(name) == nullptr || FindProperty(name)->get == nullptr) continue;
    auto v = GetProperty(name);
    if (!v.ok()) return fail(v.status());
    if (v->empty()) continue;
    if (absl::Status s = vdev->SetProperty(name, *v); !s.ok()) return fail(s);
  }
  if (absl::Status s = bus_->Attach(*vdev); !s.ok()) return fail(s);
  if (absl::Status s = vdev->RealizeDevice(); !s.ok()) return fail(s);

  const uint16_t id = vdev->device_id();
  const int legacy_id = LegacyDeviceId(id);
  if (!disable_legacy_ && legacy_id < 0) {
    vdev->UnrealizeDevice();
    return fail(absl::InvalidArgumentError(absl::StrFormat(
        "virtio device id %u has no transitional PCI id: use disable-legacy=on", id)));
  }
  {
    absl::MutexLock l(&config_lock());
    uint8_t* c = config();
    const uint16_t did =
        disable_legacy_ ? static_cast<uint16_t>(0x1040 + id) : static_cast<uint16_t>(legacy_id);
    c[pci::kDeviceId] = static_cast<uint8_t>(did);
    c[pci::kDeviceId + 1] = static_cast<uint8_t>(did >> 8);
    c[pci::kRevisionId] = disable_legacy_ ? 1 : 0;
    c[pci::kSubsystemId] = static_cast<uint8_t>(id);
    c[pci::kSubsystemId + 1] = static_cast<uint8_t>(id >> 8);
  }
  {
    absl::MutexLock l(&mu_);
    queue_vectors_.assign(vdev->num_queues(), kNoVector);
  }

  if (vectors_ > 0) VDEV_RETURN_IF_ERROR(InitMsixExclusiveBar(vectors_, kMsixBar));

  if (!disable_modern_) {
    MemoryRegion* bar = RegisterBar(kModernBar, 0x4000, modern_bar64_ ? pci::kBarMemType64 : 0);
    auto make = [this](const char* name, uint64_t size, AccessConstraints valid,
                       std::function<uint64_t(uint64_t, unsigned)> rd,
                       std::function<void(uint64_t, uint64_t, unsigned)> wr) {
      MemoryRegionOps ops;
      ops.read = [rd](MmioOffset off, unsigned size) { return rd(off.value(), size); };
      ops.write = [wr](MmioOffset off, uint64_t v, unsigned size) { wr(off.value(), v, size); };
      ops.valid = valid;
      auto r = MemoryRegion::CreateIo(absl::StrCat(type_name(), " ", name), size, std::move(ops));
      r->set_owner_counters(&counters());
      return r;
    };
    common_ = make(
        "common", 0x1000, {1, 4, false},
        [this](uint64_t o, unsigned s) { return CommonRead(o, s); },
        [this](uint64_t o, uint64_t v, unsigned s) { CommonWrite(o, v, s); });
    isr_region_ = make(
        "isr", 0x1000, {1, 4, false},
        [this](uint64_t o, unsigned s) -> uint64_t { return o == 0 ? IsrRead() : 0; },
        [](uint64_t, uint64_t, unsigned) {});
    device_ = make(
        "device", 0x1000, {1, 4, false},
        [this](uint64_t o, unsigned s) -> uint64_t {
          return this->vdev()->ConfigRead(static_cast<uint32_t>(o), static_cast<int>(s));
        },
        [this](uint64_t o, uint64_t v, unsigned s) {
          this->vdev()->ConfigWrite(static_cast<uint32_t>(o), static_cast<uint32_t>(v),
                                    static_cast<int>(s));
        });
    notify_ = make(
        "notify", 0x1000, {2, 4, false}, [](uint64_t, unsigned) -> uint64_t { return 0; },
        [this](uint64_t o, uint64_t, unsigned) {
          this->vdev()->Kick(static_cast<uint16_t>(o / kNotifyMultiplier));
        });
    bar->AddSubregion(kCommonOffset, common_.get());
    bar->AddSubregion(kIsrOffset, isr_region_.get());
    bar->AddSubregion(kDeviceOffset, device_.get());
    bar->AddSubregion(kNotifyOffset, notify_.get());

    // Vendor capabilities, in the order QEMU lists them.
    auto add_cap = [this](uint8_t type, uint32_t offset, uint32_t length,
                          uint8_t size) -> absl::StatusOr<uint8_t> {
      VDEV_ASSIGN_OR_RETURN(uint8_t pos, AddCapability(pci::kCapIdVendor, size));
      absl::MutexLock l(&config_lock());
      uint8_t* c = config() + pos;
      c[VIRTIO_PCI_CAP_LEN] = size;
      c[VIRTIO_PCI_CAP_CFG_TYPE] = type;
      c[VIRTIO_PCI_CAP_BAR] = kModernBar;
      Put32(c + VIRTIO_PCI_CAP_OFFSET, offset);
      Put32(c + VIRTIO_PCI_CAP_LENGTH, length);
      return pos;
    };
    const uint32_t device_len = std::max<uint32_t>(vdev->config_size(), 4);
    VDEV_RETURN_IF_ERROR(
        add_cap(VIRTIO_PCI_CAP_COMMON_CFG, kCommonOffset, kCommonSize, 16).status());
    VDEV_RETURN_IF_ERROR(add_cap(VIRTIO_PCI_CAP_ISR_CFG, kIsrOffset, 1, 16).status());
    VDEV_RETURN_IF_ERROR(
        add_cap(VIRTIO_PCI_CAP_DEVICE_CFG, kDeviceOffset, device_len, 16).status());
    VDEV_ASSIGN_OR_RETURN(
        uint8_t notify,
        add_cap(VIRTIO_PCI_CAP_NOTIFY_CFG, kNotifyOffset,
                static_cast<uint32_t>(std::max<size_t>(vdev->num_queues(), 1) * kNotifyMultiplier),
                20));
    VDEV_ASSIGN_OR_RETURN(pci_cfg_cap_, add_cap(VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 20));
    absl::MutexLock l(&config_lock());
    Put32(config() + notify + VIRTIO_PCI_NOTIFY_CAP_MULT, kNotifyMultiplier);
    // The pci-cfg window: bar, offset, length and data are the driver's to write.
    SetConfigWriteMask(pci_cfg_cap_ + VIRTIO_PCI_CAP_BAR, 0xff);
    for (uint32_t i = 0; i < 4; ++i) {
      SetConfigWriteMask(pci_cfg_cap_ + VIRTIO_PCI_CAP_OFFSET + i, 0xff);
      SetConfigWriteMask(pci_cfg_cap_ + VIRTIO_PCI_CAP_LENGTH + i, 0xff);
      SetConfigWriteMask(pci_cfg_cap_ + 16 + i, 0xff);
    }
  }

  if (!disable_legacy_) {
    uint64_t size = 0x20;
    while (size < 24u + vdev->config_size()) size *= 2;
    MemoryRegionOps ops;
    ops.read = [this](MmioOffset off, unsigned s) { return LegacyRead(off.value(), s); };
    ops.write = [this](MmioOffset off, uint64_t v, unsigned s) { LegacyWrite(off.value(), v, s); };
    ops.valid = {1, 4, false};
    legacy_ = MemoryRegion::CreateIo(absl::StrCat(type_name(), " legacy"), size, std::move(ops));
    legacy_->set_owner_counters(&counters());
    RegisterBar(kLegacyBar, size, pci::kBarSpaceIo)->AddSubregion(0, legacy_.get());
  }
  return absl::OkStatus();
}

void VirtIOPCIProxy::Unrealize() {
  // The backend was unrealized first (devices on our bus go before us).
  if (VirtIODevice* d = vdev()) bus_->Detach(*d);
  DeleteChild("virtio-backend");
  legacy_.reset();
  notify_.reset();
  device_.reset();
  isr_region_.reset();
  common_.reset();
  PCIDevice::Unrealize();
}

void VirtIOPCIProxy::Reset() {
  {
    absl::MutexLock l(&mu_);
    ResetInterruptsLocked();
    device_feature_select_ = driver_feature_select_ = 0;
    queue_select_ = 0;
  }
  PCIDevice::Reset();
}

void VirtIOPCIProxy::ResetInterruptsLocked() {
  isr_ = 0;
  config_vector_ = kNoVector;
  std::fill(queue_vectors_.begin(), queue_vectors_.end(), kNoVector);
  SetIrq(false);
}

void VirtIOPCIProxy::WriteStatus(bool legacy, uint8_t status) {
  VirtIODevice* d = vdev();
  d->SetLegacy(legacy);  // effective only at the start of initialisation
  d->SetStatus(status);
  if (status == 0) {  // a device reset also resets the transport's interrupt state
    absl::MutexLock l(&mu_);
    ResetInterruptsLocked();
  }
}

std::optional<uint64_t> VirtIOPCIProxy::QueueNotifyAddress(uint16_t index) const {
  const pci::PciBar& b = bar(kModernBar);
  if (disable_modern_ || b.mapped_at == pci::kBarUnmapped || vdev() == nullptr ||
      index >= vdev()->num_queues()) {
    return std::nullopt;
  }
  return b.mapped_at + kNotifyOffset + uint64_t{index} * kNotifyMultiplier;
}

void VirtIOPCIProxy::SetQueueEventfds(uint16_t index, int ioeventfd, int irqfd) {
  absl::MutexLock l(&mu_);
  if (queue_eventfds_.size() <= index) queue_eventfds_.resize(index + 1, {-1, -1});
  queue_eventfds_[index] = {ioeventfd, irqfd};
}

int VirtIOPCIProxy::QueueIoeventfd(uint16_t index) const {
  absl::MutexLock l(&mu_);
  return index < queue_eventfds_.size() ? queue_eventfds_[index].first : -1;
}

int VirtIOPCIProxy::QueueIrqfd(uint16_t index) const {
  absl::MutexLock l(&mu_);
  return index < queue_eventfds_.size() ? queue_eventfds_[index].second : -1;
}

std::string VirtIOPCIProxy::DescribeCapability(uint8_t pos) const {
  const std::string generic = PCIDevice::DescribeCapability(pos);
  auto* self = const_cast<VirtIOPCIProxy*>(this);
  absl::MutexLock l(&self->config_lock());
  const uint8_t* c = self->config() + pos;
  if (c[0] != pci::kCapIdVendor) return generic;
  static constexpr const char* kNames[] = {"?",   "common config", "notify",
                                           "ISR", "device config", "PCI config access"};
  const uint8_t type = c[VIRTIO_PCI_CAP_CFG_TYPE];
  auto get32 = [c](int o) {
    return uint32_t{c[o]} | uint32_t{c[o + 1]} << 8 | uint32_t{c[o + 2]} << 16 |
           uint32_t{c[o + 3]} << 24;
  };
  if (type == VIRTIO_PCI_CAP_PCI_CFG) return "virtio PCI config access (type 5)";
  return absl::StrFormat("virtio %s (type %u), BAR%u+0x%x, 0x%x bytes",
                         type < 6 ? kNames[type] : "?", type, c[VIRTIO_PCI_CAP_BAR],
                         get32(VIRTIO_PCI_CAP_OFFSET), get32(VIRTIO_PCI_CAP_LENGTH));
}

std::optional<std::pair<uint16_t, MsiMessage>> VirtIOPCIProxy::InterruptRoute(int index) {
  uint16_t vector;
  {
    absl::MutexLock l(&mu_);
    if (index == kConfigVector) {
      vector = config_vector_;
    } else if (index >= 0 && static_cast<size_t>(index) < queue_vectors_.size()) {
      vector = queue_vectors_[static_cast<size_t>(index)];
    } else {
      return std::nullopt;
    }
  }
  if (vector == kNoVector || !msix_enabled()) return std::nullopt;
  auto msg = MsixVectorMessage(vector);
  if (!msg) return std::nullopt;
  return std::make_pair(vector, *msg);
}

// ---- interrupts ----

void VirtIOPCIProxy::RaiseLocked(uint8_t isr_bit, uint16_t vector) {
  if (msix_enabled()) {
    if (vector != kNoVector) MsixNotify(vector);
    return;
  }
  isr_ |= isr_bit;
  SetIrq(true);
}

void VirtIOPCIProxy::NotifyQueue(uint16_t index) {
  absl::MutexLock l(&mu_);
  RaiseLocked(kIsrQueue, index < queue_vectors_.size() ? queue_vectors_[index] : kNoVector);
}

void VirtIOPCIProxy::NotifyConfig() {
  absl::MutexLock l(&mu_);
  RaiseLocked(VIRTIO_PCI_ISR_CONFIG, config_vector_);
}

uint64_t VirtIOPCIProxy::IsrRead() {
  absl::MutexLock l(&mu_);
  const uint8_t v = isr_;
  isr_ = 0;
  SetIrq(false);
  return v;
}

// ---- modern common configuration ----

uint64_t VirtIOPCIProxy::CommonRead(uint64_t off, unsigned size) {
  VirtIODevice* d = vdev();
  uint32_t dfsel, gfsel;
  uint16_t sel, cfg_vec, q_vec = 0;
  {
    absl::MutexLock l(&mu_);
    dfsel = device_feature_select_;
    gfsel = driver_feature_select_;
    sel = queue_select_;
    cfg_vec = config_vector_;
    if (sel < queue_vectors_.size()) q_vec = queue_vectors_[sel];
  }
  uint8_t buf[kCommonSize] = {};
  auto put = [&buf](uint32_t o, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) buf[o + i] = static_cast<uint8_t>(v >> (8 * i));
  };
  put(VIRTIO_PCI_COMMON_DFSELECT, dfsel, 4);
  put(VIRTIO_PCI_COMMON_DF, d->ReadHostFeatures(dfsel), 4);
  put(VIRTIO_PCI_COMMON_GFSELECT, gfsel, 4);
  put(VIRTIO_PCI_COMMON_GF, d->ReadGuestFeatures(gfsel), 4);
  put(VIRTIO_PCI_COMMON_MSIX, cfg_vec, 2);
  put(VIRTIO_PCI_COMMON_NUMQ, d->num_queues(), 2);
  put(VIRTIO_PCI_COMMON_STATUS, d->status(), 1);
  put(VIRTIO_PCI_COMMON_CFGGENERATION, d->config_generation(), 1);
  put(VIRTIO_PCI_COMMON_Q_SELECT, sel, 2);
  // A queue_select past the last queue reads as a queue that does not exist (size 0).
  const bool exists = d->WithQueue(sel, [&](VirtQueue& q) {
    put(VIRTIO_PCI_COMMON_Q_SIZE, q.size(), 2);
    put(VIRTIO_PCI_COMMON_Q_MSIX, q_vec, 2);
    put(VIRTIO_PCI_COMMON_Q_ENABLE, q.enabled(), 2);
    put(VIRTIO_PCI_COMMON_Q_NOFF, sel, 2);
    put(VIRTIO_PCI_COMMON_Q_DESCLO, q.desc_addr().value(), 8);
    put(VIRTIO_PCI_COMMON_Q_AVAILLO, q.avail_addr().value(), 8);
    put(VIRTIO_PCI_COMMON_Q_USEDLO, q.used_addr().value(), 8);
    return true;
  });
  if (!exists) put(VIRTIO_PCI_COMMON_Q_MSIX, kNoVector, 2);
  if (off >= kCommonSize || size > kCommonSize - off) return 0;  // reserved space reads 0
  uint64_t v = 0;
  for (unsigned i = 0; i < size; ++i) v |= uint64_t{buf[off + i]} << (8 * i);
  return v;
}

void VirtIOPCIProxy::CommonWrite(uint64_t off, uint64_t val, unsigned size) {
  VirtIODevice* d = vdev();
  const Field* f = nullptr;
  for (const Field& x : kCommonFields) {
    if (x.off == off && x.size == size) f = &x;
  }
  if (f == nullptr) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_common_access",
                         "%s: %u-byte write at common-config offset 0x%x", DisplayName(), size,
                         off);
    return;
  }
  uint16_t sel;
  {
    absl::MutexLock l(&mu_);
    sel = queue_select_;
    switch (off) {
      case VIRTIO_PCI_COMMON_DFSELECT:
        device_feature_select_ = static_cast<uint32_t>(val);
        return;
      case VIRTIO_PCI_COMMON_GFSELECT:
        driver_feature_select_ = static_cast<uint32_t>(val);
        return;
      case VIRTIO_PCI_COMMON_MSIX:
        // A vector the table does not have reads back as NO_VECTOR (§4.1.5.1.2).
        config_vector_ = val < vectors_ ? static_cast<uint16_t>(val) : kNoVector;
        return;
      case VIRTIO_PCI_COMMON_Q_SELECT:
        queue_select_ = static_cast<uint16_t>(val);
        return;
      default:
        break;
    }
  }
  switch (off) {
    case VIRTIO_PCI_COMMON_GF: {
      uint32_t gfsel;
      {
        absl::MutexLock l(&mu_);
        gfsel = driver_feature_select_;
      }
      d->WriteGuestFeatures(gfsel, static_cast<uint32_t>(val));
      return;
    }
    case VIRTIO_PCI_COMMON_STATUS:
      WriteStatus(/*legacy=*/false, static_cast<uint8_t>(val));
      return;
    case VIRTIO_PCI_COMMON_DF:
    case VIRTIO_PCI_COMMON_NUMQ:
    case VIRTIO_PCI_COMMON_CFGGENERATION:
    case VIRTIO_PCI_COMMON_Q_NOFF:
      VDEV_LOG_GUEST_ERROR(counters(), "bad_common_access",
                           "%s: write to read-only common-config field 0x%x", DisplayName(), off);
      return;
    default:
      break;
  }
  // Per-queue fields, under the device's lock: they cannot race with DRIVER_OK freezing them.
  if (sel >= d->num_queues()) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_queue_select",
                         "%s: queue field 0x%x written with queue_select %u of %u", DisplayName(),
                         off, sel, d->num_queues());
    return;
  }
  const bool ok = d->WithQueue(sel, [&](VirtQueue& q) {
    switch (off) {
      case VIRTIO_PCI_COMMON_Q_SIZE:
        return q.SetSize(static_cast<uint16_t>(val));
      case VIRTIO_PCI_COMMON_Q_MSIX: {
        if (q.frozen()) return false;
        absl::MutexLock l(&mu_);
        queue_vectors_[sel] = val < vectors_ ? static_cast<uint16_t>(val) : kNoVector;
        return true;
      }
      case VIRTIO_PCI_COMMON_Q_ENABLE:
        return val == 1 && q.SetEnabled(true);  // 0 is not a way to disable (§4.1.4.3.2)
      case VIRTIO_PCI_COMMON_Q_DESCLO:
      case VIRTIO_PCI_COMMON_Q_DESCHI:
        return q.SetAddresses(
            GuestAddr(Replace32(q.desc_addr().value(), off == VIRTIO_PCI_COMMON_Q_DESCHI, val)),
            q.avail_addr(), q.used_addr());
      case VIRTIO_PCI_COMMON_Q_AVAILLO:
      case VIRTIO_PCI_COMMON_Q_AVAILHI:
        return q.SetAddresses(
            q.desc_addr(),
            GuestAddr(Replace32(q.avail_addr().value(), off == VIRTIO_PCI_COMMON_Q_AVAILHI, val)),
            q.used_addr());
      case VIRTIO_PCI_COMMON_Q_USEDLO:
      case VIRTIO_PCI_COMMON_Q_USEDHI:
        return q.SetAddresses(
            q.desc_addr(), q.avail_addr(),
            GuestAddr(Replace32(q.used_addr().value(), off == VIRTIO_PCI_COMMON_Q_USEDHI, val)));
      default:
        return true;
    }
  });
  if (!ok) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_queue_config",
                         "%s: queue %u field 0x%x = 0x%x refused (invalid, or after DRIVER_OK)",
                         DisplayName(), sel, off, val);
  }
}

// ---- legacy interface (VIRTIO 1.2 §4.1.4.8) ----

uint64_t VirtIOPCIProxy::LegacyRead(uint64_t off, unsigned size) {
  VirtIODevice* d = vdev();
  const bool msix = msix_enabled();
  const uint64_t cfg = msix ? 24 : 20;
  if (off >= cfg) return d->ConfigRead(static_cast<uint32_t>(off - cfg), static_cast<int>(size));
  uint16_t sel;
  {
    absl::MutexLock l(&mu_);
    sel = queue_select_;
  }
  auto field = [&](uint64_t o, unsigned n) { return off == o && size == n; };
  if (field(VIRTIO_PCI_HOST_FEATURES, 4)) return d->ReadHostFeatures(0) & 0xffffffffu;
  if (field(VIRTIO_PCI_GUEST_FEATURES, 4)) return d->ReadGuestFeatures(0);
  if (field(VIRTIO_PCI_QUEUE_PFN, 4) || field(VIRTIO_PCI_QUEUE_NUM, 2)) {
    uint64_t v = 0;
    d->WithQueue(sel, [&](VirtQueue& q) {
      v = off == VIRTIO_PCI_QUEUE_PFN ? q.desc_addr().value() >> 12 : q.max_size();
      return true;
    });
    return v;
  }
  if (field(VIRTIO_PCI_QUEUE_SEL, 2)) return sel;
  if (field(VIRTIO_PCI_STATUS, 1)) return d->status();
  if (field(VIRTIO_PCI_ISR, 1)) return IsrRead();
  if (msix && (field(20, 2) || field(22, 2))) {
    absl::MutexLock l(&mu_);
    if (off == 20) return config_vector_;
    return sel < queue_vectors_.size() ? queue_vectors_[sel] : kNoVector;
  }
  VDEV_LOG_GUEST_ERROR(counters(), "bad_legacy_access", "%s: %u-byte legacy read at 0x%x",
                       DisplayName(), size, off);
  return ~uint64_t{0};
}

void VirtIOPCIProxy::LegacyWrite(uint64_t off, uint64_t val, unsigned size) {
  VirtIODevice* d = vdev();
  const bool msix = msix_enabled();
  const uint64_t cfg = msix ? 24 : 20;
  if (off >= cfg) {
    d->ConfigWrite(static_cast<uint32_t>(off - cfg), static_cast<uint32_t>(val),
                   static_cast<int>(size));
    return;
  }
  uint16_t sel;
  {
    absl::MutexLock l(&mu_);
    sel = queue_select_;
  }
  auto field = [&](uint64_t o, unsigned n) { return off == o && size == n; };
  bool ok = true;
  if (field(VIRTIO_PCI_GUEST_FEATURES, 4)) {
    d->SetLegacy(true);
    d->WriteGuestFeatures(0, static_cast<uint32_t>(val));
  } else if (field(VIRTIO_PCI_QUEUE_PFN, 4)) {
    // Legacy queues keep their maximum size; the three parts sit in one 4 KiB-aligned area.
    ok = d->WithQueue(sel, [&](VirtQueue& q) {
      return q.SetSize(q.max_size()) &&
             q.SetLegacyPfn(static_cast<uint32_t>(val), VIRTIO_PCI_VRING_ALIGN);
    });
  } else if (field(VIRTIO_PCI_QUEUE_SEL, 2)) {
    absl::MutexLock l(&mu_);
    queue_select_ = static_cast<uint16_t>(val);
  } else if (field(VIRTIO_PCI_QUEUE_NOTIFY, 2)) {
    d->Kick(static_cast<uint16_t>(val));
  } else if (field(VIRTIO_PCI_STATUS, 1)) {
    WriteStatus(/*legacy=*/true, static_cast<uint8_t>(val));
  } else if (msix && field(20, 2)) {
    absl::MutexLock l(&mu_);
    config_vector_ = val < vectors_ ? static_cast<uint16_t>(val) : kNoVector;
  } else if (msix && field(22, 2)) {
    absl::MutexLock l(&mu_);
    if (sel < queue_vectors_.size()) {
      queue_vectors_[sel] = val < vectors_ ? static_cast<uint16_t>(val) : kNoVector;
    } else {
      ok = false;
    }
  } else {
    ok = false;
  }
  if (!ok) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_legacy_access",
                         "%s: %u-byte legacy write of 0x%x at 0x%x refused", DisplayName(), size,
                         val, off);
  }
}

// ---- PCI configuration access capability ----

void VirtIOPCIProxy::ConfigWritten(uint32_t offset, int size) {
  PCIDevice::ConfigWritten(offset, size);
  if (pci_cfg_cap_ != 0 && offset < pci_cfg_cap_ + 20u &&
      offset + static_cast<uint32_t>(size) > pci_cfg_cap_ + 16u) {
    PciCfgAccess(/*write=*/true);
  }
}

void VirtIOPCIProxy::BeforeConfigRead(uint32_t offset, int size) {
  if (pci_cfg_cap_ != 0 && offset < pci_cfg_cap_ + 20u &&
      offset + static_cast<uint32_t>(size) > pci_cfg_cap_ + 16u) {
    PciCfgAccess(/*write=*/false);
  }
}

void VirtIOPCIProxy::PciCfgAccess(bool write) {
  uint8_t bar_nr;
  uint32_t off, len, data;
  {
    absl::MutexLock l(&config_lock());
    const uint8_t* c = config() + pci_cfg_cap_;
    bar_nr = c[VIRTIO_PCI_CAP_BAR];
    auto get32 = [c](int o) {
      return uint32_t{c[o]} | uint32_t{c[o + 1]} << 8 | uint32_t{c[o + 2]} << 16 |
             uint32_t{c[o + 3]} << 24;
    };
    off = get32(VIRTIO_PCI_CAP_OFFSET);
    len = get32(VIRTIO_PCI_CAP_LENGTH);
    data = get32(16);
  }
  // The window reaches our modern BAR only, with a width of 1, 2 or 4, aligned, inside the BAR.
  if (bar_nr != kModernBar || disable_modern_ || (len != 1 && len != 2 && len != 4) ||
      off % len != 0 || !RangeWithin(off, len, 0, bar(kModernBar).size)) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_pci_cfg_access",
                         "%s: pci-cfg window BAR%u offset 0x%x length %u refused", DisplayName(),
                         bar_nr, off, len);
    return;
  }
  // Dispatch straight into the BAR's regions (the window works whether or not the BAR is mapped).
  MemoryRegion* target = nullptr;
  uint32_t base = 0;
  for (auto [r, b] : {std::pair{common_.get(), kCommonOffset},
                      {isr_region_.get(), kIsrOffset},
                      {device_.get(), kDeviceOffset},
                      {notify_.get(), kNotifyOffset}}) {
    if (off >= b && off - b < r->size()) {
      target = r;
      base = b;
    }
  }
  if (target == nullptr) return;
  const MemoryRegionOps& ops = target->ops();
  const MmioOffset o(off - base);
  if (len < ops.valid.min_size || len > ops.valid.max_size) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_pci_cfg_access",
                         "%s: pci-cfg window: %u-byte access not valid at BAR offset 0x%x",
                         DisplayName(), len, off);
    return;
  }
  if (write) {
    if (ops.write) ops.write(o, data & (len == 4 ? 0xffffffffu : (1u << (8 * len)) - 1), len);
    return;
  }
  const uint32_t v = ops.read ? static_cast<uint32_t>(ops.read(o, len)) : 0xffffffffu;
  absl::MutexLock l(&config_lock());
  Put32(config() + pci_cfg_cap_ + 16, v);
}

VDEV_REGISTER_TYPE(VirtIOPCIProxy);

}  // namespace vdev::virtio
