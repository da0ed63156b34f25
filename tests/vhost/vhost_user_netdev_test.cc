// -netdev vhost-user against a scripted backend on a real unix socket (in addition to the DPDK
// tests, which need testpmd): the protocol features this frontend uses where a backend offers them
// (REPLY_ACK, MQ with GET_QUEUE_NUM, CONFIGURE_MEM_SLOTS with ADD_MEM_REG, NET_MTU, RESET_DEVICE),
// the order of the hand-over as a backend sees it, and the hostile rows: too few queues, a
// backend that comes back without a feature the driver uses, a backend that hangs up mid-start.
#include "hw/virtio/vhost/vhost_user_netdev.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <thread>

#include "bus/virtio/virtio_uapi.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hw/machine/pc.h"
#include "hw/net/virtio_net/pci.h"
#include "tests/testing/open_fds.h"
#include "tests/testing/pci_guest.h"
#include "tests/testing/virtio_net_driver.h"
#include "tests/testing/virtio_pci_driver.h"

namespace vdev::vhost {
namespace {

using ::testing::HasSubstr;
using virtio::VirtIODevice;

constexpr uint64_t Bit(unsigned b) { return uint64_t{1} << b; }
constexpr uint64_t kAllProtocol = Bit(kProtocolMq) | Bit(kProtocolReplyAck) | Bit(kProtocolMtu) |
                                  Bit(kProtocolResetDevice) | Bit(kProtocolConfigureMemSlots);
constexpr uint64_t kBackendFeatures = Bit(VIRTIO_F_VERSION_1) | Bit(VIRTIO_NET_F_MRG_RXBUF) |
                                      Bit(VIRTIO_RING_F_EVENT_IDX) | Bit(kVirtioProtocolFeatures);

struct Seen {
  uint32_t request;
  std::vector<uint8_t> payload;
  size_t fds;
};

// A vhost-user backend that listens on `path`, answers the GET requests from its table, acks
// what asks for an ack, and records every request. One connection at a time; `Serve` runs one.
class ScriptedBackend {
 public:
  explicit ScriptedBackend(std::string path) : path_(std::move(path)) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path_.c_str(), path_.size());
    listen_ = UniqueFd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(bind(listen_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(listen(listen_.get(), 4), 0);
  }
  ~ScriptedBackend() {
    Stop();
    unlink(path_.c_str());
  }
  // Serves connections in a thread until Stop(): each with the current answers.
  void Start() {
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{listen_.get(), POLLIN, 0};
        if (poll(&p, 1, 20) <= 0) continue;
        UniqueFd c(accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!c.valid()) continue;
        connections_++;
        ServeOne(c.get());
      }
    });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // The current connection ends after the next request of this type arrives (unanswered).
  void HangUpOn(uint32_t request) { hang_up_on_ = request; }
  void DropConnection() { drop_ = true; }

  std::map<uint32_t, uint64_t> answers = {
      {1, kBackendFeatures}, {15, kAllProtocol}, {17, 4}, {36, 8}};
  std::vector<Seen> Seen_() {
    absl::MutexLock l(&mu_);
    return seen_;
  }
  std::vector<uint32_t> Requests() {
    absl::MutexLock l(&mu_);
    std::vector<uint32_t> r;
    for (const Seen& s : seen_) r.push_back(s.request);
    return r;
  }
  void Clear() {
    absl::MutexLock l(&mu_);
    seen_.clear();
  }
  int connections() const { return connections_; }
  void DropRingFds() {
    absl::MutexLock l(&mu_);
    ring_fds_.clear();
  }
  // The fd the backend got with SET_VRING_KICK (12) / SET_VRING_CALL (13) for `ring`, or -1.
  int RingFd(uint32_t request, uint8_t ring) {
    absl::MutexLock l(&mu_);
    auto it = ring_fds_.find({request, ring});
    return it == ring_fds_.end() ? -1 : it->second.get();
  }

