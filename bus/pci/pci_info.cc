#include "bus/pci/pci_info.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bus/pci/pci_regs.h"

namespace vdev::pci {
namespace {

void FormatBus(PCIBus& bus, std::string* out, int depth) {
  if (depth > 32) return;
  const uint8_t busnr = bus.bus_number();
  for (int devfn = 0; devfn < kSlotsPerBus * kFunctionsPerSlot; ++devfn) {
    PCIDevice* d = bus.device_at(devfn);
    if (d == nullptr || !d->realized()) continue;
    const PCIDeviceClass& k = d->pci_class();
    absl::StrAppendFormat(out, "  Bus %2u, device %3d, function %d:\n", busnr, devfn >> 3,
                          devfn & 7);
    absl::StrAppendFormat(out, "    %s: PCI device %04x:%04x\n", PciClassName(k.class_id),
                          d->vendor_id(), d->device_id());
    if (k.header_type == 0) {
      absl::StrAppendFormat(out, "      PCI subsystem %04x:%04x\n",
                            d->ConfigRead(kSubsystemVendorId, 2), d->ConfigRead(kSubsystemId, 2));
    }
    const uint32_t pin = d->ConfigRead(kInterruptPin, 1);
    if (pin != 0) {
      absl::StrAppendFormat(out, "      IRQ %u, pin %c\n", d->ConfigRead(kInterruptLine, 1),
                            static_cast<char>('A' + pin - 1));
    }
    if (k.header_type == kHeaderTypeBridge) {
      absl::StrAppendFormat(out,
                            "      BUS %u.\n      secondary bus %u.\n      subordinate bus %u.\n",
                            d->ConfigRead(kPrimaryBus, 1), d->ConfigRead(kSecondaryBus, 1),
                            d->ConfigRead(kSubordinateBus, 1));
    }
    for (int i = 0; i < kNumBars; ++i) {
      const PciBar& b = d->bar(i);
      if (b.size == 0) continue;
      // As QEMU: an unmapped BAR shows address -1 and "end" -1 + size.
      const uint64_t at = b.mapped_at;
      const uint64_t end = at + b.size - 1;
      if (b.is_io()) {
        absl::StrAppendFormat(out, "      BAR%d: I/O at 0x%04x [0x%04x].\n", i, at, end);
      } else {
        absl::StrAppendFormat(out, "      BAR%d: %s bit%s memory at 0x%08x [0x%08x].\n", i,
                              b.is_64bit() ? "64" : "32",
                              (b.type & kBarMemPrefetch) ? " prefetchable" : "", at, end);
      }
    }
    for (auto [pos, id] : d->Capabilities()) {
      absl::StrAppendFormat(out, "      Capability at 0x%02x: %s\n", pos,
                            d->DescribeCapability(pos));
    }
    absl::StrAppendFormat(out, "      id \"%s\"\n", d->id());
  }
  for (int devfn = 0; devfn < kSlotsPerBus * kFunctionsPerSlot; ++devfn) {
    PCIDevice* d = bus.device_at(devfn);
    if (d == nullptr || !d->realized() || d->pci_class().header_type != kHeaderTypeBridge) continue;
    for (BusState* c : d->child_buses()) {
      if (auto* pb = qom::DynamicCast<PCIBus>(c)) FormatBus(*pb, out, depth + 1);
    }
  }
}

}  // namespace

std::string FormatPciInfo(PCIBus& bus) {
  std::string out;
  FormatBus(bus, &out, 0);
  return out;
}

}  // namespace vdev::pci
