// example-pci: a small PCI function shipped as a plugin, to show how a device type is written
// outside the vdev tree. It has its own IDs, a serial-number string, and a revision chosen by a
// property and written into configuration space at realize.
//
//   vdev -plugin libvdev_example_plugin.so -device example-pci,id=ex0,serial=SN1,rev=3,addr=5
#include "bus/pci/pci_device.h"
#include "core/base/status_macros.h"
#include "core/qdev/plugin.h"

VDEV_PLUGIN("example");

namespace example {

class ExamplePci : public vdev::pci::PCIDevice {
 public:
  static constexpr char kTypeName[] = "example-pci";
  using Parent = vdev::pci::PCIDevice;

  static void ClassInit(vdev::pci::PCIDeviceClass& k) {
    k.description = "Example PCI function from a plugin";
    k.category = vdev::DeviceCategory::kMisc;
    k.vendor_id = 0x1b36;  // the QEMU/Red Hat vendor id used by test devices
    k.device_id = 0x00f0;
    k.class_id = 0x00ff;
    k.AddProperty(vdev::qom::Prop("serial", &ExamplePci::serial_, std::string("none"),
                                  "serial number reported by the device"));
    k.AddProperty(vdev::qom::Prop("rev", &ExamplePci::rev_, uint8_t{1},
                                  "revision ID written into configuration space"));
  }

 protected:
  absl::Status Realize() override {
    VDEV_RETURN_IF_ERROR(vdev::pci::PCIDevice::Realize());
    if (serial_.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(DisplayName(), ": property 'serial' must not be empty"));
    }
    config()[vdev::pci::kRevisionId] = rev_;
    return absl::OkStatus();
  }

 private:
  std::string serial_;
  uint8_t rev_ = 1;
};

VDEV_REGISTER_TYPE(ExamplePci);

}  // namespace example
