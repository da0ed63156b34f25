#include "apps/vdev/cli.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <optional>
#include <ostream>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "apps/vdev/report.h"
#include "apps/vdev/serve_qemu.h"
#include "bus/pci/pci_bus.h"
#include "bus/pci/pci_info.h"
#include "core/qdev/help.h"
#include "core/qdev/introspect.h"
#include "core/qdev/machine.h"
#include "core/qdev/options.h"
#include "core/qdev/plugin.h"

namespace vdev::cli {
namespace {

constexpr char kUsage[] =
    "usage: vdev [-machine OPTS] [-plugin PATH]... [-object OPTS]... [-chardev OPTS]...\n"
    "            [-netdev OPTS]... [-device OPTS]... [--print WHAT]...\n"
    "\n"
    "Builds a machine from QEMU-style options and prints what was built.\n"
    "  -machine TYPE[,prop=value...]   machine type (default: the default machine; 'help' lists)\n"
    "  -plugin [file=]PATH             load a device plugin (.so) before anything else\n"
    "  -object TYPE,id=ID[,...]        create a user-creatable object at /objects/ID\n"
    "  -chardev BACKEND,id=ID[,...]    create a character device backend at /chardevs/ID\n"
    "  -netdev TYPE,id=ID[,...]        create a network backend at /netdevs/ID\n"
    "  -device DRIVER[,prop=value...]  add a device ('help' lists drivers, DRIVER,help its "
    "options)\n"
    "  --print qtree|qom-tree|qom-dot|types|plugins|pci|mtree\n"
    "  --dump-dtb FILE                 write the machine's device tree (machines that have one)\n"
    "  --version, -h/--help\n"
    "\n"
    "       vdev serve [options above]\n"
    "Builds the machine and serves its backends (vhost-user-backend: docs/vhost.md) until SIGINT\n"
    "or SIGTERM, then tears it down (socket files are removed) and exits 0.\n"
    "\n"
    "       vdev serve-qemu [options above] -- qemu-system-x86_64 [args with @FD:<device id>@]\n"
    "Serves the named PCI devices to QEMU through x-pci-proxy-dev (docs/serve-qemu.md).\n";

struct Arg {
  std::string option;  // without dashes: "device", "print"...
  std::string value;
};

bool TakesValue(const std::string& o) {
  return o == "machine" || o == "plugin" || o == "object" || o == "chardev" || o == "netdev" ||
         o == "device" || o == "print" || o == "dump-dtb";
}

std::string Implied(const std::string& option) {
  if (option == "device") return "driver";
  if (option == "machine") return "type";
  return qom::ObjectGroupFor(option).implied_key;
}

}  // namespace

namespace {
int RunWith(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
            const std::function<int(Machine&)>& then);
}  // namespace

int Run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  if (!args.empty() && args[0] == "serve") {
    // Blocked before any loop thread exists, so that only sigwait below sees them.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
    std::vector<std::string> rest(args.begin() + 1, args.end());
    return RunWith(rest, out, err, [&](Machine& m) {
      err << "vdev: serving; SIGINT or SIGTERM stops\n";
      err.flush();
      int sig = 0;
      sigwait(&stop, &sig);
      PrintCounters(m, out);  // what went through, then the machine is torn down on return
      return 0;
    });
  }
  if (!args.empty() && args[0] == "serve-qemu") {
    auto sep = std::find(args.begin() + 1, args.end(), std::string("--"));
    if (sep == args.end()) {
      err << "vdev: serve-qemu: expects 'vdev serve-qemu [vdev options] -- qemu-system-x86_64 "
             "[args]'\n";
      return 1;
    }
    std::vector<std::string> vdev_args(args.begin() + 1, sep);
    std::vector<std::string> qemu_args(sep + 1, args.end());
    return RunWith(vdev_args, out, err,
                   [&](Machine& m) { return ServeQemu(m, qemu_args, out, err); });
  }
  return RunWith(args, out, err, nullptr);
}

namespace {
int RunWith(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
            const std::function<int(Machine&)>& then) {
  auto fail = [&](absl::string_view where, absl::string_view msg) {
    err << "vdev: " << where << (where.empty() ? "" : ": ") << msg << "\n";
    return 1;
  };

  std::vector<Arg> parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    if (a == "-h" || a == "--help" || a == "-help") {
      out << kUsage;
      return 0;
    }
    if (a == "--version" || a == "-version") {
      out << "vdev " << VDEV_VERSION_STRING << "\n";
      return 0;
    }
    std::string o = a;
    if (o.rfind("--", 0) == 0) {
      o = o.substr(2);
    } else if (o.rfind("-", 0) == 0) {
      o = o.substr(1);
    } else {
      return fail("", absl::StrCat("unexpected argument '", a, "' (see vdev --help)"));
    }
    if (!TakesValue(o)) return fail("", absl::StrCat("unknown option '", a, "' (see vdev --help)"));
    if (i + 1 >= args.size()) return fail(a, "option needs a value");
    parsed.push_back(Arg{o, args[++i]});
  }

