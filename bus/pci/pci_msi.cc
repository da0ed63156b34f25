// PCIDevice: the MSI capability (PCI Local Bus 3.0 §6.8.1): 1..32 vectors, 32/64-bit address,
// optional per-vector masking with pending bits.
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
  StoreLe16(config_.data() + pos + kMsiFlags, flags);
  StoreLe16(wmask_.data() + pos + kMsiFlags, static_cast<uint16_t>(kMsiFlagsEnable | 0x70));
  StoreLe32(wmask_.data() + pos + kMsiAddressLo, 0xfffffffc);
  uint8_t data = static_cast<uint8_t>(pos + 8);
  if (is_64bit) {
    StoreLe32(wmask_.data() + pos + 8, 0xffffffff);
    data = static_cast<uint8_t>(pos + 12);
  }
  StoreLe16(wmask_.data() + data, 0xffff);
  if (per_vector_mask) {
    const uint32_t bits = vectors == 32 ? 0xffffffffu : (1u << vectors) - 1;
    StoreLe32(wmask_.data() + data + 4, bits);  // mask bits; the pending bits after them are RO
  }
  return absl::OkStatus();
}

bool PCIDevice::msi_enabled() const {
  absl::MutexLock l(&mu_);
  if (msi_cap_ == 0) return false;
  return LoadLe16(config_.data() + msi_cap_ + kMsiFlags) & kMsiFlagsEnable;
}

void PCIDevice::MsiNotify(unsigned vector) {
  absl::MutexLock l(&mu_);
  if (msi_cap_ == 0) return;
  const uint16_t flags = LoadLe16(config_.data() + msi_cap_ + kMsiFlags);
  if (!(flags & kMsiFlagsEnable)) return;
  const unsigned enabled = 1u << std::min<unsigned>((flags >> kMsiFlagsQsizeShift) & 7,
                                                    (flags >> kMsiFlagsQmaskShift) & 7);
  if (vector >= enabled) {
    VDEV_LOG_GUEST_ERROR(counters(), "msi_bad_vector", "%s: MSI vector %u of %u enabled",
                         DisplayName(), vector, enabled);
    return;
  }
  const MsiLayout m = LayoutOf(flags, msi_cap_);
  if (m.maskable && (LoadLe32(config_.data() + m.mask_off) >> vector & 1)) {
    StoreLe32(config_.data() + m.pending_off,
              LoadLe32(config_.data() + m.pending_off) | 1u << vector);
    return;
  }
  MsiSendLocked(vector);
}

void PCIDevice::MsiSendLocked(unsigned vector) {
  const uint16_t flags = LoadLe16(config_.data() + msi_cap_ + kMsiFlags);
  const unsigned enabled = 1u << std::min<unsigned>((flags >> kMsiFlagsQsizeShift) & 7,
                                                    (flags >> kMsiFlagsQmaskShift) & 7);
  const MsiLayout m = LayoutOf(flags, msi_cap_);
  uint64_t addr = LoadLe32(config_.data() + msi_cap_ + kMsiAddressLo);
  if (m.is64) addr |= uint64_t{LoadLe32(config_.data() + msi_cap_ + 8)} << 32;
  uint32_t data = LoadLe16(config_.data() + m.data_off);
  data = (data & ~(enabled - 1)) | vector;
  const PciHostContext* ctx = host_context();
  if (ctx != nullptr && ctx->irq != nullptr) ctx->irq->SendMsi({addr, data});
  counters().Increment("msi_sent");
}

void PCIDevice::MsiDeliverPendingLocked() {
  const uint16_t flags = LoadLe16(config_.data() + msi_cap_ + kMsiFlags);
  const MsiLayout m = LayoutOf(flags, msi_cap_);
  if (!m.maskable || !(flags & kMsiFlagsEnable)) return;
  const uint32_t pending = LoadLe32(config_.data() + m.pending_off);
  const uint32_t deliver = pending & ~LoadLe32(config_.data() + m.mask_off);
  if (deliver == 0) return;
  StoreLe32(config_.data() + m.pending_off, pending & ~deliver);
  for (unsigned v = 0; v < 32; ++v) {
    if (deliver >> v & 1) MsiSendLocked(v);
  }
}

}  // namespace vdev::pci
