// The vhost-user backend's protocol session (hw/virtio/vhost/vhost_user_backend.h) driven by our
// own frontend protocol layer (VhostUserClient) over a real socketpair, with real memfds and
// eventfds: the handshake, the memory table mapped from the frontend's fds (the same bytes seen
// from both sides), rings translated from frontend addresses and started when complete,
// GET_VRING_BASE. Then the hostile rows of HOSTILE_INPUTS.md ("vhost-user"): every malformed
// request is refused with one line, changes nothing, and leaks no fd or mapping.
#include "hw/virtio/vhost/vhost_user_backend.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/open_fds.h"

namespace vdev::vhost {
namespace {

using ::testing::HasSubstr;
using ::vdev::testing::OpenFdCount;

// Records what the session asks of the device.
class RecordingDevice : public VhostUserBackendDevice {
 public:
  uint64_t DeviceFeatures() const override { return uint64_t{1} << 32 | 1u << 15; }
  absl::Status SetFeatures(uint64_t f) override {
    features = f;
    return absl::OkStatus();
  }
  absl::Status StartRing(uint32_t index, const BackendRing& ring, const GuestMemory& mem) override {
    started.push_back(index);
    // The ring's areas are in the mapped memory at their guest addresses.
    desc_host = mem.HostPointer(ring.desc, 16 * ring.num, false);
    start_base = ring.base;
    return absl::OkStatus();
  }
  uint32_t StopRing(uint32_t index) override {
    stopped.push_back(index);
    return start_base + 7;
  }
  void ResetDevice() override { ++resets; }
  absl::Status SendRarp(const uint8_t mac[6]) override {
    rarp.assign(mac, mac + 6);
    return absl::OkStatus();
  }
  uint32_t ConfigSize() const override { return 8; }
  std::vector<uint8_t> GetConfig(uint32_t offset, uint32_t size) override {
    std::vector<uint8_t> v(size);
    for (uint32_t i = 0; i < size; ++i) v[i] = static_cast<uint8_t>(0xa0 + offset + i);
    return v;
  }
  absl::Status SetConfig(uint32_t offset, const std::vector<uint8_t>& data) override {
    config_writes.push_back({offset, data});
    return absl::OkStatus();
  }

  std::vector<uint8_t> rarp;
  std::vector<std::pair<uint32_t, std::vector<uint8_t>>> config_writes;

  uint64_t features = 0;
  std::vector<uint32_t> started, stopped;
  uint8_t* desc_host = nullptr;
  uint32_t start_base = 0;
  int resets = 0;
};

std::vector<uint8_t> U64(uint64_t v) {
  std::vector<uint8_t> p(8);
  std::memcpy(p.data(), &v, 8);
  return p;
}

std::vector<uint8_t> State(uint32_t index, uint32_t num) {
  std::vector<uint8_t> p(8);
  std::memcpy(p.data(), &index, 4);
  std::memcpy(p.data() + 4, &num, 4);
  return p;
}

class VhostUserBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    frontend_sock_ = sv[0];
    client_ = std::make_unique<VhostUserClient>(UniqueFd(sv[0]), absl::Seconds(2));
    backend_ = UniqueFd(sv[1]);
    session_ = std::make_unique<VhostUserBackendSession>(&dev_, BackendLimits{.num_rings = 2});
    mem_ = *GuestMemory::Create();
    ASSERT_TRUE(mem_->AddRam(GuestAddr(0), 1 << 20, "ram").ok());
  }
  void TearDown() override { StopServing(); }

