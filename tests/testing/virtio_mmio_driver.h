// The software guest's virtio-mmio driver (VIRTIO 1.2 §4.2.3): version 2 (64-bit queue
// addresses, QueueReady) and legacy version 1 (guest page size, PFN), through 32-bit MMIO
// accesses in the memory address space only.
//
// Example:
//   VirtioMmioDriver drv(m->memory_space(), m->guest_memory(), 0x0a000000);
//   ASSERT_TRUE(drv.Probe());                 // magic, version, a device behind it
//   ASSERT_TRUE(drv.Negotiate(1ull << VIRTIO_F_VERSION_1));
//   GuestVring* vq = drv.SetupQueue(0, GuestAddr(0x41000000), 64);
//   drv.DriverOk();
//
// Thread-safety: none; the test thread is the guest.
#ifndef VDEV_TESTS_TESTING_VIRTIO_MMIO_DRIVER_H_
#define VDEV_TESTS_TESTING_VIRTIO_MMIO_DRIVER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>

#include "core/memory/guest_memory.h"
#include "core/memory/memory.h"
#include "tests/testing/virtio_ring.h"

namespace vdev::testing {

class VirtioMmioDriver {
 public:
  VirtioMmioDriver(AddressSpace& mem, const GuestMemory& ram, uint64_t base);

  // Checks the magic value and version, and that a device sits behind the window.
  bool Probe();
  uint32_t version() const { return version_; }
  std::optional<uint64_t> Negotiate(uint64_t wanted);
  GuestVring* SetupQueue(uint16_t index, GuestAddr base, uint16_t size);
  void DriverOk();
  void Kick(uint16_t index) { Write(0x050, index); }
  uint32_t InterruptStatus() { return Read(0x060); }
  void Ack(uint32_t bits) { Write(0x064, bits); }
  uint8_t status() { return static_cast<uint8_t>(Read(0x070)); }
  void SetStatus(uint8_t s) { Write(0x070, s); }

  uint32_t Read(uint32_t off, unsigned size = 4) {
    return static_cast<uint32_t>(mem_.ReadValue(base_ + off, size));
  }
  MemTxResult Write(uint32_t off, uint32_t v, unsigned size = 4) {
    return mem_.Write(base_ + off, v, size);
  }

 private:
  AddressSpace& mem_;
  const GuestMemory& ram_;
  uint64_t base_;
  uint32_t version_ = 0;
  std::map<uint16_t, std::unique_ptr<GuestVring>> rings_;
};

}  // namespace vdev::testing

#endif  // VDEV_TESTS_TESTING_VIRTIO_MMIO_DRIVER_H_
