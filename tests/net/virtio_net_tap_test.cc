// virtio-net-pci on a real TAP, moved into a private network namespace the test creates (and
// always removes): the guest's ARP request gets the kernel's reply, an ICMP echo gets a reply,
// UDP datagrams sent to an echo socket in the namespace all come back intact, and receiving
// pauses without spinning while the guest has no buffers. Needs root and /dev/net/tun; skips
// with the reason otherwise.
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "bus/virtio/virtio_uapi.h"
#include "gtest/gtest.h"
#include "hw/machine/pc.h"
#include "hw/net/virtio_net/pci.h"
#include "net/tap.h"
#include "tests/testing/net_frames.h"
#include "tests/testing/pci_guest.h"
#include "tests/testing/virtio_net_driver.h"
#include "tests/testing/virtio_pci_driver.h"

namespace vdev::virtio {
namespace {

using testing::Ip4;
using testing::Mac;
using testing::ParsedFrame;
using testing::PciGuest;
using testing::VirtioNetDriver;
using testing::VirtioPciDriver;

constexpr uint64_t Bit(unsigned b) { return uint64_t{1} << b; }
constexpr Mac kGuestMac = {0x52, 0x54, 0x00, 0x77, 0x00, 0x02};
constexpr Ip4 kHostIp = {10, 77, 0, 1};
constexpr Ip4 kGuestIp = {10, 77, 0, 2};
constexpr uint16_t kEchoPort = 7777;
constexpr absl::Duration kWait = absl::Seconds(5);

// What a Linux guest asks for.
constexpr uint64_t kLinuxFeatures =
    Bit(VIRTIO_F_VERSION_1) | Bit(VIRTIO_NET_F_MAC) | Bit(VIRTIO_NET_F_MRG_RXBUF) |
    Bit(VIRTIO_NET_F_STATUS) | Bit(VIRTIO_NET_F_CTRL_VQ) | Bit(VIRTIO_NET_F_CTRL_RX) |
    Bit(VIRTIO_NET_F_CSUM) | Bit(VIRTIO_NET_F_GUEST_CSUM) | Bit(VIRTIO_NET_F_HOST_TSO4) |
    Bit(VIRTIO_NET_F_HOST_TSO6) | Bit(VIRTIO_NET_F_GUEST_TSO4) | Bit(VIRTIO_NET_F_GUEST_TSO6) |
    Bit(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS) | Bit(VIRTIO_RING_F_EVENT_IDX);

int Shell(const std::string& cmd) { return system((cmd + " >/dev/null 2>&1").c_str()); }

std::string SkipReason() {
  if (geteuid() != 0) return "needs root (CAP_NET_ADMIN) for a TAP and a network namespace";
  if (access("/dev/net/tun", R_OK | W_OK) != 0) return "/dev/net/tun is not available";
  if (Shell("ip -V") != 0) return "the 'ip' tool (iproute2) is not installed";
  return "";
}

// A UDP echo server bound inside the namespace.
class EchoServer {
 public:
  bool Start(const std::string& netns) {
    std::atomic<int> state{0};
    thread_ = std::thread([this, netns, &state] {
      const int nsfd = open(("/var/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
      if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) {
        state = -1;
        return;
      }
      close(nsfd);
      fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(kEchoPort);
      std::memcpy(&a.sin_addr, kHostIp.data(), 4);
      // Room for a whole burst: the guest sends faster than this thread may echo.
      int big = 8 << 20;
      if (fd_ >= 0) setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
      if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
        state = -1;
        return;
      }
      state = 1;
      std::vector<uint8_t> buf(65536);
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        sockaddr_in from{};
        socklen_t fl = sizeof(from);
        const ssize_t n =
            recvfrom(fd_, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &fl);
        if (n < 0) continue;
        ++echoed_;
        sendto(fd_, buf.data(), size_t(n), 0, reinterpret_cast<sockaddr*>(&from), fl);
      }
      close(fd_);
    });
    while (state == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return state == 1;
  }
  ~EchoServer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int echoed() const { return echoed_; }