  // Serves the session on a thread (requests with replies need one), until the socket closes
  // or a request is refused (then `last_error_`).
  void Serve() {
    server_ = std::thread([this] {
      for (;;) {
        auto m = ReadVhostUserMessage(backend_.get(), absl::Seconds(5));
        if (!m.ok()) return;
        if (absl::Status s = session_->Handle(backend_.get(), std::move(*m)); !s.ok()) {
          last_error_ = s;
          return;
        }
      }
    });
  }
  void StopServing() {
    if (!server_.joinable()) return;
    shutdown(frontend_sock_, SHUT_RDWR);
    server_.join();
  }
  // Handles one raw request here (no reply expected).
  absl::Status Raw(uint32_t request, std::vector<uint8_t> payload, std::vector<int> fds = {},
                   uint32_t flags = kVhostUserVersion) {
    VhostUserMessage m;
    m.request = request;
    m.flags = flags;
    m.payload = std::move(payload);
    for (int fd : fds) m.fds.push_back(UniqueFd(fcntl(fd, F_DUPFD_CLOEXEC, 0)));
    return session_->Handle(backend_.get(), std::move(m));
  }
  // The handshake QEMU does, then one ring fully set up.
  void HandshakeAndRing0() {
    Serve();
    ASSERT_EQ(*client_->GetU64(VhostUserRequest::kGetFeatures),
              dev_.DeviceFeatures() | uint64_t{1} << kVirtioProtocolFeatures);
    ASSERT_TRUE(client_->SetOwner().ok());
    ASSERT_TRUE(client_
                    ->SetU64(VhostUserRequest::kSetFeatures,
                             uint64_t{1} << 32 | uint64_t{1} << kVirtioProtocolFeatures)
                    .ok());
    ASSERT_TRUE(client_->SetMemTable(*mem_).ok());
    ASSERT_TRUE(client_->SetVringNum(0, 256).ok());
    ASSERT_TRUE(client_->SetVringBase(0, 40).ok());
    uint8_t* host = mem_->HostPointer(GuestAddr(0x10000), 0x3000, true);
    const uint64_t h = reinterpret_cast<uint64_t>(host);
    ASSERT_TRUE(client_->SetVringAddr(0, h, h + 0x2000, h + 0x1000).ok());
    ASSERT_TRUE(client_->SetVringEnable(0, true).ok());
    kick_ = UniqueFd(eventfd(0, EFD_CLOEXEC));
    ASSERT_TRUE(client_->SetVringFd(VhostUserRequest::kSetVringKick, 0, kick_.get()).ok());
  }

  RecordingDevice dev_;
  int frontend_sock_ = -1;
  std::unique_ptr<VhostUserClient> client_;
  UniqueFd backend_, kick_;
  std::unique_ptr<VhostUserBackendSession> session_;
  std::unique_ptr<GuestMemory> mem_;
  std::thread server_;
  absl::Status last_error_;
};

TEST_F(VhostUserBackendTest, OurFrontendSetsUpARingAndTheBackendSeesTheSameMemory) {
  HandshakeAndRing0();
  // GET_VRING_BASE waits for the reply: by then every earlier request was handled.
  mem_->WriteLe<uint32_t>(GuestAddr(0x10000), 0xfeedf00d);
  ASSERT_EQ(*client_->GetVringBase(0), 47u);  // the device's StopRing: base 40 + 7
  StopServing();
  EXPECT_TRUE(last_error_.ok()) << last_error_;
  EXPECT_EQ(dev_.features, uint64_t{1} << 32);  // PROTOCOL_FEATURES is the session's
  ASSERT_EQ(dev_.started, std::vector<uint32_t>{0});
  EXPECT_EQ(dev_.start_base, 40u);
  EXPECT_EQ(dev_.stopped, std::vector<uint32_t>{0});
  // The frontend's virtual addresses became guest-physical ones, mapped from the memfd.
  const BackendRing& r = session_->ring(0);
  EXPECT_EQ(r.desc.value(), 0x10000u);
  EXPECT_EQ(r.avail.value(), 0x11000u);
  EXPECT_EQ(r.used.value(), 0x12000u);
  ASSERT_NE(dev_.desc_host, nullptr);
  EXPECT_NE(dev_.desc_host, mem_->HostPointer(GuestAddr(0x10000), 4, false));  // its own mapping
  uint32_t seen;
  std::memcpy(&seen, dev_.desc_host, 4);
  EXPECT_EQ(seen, 0xfeedf00du);
  EXPECT_FALSE(r.started);
  EXPECT_FALSE(r.kick_set);  // stopped: a new kick is needed to run again
}

