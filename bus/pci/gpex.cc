#include "bus/pci/gpex.h"

namespace vdev::pci {

void GpexPciHost::ClassInit(DeviceClass& k) {
  k.description = "generic PCI Express host bridge (ECAM)";
  k.SetPropertyDefault("config-ports", "off");
  k.SetPropertyDefault("ecam-base", "0x3f000000");
  k.SetPropertyDefault("ecam-buses", "16");
}

void GpexRoot::ClassInit(PCIDeviceClass& k) {
  k.description = "generic PCI Express host bridge function";
  k.category = DeviceCategory::kBridge;
  k.user_creatable = false;
  k.hotpluggable = false;
  k.vendor_id = 0x1b36;
  k.device_id = 0x0008;
  k.class_id = 0x0600;
  k.subsystem_vendor_id = 0x1af4;
  k.subsystem_id = 0x1100;
}

VDEV_REGISTER_TYPE(GpexPciHost);
VDEV_REGISTER_TYPE(GpexRoot);

}  // namespace vdev::pci
