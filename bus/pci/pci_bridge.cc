#include "bus/pci/pci_bridge.h"

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace vdev::pci {
void PCIBridge::ClassInit(PCIDeviceClass& k) {
  k.description = "Standard PCI Bridge";
  k.category = DeviceCategory::kBridge;
  k.vendor_id = 0x1b36;  // Red Hat, as QEMU's pci-bridge
  k.device_id = 0x0001;
  k.class_id = 0x0604;
  k.header_type = kHeaderTypeBridge;
  // Devices behind it must go first; device_del does that, so the bridge itself may come and go.
  k.hotpluggable = true;
}

absl::Status PCIBridge::Realize() {
  VDEV_RETURN_IF_ERROR(PCIDevice::Realize());
  InitBridgeRegisters();
  // QEMU names the secondary bus after the bridge's id, so "bus=br0" finds it; an anonymous
  // bridge takes the first free "pci-bridge-bus.N". Bus names are unique in the machine.
  std::string name = id();
  for (int n = 1; name.empty() || (id().empty() && BusNameInUse(name)); ++n) {
    name = absl::StrCat("pci-bridge-bus.", n);
  }
  auto bus = TryCreateChildBus<PCIBus>(name);
  if (!bus.ok()) {
    return absl::Status(bus.status().code(),
                        absl::StrCat(DisplayName(), ": cannot name its secondary bus '", name,
                                     "': ", bus.status().message()));
  }
  secondary_ = *bus;
  return absl::OkStatus();
}

void PCIBridge::Unrealize() {
  DestroyChildBus(secondary_);
  secondary_ = nullptr;
  PCIDevice::Unrealize();
}

void PCIBridge::ConfigWritten(uint32_t offset, int size) {
  PCIDevice::ConfigWritten(offset, size);
  if (offset + static_cast<uint32_t>(size) > kPrimaryBus && offset < kBridgeControl + 2) {
    RequestRemap();
  }
}

void PCIBridge::Reset() {
  PCIDevice::Reset();
  InitBridgeRegisters();
}

void PCIBridge::InitBridgeRegisters() {
  uint8_t* c = config();
  for (int r = kPrimaryBus; r <= kIoLimitUpper + 1; ++r) c[r] = 0;
  c[kIoBase] = c[kIoLimit] = 0x01;              // 32-bit I/O decode
  c[kPrefetchBase] = c[kPrefetchLimit] = 0x01;  // 64-bit prefetchable window
  c[kBridgeControl] = c[kBridgeControl + 1] = 0;
  for (int r : {kPrimaryBus, kSecondaryBus, kSubordinateBus}) SetConfigWriteMask(r, 0xff);
  SetConfigWriteMask(kIoBase, 0xf0);
  SetConfigWriteMask(kIoLimit, 0xf0);
  SetConfigW1cMask(kSecondaryStatus + 1, 0xf9);
  for (int r : {kMemoryBase, kMemoryLimit, kPrefetchBase, kPrefetchLimit}) {
    SetConfigWriteMask(r, 0xf0);
    SetConfigWriteMask(r + 1, 0xff);
  }
  for (int r : {kPrefetchBaseUpper, kPrefetchLimitUpper}) {
    for (int i = 0; i < 4; ++i) SetConfigWriteMask(r + i, 0xff);
  }
  for (int r : {kIoBaseUpper, kIoLimitUpper}) {
    SetConfigWriteMask(r, 0xff);
    SetConfigWriteMask(r + 1, 0xff);
  }
  SetConfigWriteMask(kBridgeControl, 0xff);
  SetConfigWriteMask(kBridgeControl + 1, 0x0f);
}

VDEV_REGISTER_TYPE(PCIBridge);

}  // namespace vdev::pci
