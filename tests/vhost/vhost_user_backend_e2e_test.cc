// Our own halves: vdev's vhost-user frontend (a machine with virtio-net-pci on -netdev
// vhost-user, driven by the software guest's virtio-net driver) against vdev's vhost-user
// backend (a second machine: -device vhost-user-backend with a virtio-net-device on its bus and
// a reflecting loopback netdev). The frames the guest sends leave through the frontend's rings,
// are taken off them by the backend's VirtIONet, reflected by its netdev and put into the
// frontend's receive ring by the same VirtIONet: a round trip through real sockets, memfds and
// eventfds, with no byte passing through the frontend's own data path.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "bus/virtio/virtio_uapi.h"
#include "gtest/gtest.h"
#include "hw/machine/pc.h"
#include "hw/net/virtio_net/pci.h"
#include "hw/virtio/vhost/vhost_user_netdev.h"
#include "hw/virtio/vhost_user_backend.h"
#include "tests/testing/frame_round_trip.h"
#include "tests/testing/net_frames.h"
#include "tests/testing/open_fds.h"
#include "tests/testing/pci_guest.h"
#include "tests/testing/virtio_net_driver.h"
#include "tests/testing/virtio_pci_driver.h"

namespace vdev::virtio {
namespace {

using testing::Mac;
using testing::VirtioNetDriver;

constexpr uint64_t Bit(unsigned b) { return uint64_t{1} << b; }
constexpr Mac kGuestMac = {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};
constexpr Mac kPeerMac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
constexpr uint64_t kFeatures = Bit(VIRTIO_F_VERSION_1) | Bit(VIRTIO_NET_F_MRG_RXBUF) |
                               Bit(VIRTIO_NET_F_CTRL_VQ) | Bit(VIRTIO_NET_F_STATUS) |
                               Bit(VIRTIO_NET_F_MAC);

std::vector<uint8_t> Frame(size_t payload, uint32_t seq) {
  return testing::SeqFrame(kGuestMac, kPeerMac, payload, seq);
}

class VhostUserBackendE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vdev-vub-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    sock_ = dir_ + "/vu.sock";
  }
  void TearDown() override {
    drv_.reset();
    pci_.reset();
    guest_.reset();
    front_.reset();
    back_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  // The backend: listens on the socket, serves with a virtio-net-device on a loopback netdev.
  void BuildBackend() {
    back_ = *Machine::Create("none");
    ASSERT_TRUE(back_->ObjectAdd("chardev", "socket,id=c1,server=on,path=" + sock_).ok());
    ASSERT_TRUE(back_->ObjectAdd("netdev", "loopback,id=l0,reflect=on").ok());
    auto vu = back_->DeviceAdd("vhost-user-backend,id=vu0,chardev=c1");
    ASSERT_TRUE(vu.ok()) << vu.status();
    backend_ = static_cast<VhostUserBackend*>(*vu);
    auto net = back_->DeviceAdd("virtio-net-device,bus=vu0.0,netdev=l0");
    ASSERT_TRUE(net.ok()) << net.status();
    backend_net_ = static_cast<VirtIONet*>(*net);
  }
  // The frontend: a pc with virtio-net-pci on -netdev vhost-user, and the software guest.
  void BuildFrontend() {
    front_ = *Machine::Create("pc");
    ASSERT_TRUE(front_->ObjectAdd("chardev", "socket,id=c0,path=" + sock_).ok());
    auto nd = front_->ObjectAdd("netdev", "vhost-user,id=n0,chardev=c0");
    ASSERT_TRUE(nd.ok()) << nd.status();
    vu_ = qom::DynamicCast<vhost::VhostUserNetdev>(*nd);
    auto d = front_->DeviceAdd("virtio-net-pci,id=nic0,netdev=n0,mac=52:54:00:ab:cd:ef");
    ASSERT_TRUE(d.ok()) << d.status();
    proxy_ = static_cast<VirtIONetPCI*>(*d);
    testing::PcVirtioFunction f;
    ASSERT_TRUE(testing::ProbePcVirtio(*front_, proxy_->device_id(), &f));
    guest_ = std::move(f.guest);
    pci_ = std::move(f.driver);
    drv_ = std::make_unique<VirtioNetDriver>(*pci_, front_->guest_memory(), GuestAddr(0x1000000));
  }
  std::vector<VirtioNetDriver::RxFrame> RoundTrip(uint32_t n, uint32_t first_seq, size_t payload,
                                                  uint32_t window = 32) {
    return testing::RoundTrip(
        *drv_, n, first_seq, [&](uint32_t seq) { return Frame(payload, seq); }, {.window = window});
  }

  std::string dir_, sock_;
  std::unique_ptr<Machine> back_, front_;
  VhostUserBackend* backend_ = nullptr;
  VirtIONet* backend_net_ = nullptr;
  vhost::VhostUserNetdev* vu_ = nullptr;
  VirtIONetPCI* proxy_ = nullptr;
  std::unique_ptr<testing::PciGuest> guest_;
  std::unique_ptr<testing::VirtioPciDriver> pci_;
  std::unique_ptr<VirtioNetDriver> drv_;
};

TEST_F(VhostUserBackendE2eTest, FramesMakeARoundTripThroughOurBackend) {
  BuildBackend();
  BuildFrontend();
  ASSERT_TRUE(vu_->connected());
  EXPECT_EQ(backend_->connections(), 1u);
  ASSERT_TRUE(drv_->Init(kFeatures));
  drv_->FillRx(0, 128);
  auto got = RoundTrip(500, 0, 100);
  ASSERT_EQ(got.size(), 500u);
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].data, Frame(100, static_cast<uint32_t>(i))) << "frame " << i;
  }
  auto big = RoundTrip(40, 1000, 1400);
  ASSERT_EQ(big.size(), 40u);
  for (size_t i = 0; i < big.size(); ++i) ASSERT_EQ(big[i].data, Frame(1400, 1000 + i));
  // The frontend's own data path carried nothing; the backend's VirtIONet carried everything.
  EXPECT_EQ(proxy_->net()->counters().Value("tx_frames"), 0u);
  EXPECT_EQ(proxy_->net()->counters().Value("rx_frames"), 0u);
  EXPECT_EQ(backend_net_->counters().Value("tx_frames"), 540u);
  EXPECT_EQ(backend_net_->counters().Value("rx_frames"), 540u);
  // The frontend kept the control queue, MAC and STATUS to itself.
  EXPECT_FALSE(backend_net_->guest_features() >> VIRTIO_NET_F_CTRL_VQ & 1);
  EXPECT_TRUE(backend_net_->guest_features() >> VIRTIO_F_VERSION_1 & 1);
}

