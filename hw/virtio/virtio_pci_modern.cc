// VirtIOPCIProxy, the modern interface (VIRTIO 1.2 §4.1.4): the BAR with the common
// configuration, ISR, device configuration and notification regions, their vendor capabilities,
// and the PCI configuration access capability (§4.1.4.9).
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bus/pci/pci_regs.h"
#include "core/base/byte_order.h"
#include "core/base/checked_math.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"
#include "hw/virtio/virtio_pci.h"
#include "hw/virtio/virtio_pci_internal.h"

namespace vdev::virtio {

absl::Status VirtIOPCIProxy::MapModernInterface(VirtIODevice& vdev) {
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
      "common", 0x1000, {1, 4, false}, [this](uint64_t o, unsigned s) { return CommonRead(o, s); },
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
    StoreLe32(c + VIRTIO_PCI_CAP_OFFSET, offset);
    StoreLe32(c + VIRTIO_PCI_CAP_LENGTH, length);
    return pos;
  };
  const uint32_t device_len = std::max<uint32_t>(vdev.config_size(), 4);
  constexpr uint8_t kCapSize = sizeof(virtio_pci_cap);
  VDEV_RETURN_IF_ERROR(
      add_cap(VIRTIO_PCI_CAP_COMMON_CFG, kCommonOffset, kCommonSize, kCapSize).status());
  VDEV_RETURN_IF_ERROR(add_cap(VIRTIO_PCI_CAP_ISR_CFG, kIsrOffset, 1, kCapSize).status());
  VDEV_RETURN_IF_ERROR(
      add_cap(VIRTIO_PCI_CAP_DEVICE_CFG, kDeviceOffset, device_len, kCapSize).status());
  VDEV_ASSIGN_OR_RETURN(
      uint8_t notify,
      add_cap(VIRTIO_PCI_CAP_NOTIFY_CFG, kNotifyOffset,
              static_cast<uint32_t>(std::max<size_t>(vdev.num_queues(), 1) * kNotifyMultiplier),
              sizeof(virtio_pci_notify_cap)));
  VDEV_ASSIGN_OR_RETURN(pci_cfg_cap_,
                        add_cap(VIRTIO_PCI_CAP_PCI_CFG, 0, 0, sizeof(virtio_pci_cfg_cap)));
  absl::MutexLock l(&config_lock());
  StoreLe32(config() + notify + VIRTIO_PCI_NOTIFY_CAP_MULT, kNotifyMultiplier);
  // The pci-cfg window: bar, offset, length and data are the driver's to write.
  SetConfigWriteMask(pci_cfg_cap_ + VIRTIO_PCI_CAP_BAR, 0xff);
  for (uint32_t i = 0; i < 4; ++i) {
    SetConfigWriteMask(pci_cfg_cap_ + VIRTIO_PCI_CAP_OFFSET + i, 0xff);
    SetConfigWriteMask(pci_cfg_cap_ + VIRTIO_PCI_CAP_LENGTH + i, 0xff);
    SetConfigWriteMask(pci_cfg_cap_ + kPciCfgData + i, 0xff);
  }
  return absl::OkStatus();
}

uint64_t VirtIOPCIProxy::IsrRead() {
  absl::MutexLock l(&mu_);
  const uint8_t v = isr_;
  isr_ = 0;
  SetIrq(false);
  return v;
}

// ---- modern common configuration ----

namespace {

// The common-configuration fields of the selected queue, and the register-model field each is.
struct QueueFieldAt {
  uint32_t off, size;
  QueueField field;
};
constexpr QueueFieldAt kQueueFields[] = {
    {VIRTIO_PCI_COMMON_Q_SIZE, 2, QueueField::kSize},
    {VIRTIO_PCI_COMMON_Q_MSIX, 2, QueueField::kVector},
    {VIRTIO_PCI_COMMON_Q_ENABLE, 2, QueueField::kEnable},
    {VIRTIO_PCI_COMMON_Q_DESCLO, 4, QueueField::kDescLow},
    {VIRTIO_PCI_COMMON_Q_DESCHI, 4, QueueField::kDescHigh},
    {VIRTIO_PCI_COMMON_Q_AVAILLO, 4, QueueField::kDriverLow},
    {VIRTIO_PCI_COMMON_Q_AVAILHI, 4, QueueField::kDriverHigh},
    {VIRTIO_PCI_COMMON_Q_USEDLO, 4, QueueField::kDeviceLow},
    {VIRTIO_PCI_COMMON_Q_USEDHI, 4, QueueField::kDeviceHigh},
};

}  // namespace

