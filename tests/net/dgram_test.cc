#include "net/dgram.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/base/unique_fd.h"
#include "core/qdev/machine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/net/test_nic.h"

namespace vdev::net {
namespace {

using ::testing::HasSubstr;
using testing::MakeFrame;
using testing::TestNic;

constexpr absl::Duration kWait = absl::Seconds(5);

// A UDP socket bound to 127.0.0.1 on an ephemeral port.
UniqueFd UdpSocket(uint16_t* port) {
  UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ADD_FAILURE() << "udp socket: " << strerror(errno);
  }
  *port = ntohs(a.sin_port);
  return fd;
}

// A port that was free a moment ago.
uint16_t FreePort() {
  uint16_t port = 0;
  UdpSocket(&port);
  return port;
}

sockaddr_un UnixAddr(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
  return a;
}

UniqueFd UnixSocket(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un a = UnixAddr(path);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ADD_FAILURE() << "bind " << path << ": " << strerror(errno);
  }
  return fd;
}

// Polls `cond` until it holds (true) or kWait passes (false).
template <typename F>
bool WaitFor(F cond) {
  const absl::Time deadline = absl::Now() + kWait;
  while (!cond()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

// CPU time used by the process so far, all threads.
absl::Duration CpuTime() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return absl::DurationFromTimeval(ru.ru_utime) + absl::DurationFromTimeval(ru.ru_stime);
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

class DgramTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = Machine::Create("none");
    ASSERT_TRUE(m.ok()) << m.status();
    m_ = std::move(*m);
    char tmpl[] = "/tmp/vdev-dgram-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    m_.reset();  // the netdevs go first: they stop reading before the NICs unlink
    for (const char* f : {"a.sock", "b.sock", "r.sock", "s.sock", "file"}) {
      unlink(Path(f).c_str());
    }
    rmdir(dir_.c_str());
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  Dgram* Add(const std::string& options) {
    auto o = m_->ObjectAdd("netdev", options);
    if (!o.ok()) {
      ADD_FAILURE() << options << ": " << o.status();
      return nullptr;
    }
    return qom::DynamicCast<Dgram>(*o);
  }

  // Two inet dgram netdevs, n0 and n1, aimed at each other. Ports are picked free and retried if
  // something took one in between.
  bool AddInetPair() {
    for (int attempt = 0; attempt < 5; ++attempt) {
      const uint16_t pa = FreePort(), pb = FreePort();
      if (pa == pb) continue;
      auto a = m_->ObjectAdd("netdev", Inet("n0", pa, pb));
      if (!a.ok()) continue;
      auto b = m_->ObjectAdd("netdev", Inet("n1", pb, pa));
      if (!b.ok()) {
        EXPECT_TRUE(m_->ObjectDel("netdev", "n0").ok());
        continue;
      }
      a_ = qom::DynamicCast<Dgram>(*a);
      b_ = qom::DynamicCast<Dgram>(*b);
      return true;
    }
    ADD_FAILURE() << "no free ports";
    return false;
  }
  static std::string Inet(const std::string& id, uint16_t local, uint16_t remote) {
    return absl::StrCat("dgram,id=", id, ",local.type=inet,local.host=127.0.0.1,local.port=", local,
                        ",remote.type=inet,remote.host=127.0.0.1,remote.port=", remote);
  }

  bool AddUnixPair() {
    a_ = Add(absl::StrCat("dgram,id=n0,local.type=unix,local.path=", Path("a.sock"),
                          ",remote.type=unix,remote.path=", Path("b.sock")));
    b_ = Add(absl::StrCat("dgram,id=n1,local.type=unix,local.path=", Path("b.sock"),
                          ",remote.type=unix,remote.path=", Path("a.sock")));
    return a_ != nullptr && b_ != nullptr;
  }

  void ConnectNics() {
    ASSERT_TRUE(NetClientState::Connect(&nic_a_, a_->queue(0)));
    ASSERT_TRUE(NetClientState::Connect(&nic_b_, b_->queue(0)));
  }

  // Sends frames of varying sizes (60..1514 bytes) from `from` and checks that `to` receives all,
  // intact and in order. `window` caps the frames in flight (UDP drops what overflows the
  // receiver's buffer; unix sockets push back instead, so they can take everything at once).
  void SendAndCheck(TestNic& from, TestNic& to, int n, int window) {
    const size_t before = to.frame_count();
    std::vector<std::vector<uint8_t>> sent;
    for (int i = 0; i < n; ++i) {
      sent.push_back(MakeFrame(i, 60 + (i * 97) % 1455));
      if (i == n - 1) sent.back().resize(1514);
    }
    for (int i = 0; i < n; ++i) {
      if (i >= window) {
        ASSERT_TRUE(to.WaitFrames(before + i - window + 1, kWait)) << i;
      }
      ASSERT_GE(from.SendFrame(sent[i]), 0) << i;
    }
    ASSERT_TRUE(to.WaitFrames(before + n, kWait)) << to.frame_count() - before;
    std::vector<std::vector<uint8_t>> got = to.frames();
    got.erase(got.begin(), got.begin() + before);
    ASSERT_EQ(got.size(), sent.size());
    for (int i = 0; i < n; ++i) ASSERT_EQ(got[i], sent[i]) << "frame " << i;
  }

  std::unique_ptr<Machine> m_;
  std::string dir_;
  Dgram* a_ = nullptr;
  Dgram* b_ = nullptr;
  TestNic nic_a_{"nic-a"};
  TestNic nic_b_{"nic-b"};
};

TEST_F(DgramTest, TypeIsRegisteredWithDottedProperties) {
  auto t = qom::TypeRegistry::Global().Lookup("netdev-dgram");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE((*t)->klass().IsA("netdev"));
  for (const char* p : {"local.type", "local.host", "local.port", "local.path", "remote.type",
                        "remote.host", "remote.port", "remote.path"}) {
    EXPECT_NE((*t)->klass().FindProperty(p), nullptr) << p;
  }
}

TEST_F(DgramTest, InetPairCarriesFramesBothWaysInOrder) {
  ASSERT_TRUE(AddInetPair());
  EXPECT_EQ(a_->CanonicalPath(), "/netdevs/n0");
  EXPECT_THAT(a_->local_address(), HasSubstr("127.0.0.1:"));
  ConnectNics();
  SendAndCheck(nic_a_, nic_b_, 200, 16);
  SendAndCheck(nic_b_, nic_a_, 200, 16);
  Counters& ca = a_->queue(0)->counters();
  Counters& cb = b_->queue(0)->counters();
  EXPECT_EQ(ca.Value("tx_frames"), 200u);
  EXPECT_EQ(ca.Value("rx_frames"), 200u);
  EXPECT_EQ(cb.Value("tx_frames"), 200u);
  EXPECT_EQ(cb.Value("rx_frames"), 200u);
  EXPECT_EQ(ca.Value("tx_errors") + cb.Value("tx_errors"), 0u);
  EXPECT_EQ(ca.Value("rx_unexpected_source") + cb.Value("rx_unexpected_source"), 0u);
}

TEST_F(DgramTest, UnixPairCarriesFramesBothWaysInOrderAndRemovesItsSockets) {
  ASSERT_TRUE(AddUnixPair());
  EXPECT_EQ(a_->local_address(), Path("a.sock"));
  ConnectNics();
  // All at once: the sockets push back (EAGAIN), frames queue and resume on EPOLLOUT.
  SendAndCheck(nic_a_, nic_b_, 200, 200);
  SendAndCheck(nic_b_, nic_a_, 200, 200);
  EXPECT_EQ(a_->queue(0)->counters().Value("tx_frames"), 200u);
  EXPECT_EQ(b_->queue(0)->counters().Value("rx_frames"), 200u);
  EXPECT_EQ(a_->queue(0)->counters().Value("tx_errors"), 0u);
  // Every frame that was queued is called back once sent.
  EXPECT_TRUE(WaitFor(
      [&] { return a_->queue(0)->counters().Value("rx_queued") == uint64_t(nic_a_.callbacks()); }));

  nic_a_.Disconnect();
  nic_b_.Disconnect();
  ASSERT_TRUE(m_->ObjectDel("netdev", "n0").ok());
  EXPECT_FALSE(Exists(Path("a.sock")));
  EXPECT_TRUE(Exists(Path("b.sock")));
  m_.reset();
  EXPECT_FALSE(Exists(Path("b.sock")));
}

TEST_F(DgramTest, InetDatagramFromAStrangerIsDroppedAndCounted) {
  uint16_t remote_port = 0, stranger_port = 0;
  UniqueFd remote = UdpSocket(&remote_port);
  UniqueFd stranger = UdpSocket(&stranger_port);
  a_ = Add(Inet("n0", 0, remote_port));  // local.port=0: an ephemeral port
  ASSERT_NE(a_, nullptr);
  ASSERT_TRUE(NetClientState::Connect(&nic_a_, a_->queue(0)));
  const std::string addr = a_->local_address();
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  to.sin_port = htons(static_cast<uint16_t>(std::stoi(addr.substr(addr.find(':') + 1))));
  ASSERT_NE(to.sin_port, 0);

  const std::vector<uint8_t> bad = MakeFrame(1, 100), good = MakeFrame(2, 100);
  ASSERT_EQ(sendto(stranger.get(), bad.data(), bad.size(), 0, reinterpret_cast<sockaddr*>(&to),
                   sizeof(to)),
            100);
  ASSERT_EQ(sendto(remote.get(), good.data(), good.size(), 0, reinterpret_cast<sockaddr*>(&to),
                   sizeof(to)),
            100);
  ASSERT_TRUE(nic_a_.WaitFrames(1, kWait));
  EXPECT_EQ(nic_a_.frames(), std::vector<std::vector<uint8_t>>{good});
  EXPECT_EQ(a_->queue(0)->counters().Value("rx_unexpected_source"), 1u);
  EXPECT_EQ(a_->queue(0)->counters().Value("rx_frames"), 1u);

  // And what the NIC sends goes to the remote, as one datagram with no header.
  ASSERT_EQ(nic_a_.SendFrame(bad), 100);
  std::vector<uint8_t> buf(200);
  ASSERT_EQ(recv(remote.get(), buf.data(), buf.size(), 0), 100);
  buf.resize(100);
  EXPECT_EQ(buf, bad);
}

TEST_F(DgramTest, UnixDatagramsFromStrangersOversizedOrEmptyAreDroppedAndCounted) {
  // The remote does not exist yet, so the netdev cannot connect to it and checks every source.
  a_ = Add(absl::StrCat("dgram,id=n0,local.type=unix,local.path=", Path("a.sock"),
                        ",remote.type=unix,remote.path=", Path("r.sock")));
  ASSERT_NE(a_, nullptr);
  ASSERT_TRUE(NetClientState::Connect(&nic_a_, a_->queue(0)));
  const sockaddr_un to = UnixAddr(Path("a.sock"));
  auto send_to_a = [&](int fd, const std::vector<uint8_t>& d) {
    return sendto(fd, d.data(), d.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof(to));
  };
  UniqueFd stranger = UnixSocket(Path("s.sock"));
  ASSERT_EQ(send_to_a(stranger.get(), MakeFrame(1, 80)), 80);
  auto& c = a_->queue(0)->counters();
  EXPECT_TRUE(WaitFor([&] { return c.Value("rx_unexpected_source") > 0; }));
  EXPECT_EQ(c.Value("rx_unexpected_source"), 1u);

  // Now the remote exists: the netdev connects to it and takes its datagrams; one larger than a
  // frame and an empty one are dropped.
  UniqueFd remote = UnixSocket(Path("r.sock"));
  int sndbuf = 1 << 20;
  setsockopt(remote.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
  ASSERT_EQ(send_to_a(remote.get(), std::vector<uint8_t>(kMaxFrameSize + 1000)),
            ssize_t(kMaxFrameSize + 1000));
  ASSERT_EQ(send_to_a(remote.get(), {}), 0);
  const std::vector<uint8_t> good = MakeFrame(3, 1514);
  ASSERT_EQ(send_to_a(remote.get(), good), 1514);
  ASSERT_TRUE(nic_a_.WaitFrames(1, kWait));
  EXPECT_EQ(nic_a_.frames(), std::vector<std::vector<uint8_t>>{good});
  EXPECT_EQ(c.Value("rx_truncated"), 1u);
  EXPECT_EQ(c.Value("rx_empty"), 1u);
  EXPECT_EQ(c.Value("rx_unexpected_source"), 1u);
}

// Option strings that must fail, with the one message each produces.
struct BadOptions {
  std::string options;
  std::string message;
};

TEST_F(DgramTest, BadOptionsFailWithOneClearErrorAndLeaveNothing) {
  const std::string inet_local = "dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=0";
  const std::string inet_remote = ",remote.type=inet,remote.host=127.0.0.1,remote.port=9";
  const std::string long_path(120, 'x');
  const std::vector<BadOptions> cases = {
      {"dgram,id=n0", "dgram 'n0': local.type is required (inet or unix)"},
      {"dgram,id=n0,local.type=tcp", "Parameter 'local.type' expects one of inet/unix, got 'tcp'"},
      {"dgram,id=n0,local.typo=inet",
       "Property 'netdev-dgram.local.typo' not found (did you mean 'local.type'?)"},
      {inet_local,
       "dgram 'n0': local.type=inet requires a remote "
       "(remote.type=inet,remote.host=...,remote.port=...)"},
      {"dgram,id=n0,local.type=unix,local.path=/tmp/x",
       "dgram 'n0': local.type=unix requires a remote (remote.type=unix,remote.path=...)"},
      {inet_local + ",remote.host=127.0.0.1,remote.port=9",
       "dgram 'n0': remote.type is required (inet or unix)"},
      {inet_local + ",remote.type=unix,remote.path=/tmp/x",
       "dgram 'n0': remote.type=unix differs from local.type=inet"},
      {"dgram,id=n0,local.type=inet,local.port=5000" + inet_remote,
       "dgram 'n0': local.host is required with local.type=inet"},
      {"dgram,id=n0,local.type=inet,local.host=127.0.0.1" + inet_remote,
       "dgram 'n0': local.port is required with local.type=inet"},
      {"dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=70000" + inet_remote,
       "dgram 'n0': local.port expects a port number (0-65535), got '70000'"},
      {"dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=http" + inet_remote,
       "dgram 'n0': local.port expects a port number (0-65535), got 'http'"},
      {inet_local + ",remote.type=inet,remote.host=127.0.0.1,remote.port=0",
       "dgram 'n0': remote.port expects a port number (1-65535), got '0'"},
      {"dgram,id=n0,local.type=inet,local.host=300.1.2.3,local.port=0" + inet_remote,
       "dgram 'n0': local.host '300.1.2.3' is not a valid IPv4 address"},
      {inet_local + ",remote.type=inet,remote.host=,remote.port=9",
       "dgram 'n0': remote.host is required with remote.type=inet"},
      {inet_local + ",remote.type=inet,remote.host=0.0.0.0,remote.port=9",
       "dgram 'n0': remote.host '0.0.0.0' is not a destination address"},
      {inet_local + ",remote.type=inet,remote.host=239.1.2.3,remote.port=9",
       "dgram 'n0': remote.host 239.1.2.3 is a multicast address; multicast is not supported"},
      {inet_local + ",local.path=/tmp/x" + inet_remote,
       "dgram 'n0': local.path applies to local.type=unix, not inet"},
      {"dgram,id=n0,local.type=unix,local.host=h,remote.type=unix,remote.path=/tmp/y",
       "dgram 'n0': local.host applies to local.type=inet, not unix"},
      {"dgram,id=n0,local.type=unix,remote.type=unix,remote.path=/tmp/y",
       "dgram 'n0': local.path is required with local.type=unix"},
      {"dgram,id=n0,local.type=unix,local.path=/tmp/" + long_path +
           ",remote.type=unix,remote.path=/tmp/y",
       "dgram 'n0': local.path '/tmp/" + long_path + "' is longer than 107 bytes"},
      {"dgram,id=n0,local.type=unix,local.path=/tmp/y,remote.type=unix,remote.path=/tmp/y",
       "dgram 'n0': local.path and remote.path are the same ('/tmp/y')"},
  };
  for (const BadOptions& c : cases) {
    auto o = m_->ObjectAdd("netdev", c.options);
    ASSERT_FALSE(o.ok()) << c.options;
    EXPECT_EQ(o.status().message(), c.message) << c.options;
    EXPECT_EQ(m_->root().Resolve("/netdevs/n0").status().code(), absl::StatusCode::kNotFound)
        << c.options;
  }
}

TEST_F(DgramTest, PortInUseIsABindError) {
  uint16_t port = 0;
  UniqueFd taken = UdpSocket(&port);
  auto o = m_->ObjectAdd("netdev", Inet("n0", port, 9));
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(o.status().message(),
            absl::StrCat("dgram 'n0': bind(127.0.0.1:", port, "): Address already in use"));
  EXPECT_EQ(m_->root().Resolve("/netdevs/n0").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DgramTest, UnixLocalPathIsReplacedOnlyWhenItIsAStaleSocket) {
  const std::string opts = absl::StrCat("dgram,id=n0,local.type=unix,local.path=", Path("a.sock"),
                                        ",remote.type=unix,remote.path=", Path("b.sock"));
  // A regular file is never removed.
  {
    UniqueFd f(open(Path("a.sock").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    ASSERT_TRUE(f.valid());
  }
  auto o = m_->ObjectAdd("netdev", opts);
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().message(), absl::StrCat("dgram 'n0': local.path '", Path("a.sock"),
                                               "' exists and is not a socket"));
  EXPECT_TRUE(Exists(Path("a.sock")));
  ASSERT_EQ(unlink(Path("a.sock").c_str()), 0);

  // A socket somebody is bound to is in use.
  {
    UniqueFd live = UnixSocket(Path("a.sock"));
    o = m_->ObjectAdd("netdev", opts);
    ASSERT_FALSE(o.ok());
    EXPECT_EQ(o.status().message(), absl::StrCat("dgram 'n0': local.path '", Path("a.sock"),
                                                 "' is in use by another socket"));
    EXPECT_TRUE(Exists(Path("a.sock")));
  }
  // Its owner is gone (the file stays behind, stale): it is replaced.
  ASSERT_TRUE(Exists(Path("a.sock")));
  EXPECT_NE(Add(opts), nullptr);
  EXPECT_EQ(m_->root().Resolve("/netdevs/n0").status().code(), absl::StatusCode::kOk);
}

// The NIC cannot take a frame: the backend stops reading; once the NIC is ready again the frame
// is delivered and reading resumes until every frame has arrived.
class DgramBackpressureTest : public DgramTest, public ::testing::WithParamInterface<bool> {};

TEST_P(DgramBackpressureTest, ReadingPausesWhileTheNicIsFullAndResumes) {
  const bool unix = GetParam();
  ASSERT_TRUE(unix ? AddUnixPair() : AddInetPair());
  ConnectNics();
  nic_b_.SetAccepting(false);
  // UDP drops what overflows the receiver's buffer, so inet sends less than that. Unix sends more
  // than the sockets hold, so the sender is pushed back too (EAGAIN: frames queue at n0).
  const int frames = unix ? 200 : 50;
  const size_t max_size = unix ? 1514 : 600;
  std::vector<std::vector<uint8_t>> sent;
  for (int i = 0; i < frames; ++i) {
    sent.push_back(MakeFrame(i, 60 + (i * 97) % (max_size - 59)));
    ASSERT_GE(nic_a_.SendFrame(sent.back()), 0);
  }
  ASSERT_TRUE(nic_b_.WaitAttempts(1, kWait));
  Counters& ca = a_->queue(0)->counters();
  if (unix) {
    EXPECT_TRUE(WaitFor([&] { return ca.Value("rx_queued") > 0; }));
  }
  const absl::Duration cpu_before = CpuTime();
  absl::SleepFor(absl::Milliseconds(100));
  // Nobody spins while the sockets are full: not the reader, not the writer waiting for room.
  EXPECT_LT(CpuTime() - cpu_before, absl::Milliseconds(50));
  // One frame taken from the socket and refused (now queued at the NIC); no more reading.
  EXPECT_EQ(nic_b_.attempts(), 1);
  EXPECT_EQ(b_->queue(0)->counters().Value("rx_frames"), 1u);
  EXPECT_EQ(nic_b_.frame_count(), 0u);

  nic_b_.SetAccepting(true);
  nic_b_.ReceiverReady();
  ASSERT_TRUE(nic_b_.WaitFrames(frames, kWait)) << nic_b_.frame_count();
  EXPECT_EQ(nic_b_.frames(), sent);
  EXPECT_EQ(b_->queue(0)->counters().Value("rx_frames"), uint64_t(frames));
  EXPECT_EQ(ca.Value("tx_frames"), uint64_t(frames));
  // Every frame queued at n0 was called back once it went out.
  EXPECT_TRUE(WaitFor([&] { return ca.Value("rx_queued") == uint64_t(nic_a_.callbacks()); }));
}

INSTANTIATE_TEST_SUITE_P(InetAndUnix, DgramBackpressureTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Unix" : "Inet"; });

}  // namespace
}  // namespace vdev::net
