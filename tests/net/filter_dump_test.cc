#include "net/filter_dump.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/base/unique_fd.h"
#include "core/qdev/machine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/loopback.h"
#include "net/netdev.h"
#include "tests/net/test_nic.h"

namespace vdev::net {
namespace {

using ::testing::HasSubstr;
using testing::MakeFrame;
using testing::TestNic;

// A backend whose frames carry a 12-byte virtio-net header (as a TAP with vnet_hdr in use).
class VnetTestNetdev : public Netdev {
 public:
  static constexpr char kTypeName[] = "netdev-test-vnet";
  using Parent = Netdev;
  static void ClassInit(qom::ObjectClass& k) { k.description = "test: frames with a vnet header"; }
  absl::Status Complete() override {
    clients_.push_back(std::make_unique<Client>(name()));
    return absl::OkStatus();
  }

 private:
  class Client : public NetClientState {
   public:
    explicit Client(std::string name) : NetClientState("test-vnet", std::move(name)) {}
    ssize_t ReceiveIov(const iovec* iov, int n) override { return IovSize(iov, n); }
    int CarriedVnetHdrLen() const override { return 12; }
  };
};
VDEV_REGISTER_TYPE(VnetTestNetdev);

struct PcapRecord {
  uint32_t ts_sec, ts_usec, caplen, len;
  std::vector<uint8_t> data;
};
struct Pcap {
  uint32_t magic = 0, snaplen = 0, linktype = 0;
  uint16_t major = 0, minor = 0;
  std::vector<PcapRecord> records;
  bool complete = false;  // no trailing partial record
};

Pcap ReadPcap(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Pcap p;
  auto u32 = [&](size_t off) {
    uint32_t v;
    std::memcpy(&v, &b[off], 4);
    return v;
  };
  if (b.size() < 24) return p;
  p.magic = u32(0);
  std::memcpy(&p.major, &b[4], 2);
  std::memcpy(&p.minor, &b[6], 2);
  p.snaplen = u32(16);
  p.linktype = u32(20);
  size_t off = 24;
  while (off + 16 <= b.size()) {
    PcapRecord r{u32(off), u32(off + 4), u32(off + 8), u32(off + 12), {}};
    if (off + 16 + r.caplen > b.size()) return p;
    r.data.assign(b.begin() + off + 16, b.begin() + off + 16 + r.caplen);
    p.records.push_back(std::move(r));
    off += 16 + p.records.back().caplen;
  }
  p.complete = off == b.size();
  return p;
}

off_t FileSize(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

class FilterDumpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = Machine::Create("none");
    ASSERT_TRUE(m.ok()) << m.status();
    m_ = std::move(*m);
    char tmpl[] = "/tmp/vdev-filter-dump-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    file_ = dir_ + "/dump.pcap";
  }
  void TearDown() override {
    m_.reset();
    unlink(file_.c_str());
    unlink((dir_ + "/fifo").c_str());
    rmdir(dir_.c_str());
  }

  qom::Object* Add(absl::string_view group, const std::string& options) {
    auto o = m_->ObjectAdd(group, options);
    if (!o.ok()) {
      ADD_FAILURE() << options << ": " << o.status();
      return nullptr;
    }
    return *o;
  }
  FilterDump* AddFilter(const std::string& extra = "") {
    return qom::DynamicCast<FilterDump>(
        Add("object", absl::StrCat("filter-dump,id=f0,netdev=n0,file=", file_, extra)));
  }
  // A loopback netdev n0 that does not reflect, with nic_ as its NIC.
  Loopback* AddLoopback() {
    auto* lb = qom::DynamicCast<Loopback>(Add("netdev", "loopback,id=n0,reflect=off"));
    if (lb != nullptr) {
      EXPECT_TRUE(NetClientState::Connect(&nic_, lb->queue(0)));
    }
    return lb;
  }