 private:
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> echoed_{0};
  int fd_ = -1;
};

class VirtioNetTapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
    const int id = getpid() % 100000;
    netns_ = absl::StrCat("vdevtest", id);
    ifname_ = absl::StrCat("vdt", id);
    Shell("ip netns del " + netns_);
    ASSERT_EQ(Shell("ip netns add " + netns_), 0);
    netns_made_ = true;
  }
  void TearDown() override {
    drv_.reset();
    pci_.reset();
    guest_.reset();
    m_.reset();  // closes the TAP: the interface goes away
    if (netns_made_) Shell("ip netns del " + netns_);
  }

  std::string Ns(const std::string& cmd) { return "ip netns exec " + netns_ + " " + cmd; }

  void Build(const std::string& netdev_extra = "", const std::string& dev_extra = "") {
    m_ = *Machine::Create("pc");
    auto nd = m_->ObjectAdd("netdev",
                            absl::StrCat("tap,id=n0,ifname=", ifname_, ",script=no", netdev_extra));
    ASSERT_TRUE(nd.ok()) << nd.status();
    tap_ = qom::DynamicCast<net::Tap>(*nd);
    auto d = m_->DeviceAdd("virtio-net-pci,id=nic0,netdev=n0,mac=" + testing::FormatMac(kGuestMac) +
                           dev_extra);
    ASSERT_TRUE(d.ok()) << d.status();
    proxy_ = static_cast<VirtIONetPCI*>(*d);
    // The TAP goes into the namespace, with the host address.
    ASSERT_EQ(Shell(absl::StrCat("ip link set ", ifname_, " netns ", netns_)), 0);
    Shell(Ns("sysctl -w net.ipv6.conf.all.disable_ipv6=1"));
    ASSERT_EQ(Shell(Ns(absl::StrCat("ip addr add 10.77.0.1/24 dev ", ifname_))), 0);
    ASSERT_EQ(Shell(Ns(absl::StrCat("ip link set ", ifname_, " up"))), 0);
    Shell(Ns("ip link set lo up"));

    testing::PcVirtioFunction f;
    ASSERT_TRUE(testing::ProbePcVirtio(*m_, proxy_->device_id(), &f));
    guest_ = std::move(f.guest);
    fn_ = f.fn;
    pci_ = std::move(f.driver);
    drv_ = std::make_unique<VirtioNetDriver>(*pci_, m_->guest_memory(), GuestAddr(0x1000000));
  }

