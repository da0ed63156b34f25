// virtio-rng (VIRTIO 1.2 §5.4): one queue of device-writable buffers the device fills with
// entropy. The source is an `rng` backend object (rng-random, rng-builtin) or, without one,
// getrandom(2).
//
//   -object rng-random,id=rng0,filename=/dev/urandom -device virtio-rng-pci,rng=rng0
//   -device virtio-rng-device        (on a virtio-mmio transport)
//
// Requests without a writable buffer (a read-only "receive" buffer) are returned empty and
// counted ("bad_request"). Work per kick is bounded: at most two rings' worth of requests, each
// given at most 64 KiB; a request the source cannot serve now waits for the next kick.
//
// Thread-safety: as VirtIODevice (queue handling under the device lock).
#ifndef VDEV_HW_VIRTIO_VIRTIO_RNG_H_
#define VDEV_HW_VIRTIO_VIRTIO_RNG_H_

#include "bus/virtio/virtio_device.h"
#include "core/backends/rng_backend.h"
#include "hw/virtio/virtio_pci.h"

namespace vdev::virtio {

class VirtIORNG : public VirtIODevice {
 public:
  static constexpr char kTypeName[] = "virtio-rng-device";
  using Parent = VirtIODevice;
  static void ClassInit(VirtIODeviceClass& k);

  static constexpr uint16_t kQueueSize = 64;
  static constexpr uint64_t kMaxBytesPerRequest = 64 * 1024;

 protected:
  absl::Status Realize() override;
  void HandleQueue(uint16_t index) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

 private:
  size_t Fill(absl::Span<uint8_t> buf);
  RngBackend* rng_ = nullptr;
};

// The PCI binding: a proxy whose backend is a virtio-rng-device.
class VirtIORngPCI : public VirtIOPCIProxy {
 public:
  static constexpr char kTypeName[] = "virtio-rng-pci";
  using Parent = VirtIOPCIProxy;
  static void ClassInit(VirtIOPCIProxyClass& k);
};

}  // namespace vdev::virtio

#endif  // VDEV_HW_VIRTIO_VIRTIO_RNG_H_
