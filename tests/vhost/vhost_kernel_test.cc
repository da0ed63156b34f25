// Kernel vhost argument building (hw/virtio/vhost/vhost_kernel.h): the memory table layout, ring
// addresses checked against guest RAM before the kernel could see them, and the one-line error
// when /dev/vhost-net is missing. The ioctls themselves run where /dev/vhost-net exists.
#include "hw/virtio/vhost/vhost_kernel.h"

#include <fcntl.h>
#include <unistd.h>

#include "core/qdev/machine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/virtio_net_uapi.h"

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
  EXPECT_EQ(a->desc_user_addr,
            reinterpret_cast<uint64_t>(mem->HostPointer(GuestAddr(0x10000), 1, false)));
  EXPECT_EQ(a->used_user_addr,
            reinterpret_cast<uint64_t>(mem->HostPointer(GuestAddr(0x12000), 1, false)));
  // Misaligned parts.
  EXPECT_THAT(
      std::string(BuildVringAddr(*mem, 0, 256, 0x10008, 0x11000, 0x12000).status().message()),
      HasSubstr("not 16-byte aligned"));
  EXPECT_THAT(
      std::string(BuildVringAddr(*mem, 0, 256, 0x10000, 0x11001, 0x12000).status().message()),
      HasSubstr("not 2-byte aligned"));
  EXPECT_THAT(
      std::string(BuildVringAddr(*mem, 0, 256, 0x10000, 0x11000, 0x12002).status().message()),
      HasSubstr("not 4-byte aligned"));
  // A table running off the end of RAM, one in the hole, one straddling two regions' gap.
  EXPECT_THAT(
      std::string(BuildVringAddr(*mem, 0, 256, 0xff800, 0x11000, 0x12000).status().message()),
      HasSubstr("descriptor table"));
  EXPECT_FALSE(BuildVringAddr(*mem, 0, 256, 0x10000, 0x80000000, 0x12000).ok());
  EXPECT_FALSE(BuildVringAddr(*mem, 0, 256, 0x10000, 0x11000, 0xfffffffffffff000).ok());
  // Sizes that are no ring.
  EXPECT_FALSE(BuildVringAddr(*mem, 0, 0, 0x10000, 0x11000, 0x12000).ok());
  EXPECT_FALSE(BuildVringAddr(*mem, 0, 100, 0x10000, 0x11000, 0x12000).ok());
}

TEST(VhostKernelTest, MissingDeviceIsOneLineNamingIt) {
  auto fd = net::OpenVhostNet("/nonexistent/vhost-net");
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
  EXPECT_TRUE(net::OpenVhostNet().ok());
}

// The ioctls VhostKernelNet makes, recorded by a stand-in for ioctl(2) (the real device runs the
// same code where it exists).
struct Recorded {
  int fd;
  unsigned long request;
  unsigned index = 0;
  uint64_t value = 0;  // num / fd / features / desc address
};

class IoctlRecorder {
 public:
  VhostKernelNet::Ioctl fn() {
    return [this](int fd, unsigned long req, void* arg) {
      Recorded r{fd, req};
      if (req == VHOST_GET_FEATURES) *static_cast<uint64_t*>(arg) = features;
      if (req == VHOST_SET_FEATURES) r.value = *static_cast<uint64_t*>(arg);
      if (req == VHOST_SET_VRING_NUM || req == VHOST_SET_VRING_BASE) {
        auto* s = static_cast<vhost_vring_state*>(arg);
        r.index = s->index;
        r.value = s->num;
      }
      if (req == VHOST_GET_VRING_BASE) {
        auto* s = static_cast<vhost_vring_state*>(arg);
        r.index = s->index;
        s->num = base;
      }
      if (req == VHOST_SET_VRING_ADDR) {
        auto* a = static_cast<vhost_vring_addr*>(arg);
        r.index = a->index;
        r.value = a->desc_user_addr;
      }
      if (req == VHOST_SET_VRING_KICK || req == VHOST_SET_VRING_CALL ||
          req == VHOST_SET_VRING_ERR || req == VHOST_NET_SET_BACKEND) {
        auto* f = static_cast<vhost_vring_file*>(arg);
        r.index = f->index;
        r.value = static_cast<uint64_t>(static_cast<int64_t>(f->fd));
      }
      calls.push_back(r);
      if (req == fail_request) {
        errno = EFAULT;
        return -1;
      }
      return 0;
    };
  }
  std::vector<Recorded> Of(unsigned long req) const {
    std::vector<Recorded> v;
    for (const Recorded& r : calls) {
      if (r.request == req) v.push_back(r);
    }
    return v;
  }
  uint64_t features = (1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_NET_F_MRG_RXBUF) |
                      (1ull << VHOST_NET_F_VIRTIO_NET_HDR) | (1ull << VIRTIO_RING_F_EVENT_IDX);
  uint32_t base = 7;
  unsigned long fail_request = 0;
  std::vector<Recorded> calls;
};

class VhostKernelNetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mem_ = TwoRegions();
    loop_ = *EventLoop::Create();
    // Two queue pairs: rings 0..3, each 64 entries in low RAM.
    for (uint16_t q = 0; q < 4; ++q) {
      vqs_.push_back(std::make_unique<virtio::VirtQueue>(q, 256));
      const uint64_t at = 0x10000 + q * 0x4000;
      ASSERT_TRUE(vqs_[q]->SetSize(64));
      ASSERT_TRUE(
          vqs_[q]->SetAddresses(GuestAddr(at), GuestAddr(at + 0x1000), GuestAddr(at + 0x2000)));
    }
  }
  std::vector<VhostDev::Ring> Rings() {
    std::vector<VhostDev::Ring> r;
    for (uint16_t q = 0; q < 4; ++q) r.push_back({q, vqs_[q].get()});
    return r;
  }
  std::unique_ptr<GuestMemory> mem_;
  std::unique_ptr<EventLoop> loop_;
  std::vector<std::unique_ptr<virtio::VirtQueue>> vqs_;
  IoctlRecorder rec_;
};

TEST_F(VhostKernelNetTest, StartHandsEachPairToItsFdAndAttachesTheTap) {
  auto b = VhostKernelNet::Create({100, 101}, {200, 201}, /*tap_vnet_hdr=*/true, rec_.fn());
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(rec_.Of(VHOST_SET_OWNER).size(), 2u);
  EXPECT_EQ((*b)->features(), rec_.features);
  VhostDev dev(
      *loop_, [](uint32_t) {}, [](uint32_t) {});
  ASSERT_TRUE(dev.Start(**b, *mem_, rec_.features, Rings()).ok());
  // The TAP carries the header: vhost must not add one.
  for (const Recorded& r : rec_.Of(VHOST_SET_FEATURES)) {
    EXPECT_FALSE(r.value >> VHOST_NET_F_VIRTIO_NET_HDR & 1);
  }
  EXPECT_EQ(rec_.Of(VHOST_SET_MEM_TABLE).size(), 2u);
  // Device ring q is ring q % 2 of fd 100 + q / 2.
  auto nums = rec_.Of(VHOST_SET_VRING_NUM);
  ASSERT_EQ(nums.size(), 4u);
  for (unsigned q = 0; q < 4; ++q) {
    EXPECT_EQ(nums[q].fd, 100 + static_cast<int>(q / 2));
    EXPECT_EQ(nums[q].index, q % 2);
    EXPECT_EQ(nums[q].value, 64u);
  }
  auto addrs = rec_.Of(VHOST_SET_VRING_ADDR);
  ASSERT_EQ(addrs.size(), 4u);
  EXPECT_EQ(addrs[3].value, reinterpret_cast<uint64_t>(
                                mem_->HostPointer(GuestAddr(0x10000 + 3 * 0x4000), 1, false)));
  auto backends = rec_.Of(VHOST_NET_SET_BACKEND);
  ASSERT_EQ(backends.size(), 4u);
  EXPECT_EQ(backends[2].fd, 101);
  EXPECT_EQ(backends[2].value, 201u);
  // Stop: detach, then read the base back into the queue.
  rec_.calls.clear();
  ASSERT_TRUE(dev.Stop(b->get()).ok());
  ASSERT_EQ(rec_.calls.size(), 8u);
  EXPECT_EQ(rec_.calls[0].request, VHOST_NET_SET_BACKEND);
  EXPECT_EQ(static_cast<int64_t>(rec_.calls[0].value), -1);
  EXPECT_EQ(rec_.calls[1].request, VHOST_GET_VRING_BASE);
  EXPECT_EQ(vqs_[1]->last_avail_idx(), 7u);
}