  // The guest's tiny stack: takes received frames, answers ARP requests for its address, and
  // returns the first frame `want` accepts.
  std::optional<ParsedFrame> Await(const std::function<bool(const ParsedFrame&)>& want,
                                   absl::Duration timeout = kWait) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      for (auto& f : drv_->WaitRx(0, 1, absl::Milliseconds(50))) {
        auto p = testing::ParseFrame(f.data);
        if (!p) continue;
        if (p->type == testing::kEtherArp && p->arp_op == 1 && p->arp_tpa == kGuestIp) {
          drv_->Send(0, testing::ArpReply(kGuestMac, kGuestIp, p->arp_sha, p->arp_spa));
          continue;
        }
        if (want(*p)) return p;
        pending_.push_back(*p);
      }
    }
    return std::nullopt;
  }
  // 200 UDP datagrams to an echo socket in the namespace, all back intact (after ARP).
  void EchoTest() {
    drv_->FillRx(0, 256);
    EchoServer echo;
    ASSERT_TRUE(echo.Start(netns_));
    auto mac = ResolveHost();
    ASSERT_TRUE(mac.has_value());
    UdpRoundTrip(*mac, 200);
    EXPECT_EQ(echo.echoed(), 200);
  }
  // Resolves the host's MAC with ARP.
  std::optional<Mac> ResolveHost() {
    drv_->Send(0, testing::ArpRequest(kGuestMac, kGuestIp, kHostIp));
    auto reply = Await([](const ParsedFrame& p) {
      return p.type == testing::kEtherArp && p.arp_op == 2 && p.arp_spa == kHostIp;
    });
    if (!reply) return std::nullopt;
    return reply->arp_sha;
  }

  // Receives for up to `wait`: answers ARP, files UDP payloads by destination port.
  void CollectUdp(std::map<uint16_t, std::vector<uint8_t>>* got, absl::Duration wait) {
    for (auto& f : drv_->WaitRx(0, 1, wait)) {
      auto p = testing::ParseFrame(f.data);
      if (!p) continue;
      if (p->type == testing::kEtherArp && p->arp_op == 1 && p->arp_tpa == kGuestIp) {
        drv_->Send(0, testing::ArpReply(kGuestMac, kGuestIp, p->arp_sha, p->arp_spa));
      } else if (p->proto == 17 && p->sport == kEchoPort) {
        (*got)[p->dport] = p->payload;
      }
    }
  }
  // Sends `n` datagrams of assorted sizes to the echo socket; every one must come back intact.
  void UdpRoundTrip(const Mac& host, int n) {
    std::map<uint16_t, std::vector<uint8_t>> sent, got;
    for (int i = 0; i < n; ++i) {
      const uint16_t sport = static_cast<uint16_t>(20000 + i);
      std::vector<uint8_t> data(1 + (i * 53) % 1400);
      for (size_t k = 0; k < data.size(); ++k) data[k] = static_cast<uint8_t>(i * 31 + k);
      sent[sport] = data;
      while (!drv_->Send(
          0, testing::UdpFrame(host, kGuestMac, kGuestIp, kHostIp, sport, kEchoPort, data))) {
        drv_->ReclaimTx(0);
      }
      CollectUdp(&got, absl::ZeroDuration());
    }
    const absl::Time deadline = absl::Now() + kWait;
    while (got.size() < sent.size() && absl::Now() < deadline) {
      CollectUdp(&got, absl::Milliseconds(50));
    }
    EXPECT_EQ(got.size(), sent.size());
    for (const auto& [port, data] : sent) {
      auto it = got.find(port);
      if (it == got.end()) continue;  // counted above
      EXPECT_EQ(it->second, data) << port;
    }
    if (got.size() != sent.size()) {
      for (auto [k, v] : proxy_->net()->counters().Snapshot())
        ADD_FAILURE() << "nic " << k << "=" << v;
      for (auto [k, v] : tap_->queue(0)->counters().Snapshot())
        ADD_FAILURE() << "tap " << k << "=" << v;
    }
  }

  std::string netns_, ifname_;
  bool netns_made_ = false;
  std::unique_ptr<Machine> m_;
  net::Tap* tap_ = nullptr;
  VirtIONetPCI* proxy_ = nullptr;
  std::unique_ptr<PciGuest> guest_;
  const PciGuest::Function* fn_ = nullptr;
  std::unique_ptr<VirtioPciDriver> pci_;
  std::unique_ptr<VirtioNetDriver> drv_;
  std::vector<ParsedFrame> pending_;
};

TEST_F(VirtioNetTapTest, ArpRequestGetsTheKernelsReply) {
  Build();
  ASSERT_TRUE(drv_->Init(kLinuxFeatures));
  EXPECT_TRUE(drv_->Has(VIRTIO_NET_F_GUEST_CSUM));  // the TAP takes vnet headers: offloads offered
  EXPECT_TRUE(tap_->vnet_hdr());
  drv_->FillRx(0, 128);
  auto mac = ResolveHost();
  ASSERT_TRUE(mac.has_value());
  EXPECT_NE(*mac, kGuestMac);
  EXPECT_GE(proxy_->net()->counters().Value("tx_frames"), 1u);
  EXPECT_GE(proxy_->net()->counters().Value("rx_frames"), 1u);
}

