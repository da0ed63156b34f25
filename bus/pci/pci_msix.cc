// PCIDevice: MSI-X (PCI Local Bus 3.0 §6.8.2): the capability, the vector table and the pending
// bit array in a BAR, per-vector and function masking.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bus/pci/pci_bus.h"
#include "bus/pci/pci_device.h"
#include "bus/pci/pci_device_internal.h"
#include "core/base/byte_order.h"
#include "core/base/checked_math.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"
#include "core/memory/irq.h"

namespace vdev::pci {

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
    StoreLe16(config_.data() + pos + kMsixFlags, static_cast<uint16_t>(vectors - 1));
    StoreLe16(wmask_.data() + pos + kMsixFlags, kMsixFlagsEnable | kMsixFlagsMaskAll);
    StoreLe32(config_.data() + pos + kMsixTable, table_offset | static_cast<uint32_t>(bar));
    StoreLe32(config_.data() + pos + kMsixPba, pba_offset | static_cast<uint32_t>(bar));
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
  return LoadLe16(config_.data() + msix_cap_ + kMsixFlags) & kMsixFlagsEnable;
}

bool PCIDevice::MsixMaskedLocked(unsigned vector) const {
  const uint16_t flags = LoadLe16(config_.data() + msix_cap_ + kMsixFlags);
  if (flags & kMsixFlagsMaskAll) return true;
  return msix_table_[vector * kMsixEntrySize + kMsixEntryVectorCtrl] & kMsixEntryCtrlMasked;
}

MsiMessage PCIDevice::MsixMessageLocked(unsigned vector) const {
  const uint8_t* e = msix_table_.data() + vector * kMsixEntrySize;
  return MsiMessage{uint64_t{LoadLe32(e + kMsixEntryLowerAddr)} |
                        uint64_t{LoadLe32(e + kMsixEntryUpperAddr)} << 32,
                    LoadLe32(e + kMsixEntryData)};
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
    if (!(LoadLe16(config_.data() + msix_cap_ + kMsixFlags) & kMsixFlagsEnable)) return;
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
  if (!(LoadLe16(config_.data() + msix_cap_ + kMsixFlags) & kMsixFlagsEnable)) return;
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

}  // namespace vdev::pci
