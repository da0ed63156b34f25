// The vhost-user frontend's protocol layer (hw/virtio/vhost/vhost_user.h) against a scripted
// backend on a real socketpair: requests as a backend sees them (payloads, fds, the memory table
// mapped from the fds), and the hostile rows for replies: wrong request, missing REPLY flag, wrong
// version, wrong size, unexpected fds (closed), a bogus ring base, a silent backend (timeout) and a
// backend that hangs up.
#include "hw/virtio/vhost/vhost_user.h"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/open_fds.h"

namespace vdev::vhost {
namespace {

using ::testing::HasSubstr;
using ::vdev::testing::OpenFdCount;

std::vector<uint8_t> U64(uint64_t v) {
  std::vector<uint8_t> p(8);
  std::memcpy(p.data(), &v, 8);
  return p;
}

class VhostUserTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    client_ = std::make_unique<VhostUserClient>(UniqueFd(sv[0]), absl::Milliseconds(500));
    backend_ = UniqueFd(sv[1]);
  }
  // Runs `script` as the backend while `frontend` runs here.
  void WithBackend(const std::function<void(int)>& script, const std::function<void()>& frontend) {
    std::thread t([&] { script(backend_.get()); });
    frontend();
    t.join();
  }
  VhostUserMessage Receive(int sock) {
    auto m = ReadVhostUserMessage(sock, absl::Seconds(5));
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? std::move(*m) : VhostUserMessage{};
  }
  void Reply(int sock, uint32_t request, const std::vector<uint8_t>& payload,
             uint32_t flags = kVhostUserVersion | kFlagReply, std::vector<int> fds = {}) {
    ASSERT_TRUE(SendVhostUserMessage(sock, request, flags, payload, fds).ok());
  }

  std::unique_ptr<VhostUserClient> client_;
  UniqueFd backend_;
};

TEST_F(VhostUserTest, FeaturesOwnerAndRingSetupAsTheBackendSeesThem) {
  WithBackend(
      [&](int s) {
        VhostUserMessage m = Receive(s);
        EXPECT_EQ(m.request, 1u);
        EXPECT_EQ(m.flags, kVhostUserVersion);
        Reply(s, 1, U64(0x1234));
        m = Receive(s);
        EXPECT_EQ(m.request, 2u);
        EXPECT_EQ(m.payload, U64(0x1000));
        EXPECT_EQ(Receive(s).request, 3u);  // SET_OWNER
        m = Receive(s);
        EXPECT_EQ(m.request, 8u);  // SET_VRING_NUM {1, 256}
        EXPECT_EQ(m.payload, (std::vector<uint8_t>{1, 0, 0, 0, 0, 1, 0, 0}));
        m = Receive(s);
        EXPECT_EQ(m.request, 9u);  // SET_VRING_ADDR
        ASSERT_EQ(m.payload.size(), 40u);
        uint64_t desc;
        std::memcpy(&desc, m.payload.data() + 8, 8);
        EXPECT_EQ(desc, 0x10000u);
        m = Receive(s);
        EXPECT_EQ(m.request, 12u);  // SET_VRING_KICK with an eventfd
        EXPECT_EQ(m.fds.size(), 1u);
        EXPECT_EQ(m.payload, U64(1));
        m = Receive(s);
        EXPECT_EQ(m.request, 13u);  // SET_VRING_CALL polling: no fd, bit 8
        EXPECT_TRUE(m.fds.empty());
        EXPECT_EQ(m.payload, U64(1 | kVringNoFd));
        m = Receive(s);
        EXPECT_EQ(m.request, 11u);  // GET_VRING_BASE
        Reply(s, 11, {1, 0, 0, 0, 42, 0, 0, 0});
      },
      [&] {
        EXPECT_EQ(*client_->GetU64(VhostUserRequest::kGetFeatures), 0x1234u);
        EXPECT_TRUE(client_->SetU64(VhostUserRequest::kSetFeatures, 0x1000).ok());
        EXPECT_TRUE(client_->SetOwner().ok());
        EXPECT_TRUE(client_->SetVringNum(1, 256).ok());
        EXPECT_TRUE(client_->SetVringAddr(1, 0x10000, 0x12000, 0x11000).ok());
        UniqueFd kick(eventfd(0, EFD_CLOEXEC));
        EXPECT_TRUE(client_->SetVringFd(VhostUserRequest::kSetVringKick, 1, kick.get()).ok());
        EXPECT_TRUE(client_->SetVringFd(VhostUserRequest::kSetVringCall, 1, -1).ok());
        EXPECT_EQ(*client_->GetVringBase(1), 42u);
      });
}

TEST_F(VhostUserTest, MemoryTableCarriesOneFdPerRegionThatMapsTheGuestsRam) {
  auto mem = *GuestMemory::Create();
  ASSERT_TRUE(mem->AddRam(GuestAddr(0), 1 << 20, "low").ok());
  ASSERT_TRUE(mem->AddRam(GuestAddr(0x100000000), 2 << 20, "high").ok());
  ASSERT_TRUE(mem->WriteLe<uint32_t>(GuestAddr(0x100000010), 0xfeedbeef));
  WithBackend(
      [&](int s) {
        VhostUserMessage m = Receive(s);
        EXPECT_EQ(m.request, 5u);
        ASSERT_EQ(m.fds.size(), 2u);
        ASSERT_EQ(m.payload.size(), 8u + 2 * 32);
        uint32_t n;
        std::memcpy(&n, m.payload.data(), 4);
        EXPECT_EQ(n, 2u);
        uint64_t gpa, size, offset;
        std::memcpy(&gpa, m.payload.data() + 8 + 32, 8);
        std::memcpy(&size, m.payload.data() + 8 + 32 + 8, 8);
        std::memcpy(&offset, m.payload.data() + 8 + 32 + 24, 8);
        EXPECT_EQ(gpa, 0x100000000u);
        EXPECT_EQ(size, 2u << 20);
        // The backend maps the fd and sees what the guest wrote.
        void* p = mmap(nullptr, size, PROT_READ, MAP_SHARED, m.fds[1].get(), offset);
        ASSERT_NE(p, MAP_FAILED);
        uint32_t v;
        std::memcpy(&v, static_cast<uint8_t*>(p) + 0x10, 4);
        EXPECT_EQ(v, 0xfeedbeefu);
        munmap(p, size);
      },
      [&] { EXPECT_TRUE(client_->SetMemTable(*mem).ok()); });
}

