// virtio-net-pci: virtio-net over PCI (QEMU's hw/virtio/virtio-net-pci.c).
#include "hw/net/virtio_net/pci.h"

#include "hw/net/virtio_net/virtio_net.h"

namespace vdev::virtio {

void VirtIONetPCI::ClassInit(VirtIOPCIProxyClass& k) {
  k.description = "virtio network device over PCI";
  k.category = DeviceCategory::kNetwork;
  k.class_id = 0x0200;  // Ethernet controller
  k.backend_type = VirtIONet::kTypeName;
  k.AliasBackendProperties();
  k.SetPropertyDefault("vectors", "3");
}

VDEV_REGISTER_TYPE(VirtIONetPCI);

}  // namespace vdev::virtio