TEST_F(VirtioNetTapTest, IcmpEchoGetsAReply) {
  Build();
  ASSERT_TRUE(drv_->Init(kLinuxFeatures));
  drv_->FillRx(0, 128);
  auto mac = ResolveHost();
  ASSERT_TRUE(mac.has_value());
  const std::vector<uint8_t> data = {'v', 'd', 'e', 'v', 0, 1, 2, 3, 4, 5, 6, 7};
  drv_->Send(0, testing::IcmpEcho(*mac, kGuestMac, kGuestIp, kHostIp, 0x1234, 1, data));
  auto reply = Await([](const ParsedFrame& p) { return p.proto == 1 && p.icmp_type == 0; });
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->icmp_id, 0x1234);
  EXPECT_EQ(reply->icmp_seq, 1);
  EXPECT_EQ(reply->payload, data);
  EXPECT_TRUE(reply->ip_checksum_ok);
  EXPECT_EQ(reply->ip_src, kHostIp);
}

TEST_F(VirtioNetTapTest, UdpDatagramsToAnEchoSocketAllComeBackIntact) {
  Build();
  ASSERT_TRUE(drv_->Init(kLinuxFeatures));
  EchoTest();
}

TEST_F(VirtioNetTapTest, WithoutOffloadsOrMergeableBuffersAndNoVnetHeader) {
  Build(",vnet_hdr=off");
  ASSERT_TRUE(drv_->Init(Bit(VIRTIO_F_VERSION_1) | Bit(VIRTIO_NET_F_MAC) | Bit(VIRTIO_NET_F_CSUM)));
  EXPECT_FALSE(drv_->Has(VIRTIO_NET_F_CSUM));  // no header at the TAP: no offloads
  EXPECT_FALSE(tap_->vnet_hdr());
  drv_->FillRx(0, 128);
  EchoServer echo;
  ASSERT_TRUE(echo.Start(netns_));
  auto mac = ResolveHost();
  ASSERT_TRUE(mac.has_value());
  UdpRoundTrip(*mac, 50);
}

TEST_F(VirtioNetTapTest, ReceivingPausesWithoutBuffersAndResumesOnTheKick) {
  Build();
  ASSERT_TRUE(drv_->Init(kLinuxFeatures));
  drv_->FillRx(0, 64);
  auto mac = ResolveHost();
  ASSERT_TRUE(mac.has_value());
  // Use every buffer up, then ask for 20 replies.
  drv_->TakeRx(0, /*refill=*/false);
  EchoServer echo;
  ASSERT_TRUE(echo.Start(netns_));
  // Drain the remaining posted buffers with frames from the host side.
  for (int i = 0; i < 64; ++i) {
    drv_->Send(0, testing::UdpFrame(*mac, kGuestMac, kGuestIp, kHostIp, 30000 + i, kEchoPort,
                                    {uint8_t(i)}));
  }
  ASSERT_TRUE(drv_->WaitTx(0, kWait));
  absl::SleepFor(absl::Milliseconds(200));
  auto first = drv_->TakeRx(0, /*refill=*/false);
  // The guest has no buffers now, and the TAP holds replies: the loop must not spin.
  rusage before{}, after{};
  getrusage(RUSAGE_SELF, &before);
  absl::SleepFor(absl::Milliseconds(400));
  getrusage(RUSAGE_SELF, &after);
  auto cpu_ms = [](const rusage& r) {
    return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1000.0 +
           (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1000.0;
  };
  EXPECT_LT(cpu_ms(after) - cpu_ms(before), 100.0) << "the receive path spins without buffers";
  // Buffers come back: everything that waited arrives.
  drv_->FillRx(0, 128);
  size_t total = first.size();
  const absl::Time deadline = absl::Now() + kWait;
  while (total < 64 && absl::Now() < deadline) {
    for (auto& f : drv_->WaitRx(0, 1, absl::Milliseconds(50))) {
      auto p = testing::ParseFrame(f.data);
      if (p && p->proto == 17) ++total;
    }
  }
  EXPECT_EQ(total, 64u);
}

TEST_F(VirtioNetTapTest, GuestOffloadsReachTheTap) {
  Build();
  ASSERT_TRUE(drv_->Init(kLinuxFeatures));
  // Switching offloads off at run time: accepted and applied (TUNSETOFFLOAD does not fail).
  const uint64_t csum_only = Bit(VIRTIO_NET_F_GUEST_CSUM);
  std::vector<uint8_t> d(8);
  std::memcpy(d.data(), &csum_only, 8);
  EXPECT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_GUEST_OFFLOADS, VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET, d),
            VIRTIO_NET_OK);
  // TSO without checksum offload is inconsistent: refused.
  const uint64_t tso_only = Bit(VIRTIO_NET_F_GUEST_TSO4);
  std::memcpy(d.data(), &tso_only, 8);
  EXPECT_EQ(drv_->Ctrl(VIRTIO_NET_CTRL_GUEST_OFFLOADS, VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET, d),
            VIRTIO_NET_ERR);
  drv_->FillRx(0, 64);
  ASSERT_TRUE(ResolveHost().has_value());
}