TEST_F(VhostKernelNetTest, WithoutATapHeaderVhostAddsIt) {
  auto b = VhostKernelNet::Create({100}, {200}, /*tap_vnet_hdr=*/false, rec_.fn());
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE((*b)->SetFeatures(1ull << VIRTIO_F_VERSION_1).ok());
  EXPECT_TRUE(rec_.Of(VHOST_SET_FEATURES)[0].value >> VHOST_NET_F_VIRTIO_NET_HDR & 1);
}

TEST_F(VhostKernelNetTest, AnIoctlFailureIsAStatusNamingIt) {
  auto b = VhostKernelNet::Create({100, 101}, {200, 201}, true, rec_.fn());
  ASSERT_TRUE(b.ok());
  rec_.fail_request = VHOST_SET_VRING_ADDR;
  VhostDev dev(
      *loop_, [](uint32_t) {}, [](uint32_t) {});
  absl::Status s = dev.Start(**b, *mem_, rec_.features, Rings());
  EXPECT_EQ(s.message(), "vhost-net: VHOST_SET_VRING_ADDR (ring 0): Bad address");
  EXPECT_FALSE(dev.started());
  // Nothing attached; the ring that was set up is detached and its base read back.
  for (const Recorded& r : rec_.Of(VHOST_NET_SET_BACKEND)) {
    EXPECT_EQ(static_cast<int64_t>(r.value), -1);
  }
  EXPECT_EQ(rec_.Of(VHOST_GET_VRING_BASE).size(), 1u);
}

TEST_F(VhostKernelNetTest, GuestRingsOutsideRamNeverReachTheKernel) {
  auto b = VhostKernelNet::Create({100}, {200}, true, rec_.fn());
  ASSERT_TRUE(b.ok());
  virtio::VirtQueue bad(0, 256);
  ASSERT_TRUE(bad.SetSize(64));
  ASSERT_TRUE(bad.SetAddresses(GuestAddr(0x10000), GuestAddr(0x80000000), GuestAddr(0x12000)));
  VhostDev dev(
      *loop_, [](uint32_t) {}, [](uint32_t) {});
  absl::Status s = dev.Start(**b, *mem_, rec_.features, {{0, &bad}});
  EXPECT_THAT(s.message(), HasSubstr("available ring"));
  EXPECT_TRUE(rec_.Of(VHOST_SET_VRING_ADDR).empty());
}

TEST_F(VhostKernelNetTest, MismatchedFdsAndANonVhostFdAreRefused) {
  EXPECT_FALSE(VhostKernelNet::Create({100, 101}, {200}, true, rec_.fn()).ok());
  EXPECT_FALSE(VhostKernelNet::Create({}, {}, true, rec_.fn()).ok());
  // The real ioctl on something that is not /dev/vhost-net.
  UniqueFd null(open("/dev/null", O_RDWR | O_CLOEXEC));
  auto b = VhostKernelNet::Create({null.get()}, {null.get()}, true);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().message(),
            "vhost-net: VHOST_SET_OWNER (ring 0): Inappropriate ioctl for device");
}

TEST(VhostKernelTest, VhostfdMustNameDistinctOpenFdsOnePerQueue) {
  auto m = *Machine::Create("pc");
  UniqueFd a(open("/dev/null", O_RDWR | O_CLOEXEC));
  const std::string n = std::to_string(a.get());
  EXPECT_EQ(m->ObjectAdd("netdev", "tap,id=n0,queues=2,vhostfd=" + n + ":" + n).status().message(),
            "tap 'n0': vhost=on: vhostfd " + n + " is named twice");
  EXPECT_EQ(m->ObjectAdd("netdev", "tap,id=n1,queues=2,vhostfd=" + n).status().message(),
            "tap 'n1': vhost=on: vhostfd= names 1 fds for 2 queues");
  EXPECT_EQ(m->ObjectAdd("netdev", "tap,id=n2,vhostfd=999999").status().message(),
            "tap 'n2': vhost=on: vhostfd '999999' is not an open fd");
}

}  // namespace
}  // namespace vdev::vhost
