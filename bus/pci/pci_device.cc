#include "bus/pci/pci_device.h"

#include "absl/strings/str_cat.h"
#include "bus/pci/pci_bus.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"

namespace vdev::pci {
namespace {

void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

}  // namespace

void PCIDevice::ClassInit(PCIDeviceClass& k) {
  k.bus_type = PCIBus::kTypeName;
  k.AddProperty(qom::Prop("addr", &PCIDevice::addr_, qom::PciDevFn::Auto(),
                          "Slot and optional function number, example: 06.0 or 06"));
  k.AddProperty(qom::Prop("multifunction", &PCIDevice::multifunction_, false,
                          "on: other functions of this slot may be populated"));
}

absl::Status PCIDevice::Realize() {
  VDEV_RETURN_IF_ERROR(DeviceState::Realize());
  InitConfigHeader();
  return absl::OkStatus();
}

void PCIDevice::InitConfigHeader() {
  const PCIDeviceClass& k = pci_class();
  config_.fill(0);
  wmask_.fill(0);
  w1cmask_.fill(0);
  uint8_t* c = config_.data();
  Put16(c + kVendorId, k.vendor_id);
  Put16(c + kDeviceId, k.device_id);
  c[kRevisionId] = k.revision;
  c[kClassProg] = k.prog_if;
  Put16(c + kClassDevice, k.class_id);
  c[kHeaderType] =
      static_cast<uint8_t>(k.header_type | (multifunction_ ? kHeaderTypeMultiFunction : 0));
  if (k.header_type == 0) {  // type 1 headers use these bytes for the prefetch window
    Put16(c + kSubsystemVendorId, k.subsystem_vendor_id);
    Put16(c + kSubsystemId, k.subsystem_id);
  }
  const uint16_t cmd_mask =
      kCommandIo | kCommandMemory | kCommandMaster | kCommandSerr | kCommandIntxDisable;
  Put16(wmask_.data() + kCommand, cmd_mask);
  Put16(w1cmask_.data() + kStatus, kStatusW1cMask);
  wmask_[kCacheLineSize] = 0xff;
  wmask_[kInterruptLine] = 0xff;
}

void PCIDevice::Reset() {
  // Command, status and the OS-owned bytes go back to their power-on values: only the bits the
  // guest can write or clear are touched (read-only bits such as Capabilities List stay).
  for (int r : {int{kCommand}, int{kCommand} + 1, int{kStatus}, int{kStatus} + 1,
                int{kCacheLineSize}, int{kInterruptLine}}) {
    config_[r] = static_cast<uint8_t>(config_[r] & ~(wmask_[r] | w1cmask_[r]));
  }
  DeviceState::Reset();
}

static bool ValidConfigAccess(uint32_t offset, int size) {
  if (size != 1 && size != 2 && size != 4) return false;
  if (offset % static_cast<uint32_t>(size) != 0) return false;
  return offset <= kConfigSpaceSize - static_cast<uint32_t>(size);
}

uint32_t PCIDevice::ConfigRead(uint32_t offset, int size) {
  if (!ValidConfigAccess(offset, size)) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_config_access", "%s: config read of %d bytes at 0x%x",
                         DisplayName(), size, offset);
    return 0xffffffffu;
  }
  uint32_t v = 0;
  for (int i = 0; i < size; ++i) v |= uint32_t{config_[offset + i]} << (8 * i);
  return v;
}

void PCIDevice::ConfigWrite(uint32_t offset, uint32_t value, int size) {
  if (!ValidConfigAccess(offset, size)) {
    VDEV_LOG_GUEST_ERROR(counters(), "bad_config_access", "%s: config write of %d bytes at 0x%x",
                         DisplayName(), size, offset);
    return;
  }
  for (int i = 0; i < size; ++i) {
    const uint32_t o = offset + i;
    const uint8_t b = static_cast<uint8_t>(value >> (8 * i));
    const uint8_t wm = wmask_[o];
    const uint8_t w1c = w1cmask_[o];
    config_[o] = static_cast<uint8_t>((config_[o] & ~wm) | (b & wm));
    config_[o] = static_cast<uint8_t>(config_[o] & ~(b & w1c));
  }
}

VDEV_REGISTER_TYPE(PCIDevice);

}  // namespace vdev::pci