TEST_F(VirtioNetTapTest, TapOptionErrors) {
  m_ = *Machine::Create("pc");
  auto r = m_->ObjectAdd("netdev", "tap,id=n0,ifname=" + ifname_ + ",vhost=on");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("vhost"), std::string::npos);
  r = m_->ObjectAdd("netdev", "tap,id=n0,fd=0");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a TAP"), std::string::npos) << r.status();
  r = m_->ObjectAdd("netdev", "tap,id=n0,ifname=averyveryverylongname");
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(m_->root().Resolve("/netdevs/n0").ok());
}

TEST_F(VirtioNetTapTest, PreOpenedFdAndMultiqueue) {
  // fd=: a TAP the caller opened.
  const int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  std::strncpy(ifr.ifr_name, ifname_.c_str(), IFNAMSIZ - 1);
  ASSERT_EQ(ioctl(fd, TUNSETIFF, &ifr), 0) << strerror(errno);
  m_ = *Machine::Create("pc");
  auto nd = m_->ObjectAdd("netdev", absl::StrCat("tap,id=n0,fd=", fd));
  ASSERT_TRUE(nd.ok()) << nd.status();
  EXPECT_EQ(qom::DynamicCast<net::Tap>(*nd)->ifname(), ifname_);
  EXPECT_TRUE(qom::DynamicCast<net::Tap>(*nd)->vnet_hdr());
  ASSERT_TRUE(m_->DeviceAdd("virtio-net-pci,netdev=n0").ok());
  m_.reset();
  // queues=3: three fds on one interface; the NIC gets three pairs.
  m_ = *Machine::Create("pc");
  nd = m_->ObjectAdd("netdev", absl::StrCat("tap,id=n1,ifname=", ifname_, "m,queues=3"));
  ASSERT_TRUE(nd.ok()) << nd.status();
  auto* tap = qom::DynamicCast<net::Tap>(*nd);
  EXPECT_EQ(tap->num_queues(), 3u);
  EXPECT_NE(tap->fd(0), tap->fd(2));
  auto d = m_->DeviceAdd("virtio-net-pci,id=nic,netdev=n1,mq=on,vectors=8");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(static_cast<VirtIONetPCI*>(*d)->net()->max_queue_pairs(), 3u);
}

// vhost=on: the kernel's vhost-net serves the rings; the same UDP round trip passes and none of it
// goes through our data path.
TEST_F(VirtioNetTapTest, VhostNetCarriesTheTrafficWhereTheDeviceExists) {
  if (access("/dev/vhost-net", R_OK | W_OK) != 0) {
    GTEST_SKIP() << "/dev/vhost-net does not exist on this machine (modprobe vhost_net)";
  }
  Build(",vhost=on");
  ASSERT_TRUE(drv_->Init(kLinuxFeatures));
  EXPECT_EQ(proxy_->net()->counters().Value("vhost_starts"), 1u);
  EchoTest();
  EXPECT_EQ(proxy_->net()->counters().Value("tx_frames"), 0u);
  EXPECT_EQ(proxy_->net()->counters().Value("rx_frames"), 0u);
  EXPECT_EQ(proxy_->net()->counters().Value("vhost_fallbacks"), 0u);
}

}  // namespace
}  // namespace vdev::virtio
