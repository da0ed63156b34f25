// virtio-net-pci: the PCI binding of virtio-net (VIRTIO 1.2 §4.1, §5.1), 1af4:1041 (modern) or
// 1af4:1000 (transitional), class 0x0200. The proxy's backend is a virtio-net-device, its child
// "virtio-backend" from creation on; every virtio-net property is also a property of the proxy,
// an alias whose value lives in the backend.
//
//   -netdev tap,id=n0 -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,vectors=3
//
// Thread-safety: as VirtIOPCIProxy.
#ifndef VDEV_HW_NET_VIRTIO_NET_PCI_H_
#define VDEV_HW_NET_VIRTIO_NET_PCI_H_

#include "hw/net/virtio_net/virtio_net.h"
#include "hw/virtio/virtio_pci.h"

namespace vdev::virtio {

// The PCI binding (QEMU's virtio-net-pci): a proxy whose backend is a virtio-net-device, with
// every virtio-net property aliased.
class VirtIONetPCI : public VirtIOPCIProxy {
 public:
  static constexpr char kTypeName[] = "virtio-net-pci";
  using Parent = VirtIOPCIProxy;
  static void ClassInit(VirtIOPCIProxyClass& k);

  VirtIONet* net() const { return static_cast<VirtIONet*>(vdev()); }
};

}  // namespace vdev::virtio

#endif  // VDEV_HW_NET_VIRTIO_NET_PCI_H_
