// Internals shared by the parts of PCIDevice (pci_device.cc, pci_msi.cc, pci_msix.cc). Not
// installed.
#ifndef VDEV_BUS_PCI_PCI_DEVICE_INTERNAL_H_
#define VDEV_BUS_PCI_PCI_DEVICE_INTERNAL_H_

#include <cstdint>

#include "bus/pci/pci_regs.h"
#include "core/base/checked_math.h"

namespace vdev::pci {

// True when a config access [off, off + size) touches register [reg, reg + reg_size).
inline bool Touches(uint32_t off, int size, uint32_t reg, uint32_t reg_size) {
  return RangesOverlap(off, static_cast<uint64_t>(size), reg, reg_size);
}

// Where the MSI capability at `cap` keeps its fields, given its flags (§6.8.1).
struct MsiLayout {
  bool is64, maskable;
  unsigned data_off, mask_off, pending_off;
};
inline MsiLayout LayoutOf(uint16_t flags, uint8_t cap) {
  MsiLayout m;
  m.is64 = flags & kMsiFlags64Bit;
  m.maskable = flags & kMsiFlagsMaskBit;
  m.data_off = cap + (m.is64 ? 12u : 8u);
  m.mask_off = m.data_off + 4;
  m.pending_off = m.data_off + 8;
  return m;
}

}  // namespace vdev::pci

#endif  // VDEV_BUS_PCI_PCI_DEVICE_INTERNAL_H_
