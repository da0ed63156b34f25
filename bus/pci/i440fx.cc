#include "bus/pci/i440fx.h"

namespace vdev::pci {

void I440FXPciHost::ClassInit(DeviceClass& k) {
  k.description = "i440FX PCI host bridge";
  k.category = DeviceCategory::kBridge;
}

I440FXPciHost::I440FXPciHost() = default;

int I440FXPciHost::RouteIntx(int slot, int pin) {
  static constexpr int kPirqToIrq[4] = {10, 10, 11, 11};
  return kPirqToIrq[(pin + slot + 3) & 3];
}

void I440FXFunction::ClassInit(PCIDeviceClass& k) {
  k.description = "Host bridge";
  k.category = DeviceCategory::kBridge;
  k.user_creatable = false;  // part of the pc board
  k.hotpluggable = false;
  k.vendor_id = 0x8086;
  k.device_id = 0x1237;
  k.revision = 0x02;
  k.class_id = 0x0600;
  k.subsystem_vendor_id = 0x1af4;
  k.subsystem_id = 0x1100;
}

VDEV_REGISTER_TYPE(I440FXPciHost);
VDEV_REGISTER_TYPE(I440FXFunction);

}  // namespace vdev::pci
