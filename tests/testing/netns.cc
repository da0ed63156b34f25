#include "tests/testing/netns.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"

namespace vdev::testing {

int Shell(const std::string& cmd) { return system(("(" + cmd + ") >/dev/null 2>&1").c_str()); }

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return absl::StrReplaceAll(s.str(), {{"\r", ""}});
}

std::string NetnsSkipReason() {
  if (geteuid() != 0) return "needs root for a TAP and a network namespace";
  if (Shell("ip -V") != 0) return "iproute2 is not installed";
  if (Shell("command -v python3") != 0) return "python3 is not installed";
  return "";
}

pid_t Spawn(const std::vector<std::string>& argv, const std::string& err_file,
            const std::string& out_file) {
  const pid_t pid = fork();
  if (pid == 0) {
    setsid();
    if (!err_file.empty()) (void)!freopen(err_file.c_str(), "w", stderr);
    (void)!freopen(out_file.empty() ? "/dev/null" : out_file.c_str(), "w", stdout);
    std::vector<char*> a;
    for (const std::string& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    execvp(a[0], a.data());
    _exit(127);
  }
  return pid;
}

void KillAndReap(pid_t* pid) {
  if (*pid <= 0) return;
  kill(-*pid, SIGKILL);  // its session (ip netns exec forks nothing, but a shell might)
  kill(*pid, SIGKILL);
  waitpid(*pid, nullptr, 0);
  *pid = 0;
}

std::string WriteRandomFile(const std::string& path, size_t size) {
  std::mt19937_64 rng(std::random_device{}());
  {
    std::ofstream blob(path, std::ios::binary);
    std::vector<char> buf(size);
    for (size_t i = 0; i < size; ++i) buf[i] = static_cast<char>(rng());
    blob.write(buf.data(), static_cast<std::streamsize>(size));
    if (!blob) return "";
  }
  FILE* p = popen(("sha256sum " + path).c_str(), "r");
  if (p == nullptr) return "";
  char sum[65] = {};
  const size_t n = fread(sum, 1, 64, p);
  pclose(p);
  return n == 64 ? std::string(sum) : "";
}

TestNetns::TestNetns(const std::string& prefix, const std::string& tap_prefix) {
  const int id = getpid() % 100000;
  name_ = absl::StrCat(prefix, id);
  tap_ = absl::StrCat(tap_prefix, id);
}

TestNetns::~TestNetns() {
  KillAndReap(&http_pid_);
  if (made_) {
    Shell(Exec("ip link del " + tap_));
    Shell("ip netns del " + name_);
  }
}

absl::Status TestNetns::Create(const NetnsOptions& opts) {
  Shell("ip netns del " + name_);  // a leftover of a crashed run
  if (Shell("ip netns add " + name_) != 0) {
    return absl::InternalError("cannot create network namespace " + name_);
  }
  made_ = true;
  if (Shell(Exec("ip link set lo up")) != 0) return absl::InternalError("lo does not come up");
  const std::string add =
      absl::StrCat("ip tuntap add dev ", tap_, " mode tap", opts.vnet_hdr ? " vnet_hdr" : "",
                   opts.queues > 1 ? " multi_queue" : "");
  if (Shell(Exec(add)) != 0) return absl::InternalError("cannot create TAP " + tap_);
  return opts.configure ? ConfigureTap() : absl::OkStatus();
}

absl::Status TestNetns::ConfigureTap() {
  Shell(Exec(absl::StrCat("ip addr add ", kHostIp, "/24 dev ", tap_)));  // may be there already
  if (Shell(Exec(absl::StrCat("ip link set ", tap_, " up"))) != 0) {
    return absl::InternalError("TAP " + tap_ + " does not come up");
  }
  return absl::OkStatus();
}

absl::Status TestNetns::StartHttp(const std::string& dir) {
  std::vector<std::string> argv = ExecArgv();
  for (const char* a : {"python3", "-m", "http.server", "8000", "--bind", kHostIp, "--directory"}) {
    argv.push_back(a);
  }
  argv.push_back(dir);
  http_pid_ = Spawn(argv, "/dev/null");
  const std::string probe =
      Exec(absl::StrCat("python3 -c \"import socket; socket.create_connection(('", kHostIp, "', ",
                        kHttpPort, "), 1)\""));
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    if (Shell(probe) == 0) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError("the HTTP server did not start");
}

}  // namespace vdev::testing
