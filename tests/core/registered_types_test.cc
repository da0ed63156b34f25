// Every built-in type must survive the linker (device code is linked as OBJECT libraries) and
// register cleanly. A new built-in type goes into this list.
#include "gtest/gtest.h"
#include "qom/type.h"

namespace vdev {
namespace {

constexpr const char* kBuiltinTypes[] = {
    // qom
    "object",
    "interface",
    "container",
    // core
    "device",
    "bus",
    "hotplug-handler",
    "user-creatable",
    "iothread",
    "netdev",
    "chardev",
    "chardev-socket",
    "System",
    "sys-bus-device",
    "machine",
    "none",
    // bus/pci
    "PCI",
    "pci-device",
    "pci-host-bridge",
    "i440FX-pcihost",
    "i440FX",
    "gpex-pcihost",
    "gpex-root",
    "pci-bridge",
    // bus/virtio
    "virtio-bus",
    "virtio-device",
    "rng-backend",
    "rng-random",
    "rng-builtin",
    // hw/virtio
    "virtio-pci",
    "virtio-rng-device",
    "virtio-rng-pci",
    "virtio-mmio",
    "virtio-net-device",
    "virtio-net-pci",
    "netdev-vhost-user",
    // net
    "netdev-tap",
    "netdev-dgram",
    "netdev-hubport",
    "netdev-loopback",
    "filter-dump",
    // hw/misc
    "edu",
    // hw/machine
    "pc",
    "virt",
};

TEST(RegisteredTypesTest, EveryBuiltinTypeIsRegisteredAndInitialises) {
  qom::TypeRegistry& r = qom::TypeRegistry::Global();
  for (const char* name : kBuiltinTypes) {
    auto t = r.Lookup(name);
    EXPECT_TRUE(t.ok()) << name << ": " << t.status();
  }
}

TEST(RegisteredTypesTest, NoStaticRegistrationFailed) {
  absl::Status s = qom::TypeRegistry::Global().InitializeAll();
  EXPECT_TRUE(s.ok()) << s;
}

}  // namespace
}  // namespace vdev