uint64_t VirtIOPCIProxy::CommonRead(uint64_t off, unsigned size) {
  VirtIODevice& d = *vdev();
  // The structure as the driver would see it now, then the bytes asked for (any aligned width
  // inside it; a 64-bit address reads as its two halves).
  uint8_t buf[kCommonSize] = {};
  auto put = [&buf](uint32_t o, uint64_t v, unsigned n) { StoreLe(buf + o, v, n); };
  put(VIRTIO_PCI_COMMON_DFSELECT, regs_.device_feature_select(), 4);
  put(VIRTIO_PCI_COMMON_DF, regs_.ReadDeviceFeatures(d), 4);
  put(VIRTIO_PCI_COMMON_GFSELECT, regs_.driver_feature_select(), 4);
  put(VIRTIO_PCI_COMMON_GF, regs_.ReadDriverFeatures(d), 4);
  put(VIRTIO_PCI_COMMON_MSIX, regs_.config_vector(), 2);
  put(VIRTIO_PCI_COMMON_NUMQ, d.num_queues(), 2);
  put(VIRTIO_PCI_COMMON_STATUS, d.status(), 1);
  put(VIRTIO_PCI_COMMON_CFGGENERATION, d.config_generation(), 1);
  put(VIRTIO_PCI_COMMON_Q_SELECT, regs_.queue_select(), 2);
  for (const QueueFieldAt& f : kQueueFields) {
    put(f.off, regs_.ReadQueue(d, f.field), f.size);
  }
  // Notification offset: queue i notifies at i * multiplier; no queue, no offset.
  put(VIRTIO_PCI_COMMON_Q_NOFF, regs_.QueueExists(d) ? regs_.selected_queue() : 0, 2);
  if (off >= kCommonSize || size > kCommonSize - off) return 0;  // reserved space reads 0
  return LoadLe(buf + off, size);
}

void VirtIOPCIProxy::CommonWrite(uint64_t off, uint64_t val, unsigned size) {
  VirtIODevice& d = *vdev();
  const bool known = std::any_of(std::begin(kCommonFields), std::end(kCommonFields),
                                 [&](const Field& f) { return f.off == off && f.size == size; });
  if (!known) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_common_access",
                         "%s: %u-byte write at common-config offset 0x%x", DisplayName(), size,
                         off);
    return;
  }
  switch (off) {
    case VIRTIO_PCI_COMMON_DFSELECT:
      regs_.set_device_feature_select(static_cast<uint32_t>(val));
      return;
    case VIRTIO_PCI_COMMON_GFSELECT:
      regs_.set_driver_feature_select(static_cast<uint32_t>(val));
      return;
    case VIRTIO_PCI_COMMON_GF:
      regs_.WriteDriverFeatures(d, static_cast<uint32_t>(val));
      return;
    case VIRTIO_PCI_COMMON_MSIX:
      regs_.SetConfigVector(val);
      return;
    case VIRTIO_PCI_COMMON_Q_SELECT:
      regs_.set_queue_select(static_cast<uint16_t>(val));
      return;
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
  if (!regs_.QueueExists(d)) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_queue_select",
                         "%s: queue field 0x%x written with queue_select %u of %u", DisplayName(),
                         off, regs_.queue_select(), d.num_queues());
    return;
  }
  const QueueFieldAt* f = std::find_if(std::begin(kQueueFields), std::end(kQueueFields),
                                       [&](const QueueFieldAt& x) { return x.off == off; });
  if (f != std::end(kQueueFields) && !regs_.WriteQueue(d, f->field, val)) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_queue_config",
                         "%s: queue %u field 0x%x = 0x%x refused (invalid, or after DRIVER_OK)",
                         DisplayName(), regs_.selected_queue(), off, val);
  }
}

// ---- PCI configuration access capability ----

void VirtIOPCIProxy::ConfigWritten(uint32_t offset, int size) {
  PCIDevice::ConfigWritten(offset, size);
  if (TouchesPciCfgData(offset, size)) PciCfgAccess(/*write=*/true);
}

void VirtIOPCIProxy::BeforeConfigRead(uint32_t offset, int size) {
  if (TouchesPciCfgData(offset, size)) PciCfgAccess(/*write=*/false);
}

bool VirtIOPCIProxy::TouchesPciCfgData(uint32_t offset, int size) const {
  const uint32_t data = pci_cfg_cap_ + kPciCfgData;
  return pci_cfg_cap_ != 0 && offset < data + 4 && offset + static_cast<uint32_t>(size) > data;
}

void VirtIOPCIProxy::PciCfgAccess(bool write) {
  uint8_t bar_nr;
  uint32_t off, len, data;
  {
    absl::MutexLock l(&config_lock());
    const uint8_t* c = config() + pci_cfg_cap_;
    bar_nr = c[VIRTIO_PCI_CAP_BAR];
    auto get32 = [c](int o) { return LoadLe32(c + o); };
    off = get32(VIRTIO_PCI_CAP_OFFSET);
    len = get32(VIRTIO_PCI_CAP_LENGTH);
    data = get32(kPciCfgData);
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
  StoreLe32(config() + pci_cfg_cap_ + kPciCfgData, v);
}

}  // namespace vdev::virtio
