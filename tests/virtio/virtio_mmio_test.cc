// virtio-mmio on the virt machine: entropy through a version-2 and a legacy transport with the
// software guest's driver, the interrupt line, hostile register accesses, and the device tree
// (decoded with dtc, the real tool).
#include <linux/virtio_mmio.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "bus/virtio/virtio_uapi.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hw/machine/virt.h"
#include "tests/testing/virtio_mmio_driver.h"

namespace vdev::virtio {
namespace {

using testing::GuestVring;
using ::testing::HasSubstr;
using testing::VirtioMmioDriver;

constexpr uint64_t kVersion1 = uint64_t{1} << VIRTIO_F_VERSION_1;
constexpr GuestAddr kRing(0x41000000);
constexpr GuestAddr kBuf(0x42000000);

class VirtioMmioTest : public ::testing::Test {
 protected:
  void Build(const std::string& machine, std::vector<std::string> devices) {
    m_ = *Machine::Create(machine);
    m_->irq().set_sink(&sink_);
    for (const std::string& d : devices) {
      auto r = m_->DeviceAdd(d);
      ASSERT_TRUE(r.ok()) << r.status();
    }
    virt_ = dynamic_cast<machine::VirtMachine*>(m_.get());  // nullptr on other boards
  }
  VirtioMmioDriver Driver(int i) {
    return VirtioMmioDriver(
        m_->memory_space(), m_->guest_memory(),
        machine::VirtMachine::kMmioBase + machine::VirtMachine::kMmioStride * i);
  }

