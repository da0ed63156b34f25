// virtio-net-pci as a user configures it: the proxy's backend exists from creation, its
// properties are aliases of the backend's, and bad options get one clear error (QEMU's where
// QEMU has one).
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hw/machine/pc.h"
#include "hw/net/virtio_net/pci.h"

namespace vdev::virtio {
namespace {

TEST(VirtioNetPciOptionsTest, TheProxyHasItsBackendFromCreationAndAliasesItsProperties) {
  // Before realize, as QEMU's virtio_instance_init_common: the backend is the proxy's child.
  auto obj = qom::TypeRegistry::Global().Create("virtio-net-pci");
  ASSERT_TRUE(obj.ok()) << obj.status();
  auto* proxy = qom::DynamicCast<VirtIOPCIProxy>(obj->get());
  ASSERT_NE(proxy, nullptr);
  auto* backend = qom::DynamicCast<VirtIONet>(proxy->FindChild("virtio-backend"));
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(proxy->backend(), backend);
  EXPECT_EQ(proxy->vdev(), nullptr);  // plugged at realize
  // A value set on the proxy is parsed once, into the backend; both read it back.
  ASSERT_TRUE(proxy->SetProperty("mac", "52:54:00:ab:cd:ef").ok());
  ASSERT_TRUE(proxy->SetProperty("mrg_rxbuf", "off").ok());
  EXPECT_EQ(*backend->GetProperty("mac"), "52:54:00:ab:cd:ef");
  EXPECT_EQ(*proxy->GetProperty("mac"), "52:54:00:ab:cd:ef");
  EXPECT_EQ(*backend->GetProperty("mrg_rxbuf"), "off");
  EXPECT_EQ(*proxy->GetProperty("mrg_rxbuf"), "off");
  // A bad value fails when it is set, and changes nothing.
  absl::Status bad = proxy->SetProperty("mac", "zz");
  EXPECT_THAT(std::string(bad.message()),
              ::testing::StartsWith("Parameter 'mac' expects a MAC address"));
  EXPECT_EQ(*backend->GetProperty("mac"), "52:54:00:ab:cd:ef");
  // virtio-rng-pci uses the same mechanism.
  auto rng = qom::TypeRegistry::Global().Create("virtio-rng-pci");
  ASSERT_TRUE(rng.ok()) << rng.status();
  EXPECT_NE((*rng)->FindChild("virtio-backend"), nullptr);
  EXPECT_EQ((*rng)->FindProperty("rng")->type, "link<rng-backend>");
}

TEST(VirtioNetPciOptionsTest, AliasedLinksFailAsQemusDo) {
  std::unique_ptr<Machine> m_ = *Machine::Create("pc");
  // The link is the backend's, so the message names it, word for word as QEMU 7.2's.
  auto d = m_->DeviceAdd("virtio-net-pci,netdev=nope");
  EXPECT_EQ(std::string(d.status().message()),
            "Property 'virtio-net-device.netdev' can't find value 'nope'");
  // The NIC's qom-tree has the backend under the proxy.
  ASSERT_TRUE(m_->ObjectAdd("netdev", "loopback,id=n0").ok());
  ASSERT_TRUE(m_->DeviceAdd("virtio-net-pci,id=nic0,netdev=n0").ok());
  auto backend = m_->root().Resolve("/machine/peripheral/nic0/virtio-backend");
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_EQ((*backend)->type_name(), "virtio-net-device");
  EXPECT_EQ(*(*backend)->GetProperty("netdev"), "/netdevs/n0");
}

TEST(VirtioNetPciOptionsTest, BadDeviceOptionsGetOneClearError) {
  std::unique_ptr<Machine> m_ = *Machine::Create("pc");
  ASSERT_TRUE(m_->ObjectAdd("netdev", "loopback,id=n0,queues=2").ok());
  auto d = m_->DeviceAdd("virtio-net-pci,netdev=n0");
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), ::testing::HasSubstr("use mq=on"));
  d = m_->DeviceAdd("virtio-net-pci,netdev=nope");
  ASSERT_FALSE(d.ok());
  d = m_->DeviceAdd("virtio-net-pci,rx_queue_size=100");
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), ::testing::HasSubstr("rx_queue_size"));
  d = m_->DeviceAdd("virtio-net-pci,mac=zz");
  ASSERT_FALSE(d.ok());
  ASSERT_TRUE(m_->DeviceAdd("virtio-net-pci,id=a,netdev=n0,mq=on").ok());
  d = m_->DeviceAdd("virtio-net-pci,id=b,netdev=n0,mq=on");
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(std::string(d.status().message()), ::testing::HasSubstr("already in use"));
  EXPECT_EQ(m_->FindDevice("b"), nullptr);
  // The backend cannot go while the NIC uses it; after the NIC goes it can.
  EXPECT_FALSE(m_->ObjectDel("netdev", "n0").ok());
  ASSERT_TRUE(m_->DeviceDel("a").ok());
  EXPECT_TRUE(m_->ObjectDel("netdev", "n0").ok());
}

}  // namespace
}  // namespace vdev::virtio