 private:
  void ServeOne(int s) {
    drop_ = false;
    while (!stop_ && !drop_) {
      pollfd p{s, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      auto m = ReadVhostUserMessage(s, absl::Seconds(1));
      if (!m.ok()) return;
      {
        absl::MutexLock l(&mu_);
        seen_.push_back({m->request, m->payload, m->fds.size()});
        // Kick and call fds are kept, as a backend would use them.
        if ((m->request == 12 || m->request == 13) && m->fds.size() == 1 &&
            m->payload.size() == 8) {
          ring_fds_[{m->request, m->payload[0]}] = std::move(m->fds[0]);
        }
      }
      if (m->request == hang_up_on_.load()) {
        hang_up_on_ = 0;
        return;
      }
      const uint32_t flags = kVhostUserVersion | kFlagReply;
      std::vector<uint8_t> reply(8, 0);
      if (auto it = answers.find(m->request); it != answers.end()) {
        std::memcpy(reply.data(), &it->second, 8);
        SendVhostUserMessage(s, m->request, flags, reply, {}).IgnoreError();
      } else if (m->request == 11) {  // GET_VRING_BASE: echo the index, base 0
        std::vector<uint8_t> r(8, 0);
        std::memcpy(r.data(), m->payload.data(), 4);
        SendVhostUserMessage(s, 11, flags, r, {}).IgnoreError();
      } else if (m->flags & kFlagNeedReply) {
        SendVhostUserMessage(s, m->request, flags, reply, {}).IgnoreError();  // ack 0
      }
    }
  }

  std::string path_;
  UniqueFd listen_;
  std::thread thread_;
  std::atomic<bool> stop_{false}, drop_{false};
  std::atomic<uint32_t> hang_up_on_{0};
  std::atomic<int> connections_{0};
  absl::Mutex mu_;
  std::vector<Seen> seen_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<uint32_t, uint8_t>, UniqueFd> ring_fds_ ABSL_GUARDED_BY(mu_);
};

class VhostUserNetdevTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/vdev-vhun-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    backend_ = std::make_unique<ScriptedBackend>(dir_ + "/b.sock");
    backend_->Start();
    m_ = *Machine::Create("pc");
  }
  void TearDown() override {
    drv_.reset();
    pci_.reset();
    guest_.reset();
    m_.reset();
    backend_.reset();
    std::filesystem::remove_all(dir_);
  }
  absl::Status AddNetdev(const std::string& extra = "") {
    auto c = m_->ObjectAdd("chardev", "socket,id=c0,path=" + dir_ + "/b.sock");
    if (!c.ok()) return c.status();
    auto nd = m_->ObjectAdd("netdev", "vhost-user,id=n0,chardev=c0" + extra);
    if (!nd.ok()) return nd.status();
    vu_ = qom::DynamicCast<VhostUserNetdev>(*nd);
    return absl::OkStatus();
  }
  void AddDevice(const std::string& extra = "") {
    auto d = m_->DeviceAdd("virtio-net-pci,id=nic0,netdev=n0" + extra);
    ASSERT_TRUE(d.ok()) << d.status();
    proxy_ = static_cast<virtio::VirtIONetPCI*>(*d);
    testing::PcVirtioFunction f;
    ASSERT_TRUE(testing::ProbePcVirtio(*m_, proxy_->device_id(), &f));
    guest_ = std::move(f.guest);
    pci_ = std::move(f.driver);
    drv_ =
        std::make_unique<testing::VirtioNetDriver>(*pci_, m_->guest_memory(), GuestAddr(0x1000000));
  }
  bool WaitFor(const std::function<bool()>& cond, absl::Duration timeout = absl::Seconds(5)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (cond()) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return cond();
  }

  std::string dir_;
  std::unique_ptr<ScriptedBackend> backend_;
  std::unique_ptr<Machine> m_;
  VhostUserNetdev* vu_ = nullptr;
  virtio::VirtIONetPCI* proxy_ = nullptr;
  std::unique_ptr<testing::PciGuest> guest_;
  std::unique_ptr<testing::VirtioPciDriver> pci_;
  std::unique_ptr<testing::VirtioNetDriver> drv_;
};

constexpr uint64_t kDriverFeatures = Bit(VIRTIO_F_VERSION_1) | Bit(VIRTIO_NET_F_MRG_RXBUF) |
                                     Bit(VIRTIO_NET_F_CTRL_VQ) | Bit(VIRTIO_NET_F_STATUS) |
                                     Bit(VIRTIO_NET_F_MAC) | Bit(VIRTIO_NET_F_MTU) |
                                     Bit(VIRTIO_NET_F_CSUM);

TEST_F(VhostUserNetdevTest, HandshakeTakesTheProtocolFeaturesOffered) {
  ASSERT_TRUE(AddNetdev(",queues=2").ok());
  EXPECT_EQ(vu_->protocol_features(), kAllProtocol);
  EXPECT_EQ(backend_->Requests(), (std::vector<uint32_t>{1, 15, 16, 17, 36, 3}));
  // SET_PROTOCOL_FEATURES carried what we took.
  uint64_t set;
  std::memcpy(&set, backend_->Seen_()[2].payload.data(), 8);
  EXPECT_EQ(set, kAllProtocol);
}