  RecordingIrqSink sink_;
  std::unique_ptr<Machine> m_;
  machine::VirtMachine* virt_ = nullptr;
};

TEST_F(VirtioMmioTest, DevicesTakeTheFirstFreeTransports) {
  Build("virt", {"virtio-rng-device,id=a", "virtio-rng-device,id=b"});
  EXPECT_EQ(virt_->transports()[0]->vdev(), m_->FindDevice("a"));
  EXPECT_EQ(virt_->transports()[1]->vdev(), m_->FindDevice("b"));
  EXPECT_EQ(virt_->transports()[2]->vdev(), nullptr);
  auto drv = Driver(2);
  EXPECT_EQ(drv.Read(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976u);
  EXPECT_EQ(drv.Read(VIRTIO_MMIO_DEVICE_ID), 0u);  // an empty transport
}

TEST_F(VirtioMmioTest, EntropyThroughAVersion2Transport) {
  Build("virt", {"virtio-rng-device,id=a"});
  auto drv = Driver(0);
  ASSERT_TRUE(drv.Probe());
  EXPECT_EQ(drv.version(), 2u);
  EXPECT_EQ(drv.Read(VIRTIO_MMIO_DEVICE_ID), uint32_t{VIRTIO_ID_RNG});
  EXPECT_EQ(drv.Read(VIRTIO_MMIO_VENDOR_ID), 0x554d4551u);
  ASSERT_TRUE(drv.Negotiate(kVersion1).has_value());
  GuestVring* vq = drv.SetupQueue(0, kRing, 64);
  ASSERT_NE(vq, nullptr);
  drv.DriverOk();
  vq->Publish(vq->AddChain({{kBuf, 48, true}}));
  drv.Kick(0);
  const uint32_t gsi = virt_->transports()[0]->gsi();
  EXPECT_TRUE(sink_.level(gsi));
  EXPECT_EQ(drv.InterruptStatus(), uint32_t{VIRTIO_MMIO_INT_VRING});
  drv.Ack(VIRTIO_MMIO_INT_VRING);
  EXPECT_FALSE(sink_.level(gsi));
  auto used = vq->TakeUsed();
  ASSERT_EQ(used.size(), 1u);
  EXPECT_EQ(used[0].second, 48u);
}

TEST_F(VirtioMmioTest, EntropyThroughALegacyTransport) {
  Build("virt", {});
  // A legacy transport: a board option (`legacy=on`) that we set on transport 3 here.
  auto t = qom::MakeChecked<VirtIOMMIOProxy>();
  ASSERT_TRUE(t->SetProperty("legacy", "on").ok());
  t->Connect(9, &m_->system_memory(), 0x0b000000, &m_->irq(), 40, &m_->guest_memory());
  auto placed = m_->AddBoardDevice(std::move(t), &m_->sysbus(), "legacy-mmio");
  ASSERT_TRUE(placed.ok()) << placed.status();
  ASSERT_TRUE(m_->DeviceAdd("virtio-rng-device,id=l,bus=virtio-mmio-bus.9").ok());
  VirtioMmioDriver drv(m_->memory_space(), m_->guest_memory(), 0x0b000000);
  ASSERT_TRUE(drv.Probe());
  EXPECT_EQ(drv.version(), 1u);
  auto f = drv.Negotiate(kVersion1 | (uint64_t{1} << VIRTIO_RING_F_EVENT_IDX));
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(*f, uint64_t{1} << VIRTIO_RING_F_EVENT_IDX);  // no VERSION_1 for a legacy driver
  GuestVring* vq = drv.SetupQueue(0, kRing, 64);
  ASSERT_NE(vq, nullptr);
  drv.DriverOk();
  EXPECT_EQ(drv.status() & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
  vq->Publish(vq->AddChain({{kBuf, 16, true}}));
  drv.Kick(0);
  EXPECT_EQ(vq->TakeUsed().size(), 1u);
  EXPECT_TRUE(sink_.level(40));
}

TEST_F(VirtioMmioTest, HostileRegisterAccessesAreIgnoredAndCounted) {
  Build("virt", {"virtio-rng-device,id=a"});
  auto drv = Driver(0);
  ASSERT_TRUE(drv.Probe());
  DeviceState* t = virt_->transports()[0];
  EXPECT_EQ(drv.Read(VIRTIO_MMIO_MAGIC_VALUE, 2), 0xffffu);  // registers are 32-bit
  drv.Write(VIRTIO_MMIO_STATUS, 1, 1);
  drv.Write(VIRTIO_MMIO_QUEUE_SEL, 7);  // no queue 7
  EXPECT_EQ(drv.Read(VIRTIO_MMIO_QUEUE_NUM_MAX), 0u);
  drv.Write(VIRTIO_MMIO_QUEUE_NUM, 8);
  drv.Write(VIRTIO_MMIO_QUEUE_PFN, 1);  // legacy register on version 2
  drv.Write(0x0f0, 1);                  // no such register
  EXPECT_EQ(t->counters().Value("bad_access"), 5u);
  // A queue size change after DRIVER_OK is refused (CVE-2026-5747).
  ASSERT_TRUE(drv.Negotiate(kVersion1).has_value());
  ASSERT_NE(drv.SetupQueue(0, kRing, 64), nullptr);
  drv.DriverOk();
  drv.Write(VIRTIO_MMIO_QUEUE_NUM, 8);
  EXPECT_EQ(t->counters().Value("bad_access"), 6u);
  drv.Kick(3);  // no queue 3
  EXPECT_EQ(m_->FindDevice("a")->counters().Value("bad_queue_notify"), 1u);
  EXPECT_EQ(drv.Read(VIRTIO_MMIO_CONFIG, 4), 0xffffffffu);  // rng has no config space
}

TEST_F(VirtioMmioTest, PcHasNoDeviceTree) {
  Build("pc", {});
  auto dtb = m_->GenerateDtb();
  ASSERT_FALSE(dtb.ok());
  EXPECT_EQ(dtb.status().code(), absl::StatusCode::kUnimplemented);
}

// Runs `dtc` on a DTB; the decoded source, or nullopt when dtc is not installed.
std::optional<std::string> Decompile(const std::vector<uint8_t>& dtb) {
  if (system("command -v dtc >/dev/null 2>&1") != 0) return std::nullopt;
  const std::string path = ::testing::TempDir() + "/vdev-virt-" + std::to_string(getpid()) + ".dtb";
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(dtb.data()), static_cast<std::streamsize>(dtb.size()));
  FILE* p = popen(("dtc -q -I dtb -O dts " + path + " 2>/dev/null").c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int rc = pclose(p);
  std::remove(path.c_str());
  if (rc != 0) return std::string("dtc failed");
  return out;
}

TEST_F(VirtioMmioTest, DeviceTreeHasOneVirtioMmioNodePerTransportInUse) {
  Build("virt,ram-size=256M", {"virtio-rng-device", "virtio-rng-device"});
  auto dtb = m_->GenerateDtb();
  ASSERT_TRUE(dtb.ok()) << dtb.status();
  auto dts = Decompile(*dtb);
  if (!dts) GTEST_SKIP() << "dtc (Debian device-tree-compiler) is not installed";
  EXPECT_THAT(*dts, HasSubstr("memory@40000000 {"));
  EXPECT_THAT(*dts, HasSubstr("reg = <0x00 0x40000000 0x00 0x10000000>;"));
  EXPECT_THAT(*dts, HasSubstr("chosen {"));
  EXPECT_THAT(*dts, HasSubstr("virtio_mmio@a000000 {"));
  EXPECT_THAT(*dts, HasSubstr("virtio_mmio@a000200 {"));
  EXPECT_THAT(*dts, ::testing::Not(HasSubstr("virtio_mmio@a000400")));  // free: not described
  EXPECT_THAT(*dts, HasSubstr("compatible = \"virtio,mmio\";"));
  EXPECT_THAT(*dts, HasSubstr("reg = <0x00 0xa000000 0x00 0x200>;"));
  EXPECT_THAT(*dts, HasSubstr("interrupts = <0x00 0x10 0x01>;"));
  EXPECT_THAT(*dts, HasSubstr("interrupts = <0x00 0x11 0x01>;"));
  EXPECT_THAT(*dts, HasSubstr("dma-coherent;"));
}

}  // namespace
}  // namespace vdev::virtio