TEST_F(VhostUserBackendTest, WithStatusARingRunsWhenCompleteAndStatusZeroStopsIt) {
  Serve();
  ASSERT_TRUE(client_
                  ->SetU64(VhostUserRequest::kSetProtocolFeatures,
                           uint64_t{1} << kProtocolStatus | uint64_t{1} << kProtocolReplyAck)
                  .ok());
  client_->set_reply_ack(true);
  ASSERT_TRUE(client_->SetU64(VhostUserRequest::kSetFeatures, uint64_t{1} << 32).ok());
  ASSERT_TRUE(client_->SetU64(static_cast<VhostUserRequest>(39), 0x0b).ok());  // FEATURES_OK
  ASSERT_TRUE(client_->SetMemTable(*mem_).ok());
  ASSERT_TRUE(client_->SetVringNum(1, 64).ok());
  const uint64_t h =
      reinterpret_cast<uint64_t>(mem_->HostPointer(GuestAddr(0x20000), 0x3000, true));
  ASSERT_TRUE(client_->SetVringAddr(1, h, h + 0x2000, h + 0x1000).ok());
  kick_ = UniqueFd(eventfd(0, EFD_CLOEXEC));
  ASSERT_TRUE(client_->SetVringFd(VhostUserRequest::kSetVringKick, 1, kick_.get()).ok());
  // Complete (without PROTOCOL_FEATURES a ring starts enabled): it runs, DRIVER_OK or not (QEMU
  // 7.2's vhost-user-rng never sends DRIVER_OK).
  EXPECT_EQ(dev_.started, std::vector<uint32_t>{1});
  ASSERT_TRUE(client_->SetU64(static_cast<VhostUserRequest>(39), 0x0f).ok());  // SET_STATUS
  EXPECT_EQ(*client_->GetU64(static_cast<VhostUserRequest>(40)), 0x0fu);       // GET_STATUS
  EXPECT_EQ(dev_.started, std::vector<uint32_t>{1});                           // not started twice
  ASSERT_TRUE(client_->SetU64(static_cast<VhostUserRequest>(39), 0).ok());
  EXPECT_EQ(dev_.stopped, std::vector<uint32_t>{1});
  EXPECT_EQ(dev_.resets, 1);
}

TEST_F(VhostUserBackendTest, MalformedHeadersAndUnknownRequestsAreRefused) {
  EXPECT_THAT(std::string(Raw(1, {}, {}, 2).message()), HasSubstr("flags 0x2"));
  EXPECT_THAT(std::string(Raw(1, {}, {}, kVhostUserVersion | kFlagReply).message()),
              HasSubstr("not a reply"));
  EXPECT_THAT(std::string(Raw(99, {}).message()), HasSubstr("unknown or unsupported request 99"));
  EXPECT_THAT(std::string(Raw(2, {1, 2, 3}).message()),
              HasSubstr("request 2 with a 3-byte payload (expected 8)"));
  int efd = eventfd(0, EFD_CLOEXEC);
  EXPECT_THAT(std::string(Raw(3, {}, {efd}).message()), HasSubstr("request 3 with 1 fds"));
  close(efd);
  EXPECT_THAT(std::string(Raw(2, U64(1ull << 40)).message()), HasSubstr("bits not offered"));
  EXPECT_THAT(std::string(Raw(16, U64(1ull << 60)).message()), HasSubstr("bits not offered"));
  EXPECT_EQ(session_->acked_features(), 0u);
}