  // Plugins first, so their types are known to everything after. "-plugin PATH" and
  // "-plugin file=PATH" (QEMU's spelling) are the same; commas in PATH are doubled.
  for (const Arg& a : parsed) {
    if (a.option != "plugin") continue;
    const std::string where = absl::StrCat("-plugin ", a.value);
    auto opts = QemuOpts::Parse(a.value, "file");
    if (!opts.ok()) return fail(where, opts.status().message());
    std::optional<std::string> file = opts->Take("file");
    if (!opts->entries().empty()) {
      return fail(where, absl::StrCat("Invalid parameter '", opts->entries().front().first, "'"));
    }
    if (!file || file->empty()) return fail(where, "Parameter 'file' is missing");
    auto loaded = LoadPlugin(*file);
    if (!loaded.ok()) return fail(where, loaded.status().message());
  }
  if (absl::Status s = qom::TypeRegistry::Global().InitializeAll(); !s.ok()) {
    return fail("type registry", s.message());
  }

  // Help forms answer and exit.
  for (const Arg& a : parsed) {
    if (a.option == "plugin" || a.option == "print" || a.option == "dump-dtb") continue;
    auto opts = QemuOpts::Parse(a.value, Implied(a.option));
    if (!opts.ok()) return fail(absl::StrCat("-", a.option, " ", a.value), opts.status().message());
    if (!opts->help()) continue;
    auto text = HelpFor(a.option, a.value);
    if (!text.ok()) return fail(absl::StrCat("-", a.option, " ", a.value), text.status().message());
    out << *text;
    return 0;
  }

  std::string machine_opts;
  for (const Arg& a : parsed) {
    if (a.option == "machine") machine_opts = a.value;  // the last one wins, as in QEMU
  }
  auto machine = Machine::Create(machine_opts);
  if (!machine.ok()) {
    return fail(absl::StrCat("-machine ", machine_opts), machine.status().message());
  }
  Machine& m = **machine;

  // Backends before the devices that link to them, each group in command-line order. As in
  // QEMU, network filters (-object filter-*) come after the netdevs they attach to.
  auto is_late = [](absl::string_view v) {
    absl::string_view type = v.substr(0, v.find(','));
    if (absl::ConsumePrefix(&type, "qom-type=")) {
    }
    return absl::StartsWith(type, "filter-");
  };
  for (const auto& [group, late] : std::vector<std::pair<const char*, bool>>{
           {"object", false}, {"chardev", false}, {"netdev", false}, {"object", true}}) {
    for (const Arg& a : parsed) {
      if (a.option != group || (a.option == "object" && is_late(a.value) != late)) continue;
      auto obj = m.ObjectAdd(group, a.value);
      if (!obj.ok()) return fail(absl::StrCat("-", a.option, " ", a.value), obj.status().message());
    }
  }
  for (const Arg& a : parsed) {
    if (a.option != "device") continue;
    auto dev = m.DeviceAdd(a.value);
    if (!dev.ok()) return fail(absl::StrCat("-device ", a.value), dev.status().message());
  }
  m.Done();
  if (then) return then(m);

  for (const Arg& a : parsed) {
    if (a.option != "dump-dtb") continue;
    auto dtb = m.GenerateDtb();
    if (!dtb.ok()) return fail(absl::StrCat("--dump-dtb ", a.value), dtb.status().message());
    std::ofstream f(a.value, std::ios::binary);
    f.write(reinterpret_cast<const char*>(dtb->data()), static_cast<std::streamsize>(dtb->size()));
    f.close();
    if (!f) return fail(absl::StrCat("--dump-dtb ", a.value), "cannot write the file");
  }
  bool printed = false;
  for (const Arg& a : parsed) {
    if (a.option != "print") continue;
    printed = true;
    if (a.value == "qtree") {
      out << FormatQtree(m);
    } else if (a.value == "qom-tree") {
      out << FormatQomTree(m.root());
    } else if (a.value == "qom-dot") {
      out << FormatQomDot(m.root());
    } else if (a.value == "pci") {
      auto* root = qom::DynamicCast<pci::PCIBus>(m.FindBus("pci.0"));
      if (root == nullptr) return fail("--print pci", "this machine has no PCI bus 'pci.0'");
      out << pci::FormatPciInfo(*root);
    } else if (a.value == "mtree") {
      out << FormatFlatView(m.memory_space()) << FormatFlatView(m.io_space());
    } else if (a.value == "types") {
      out << FormatTypes();
    } else if (a.value == "plugins") {
      for (const LoadedPlugin& p : LoadedPlugins()) {
        out << p.name << " (" << p.path << "): " << absl::StrJoin(p.types, ", ") << "\n";
      }
    } else {
      return fail(absl::StrCat("--print ", a.value),
                  "expects one of qtree, qom-tree, qom-dot, types, plugins, pci, mtree");
    }
  }
  if (!printed) {
    size_t n = m.peripheral().child_count() + m.peripheral_anon().child_count();
    out << "machine '" << m.type_name() << "' built with " << n
        << " user device(s); use --print qtree|qom-tree to see it\n";
  }
  return 0;
}

}  // namespace

}  // namespace vdev::cli
