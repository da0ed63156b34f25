// A private network namespace for end-to-end tests with real guests: loopback up, a TAP on the
// host side at 10.0.0.1/24 (made persistent so a netdev opens it by name), and an HTTP server
// bound to it serving a directory. Everything it made goes in its destructor, also when the test
// failed half-way. Shell helpers for such tests too.
//
//   TestNetns ns("vdevlg");                      // name and TAP from the prefix and the pid
//   ASSERT_TRUE(ns.Create({.queues = 2}).ok());
//   ASSERT_TRUE(ns.StartHttp(dir).ok());         // http://10.0.0.1:8000/
//   Shell(ns.Exec("ping -c 1 10.0.0.2"));
#ifndef VDEV_TESTS_TESTING_NETNS_H_
#define VDEV_TESTS_TESTING_NETNS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace vdev::testing {

// Runs `cmd` in a shell with its output discarded; its exit status.
int Shell(const std::string& cmd);
// The file's contents with carriage returns dropped ("" when it cannot be read).
std::string Slurp(const std::string& path);
// Why a test that needs root, iproute2 and python3 cannot run here ("" when it can).
std::string NetnsSkipReason();
// Starts `argv` in its own session, stderr to `err_file` (or inherited) and stdout to `out_file`
// (or /dev/null).
pid_t Spawn(const std::vector<std::string>& argv, const std::string& err_file = "",
            const std::string& out_file = "");
// SIGKILLs and reaps `*pid` if it runs; sets it to 0.
void KillAndReap(pid_t* pid);
// A file of `size` random bytes at `path`; returns its sha256 in hex ("" on failure).
std::string WriteRandomFile(const std::string& path, size_t size);

struct NetnsOptions {
  int queues = 1;         // > 1: a multiqueue TAP (IFF_MULTI_QUEUE)
  bool vnet_hdr = true;   // IFF_VNET_HDR
  bool configure = true;  // give the TAP 10.0.0.1/24 and bring it up
};

class TestNetns {
 public:
  static constexpr char kHostIp[] = "10.0.0.1";
  static constexpr int kHttpPort = 8000;

  // Names from `prefix` and the pid (a namespace "<prefix><pid>", a TAP "<tap_prefix><pid>").
  TestNetns(const std::string& prefix, const std::string& tap_prefix);
  ~TestNetns();
  TestNetns(const TestNetns&) = delete;
  TestNetns& operator=(const TestNetns&) = delete;

  absl::Status Create(const NetnsOptions& opts = {});
  // Gives the TAP its address and brings it up (again, e.g. after a backend recreated it).
  absl::Status ConfigureTap();
  // python3's http.server on 10.0.0.1:8000 serving `dir`; returns once it accepts connections.
  absl::Status StartHttp(const std::string& dir);

  // `cmd` run inside the namespace.
  std::string Exec(const std::string& cmd) const { return "ip netns exec " + name_ + " " + cmd; }
  // The argv prefix that runs a program inside the namespace.
  std::vector<std::string> ExecArgv() const { return {"ip", "netns", "exec", name_}; }
  const std::string& name() const { return name_; }
  const std::string& tap() const { return tap_; }

 private:
  std::string name_, tap_;
  bool made_ = false;
  pid_t http_pid_ = 0;
};

}  // namespace vdev::testing

#endif  // VDEV_TESTS_TESTING_NETNS_H_