TEST_F(VhostUserBackendE2eTest, AGuestResetStopsTheRingsAndTheNextInitRunsAgain) {
  BuildBackend();
  BuildFrontend();
  ASSERT_TRUE(drv_->Init(kFeatures));
  drv_->FillRx(0, 64);
  ASSERT_EQ(RoundTrip(50, 0, 64).size(), 50u);
  pci_->SetStatus(0);
  drv_ = std::make_unique<VirtioNetDriver>(*pci_, front_->guest_memory(), GuestAddr(0x1000000));
  ASSERT_TRUE(drv_->Init(kFeatures));
  drv_->FillRx(0, 64);
  auto got = RoundTrip(50, 100, 64);
  ASSERT_EQ(got.size(), 50u);
  EXPECT_EQ(got[0].data, Frame(64, 100));
  EXPECT_GE(backend_->counters().Value("device_starts"), 2u);
}

TEST_F(VhostUserBackendE2eTest, AFrontendThatGoesAwayLeavesTheBackendReadyForTheNext) {
  BuildBackend();
  BuildFrontend();
  ASSERT_TRUE(drv_->Init(kFeatures));
  drv_->FillRx(0, 64);
  ASSERT_EQ(RoundTrip(20, 0, 64).size(), 20u);
  const int fds = testing::OpenFdCount();
  drv_.reset();
  pci_.reset();
  guest_.reset();
  front_.reset();  // the frontend process is gone
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (backend_->connected() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_FALSE(backend_->connected());
  EXPECT_LT(testing::OpenFdCount(), fds);  // the session's fds and mappings went with it
  BuildFrontend();
  ASSERT_TRUE(drv_->Init(kFeatures));
  drv_->FillRx(0, 64);
  auto got = RoundTrip(20, 50, 64);
  ASSERT_EQ(got.size(), 20u);
  EXPECT_EQ(got[19].data, Frame(64, 69));
  EXPECT_EQ(backend_->connections(), 2u);
}

// The real binary: `vdev serve` with the backend, our frontend here; SIGTERM ends it cleanly and
// its socket file goes with it.
TEST_F(VhostUserBackendE2eTest, VdevServeServesUntilSigtermAndRemovesItsSocket) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string chardev = "socket,id=c1,server=on,path=" + sock_;
    execl(VDEV_BINARY, VDEV_BINARY, "serve", "-machine", "none", "-chardev", chardev.c_str(),
          "-netdev", "loopback,id=l0", "-device", "vhost-user-backend,id=vu0,chardev=c1", "-device",
          "virtio-net-device,bus=vu0.0,netdev=l0", static_cast<char*>(nullptr));
    _exit(127);
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!std::filesystem::exists(sock_) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE(std::filesystem::exists(sock_));
  BuildFrontend();
  ASSERT_TRUE(drv_->Init(kFeatures));
  drv_->FillRx(0, 64);
  auto got = RoundTrip(100, 0, 200);
  ASSERT_EQ(got.size(), 100u);
  EXPECT_EQ(got[99].data, Frame(200, 99));
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_FALSE(std::filesystem::exists(sock_));
}

