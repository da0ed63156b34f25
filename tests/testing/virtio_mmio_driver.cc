#include "tests/testing/virtio_mmio_driver.h"

#include <linux/virtio_mmio.h>

#include "bus/virtio/virtio_uapi.h"

namespace vdev::testing {

VirtioMmioDriver::VirtioMmioDriver(AddressSpace& mem, const GuestMemory& ram, uint64_t base)
    : mem_(mem), ram_(ram), base_(base) {}

bool VirtioMmioDriver::Probe() {
  if (Read(VIRTIO_MMIO_MAGIC_VALUE) != 0x74726976) return false;
  version_ = Read(VIRTIO_MMIO_VERSION);
  if (version_ != 1 && version_ != 2) return false;
  if (version_ == 1) Write(VIRTIO_MMIO_GUEST_PAGE_SIZE, 4096);
  return Read(VIRTIO_MMIO_DEVICE_ID) != 0;
}

std::optional<uint64_t> VirtioMmioDriver::Negotiate(uint64_t wanted) {
  SetStatus(0);
  SetStatus(VIRTIO_CONFIG_S_ACKNOWLEDGE);
  SetStatus(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
  uint64_t offered = 0;
  for (uint32_t sel = 0; sel < 2; ++sel) {
    Write(VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel);
    offered |= uint64_t{Read(VIRTIO_MMIO_DEVICE_FEATURES)} << (32 * sel);
  }
  const uint64_t accepted = offered & wanted;
  for (uint32_t sel = 0; sel < 2; ++sel) {
    Write(VIRTIO_MMIO_DRIVER_FEATURES_SEL, sel);
    Write(VIRTIO_MMIO_DRIVER_FEATURES, static_cast<uint32_t>(accepted >> (32 * sel)));
  }
  if (version_ == 1) return accepted;
  SetStatus(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
  if (!(status() & VIRTIO_CONFIG_S_FEATURES_OK)) return std::nullopt;
  return accepted;
}

GuestVring* VirtioMmioDriver::SetupQueue(uint16_t index, GuestAddr base, uint16_t size) {
  Write(VIRTIO_MMIO_QUEUE_SEL, index);
  const uint32_t max = Read(VIRTIO_MMIO_QUEUE_NUM_MAX);
  if (max == 0) return nullptr;
  if (size > max) size = static_cast<uint16_t>(max);
  Write(VIRTIO_MMIO_QUEUE_NUM, size);
  auto ring = std::make_unique<GuestVring>(ram_, base, size);
  if (version_ == 1) {
    Write(VIRTIO_MMIO_QUEUE_ALIGN, 4096);
    Write(VIRTIO_MMIO_QUEUE_PFN, static_cast<uint32_t>(base.value() / 4096));
  } else {
    const uint64_t parts[3] = {ring->desc_addr().value(), ring->avail_addr().value(),
                               ring->used_addr().value()};
    const uint32_t lo[3] = {VIRTIO_MMIO_QUEUE_DESC_LOW, VIRTIO_MMIO_QUEUE_AVAIL_LOW,
                            VIRTIO_MMIO_QUEUE_USED_LOW};
    for (int i = 0; i < 3; ++i) {
      Write(lo[i], static_cast<uint32_t>(parts[i]));
      Write(lo[i] + 4, static_cast<uint32_t>(parts[i] >> 32));
    }
    Write(VIRTIO_MMIO_QUEUE_READY, 1);
  }
  return (rings_[index] = std::move(ring)).get();
}

void VirtioMmioDriver::DriverOk() {
  uint8_t s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK;
  if (version_ == 2) s |= VIRTIO_CONFIG_S_FEATURES_OK;
  SetStatus(s);
}

}  // namespace vdev::testing