  std::unique_ptr<Machine> m_;
  std::string dir_;
  std::string file_;
  TestNic nic_{"nic0"};
};

TEST_F(FilterDumpTest, TypeIsUserCreatable) {
  auto t = qom::TypeRegistry::Global().Lookup("filter-dump");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE((*t)->klass().IsA(qom::UserCreatable::kTypeName));
}

TEST_F(FilterDumpTest, FramesBothWaysAppearInOrderWithPcapHeaders) {
  Loopback* lb = AddLoopback();
  ASSERT_NE(lb, nullptr);
  FilterDump* f = AddFilter();
  ASSERT_NE(f, nullptr);
  const int64_t t0 = absl::ToUnixSeconds(absl::Now());

  std::vector<std::vector<uint8_t>> expected;
  for (uint32_t i = 0; i < 10; ++i) {
    std::vector<uint8_t> frame = MakeFrame(i, 60 + i * 150);
    if (i % 2 == 0) {
      ASSERT_EQ(nic_.SendFrame(frame), ssize_t(frame.size()));  // NIC -> netdev
    } else {
      ASSERT_EQ(lb->Inject(frame), ssize_t(frame.size()));  // netdev -> NIC
    }
    expected.push_back(std::move(frame));
  }
  EXPECT_EQ(nic_.frame_count(), 5u);
  EXPECT_EQ(lb->frames(), 5u);
  EXPECT_EQ(f->counters().Value("frames"), 10u);

  Pcap p = ReadPcap(file_);
  EXPECT_EQ(p.magic, 0xa1b2c3d4u);
  EXPECT_EQ(p.major, 2);
  EXPECT_EQ(p.minor, 4);
  EXPECT_EQ(p.snaplen, 65536u);
  EXPECT_EQ(p.linktype, 1u);
  EXPECT_TRUE(p.complete);
  ASSERT_EQ(p.records.size(), expected.size());
  uint64_t last_us = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const PcapRecord& r = p.records[i];
    EXPECT_EQ(r.len, expected[i].size()) << i;
    EXPECT_EQ(r.caplen, expected[i].size()) << i;
    EXPECT_EQ(r.data, expected[i]) << i;
    EXPECT_LT(r.ts_usec, 1000000u);
    EXPECT_GE(int64_t{r.ts_sec}, t0);
    EXPECT_LE(int64_t{r.ts_sec}, absl::ToUnixSeconds(absl::Now()));
    const uint64_t us = uint64_t{r.ts_sec} * 1000000 + r.ts_usec;
    EXPECT_GE(us, last_us) << i;
    last_us = us;
  }
}

TEST_F(FilterDumpTest, MaxlenTruncatesTheCapture) {
  Loopback* lb = AddLoopback();
  ASSERT_NE(lb, nullptr);
  ASSERT_NE(AddFilter(",maxlen=64"), nullptr);
  const std::vector<size_t> sizes = {100, 64, 10, 1514};
  for (size_t i = 0; i < sizes.size(); ++i) {
    ASSERT_GT(nic_.SendFrame(MakeFrame(i, sizes[i])), 0);
  }
  ASSERT_GT(lb->Inject(MakeFrame(9, 65)), 0);

  Pcap p = ReadPcap(file_);
  EXPECT_EQ(p.snaplen, 64u);
  EXPECT_TRUE(p.complete);
  ASSERT_EQ(p.records.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    const size_t len = i < 4 ? sizes[i] : 65;
    const std::vector<uint8_t> frame = MakeFrame(i < 4 ? i : 9, len);
    EXPECT_EQ(p.records[i].len, len) << i;
    EXPECT_EQ(p.records[i].caplen, std::min<size_t>(len, 64)) << i;
    EXPECT_EQ(p.records[i].data,
              std::vector<uint8_t>(frame.begin(), frame.begin() + std::min<size_t>(len, 64)))
        << i;
  }
}

TEST_F(FilterDumpTest, HubportFramesBothWays) {
  ASSERT_NE(Add("netdev", "hubport,id=n0,hubid=0"), nullptr);
  auto* h1 = qom::DynamicCast<Netdev>(Add("netdev", "hubport,id=n1,hubid=0"));
  ASSERT_NE(h1, nullptr);
  auto* h0 = qom::DynamicCast<Netdev>(*m_->root().Resolve("/netdevs/n0"));
  TestNic other("nic1");
  ASSERT_TRUE(NetClientState::Connect(&nic_, h0->queue(0)));
  ASSERT_TRUE(NetClientState::Connect(&other, h1->queue(0)));
  FilterDump* f = AddFilter();
  ASSERT_NE(f, nullptr);

  std::vector<std::vector<uint8_t>> expected;
  for (uint32_t i = 0; i < 6; ++i) {
    std::vector<uint8_t> frame = MakeFrame(i, 64 + i);
    ASSERT_GT((i % 2 ? other : nic_).SendFrame(frame), 0);
    expected.push_back(std::move(frame));
    // The hub fans out from the loop: wait for this frame before sending the next.
    ASSERT_TRUE((i % 2 ? nic_ : other).WaitFrames(i / 2 + 1, absl::Seconds(5)));
  }
  EXPECT_EQ(other.frames(),
            (std::vector<std::vector<uint8_t>>{expected[0], expected[2], expected[4]}));
  EXPECT_EQ(nic_.frames(),
            (std::vector<std::vector<uint8_t>>{expected[1], expected[3], expected[5]}));
  Pcap p = ReadPcap(file_);
  ASSERT_EQ(p.records.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(p.records[i].data, expected[i]) << i;

  // The filter goes first, then the ports (the other NIC unlinks before it goes away).
  ASSERT_TRUE(m_->ObjectDel("object", "f0").ok());
  other.Disconnect();
}

TEST_F(FilterDumpTest, VnetHeaderIsNotCaptured) {
  auto* nd = qom::DynamicCast<Netdev>(Add("netdev", "test-vnet,id=n0"));
  ASSERT_NE(nd, nullptr);
  ASSERT_TRUE(NetClientState::Connect(&nic_, nd->queue(0)));
  ASSERT_NE(AddFilter(), nullptr);
  std::vector<uint8_t> frame = MakeFrame(7, 12 + 60);
  ASSERT_GT(nic_.SendFrame(frame), 0);

  Pcap p = ReadPcap(file_);
  ASSERT_EQ(p.records.size(), 1u);
  EXPECT_EQ(p.records[0].len, 60u);
  EXPECT_EQ(p.records[0].data, std::vector<uint8_t>(frame.begin() + 12, frame.end()));
}

TEST_F(FilterDumpTest, BadOptionsFailWithOneClearErrorAndLeaveNothing) {
  ASSERT_NE(AddLoopback(), nullptr);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"filter-dump,id=f0,file=" + file_, "filter-dump 'f0': netdev is required"},
      {"filter-dump,id=f0,netdev=n0", "filter-dump 'f0': file is required"},
      {"filter-dump,id=f0,netdev=n0,maxlen=0,file=" + file_,
       "filter-dump 'f0': maxlen must be at least 1"},
      {"filter-dump,id=f0,netdev=n0,file=" + dir_ + "/no/such.pcap",
       "filter-dump 'f0': open(" + dir_ + "/no/such.pcap): No such file or directory"},
  };
  for (const auto& [options, message] : cases) {
    auto o = m_->ObjectAdd("object", options);
    ASSERT_FALSE(o.ok()) << options;
    EXPECT_EQ(o.status().message(), message) << options;
    EXPECT_EQ(m_->root().Resolve("/objects/f0").status().code(), absl::StatusCode::kNotFound);
  }
  auto o = m_->ObjectAdd("object", "filter-dump,id=f0,netdev=nope,file=" + file_);
  ASSERT_FALSE(o.ok());
  EXPECT_THAT(o.status().message(), HasSubstr("nope"));
  EXPECT_EQ(m_->root().Resolve("/objects/f0").status().code(), absl::StatusCode::kNotFound);
  // None of them attached to the netdev: frames pass unobserved.
  ASSERT_GT(nic_.SendFrame(MakeFrame(1, 60)), 0);
}

