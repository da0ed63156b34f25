#include "bus/pci/pci_bus.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace vdev::pci {
namespace {

std::string Occupant(const PCIDevice& d) {
  return d.id().empty() ? d.type_name() : absl::StrCat(d.type_name(), ",id=", d.id());
}

}  // namespace

void PCIBus::ClassInit(BusClass& k) {
  k.description = "a conventional PCI bus";
  k.max_children = kSlotsPerBus * kFunctionsPerSlot;
}

absl::Status PCIBus::CheckPlug(DeviceState& dev) {
  auto* pd = qom::DynamicCast<PCIDevice>(&dev);
  if (pd == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(dev.type_name(), " is not a PCI device"));
  }
  qom::PciDevFn want = pd->addr_;
  if (want.is_auto()) {
    bool found = false;
    for (int slot = first_auto_slot_; slot < kSlotsPerBus && !found; ++slot) {
      bool empty = true;
      for (int fn = 0; fn < kFunctionsPerSlot; ++fn) {
        if (slots_[static_cast<size_t>(slot * 8 + fn)] != nullptr) empty = false;
      }
      if (empty) {
        want = qom::PciDevFn::Of(slot, 0);
        found = true;
      }
    }
    if (!found) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "PCI: no slot/function available for ", dev.type_name(), ", all in use or reserved"));
    }
  }
  if (PCIDevice* other = device_at(want.devfn)) {
    return absl::AlreadyExistsError(
        absl::StrFormat("PCI: slot %d function %d not available for %s, in use by %s", want.slot(),
                        want.fn(), dev.type_name(), Occupant(*other)));
  }
  // Multifunction: function 0 decides whether the other functions of the slot may exist.
  if (want.fn() != 0) {
    PCIDevice* f0 = device_at(want.slot() * 8);
    if (f0 != nullptr && !f0->multifunction()) {
      return absl::FailedPreconditionError(
          absl::StrFormat("PCI: single function device can't be populated in function %x.%x",
                          want.slot(), want.fn()));
    }
  } else if (!pd->multifunction()) {
    for (int fn = 1; fn < kFunctionsPerSlot; ++fn) {
      if (slots_[static_cast<size_t>(want.slot() * 8 + fn)] != nullptr) {
        return absl::FailedPreconditionError(
            absl::StrFormat("PCI: %x.0 indicates single function, but %x.%x is already populated",
                            want.slot(), want.slot(), fn));
      }
    }
  }
  pd->addr_ = want;
  return absl::OkStatus();
}

void PCIBus::OnAttach(DeviceState& dev) {
  auto* pd = static_cast<PCIDevice*>(&dev);  // CheckPlug verified the type
  slots_[static_cast<size_t>(pd->addr_.devfn)] = &dev;
}

void PCIBus::OnDetach(DeviceState& dev) {
  // No downcast here: a device can be detached from its own destructor, when only its
  // DeviceState part is left. Compare base pointers instead.
  for (DeviceState*& slot : slots_) {
    if (slot == &dev) slot = nullptr;
  }
}

uint8_t PCIBus::bus_number() const {
  auto* bridge = qom::DynamicCast<PCIDevice>(parent_device());
  if (bridge == nullptr) return 0;
  return static_cast<uint8_t>(bridge->ConfigRead(kSecondaryBus, 1));
}

std::vector<std::string> PCIBus::DescribeDevice(const DeviceState& dev) const {
  const auto* pd = qom::DynamicCast<PCIDevice>(&dev);
  if (pd == nullptr) return {};
  const PCIDeviceClass& k = pd->pci_class();
  return {absl::StrFormat("class %s, addr %02x:%02x.%x, pci id %04x:%04x (sub %04x:%04x)",
                          PciClassName(k.class_id), bus_number(), pd->devfn().slot(),
                          pd->devfn().fn(), k.vendor_id, k.device_id, k.subsystem_vendor_id,
                          k.subsystem_id)};
}

std::string PciClassName(uint16_t class_id) {
  switch (class_id) {
    case 0x0100:
      return "SCSI controller";
    case 0x0101:
      return "IDE controller";
    case 0x0106:
      return "SATA controller";
    case 0x0108:
      return "NVMe controller";
    case 0x0200:
      return "Ethernet controller";
    case 0x0280:
      return "Network controller";
    case 0x0300:
      return "VGA controller";
    case 0x0600:
      return "Host bridge";
    case 0x0601:
      return "ISA bridge";
    case 0x0604:
      return "PCI bridge";
    case 0x0780:
      return "Communication controller";
    case 0x00ff:
      return "Unclassified device";
    case 0x00ff << 8:
      return "Class ff00";
    default:
      break;
  }
  switch (class_id >> 8) {
    case 0x00:
      return "Unclassified device";
    case 0x01:
      return "Mass storage controller";
    case 0x02:
      return "Network controller";
    case 0x03:
      return "Display controller";
    case 0x06:
      return "Bridge";
    case 0x08:
      return "System peripheral";
    case 0x0c:
      return "Serial bus controller";
    case 0xff:
      return absl::StrFormat("Class %04x", class_id);
    default:
      return absl::StrFormat("Class %04x", class_id);
  }
}

VDEV_REGISTER_TYPE(PCIBus);

}  // namespace vdev::pci