TEST_F(VhostUserNetdevTest, HandOverAsTheBackendSeesItAndBackOnReset) {
  ASSERT_TRUE(AddNetdev().ok());
  AddDevice(",host_mtu=1400");
  backend_->Clear();
  ASSERT_TRUE(drv_->Init(kDriverFeatures));
  // The backend lacks CSUM: not offered, whatever the device could do.
  EXPECT_FALSE(drv_->Has(VIRTIO_NET_F_CSUM));
  EXPECT_TRUE(drv_->Has(VIRTIO_NET_F_MTU));
  ASSERT_TRUE(WaitFor([&] { return proxy_->net()->counters().Value("vhost_starts") == 1; }));
  std::vector<Seen> seen = backend_->Seen_();
  std::vector<uint32_t> req;
  for (const Seen& s : seen) req.push_back(s.request);
  // SET_FEATURES; memory by ADD_MEM_REG (CONFIGURE_MEM_SLOTS), one fd per RAM region; per ring
  // NUM, BASE, ADDR, KICK, CALL, ERR; then the rings enabled; NET_SET_MTU.
  ASSERT_GE(req.size(), 2u);
  EXPECT_EQ(req[0], 2u);
  uint64_t features;
  std::memcpy(&features, seen[0].payload.data(), 8);
  EXPECT_EQ(features & ~Bit(kVirtioProtocolFeatures),
            drv_->features() & (Bit(VIRTIO_F_VERSION_1) | Bit(VIRTIO_NET_F_MRG_RXBUF)));
  EXPECT_TRUE(features >> kVirtioProtocolFeatures & 1);
  size_t i = 1;
  const size_t regions = m_->guest_memory().regions().size();
  for (size_t r = 0; r < regions; ++r, ++i) {
    ASSERT_EQ(req[i], 37u);
    EXPECT_EQ(seen[i].fds, 1u);
  }
  for (uint32_t ring = 0; ring < 2; ++ring) {
    for (uint32_t want : {8u, 10u, 9u, 12u, 13u, 14u}) {
      ASSERT_LT(i, req.size());
      EXPECT_EQ(req[i], want) << "ring " << ring;
      uint32_t index;
      std::memcpy(&index, seen[i].payload.data(), 4);
      EXPECT_EQ(index & 0xff, ring);
      EXPECT_EQ(seen[i].fds, want >= 12 ? 1u : 0u);
      ++i;
    }
  }
  EXPECT_EQ(req[i++], 18u);
  EXPECT_EQ(req[i++], 18u);
  ASSERT_EQ(req[i], 20u);  // NET_SET_MTU 1400
  uint64_t mtu;
  std::memcpy(&mtu, seen[i].payload.data(), 8);
  EXPECT_EQ(mtu, 1400u);
  // Reset: both rings stopped (GET_VRING_BASE), then RESET_DEVICE.
  backend_->Clear();
  pci_->SetStatus(0);
  EXPECT_EQ(backend_->Requests(), (std::vector<uint32_t>{11, 11, 34}));
}

TEST_F(VhostUserNetdevTest, TooFewQueuesOrNoMqIsOneClearError) {
  backend_->answers[17] = 1;
  absl::Status s = AddNetdev(",queues=2");
  EXPECT_EQ(s.message(),
            "vhost-user 'n0': the backend serves 1 queue pairs, queues=2 asks for more");
  m_ = *Machine::Create("pc");
  backend_->answers[15] = kAllProtocol & ~Bit(kProtocolMq);
  s = AddNetdev(",queues=2");
  EXPECT_EQ(s.message(), "vhost-user 'n0': queues=2 needs the backend's MQ protocol feature");
}

TEST_F(VhostUserNetdevTest, ABackendBackWithoutAFeatureInUseNeedsAReset) {
  ASSERT_TRUE(AddNetdev().ok());
  AddDevice();
  ASSERT_TRUE(drv_->Init(kDriverFeatures));
  ASSERT_TRUE(drv_->Has(VIRTIO_NET_F_MRG_RXBUF));
  // The backend restarts without mergeable buffers.
  backend_->answers[1] = kBackendFeatures & ~Bit(VIRTIO_NET_F_MRG_RXBUF);
  backend_->DropConnection();
  ASSERT_TRUE(WaitFor([&] { return vu_->connects() >= 2; }));
  // The rings cannot be handed to it: DEVICE_NEEDS_RESET, not a wedged device.
  ASSERT_TRUE(WaitFor([&] { return pci_->status() & VirtIODevice::kNeedsReset; }));
  EXPECT_TRUE(vu_->connected());
  EXPECT_EQ(proxy_->net()->counters().Value("vhost_starts"), 1u);
}

