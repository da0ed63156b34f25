// VirtioBus: the bus between a virtio transport (virtio-pci, virtio-mmio) and the one
// VirtIODevice plugged into it (QEMU's TYPE_VIRTIO_BUS, "virtio-bus"). The transport implements
// VirtioTransport: the device raises its interrupts and finds guest memory through it.
//
// Thread-safety: plug/unplug on the control-plane thread; VirtioTransport calls may come from
// any thread that runs the device (vCPU or data plane).
#ifndef VDEV_BUS_VIRTIO_VIRTIO_BUS_H_
#define VDEV_BUS_VIRTIO_VIRTIO_BUS_H_

#include <cstdint>

#include "core/memory/guest_memory.h"
#include "core/qdev/bus.h"

namespace vdev::virtio {

class VirtIODevice;

class VirtioTransport {
 public:
  virtual ~VirtioTransport() = default;
  // A used-buffer notification for queue `index` (MSI-X vector, or ISR bit 0 + INTx).
  virtual void NotifyQueue(uint16_t index) = 0;
  // A configuration-change notification (ISR bit 1, or the config vector).
  virtual void NotifyConfig() = 0;
  // The memory the device's rings and buffers live in.
  virtual const GuestMemory* dma_memory() const = 0;
  // Eventfds a VMM bound for queue `index` (borrowed; -1 when none): `ioeventfd` is signalled by
  // the hypervisor on the queue's notify write (KVM_IOEVENTFD), `irqfd` raises the queue's
  // interrupt when signalled (KVM_IRQFD). A device whose rings are served elsewhere (vhost)
  // hands them to that data plane, so neither kicks nor interrupts pass through this process.
  virtual int QueueIoeventfd(uint16_t index) const { return -1; }
  virtual int QueueIrqfd(uint16_t index) const { return -1; }
  // The device was plugged / is about to be unplugged.
  virtual void DevicePlugged(VirtIODevice& dev) {}
  virtual void DeviceUnplugged(VirtIODevice& dev) {}
};

class VirtioBus : public BusState {
 public:
  static constexpr char kTypeName[] = "virtio-bus";
  using Parent = BusState;
  static void ClassInit(BusClass& k);

  void set_transport(VirtioTransport* t) { transport_ = t; }
  VirtioTransport* transport() const { return transport_; }
  // The plugged device, or nullptr.
  VirtIODevice* device() const;

 protected:
  void OnAttach(DeviceState& dev) override;
  void OnDetach(DeviceState& dev) override;

 private:
  VirtioTransport* transport_ = nullptr;
};

}  // namespace vdev::virtio

#endif  // VDEV_BUS_VIRTIO_VIRTIO_BUS_H_
