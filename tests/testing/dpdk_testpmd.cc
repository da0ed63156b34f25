#include "tests/testing/dpdk_testpmd.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/base/status_macros.h"
#include "core/base/unique_fd.h"

namespace vdev::testing {
namespace {

constexpr char kBinary[] = "/usr/bin/dpdk-testpmd";
std::atomic<int> next_id{0};

std::vector<std::string> Common(const std::string& prefix, const std::string& lcores) {
  return {kBinary,     "--lcores", lcores, "--file-prefix=" + prefix,    "--no-pci",
          "--no-huge", "-m",       "256",  "--log-level=lib.eal:warning"};
}

std::vector<std::string> PmdArgs(const std::string& mode) {
  return {"--", "--forward-mode=" + mode, "--auto-start",          "--stats-period",
          "1",  "--nb-cores=1",           "--total-num-mbufs=8192"};
}

}  // namespace

bool TestPmd::Available() { return access(kBinary, X_OK) == 0; }

absl::StatusOr<std::unique_ptr<TestPmd>> TestPmd::Spawn(std::vector<std::string> args,
                                                        const std::string& netns) {
  UniqueFd ns;
  if (!netns.empty()) {
    ns = UniqueFd(open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns.valid()) {
      return absl::NotFoundError(
          absl::StrCat("network namespace ", netns, ": ", std::strerror(errno)));
    }
  }
  char tmpl[] = "/tmp/vdev-testpmd-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  auto pmd = std::unique_ptr<TestPmd>(new TestPmd);
  pmd->dir_ = tmpl;
  const std::string log = pmd->dir_ + "/log";
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string runtime = pmd->dir_ + "/run";
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    // Dies with the test.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int in = open("/dev/null", O_RDONLY);
    if (out >= 0) {
      dup2(out, 1);
      dup2(out, 2);
    }
    if (in >= 0) dup2(in, 0);
    if (ns.valid() && setns(ns.get(), CLONE_NEWNET) != 0) _exit(126);
    mkdir(runtime.c_str(), 0700);
    setenv("RUNTIME_DIRECTORY", runtime.c_str(), 1);
    execv(argv[0], argv.data());
    _exit(127);
  }
  pmd->pid_ = pid;
  return pmd;
}

absl::StatusOr<std::unique_ptr<TestPmd>> TestPmd::StartVhostBackend(const std::string& socket,
                                                                    const std::string& mode,
                                                                    bool client,
                                                                    const std::string& lcores,
                                                                    int queues, int txpkts) {
  const std::string prefix = absl::StrCat("vdevvh", getpid(), "_", next_id++);
  std::vector<std::string> args = Common(prefix, lcores);
  args.push_back("--vdev");
  args.push_back(
      absl::StrCat("net_vhost0,iface=", socket, ",queues=", queues, client ? ",client=1" : ""));
  for (std::string& a : PmdArgs(mode)) args.push_back(std::move(a));
  if (queues > 1) {
    args.push_back(absl::StrCat("--rxq=", queues));
    args.push_back(absl::StrCat("--txq=", queues));
  }
  if (txpkts > 0) args.push_back(absl::StrCat("--txpkts=", txpkts));
  if (!client) unlink(socket.c_str());
  auto pmd = Spawn(std::move(args));
  if (!pmd.ok() || client) return pmd;
  VDEV_RETURN_IF_ERROR((*pmd)->WaitForwarding(socket));
  return pmd;
}

absl::StatusOr<std::unique_ptr<TestPmd>> TestPmd::StartVhostToTap(const std::string& socket,
                                                                  const std::string& tap,
                                                                  const std::string& netns,
                                                                  const std::string& lcores) {
  const std::string prefix = absl::StrCat("vdevvt", getpid(), "_", next_id++);
  std::vector<std::string> args = Common(prefix, lcores);
  args.push_back("--vdev");
  args.push_back(absl::StrCat("net_vhost0,iface=", socket, ",queues=1"));
  args.push_back("--vdev");
  args.push_back(absl::StrCat("net_tap0,iface=", tap));
  for (std::string& a : PmdArgs("io")) args.push_back(std::move(a));
  unlink(socket.c_str());
  auto pmd = Spawn(std::move(args), netns);
  if (!pmd.ok()) return pmd;
  VDEV_RETURN_IF_ERROR((*pmd)->WaitForwarding(socket));
  return pmd;
}

absl::Status TestPmd::WaitForwarding(const std::string& socket) {
  // Ready when its socket exists and forwarding runs. (The socket appears when the port is
  // configured, before it is started; a frontend that completes the handshake in between can
  // leave the PMD's queues bound to no device, and nothing is ever forwarded.)
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (access(socket.c_str(), F_OK) != 0 ||
         Log().find("packet forwarding - ports=") == std::string::npos) {
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(absl::StrCat("testpmd exited early:\n", Log()));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("testpmd did not create ", socket, ":\n", Log()));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TestPmd>> TestPmd::StartVirtioUser(const std::string& socket,
                                                                  const std::string& mode,
                                                                  int txpkts,
                                                                  const std::string& lcores,
                                                                  bool tx_first) {
  const std::string prefix = absl::StrCat("vdevvu", getpid(), "_", next_id++);
  std::vector<std::string> args = Common(prefix, lcores);
  args.push_back("--vdev");
  args.push_back(absl::StrCat("net_virtio_user0,path=", socket, ",queues=1"));
  for (std::string& a : PmdArgs(mode)) args.push_back(std::move(a));
  args.push_back(absl::StrCat("--txpkts=", txpkts));
  if (tx_first) args.push_back("--tx-first");
  return Spawn(std::move(args));
}

void TestPmd::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void TestPmd::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGINT);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  int status;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (absl::Now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  pid_ = -1;
}

TestPmd::~TestPmd() {
  Kill();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string TestPmd::Log() const {
  std::ifstream f(dir_ + "/log");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

double TestPmd::LastRxPps() const {
  const std::string log = Log();
  const size_t at = log.rfind("Rx-pps:");
  if (at == std::string::npos) return -1;
  return std::strtod(log.c_str() + at + 7, nullptr);
}

double TestPmd::BestPps(const std::string& key) const {
  const std::string log = Log();
  double best = 0;
  int seen = 0;
  for (size_t at = log.find(key); at != std::string::npos; at = log.find(key, at + 1)) {
    const double v = std::strtod(log.c_str() + at + key.size(), nullptr);
    if (++seen > 1) best = std::max(best, v);
  }
  return best;
}

}  // namespace vdev::testing
