// Kernel vhost argument building (hw/virtio/vhost/vhost_kernel.h): the memory table layout, ring
// addresses checked against guest RAM before the kernel could see them, and the one-line error
// when /dev/vhost-net is missing. The ioctls themselves run where /dev/vhost-net exists.
#include "hw/virtio/vhost/vhost_kernel.h"

#include <unistd.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vdev::vhost {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<GuestMemory> TwoRegions() {
  auto mem = *GuestMemory::Create();
  EXPECT_TRUE(mem->AddRam(GuestAddr(0), 1 << 20, "low").ok());
  EXPECT_TRUE(mem->AddRam(GuestAddr(0x100000000), 1 << 20, "high").ok());
  return mem;
}

TEST(VhostKernelTest, MemoryTableMapsEveryRegionToOurMapping) {
  auto mem = TwoRegions();
  auto buf = BuildVhostMemory(*mem);
  ASSERT_TRUE(buf.ok()) << buf.status();
  const auto* t = reinterpret_cast<const vhost_memory*>(buf->data());
  ASSERT_EQ(t->nregions, 2u);
  EXPECT_EQ(t->regions[1].guest_phys_addr, 0x100000000u);
  EXPECT_EQ(t->regions[1].memory_size, 1u << 20);
  EXPECT_EQ(t->regions[1].userspace_addr,
            reinterpret_cast<uint64_t>(mem->HostPointer(GuestAddr(0x100000000), 1, false)));
}

TEST(VhostKernelTest, EmptyMemoryIsRefused) {
  auto mem = *GuestMemory::Create();
  EXPECT_FALSE(BuildVhostMemory(*mem).ok());
}

TEST(VhostKernelTest, RingAddressesAreTranslatedOnlyWhenAllRamAndAligned) {
  auto mem = TwoRegions();
  auto a = BuildVringAddr(*mem, 1, 256, 0x10000, 0x11000, 0x12000);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->index, 1u);
  EXPECT_EQ(a->desc_user_addr, reinterpret_cast<uint64_t>(mem->HostPointer(GuestAddr(0x10000), 1, false)));
  EXPECT_EQ(a->used_user_addr, reinterpret_cast<uint64_t>(mem->HostPointer(GuestAddr(0x12000), 1, false)));
  // Misaligned parts.
  EXPECT_THAT(std::string(BuildVringAddr(*mem, 0, 256, 0x10008, 0x11000, 0x12000).status().message()),
              HasSubstr("not 16-byte aligned"));
  EXPECT_THAT(std::string(BuildVringAddr(*mem, 0, 256, 0x10000, 0x11001, 0x12000).status().message()),
              HasSubstr("not 2-byte aligned"));
  EXPECT_THAT(std::string(BuildVringAddr(*mem, 0, 256, 0x10000, 0x11000, 0x12002).status().message()),
              HasSubstr("not 4-byte aligned"));
  // A table running off the end of RAM, one in the hole, one straddling two regions' gap.
  EXPECT_THAT(std::string(BuildVringAddr(*mem, 0, 256, 0xff800, 0x11000, 0x12000).status().message()),
              HasSubstr("descriptor table"));
  EXPECT_FALSE(BuildVringAddr(*mem, 0, 256, 0x10000, 0x80000000, 0x12000).ok());
  EXPECT_FALSE(BuildVringAddr(*mem, 0, 256, 0x10000, 0x11000, 0xfffffffffffff000).ok());
  // Sizes that are no ring.
  EXPECT_FALSE(BuildVringAddr(*mem, 0, 0, 0x10000, 0x11000, 0x12000).ok());
  EXPECT_FALSE(BuildVringAddr(*mem, 0, 100, 0x10000, 0x11000, 0x12000).ok());
}

TEST(VhostKernelTest, MissingDeviceIsOneLineNamingIt) {
  auto fd = OpenVhostNet("/nonexistent/vhost-net");
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(fd.status().message(),
            "cannot open /nonexistent/vhost-net: No such file or directory (no vhost-net on this "
            "machine: load vhost_net, or use vhost=off)");
}

TEST(VhostKernelTest, RealDeviceOpensWhereItExists) {
  if (access("/dev/vhost-net", R_OK | W_OK) != 0) {
    GTEST_SKIP() << "/dev/vhost-net does not exist on this machine";
  }
  EXPECT_TRUE(OpenVhostNet().ok());
}

}  // namespace
}  // namespace vdev::vhost