// SEND_RARP from our frontend: the backend's VirtIONet sends the RARP announcement out of its
// netdev as if the guest had (the reflecting loopback hands it back, into the guest's ring).
TEST_F(VhostUserBackendE2eTest, SendRarpAnnouncesTheMacOnTheBackendsNetwork) {
  BuildBackend();
  BuildFrontend();
  ASSERT_TRUE(drv_->Init(kFeatures));
  drv_->FillRx(0, 64);
  ASSERT_EQ(RoundTrip(4, 0, 64).size(), 4u);
  const uint8_t mac[6] = {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};
  ASSERT_TRUE(vu_->SendRarp(mac).ok());
  auto got = drv_->WaitRx(0, 1, absl::Seconds(5));
  ASSERT_EQ(got.size(), 1u);
  const std::vector<uint8_t>& f = got[0].data;
  ASSERT_EQ(f.size(), 60u);
  EXPECT_EQ(std::vector<uint8_t>(f.begin(), f.begin() + 6), std::vector<uint8_t>(6, 0xff));
  EXPECT_EQ(std::vector<uint8_t>(f.begin() + 6, f.begin() + 12),
            std::vector<uint8_t>(mac, mac + 6));
  EXPECT_EQ(f[12], 0x80);  // ETH_P_RARP
  EXPECT_EQ(f[13], 0x35);
  EXPECT_EQ(f[21], 3);  // reverse request
  EXPECT_EQ(std::vector<uint8_t>(f.begin() + 22, f.begin() + 28),
            std::vector<uint8_t>(mac, mac + 6));
  EXPECT_EQ(backend_net_->counters().Value("announces_sent"), 1u);
}

// GET_CONFIG from a frontend that asks (QEMU's vhost-user-net does not; vDPA-style frontends
// do): the device's configuration space, the MAC first.
TEST_F(VhostUserBackendE2eTest, GetConfigReadsTheDevicesConfiguration) {
  back_ = *Machine::Create("none");
  ASSERT_TRUE(back_->ObjectAdd("chardev", "socket,id=c1,server=on,path=" + sock_).ok());
  ASSERT_TRUE(back_->ObjectAdd("netdev", "loopback,id=l0").ok());
  ASSERT_TRUE(back_->DeviceAdd("vhost-user-backend,id=vu0,chardev=c1").ok());
  ASSERT_TRUE(back_->DeviceAdd("virtio-net-device,bus=vu0.0,netdev=l0,mac=02:11:22:33:44:55").ok());
  auto c = vhost::VhostUserClient::Connect(sock_, absl::Seconds(5));
  ASSERT_TRUE(c.ok()) << c.status();
  auto features = c->GetU64(vhost::VhostUserRequest::kGetFeatures);
  ASSERT_TRUE(features.ok()) << features.status();
  ASSERT_TRUE(c->SetU64(vhost::VhostUserRequest::kSetProtocolFeatures,
                        uint64_t{1} << vhost::kProtocolConfig)
                  .ok());
  auto cfg = c->GetConfig(0, 6);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(*cfg, (std::vector<uint8_t>{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}));
  // Past the configuration: refused, and the backend drops the connection.
  EXPECT_FALSE(c->GetConfig(250, 6).ok());
}

TEST_F(VhostUserBackendE2eTest, OptionErrors) {
  back_ = *Machine::Create("none");
  auto d = back_->DeviceAdd("vhost-user-backend,id=vu0");
  EXPECT_EQ(std::string(d.status().message()),
            "vhost-user-backend 'vu0': property 'chardev' is required");
  ASSERT_TRUE(back_->ObjectAdd("chardev", "socket,id=c1,server=on,path=" + sock_).ok());
  ASSERT_TRUE(back_->DeviceAdd("vhost-user-backend,id=vu1,chardev=c1").ok());
  d = back_->DeviceAdd("vhost-user-backend,id=vu2,chardev=c1");
  EXPECT_EQ(std::string(d.status().message()),
            "vhost-user-backend 'vu2': chardev 'c1' is already in use");
}

}  // namespace
}  // namespace vdev::virtio