TEST_F(VhostUserNetdevTest, HangUpDuringStartTakesTheLinkDownAndRecovers) {
  ASSERT_TRUE(AddNetdev().ok());
  AddDevice();
  const int fds = testing::OpenFdCount();
  backend_->HangUpOn(9);  // SET_VRING_ADDR of the first ring: the backend goes away
  ASSERT_TRUE(drv_->Init(kDriverFeatures));
  ASSERT_TRUE(WaitFor([&] { return vu_->connects() >= 2; })) << "no reconnection";
  // Reconnected: the rings are handed over from the start, the link is up.
  ASSERT_TRUE(WaitFor([&] { return proxy_->net()->counters().Value("vhost_starts") >= 1; }));
  EXPECT_TRUE(WaitFor([&] { return drv_->ConfigStatus() & VIRTIO_NET_S_LINK_UP; }));
  EXPECT_FALSE(pci_->status() & VirtIODevice::kNeedsReset);
  pci_->SetStatus(0);
  // Every fd of the first connection is gone: the new connection's two sockets replace its two,
  // and the ring eventfds are released (ours on the loop, the backend's copies here).
  backend_->DropRingFds();
  vu_->loop().RunAndWait([] {});
  EXPECT_EQ(testing::OpenFdCount(), fds);
}

TEST_F(VhostUserNetdevTest, AChardevServesOneNetdev) {
  ASSERT_TRUE(AddNetdev().ok());
  for (int i = 0; i < 2; ++i) {  // a refused one does not release what it never had
    auto nd = m_->ObjectAdd("netdev", "vhost-user,id=n1,chardev=c0");
    ASSERT_FALSE(nd.ok());
    EXPECT_EQ(nd.status().message(), "vhost-user 'n1': chardev 'c0' is already in use");
  }
  auto bad = m_->ObjectAdd("netdev", "vhost-user,id=n2,chardev=c0,queues=0");
  EXPECT_EQ(bad.status().message(), "vhost-user 'n2': queues must be 1..256, got 0");
  EXPECT_FALSE(m_->ObjectAdd("netdev", "vhost-user,id=n3,chardev=c0").ok());
}

// A VMM that bound an ioeventfd on a queue's notify address and an irqfd on its vector: those
// very eventfds go to the backend, so kicks and interrupts never pass through this process.
TEST_F(VhostUserNetdevTest, AVmmsIoeventfdAndIrqfdGoStraightToTheBackend) {
  ASSERT_TRUE(AddNetdev().ok());
  AddDevice();
  UniqueFd ioeventfd[2], irqfd[2];
  for (uint16_t q = 0; q < 2; ++q) {
    ioeventfd[q] = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    irqfd[q] = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    proxy_->SetQueueEventfds(q, ioeventfd[q].get(), irqfd[q].get());
  }
  ASSERT_TRUE(drv_->Init(kDriverFeatures));
  ASSERT_TRUE(WaitFor([&] { return backend_->RingFd(13, 1) >= 0; }));
  for (uint8_t q = 0; q < 2; ++q) {
    uint64_t v = 0;
    // The hand-over kicked each ring once, through the VMM's eventfd the backend holds.
    ASSERT_EQ(read(backend_->RingFd(12, q), &v, 8), 8) << "ring " << int{q};
    // The hypervisor signals a notify write: the backend sees it.
    v = 1;
    ASSERT_EQ(write(ioeventfd[q].get(), &v, 8), 8);
    ASSERT_EQ(read(backend_->RingFd(12, q), &v, 8), 8);
    EXPECT_EQ(v, 1u);
    // The backend signals a call: it lands on the VMM's irqfd.
    v = 1;
    ASSERT_EQ(write(backend_->RingFd(13, q), &v, 8), 8);
    ASSERT_EQ(read(irqfd[q].get(), &v, 8), 8);
    EXPECT_EQ(v, 1u);
  }
  pci_->SetStatus(0);
}

}  // namespace
}  // namespace vdev::vhost