TEST_F(VhostUserTest, MemoryWithoutAnFdCannotBeShared) {
  auto mem = *GuestMemory::Create();
  static uint8_t buf[4096];
  ASSERT_TRUE(mem->AddHostMemory(GuestAddr(0), sizeof(buf), buf, "anon").ok());
  absl::Status s = client_->SetMemTable(*mem);
  EXPECT_THAT(std::string(s.message()), HasSubstr("'anon' has no fd"));
}

TEST_F(VhostUserTest, ReplyAckIsAskedForAndANonZeroAckFails) {
  client_->set_reply_ack(true);
  WithBackend(
      [&](int s) {
        VhostUserMessage m = Receive(s);
        EXPECT_EQ(m.flags, kVhostUserVersion | kFlagNeedReply);
        Reply(s, m.request, U64(0));
        m = Receive(s);
        Reply(s, m.request, U64(1));
      },
      [&] {
        EXPECT_TRUE(client_->SetOwner().ok());
        absl::Status s = client_->SetVringEnable(0, true);
        EXPECT_THAT(std::string(s.message()), HasSubstr("request 18 failed"));
      });
}

struct BadReply {
  const char* name;
  uint32_t request;
  uint32_t flags;
  std::vector<uint8_t> payload;
  int fds;
  const char* error;
};

class VhostUserBadReplyTest : public VhostUserTest,
                              public ::testing::WithParamInterface<BadReply> {};

TEST_P(VhostUserBadReplyTest, IsRefusedWithOneErrorAndLeaksNoFd) {
  const BadReply& b = GetParam();
  const int before = OpenFdCount();
  absl::StatusOr<uint64_t> got;
  WithBackend(
      [&](int s) {
        Receive(s);
        std::vector<UniqueFd> fds;
        std::vector<int> raw;
        for (int i = 0; i < b.fds; ++i) {
          fds.emplace_back(eventfd(0, EFD_CLOEXEC));
          raw.push_back(fds.back().get());
        }
        Reply(s, b.request, b.payload, b.flags, raw);
      },
      [&] { got = client_->GetU64(VhostUserRequest::kGetFeatures); });
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(std::string(got.status().message()), HasSubstr(b.error));
  EXPECT_EQ(OpenFdCount(), before);
}

INSTANTIATE_TEST_SUITE_P(
    Rows, VhostUserBadReplyTest,
    ::testing::Values(
        BadReply{"WrongRequest", 2, kVhostUserVersion | kFlagReply, U64(1), 0,
                 "reply to request 2 while waiting for 1"},
        BadReply{"NoReplyFlag", 1, kVhostUserVersion, U64(1), 0, "without the REPLY flag"},
        BadReply{"WrongVersion", 1, 2 | kFlagReply, U64(1), 0, "version 2"},
        BadReply{"ShortPayload", 1, kVhostUserVersion | kFlagReply, {1, 2, 3}, 0, "with 3 bytes"},
        BadReply{"UnexpectedFds", 1, kVhostUserVersion | kFlagReply, U64(1), 3, "carries 3 fds"}),
    [](const ::testing::TestParamInfo<BadReply>& i) { return std::string(i.param.name); });

TEST_F(VhostUserTest, BogusRingBaseOrIndexIsRefused) {
  WithBackend(
      [&](int s) {
        Receive(s);
        Reply(s, 11, {2, 0, 0, 0, 1, 0, 0, 0});  // another ring
        Receive(s);
        Reply(s, 11, {0, 0, 0, 0, 0, 0, 1, 0});  // base 0x10000
      },
      [&] {
        EXPECT_THAT(std::string(client_->GetVringBase(0).status().message()),
                    HasSubstr("answered for ring 2"));
        EXPECT_THAT(std::string(client_->GetVringBase(0).status().message()),
                    HasSubstr("not 16-bit"));
      });
}

TEST_F(VhostUserTest, SilentBackendTimesOutAndClosedBackendIsUnavailable) {
  const absl::Time t0 = absl::Now();
  absl::StatusOr<uint64_t> r = client_->GetU64(VhostUserRequest::kGetFeatures);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - t0, absl::Seconds(3));
  backend_.Reset();
  r = client_->GetU64(VhostUserRequest::kGetFeatures);
  EXPECT_FALSE(r.ok());
}

TEST_F(VhostUserTest, OversizedReplyIsRefusedUnread) {
  WithBackend(
      [&](int s) {
        Receive(s);
        uint8_t header[12] = {1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 1, 0};  // 64 KiB payload
        ASSERT_EQ(send(s, header, sizeof(header), 0), 12);
      },
      [&] {
        EXPECT_THAT(std::string(client_->GetU64(VhostUserRequest::kGetFeatures).status().message()),
                    HasSubstr("at most 4096"));
      });
}

}  // namespace
}  // namespace vdev::vhost
