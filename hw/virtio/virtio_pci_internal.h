// Internals shared by the parts of VirtIOPCIProxy (virtio_pci.cc, virtio_pci_modern.cc,
// virtio_pci_legacy.cc). Not installed.
#ifndef VDEV_HW_VIRTIO_VIRTIO_PCI_INTERNAL_H_
#define VDEV_HW_VIRTIO_VIRTIO_PCI_INTERNAL_H_

#include <cstddef>
#include <cstdint>

#include "bus/virtio/virtio_regs.h"
#include "bus/virtio/virtio_uapi.h"

// After virtio_uapi.h (it includes virtio_config.h, which virtio_pci.h needs).
#include <linux/virtio_pci.h>

namespace vdev::virtio {

static_assert(kNoVector == VIRTIO_MSI_NO_VECTOR);
constexpr uint16_t kVirtioVendor = 0x1af4;
constexpr uint8_t kIsrQueue = 0x1;  // ISR bit 0: a used-buffer notification

// Transitional (legacy) PCI device IDs by virtio device ID (VIRTIO 1.2 §4.1.2.1).
inline int LegacyDeviceId(uint16_t virtio_id) {
  switch (virtio_id) {
    case VIRTIO_ID_NET:
      return 0x1000;
    case VIRTIO_ID_BLOCK:
      return 0x1001;
    case VIRTIO_ID_BALLOON:
      return 0x1002;
    case VIRTIO_ID_CONSOLE:
      return 0x1003;
    case VIRTIO_ID_SCSI:
      return 0x1004;
    case VIRTIO_ID_RNG:
      return 0x1005;
    case VIRTIO_ID_9P:
      return 0x1009;
    default:
      return -1;
  }
}

// Fields of the common configuration structure: offset and width.
struct Field {
  uint32_t off, size;
};
constexpr Field kCommonFields[] = {
    {VIRTIO_PCI_COMMON_DFSELECT, 4},  {VIRTIO_PCI_COMMON_DF, 4},
    {VIRTIO_PCI_COMMON_GFSELECT, 4},  {VIRTIO_PCI_COMMON_GF, 4},
    {VIRTIO_PCI_COMMON_MSIX, 2},      {VIRTIO_PCI_COMMON_NUMQ, 2},
    {VIRTIO_PCI_COMMON_STATUS, 1},    {VIRTIO_PCI_COMMON_CFGGENERATION, 1},
    {VIRTIO_PCI_COMMON_Q_SELECT, 2},  {VIRTIO_PCI_COMMON_Q_SIZE, 2},
    {VIRTIO_PCI_COMMON_Q_MSIX, 2},    {VIRTIO_PCI_COMMON_Q_ENABLE, 2},
    {VIRTIO_PCI_COMMON_Q_NOFF, 2},    {VIRTIO_PCI_COMMON_Q_DESCLO, 4},
    {VIRTIO_PCI_COMMON_Q_DESCHI, 4},  {VIRTIO_PCI_COMMON_Q_AVAILLO, 4},
    {VIRTIO_PCI_COMMON_Q_AVAILHI, 4}, {VIRTIO_PCI_COMMON_Q_USEDLO, 4},
    {VIRTIO_PCI_COMMON_Q_USEDHI, 4},
};
constexpr uint32_t kCommonSize = 0x38;
// The data window of the PCI configuration access capability (virtio_pci_cfg_cap.pci_cfg_data).
constexpr uint32_t kPciCfgData = offsetof(virtio_pci_cfg_cap, pci_cfg_data);

}  // namespace vdev::virtio

#endif  // VDEV_HW_VIRTIO_VIRTIO_PCI_INTERNAL_H_