TEST_F(VhostUserBackendTest, BadMemoryTablesAreRefusedAndTheOldOneStays) {
  ASSERT_TRUE(Raw(2, U64(uint64_t{1} << 32)).ok());
  const int fd = mem_->regions()[0].fd;
  auto table = [](std::vector<std::array<uint64_t, 4>> regions) {
    std::vector<uint8_t> p(8 + 32 * regions.size());
    const uint32_t n = static_cast<uint32_t>(regions.size());
    std::memcpy(p.data(), &n, 4);
    for (size_t k = 0; k < regions.size(); ++k)
      std::memcpy(p.data() + 8 + 32 * k, regions[k].data(), 32);
    return p;
  };
  ASSERT_TRUE(Raw(5, table({{0, 1 << 20, 0x7000'0000, 0}}), {fd}).ok());
  const int fds_before = OpenFdCount();
  struct Case {
    std::vector<std::array<uint64_t, 4>> regions;
    int nfds;
    const char* says;
  };
  const Case cases[] = {
      {{}, 0, "0 regions"},
      {{{0, 4096, 0x1000, 0}}, 0, "1 regions and 0 fds"},
      {{{0, 0, 0x1000, 0}}, 1, "memory region 0: gpa 0x0 size 0x0"},
      {{{~0ull - 10, 4096, 0x1000, 0}}, 1, "memory region 0"},
      {{{0, 4096, 0x1000, 0}, {0x800, 4096, 0x9000, 0}}, 2, "overlap in guest memory"},
      {{{0, 4096, 0x1000, 0}, {0x8000, 4096, 0x1800, 0}}, 2, "overlap in the frontend"},
      {{{0, 2 << 20, 0x1000, 0}}, 1, "memory region 0"},  // larger than the memfd
  };
  for (const Case& c : cases) {
    std::vector<int> fds(c.nfds, fd);
    absl::Status s = Raw(5, table(c.regions), fds);
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.says));
    // Nothing changed: the table of 1 MiB at 0 is still mapped.
    ASSERT_EQ(session_->memory().regions().size(), 1u);
    EXPECT_EQ(session_->memory().regions()[0].size, 1u << 20);
  }
  std::vector<uint8_t> nine = table(std::vector<std::array<uint64_t, 4>>(9, {0, 4096, 0, 0}));
  EXPECT_THAT(std::string(Raw(5, nine, std::vector<int>(8, fd)).message()), HasSubstr("9 regions"));
  EXPECT_EQ(OpenFdCount(), fds_before);  // every fd a refused request brought is closed
}

TEST_F(VhostUserBackendTest, BadRingRequestsAreRefused) {
  ASSERT_TRUE(Raw(2, U64(uint64_t{1} << 32)).ok());
  EXPECT_THAT(std::string(Raw(8, State(2, 256)).message()), HasSubstr("ring 2 of 2"));
  EXPECT_THAT(std::string(Raw(8, State(0, 100)).message()), HasSubstr("a power of two up to 1024"));
  EXPECT_THAT(std::string(Raw(8, State(0, 2048)).message()), HasSubstr("SET_VRING_NUM 2048"));
  EXPECT_THAT(std::string(Raw(10, State(0, 0x10000)).message()), HasSubstr("16 bits"));
  EXPECT_THAT(std::string(Raw(18, State(0, 2)).message()), HasSubstr("SET_VRING_ENABLE 2"));
  // Addresses outside the table (here: no table at all), and logging that was not offered.
  std::vector<uint8_t> addr(40, 0);
  uint64_t a = 0x1000;
  std::memcpy(addr.data() + 8, &a, 8);
  EXPECT_THAT(std::string(Raw(9, addr).message()), HasSubstr("not in the memory table"));
  addr[4] = 1;
  EXPECT_THAT(std::string(Raw(9, addr).message()), HasSubstr("logging"));
  // Kick payloads: stray flag bits, an fd with the no-fd bit, no fd without it.
  int efd = eventfd(0, EFD_CLOEXEC);
  EXPECT_THAT(std::string(Raw(12, U64(1u << 9)).message()), HasSubstr("flags 0x200"));
  EXPECT_THAT(std::string(Raw(12, U64(kVringNoFd), {efd}).message()),
              HasSubstr("an fd with the no-fd bit"));
  EXPECT_THAT(std::string(Raw(12, U64(0)).message()), HasSubstr("no fd and no no-fd bit"));
  EXPECT_THAT(std::string(Raw(12, U64(5), {efd}).message()), HasSubstr("ring 5 of 2"));
  close(efd);
  EXPECT_FALSE(session_->ring(0).kick_set);
  EXPECT_EQ(session_->ring(0).num, 0u);
  EXPECT_TRUE(dev_.started.empty());
}

TEST_F(VhostUserBackendTest, AFailedRequestIsAckedAsAFailureWithReplyAck) {
  Serve();
  ASSERT_TRUE(
      client_->SetU64(VhostUserRequest::kSetProtocolFeatures, uint64_t{1} << kProtocolReplyAck)
          .ok());
  client_->set_reply_ack(true);
  absl::Status s = client_->SetVringNum(0, 3);  // not a power of two
  EXPECT_FALSE(s.ok());
  StopServing();
  EXPECT_THAT(std::string(last_error_.message()), HasSubstr("SET_VRING_NUM 3"));
}

TEST_F(VhostUserBackendTest, AddAndRemoveMemoryRegions) {
  ASSERT_TRUE(Raw(2, U64(uint64_t{1} << 32)).ok());
  const int fd = mem_->regions()[0].fd;
  auto reg = [](uint64_t gpa, uint64_t size, uint64_t uaddr, uint64_t off) {
    std::vector<uint8_t> p(40, 0);
    const uint64_t v[4] = {gpa, size, uaddr, off};
    std::memcpy(p.data() + 8, v, 32);
    return p;
  };
  ASSERT_TRUE(Raw(37, reg(0, 0x80000, 0x7000'0000, 0), {fd}).ok());
  ASSERT_TRUE(Raw(37, reg(0x100000, 0x80000, 0x7010'0000, 0x80000), {fd}).ok());
  EXPECT_EQ(session_->memory().regions().size(), 2u);
  EXPECT_THAT(std::string(Raw(37, reg(0x40000, 0x1000, 0x7100'0000, 0), {fd}).message()),
              HasSubstr("overlap in guest memory"));
  EXPECT_THAT(std::string(Raw(38, reg(0x200000, 0x1000, 0, 0)).message()),
              HasSubstr("not in the table"));
  ASSERT_TRUE(Raw(38, reg(0, 0x80000, 0x7000'0000, 0), {fd}).ok());
  ASSERT_EQ(session_->memory().regions().size(), 1u);
  EXPECT_EQ(session_->memory().regions()[0].gpa.value(), 0x100000u);
}

// QEMU adds every region once per queue pair's vhost device (ADD_MEM_REG is not one of its
// one-time requests) and removes it as often: the same region again is one more reference.
TEST_F(VhostUserBackendTest, TheSameRegionAddedTwiceIsMappedOnceAndRemovedTwice) {
  ASSERT_TRUE(Raw(2, U64(uint64_t{1} << 32)).ok());
  const int fd = mem_->regions()[0].fd;
  std::vector<uint8_t> p(40, 0);
  const uint64_t v[4] = {0, 0x80000, 0x7000'0000, 0};
  std::memcpy(p.data() + 8, v, 32);
  const int fds = OpenFdCount();
  ASSERT_TRUE(Raw(37, p, {fd}).ok());
  ASSERT_TRUE(Raw(37, p, {fd}).ok());
  EXPECT_EQ(session_->memory().regions().size(), 1u);
  ASSERT_TRUE(Raw(38, p).ok());
  EXPECT_EQ(session_->memory().regions().size(), 1u);  // one reference left
  ASSERT_TRUE(Raw(38, p).ok());
  EXPECT_TRUE(session_->memory().regions().empty());
  EXPECT_THAT(std::string(Raw(38, p).message()), HasSubstr("not in the table"));
  EXPECT_EQ(OpenFdCount(), fds);
}

TEST_F(VhostUserBackendTest, ConfigRarpAndMtuWithTheirProtocolFeatures) {
  // Before the features are negotiated each is refused.
  const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  std::vector<uint8_t> rarp(8, 0);
  std::memcpy(rarp.data(), mac, 6);
  EXPECT_THAT(std::string(Raw(19, rarp).message()), HasSubstr("without the RARP protocol feature"));
  EXPECT_THAT(std::string(Raw(24, std::vector<uint8_t>(14, 0)).message()),
              HasSubstr("GET_CONFIG without the CONFIG protocol feature"));
  EXPECT_THAT(std::string(Raw(20, U64(1500)).message()), HasSubstr("without the NET_MTU"));
  // Negotiated: GET_CONFIG answers with the device's bytes, SET_CONFIG writes, SEND_RARP
  // announces, NET_SET_MTU is kept.
  ASSERT_TRUE(Raw(16, U64(uint64_t{1} << kProtocolConfig | uint64_t{1} << kProtocolRarp |
                          uint64_t{1} << kProtocolMtu))
                  .ok());
  EXPECT_TRUE(dev_.rarp.empty());
  Serve();
  auto cfg = client_->GetConfig(2, 4);
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(*cfg, (std::vector<uint8_t>{0xa2, 0xa3, 0xa4, 0xa5}));
  const uint8_t w[2] = {7, 8};
  ASSERT_TRUE(client_->SetConfig(6, w).ok());
  ASSERT_TRUE(client_->SendRarp(mac).ok());
  ASSERT_TRUE(client_->SetU64(VhostUserRequest::kNetSetMtu, 1400).ok());
  ASSERT_TRUE(client_->GetConfig(0, 1).ok());  // a reply: everything before it was handled
  StopServing();
  EXPECT_TRUE(last_error_.ok()) << last_error_;
  ASSERT_EQ(dev_.config_writes.size(), 1u);
  EXPECT_EQ(dev_.config_writes[0].first, 6u);
  EXPECT_EQ(dev_.config_writes[0].second, (std::vector<uint8_t>{7, 8}));
  EXPECT_EQ(dev_.rarp, std::vector<uint8_t>(mac, mac + 6));
  EXPECT_EQ(session_->mtu(), 1400u);
  // Hostile rows: outside the space, too big, a size that is not the payload's, odd flags, a
  // multicast RARP.
  auto config = [](uint32_t off, uint32_t size, uint32_t flags, size_t payload) {
    std::vector<uint8_t> p(12 + payload, 0);
    std::memcpy(p.data(), &off, 4);
    std::memcpy(p.data() + 4, &size, 4);
    std::memcpy(p.data() + 8, &flags, 4);
    return p;
  };
  EXPECT_THAT(std::string(Raw(24, config(6, 4, 0, 4)).message()),
              HasSubstr("[6, 10) outside the 8-byte configuration"));
  EXPECT_THAT(std::string(Raw(24, config(0xffffffff, 2, 0, 2)).message()),
              HasSubstr("outside the 8-byte configuration"));
  EXPECT_THAT(std::string(Raw(25, config(0, 300, 0, 300)).message()), HasSubstr("1 to 256 bytes"));
  EXPECT_THAT(std::string(Raw(25, config(0, 4, 0, 3)).message()),
              HasSubstr("4 bytes in a 15-byte payload"));
  EXPECT_THAT(std::string(Raw(25, config(0, 0, 0, 0)).message()), HasSubstr("0 bytes"));
  EXPECT_THAT(std::string(Raw(25, config(0, 1, 2, 1)).message()), HasSubstr("flags 0x2"));
  EXPECT_THAT(std::string(Raw(24, {1, 2}).message()), HasSubstr("2-byte payload"));
  std::vector<uint8_t> multicast = U64(0x01);
  EXPECT_THAT(std::string(Raw(19, multicast).message()), HasSubstr("multicast"));
  EXPECT_EQ(dev_.config_writes.size(), 1u);  // nothing more was written
}

TEST_F(VhostUserBackendTest, CloseStopsRingsAndReleasesEverything) {
  const int before = OpenFdCount();
  HandshakeAndRing0();
  StopServing();
  ASSERT_EQ(dev_.started, std::vector<uint32_t>{0});
  session_->Close();
  EXPECT_EQ(dev_.stopped, std::vector<uint32_t>{0});
  EXPECT_TRUE(session_->memory().regions().empty());
  kick_.Reset();
  // The socketpair's two ends are the test's; everything the session took is gone.
  EXPECT_EQ(OpenFdCount(), before);
}

}  // namespace
}  // namespace vdev::vhost