TEST_F(FilterDumpTest, FilterIsDeletedBeforeItsNetdevAndStopsWriting) {
  Loopback* lb = AddLoopback();
  ASSERT_NE(lb, nullptr);
  FilterDump* f = AddFilter();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->GetProperty("netdev").value_or(""), "/netdevs/n0");
  // The link keeps the netdev.
  absl::Status del = m_->ObjectDel("netdev", "n0");
  EXPECT_EQ(del.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(del.message(), HasSubstr("in use by /objects/f0.netdev"));
  // Attached, its link cannot move.
  EXPECT_FALSE(f->SetProperty("netdev", "").ok());

  ASSERT_GT(nic_.SendFrame(MakeFrame(1, 60)), 0);
  ASSERT_TRUE(m_->ObjectDel("object", "f0").ok());
  const off_t size = FileSize(file_);
  EXPECT_EQ(size, 24 + 16 + 60);
  ASSERT_GT(nic_.SendFrame(MakeFrame(2, 60)), 0);
  ASSERT_GT(lb->Inject(MakeFrame(3, 60)), 0);
  EXPECT_EQ(FileSize(file_), size);
  nic_.Disconnect();
  EXPECT_TRUE(m_->ObjectDel("netdev", "n0").ok());
}

TEST_F(FilterDumpTest, NetdevDestroyedFirstAtTeardown) {
  // The machine destroys /netdevs before /objects: the filter's link is cleared, and it only
  // closes its file.
  Loopback* lb = AddLoopback();
  ASSERT_NE(lb, nullptr);
  ASSERT_NE(AddFilter(), nullptr);
  ASSERT_GT(nic_.SendFrame(MakeFrame(1, 100)), 0);
  ASSERT_GT(lb->Inject(MakeFrame(2, 100)), 0);
  m_.reset();
  Pcap p = ReadPcap(file_);
  EXPECT_TRUE(p.complete);
  EXPECT_EQ(p.records.size(), 2u);
}

TEST_F(FilterDumpTest, ReaderOfAFifoGoingAwayCountsWriteErrors) {
  ASSERT_NE(AddLoopback(), nullptr);
  const std::string fifo = dir_ + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  UniqueFd reader(open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(reader.valid());
  auto* f = qom::DynamicCast<FilterDump>(
      Add("object", absl::StrCat("filter-dump,id=f0,netdev=n0,file=", fifo)));
  ASSERT_NE(f, nullptr);
  ASSERT_GT(nic_.SendFrame(MakeFrame(1, 60)), 0);
  uint8_t buf[256];
  EXPECT_EQ(read(reader.get(), buf, sizeof(buf)), 24 + 16 + 60);
  EXPECT_EQ(f->counters().Value("frames"), 1u);

  reader.Reset();
  ASSERT_GT(nic_.SendFrame(MakeFrame(2, 60)), 0);  // EPIPE, and no SIGPIPE
  EXPECT_EQ(f->counters().Value("write_errors"), 1u);
  EXPECT_EQ(f->counters().Value("frames"), 1u);
}

}  // namespace
}  // namespace vdev::net
