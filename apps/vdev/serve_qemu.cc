#include "apps/vdev/serve_qemu.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <ostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "apps/vdev/report.h"
#include "bus/pci/pci_device.h"
#include "hw/remote/pci_proxy_server.h"
#include "hw/virtio/virtio_pci.h"

namespace vdev::cli {
namespace {

std::atomic<pid_t> g_child{0};

void ForwardSignal(int sig) {
  const pid_t c = g_child.load();
  if (c > 0) kill(c, sig);
}

struct Served {
  std::string id;
  UniqueFd child_end;  // inherited by QEMU
  std::unique_ptr<remote::PciProxyServer> server;
  std::thread thread;
  absl::Status result;
  bool done = false;
};

}  // namespace

int ServeQemu(Machine& m, const std::vector<std::string>& qemu_argv, std::ostream& out,
              std::ostream& err) {
  auto fail = [&](const std::string& msg) {
    err << "vdev: serve-qemu: " << msg << "\n";
    return 1;
  };
  if (qemu_argv.empty()) return fail("no QEMU command after '--'");
  // Sockets for every @FD:<id>@ token.
  std::vector<std::unique_ptr<Served>> served;
  std::vector<std::string> argv = qemu_argv;
  for (std::string& a : argv) {
    for (size_t pos; (pos = a.find("@FD:")) != std::string::npos;) {
      const size_t end = a.find('@', pos + 4);
      if (end == std::string::npos)
        return fail(absl::StrCat("unterminated @FD: token in '", a, "'"));
      const std::string id = a.substr(pos + 4, end - pos - 4);
      DeviceState* d = m.FindDevice(id);
      auto* pdev = qom::DynamicCast<pci::PCIDevice>(d);
      if (pdev == nullptr) {
        return fail(absl::StrCat("@FD:", id,
                                 "@ names no PCI device (give it with -device ...,id=", id, ")"));
      }
      int sv[2];
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        return fail(absl::StrCat("socketpair: ", strerror(errno)));
      }
      auto s = std::make_unique<Served>();
      s->id = id;
      s->child_end = UniqueFd(sv[1]);
      s->server = std::make_unique<remote::PciProxyServer>(m, *pdev, UniqueFd(sv[0]));
      a.replace(pos, end - pos + 1, std::to_string(sv[1]));
      served.push_back(std::move(s));
    }
  }
  if (served.empty())
    return fail("no @FD:<device id>@ token in the QEMU command: nothing to serve");

  std::vector<char*> cargv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return fail(absl::StrCat("fork: ", strerror(errno)));
  if (pid == 0) {
    // QEMU: dies with us; inherits exactly the child ends of the sockets.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);
    for (auto& s : served) fcntl(s->child_end.get(), F_SETFD, 0);
    execvp(cargv[0], cargv.data());
    fprintf(stderr, "vdev: serve-qemu: cannot run '%s': %s\n", cargv[0], strerror(errno));
    _exit(127);
  }
  g_child = pid;
  struct sigaction sa {};
  sa.sa_handler = ForwardSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  for (auto& s : served) s->child_end.Reset();  // QEMU's now

  absl::Mutex mu;
  bool failed = false;
  std::string first_error;
  for (auto& s : served) {
    Served* sp = s.get();
    sp->thread = std::thread([sp, &mu, &failed, &first_error, pid] {
      sp->result = sp->server->Serve();
      absl::MutexLock l(&mu);
      sp->done = true;
      if (!sp->result.ok() && !failed) {
        failed = true;
        first_error = absl::StrCat("device '", sp->id, "': ", sp->result.message());
        kill(pid, SIGTERM);  // a peer we cannot trust: stop it
      }
    });
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  g_child = 0;
  // QEMU is gone: its ends are closed, so every server sees the hang-up and returns.
  for (auto& s : served) {
    shutdown(s->server->sock(), SHUT_RDWR);
    s->thread.join();
  }
  // What went through each device.
  for (auto& s : served) {
    DeviceState* d = m.FindDevice(s->id);
    out << "served " << s->id << ": " << Summary(s->server->counters()) << "\n";
    if (d != nullptr) out << "  " << d->DisplayName() << ": " << Summary(d->counters()) << "\n";
    if (auto* proxy = qom::DynamicCast<virtio::VirtIOPCIProxy>(d); proxy && proxy->vdev()) {
      out << "  " << proxy->vdev()->type_name() << ": " << Summary(proxy->vdev()->counters())
          << "\n";
    }
  }
  out.flush();
  if (failed) return fail(first_error);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) {
    err << "vdev: serve-qemu: QEMU was killed by signal " << WTERMSIG(status) << "\n";
    return 128 + WTERMSIG(status);
  }
  return 1;
}

}  // namespace vdev::cli
