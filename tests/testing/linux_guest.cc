#include "tests/testing/linux_guest.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/testing/netns.h"

namespace vdev::testing {

std::string LinuxGuestDir() {
  const char* d = getenv("VDEV_LINUX_GUEST_DIR");
  return d != nullptr ? d : "/var/cache/vdev/linux-guest";
}

std::string LinuxGuestSkipReason() {
  if (std::string why = NetnsSkipReason(); !why.empty()) return why;
  if (Shell("command -v qemu-system-x86_64") != 0) return "qemu-system-x86 is not installed";
  if (access("/bin/busybox", X_OK) != 0) return "busybox-static is not installed";
  if (access((LinuxGuestDir() + "/vmlinuz").c_str(), R_OK) != 0) {
    return "no guest kernel in " + LinuxGuestDir() + " (scripts/linux-guest-kernel fetches it)";
  }
  return "";
}

long HostTscKhz() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("cpu MHz", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return std::lround(std::stod(line.substr(colon + 1)) * 1000);
    }
  }
  return 0;
}

std::string LinuxGuestInit(const std::string& modules, const std::string& body) {
  return absl::StrCat(R"(#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci )",
                      modules, R"(; do
  [ -f /mod/$m.ko ] && insmod /mod/$m.ko
done
)",
                      body, "echo GUEST-DONE\npoweroff -f\n");
}

LinuxGuest::~LinuxGuest() { Kill(); }

void LinuxGuest::Kill() { KillAndReap(&qemu_pid_); }

absl::Status LinuxGuest::BuildInitrd(const std::string& init) {
  const std::string root = dir_ + "/root";
  if (Shell(absl::StrCat("rm -rf ", root, " && mkdir -p ", root, "/bin ", root, "/mod ", root,
                         "/proc ", root, "/sys ", root, "/dev")) != 0 ||
      Shell(absl::StrCat("cp /bin/busybox ", root, "/bin/busybox")) != 0 ||
      Shell(absl::StrCat("cp ", LinuxGuestDir(), "/modules/*.ko ", root, "/mod/")) != 0) {
    return absl::InternalError("cannot lay out the initramfs in " + root);
  }
  std::ofstream(root + "/init") << init;
  if (chmod((root + "/init").c_str(), 0755) != 0 ||
      Shell(absl::StrCat("cd ", root, " && find . | /bin/busybox cpio -o -H newc | gzip -1 > ",
                         dir_, "/initrd.gz")) != 0) {
    return absl::InternalError("cannot pack the initramfs from " + root);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> LinuxGuest::Run(const std::vector<std::string>& devices,
                                            const GuestOptions& o) {
  std::vector<std::string> argv = {"qemu-system-x86_64",
                                   "-nodefaults",
                                   "-no-user-config",
                                   "-display",
                                   "none",
                                   "-no-reboot",
                                   "-accel",
                                   "tcg",
                                   "-M",
                                   o.machine + ",memory-backend=mem0",
                                   "-smp",
                                   std::to_string(o.cpus),
                                   "-m",
                                   "256M",
                                   "-object",
                                   "memory-backend-memfd,id=mem0,size=256M,share=on",
                                   "-kernel",
                                   LinuxGuestDir() + "/vmlinuz",
                                   "-initrd",
                                   dir_ + "/initrd.gz",
                                   "-append",
                                   "console=ttyS0 panic=-1 quiet " + o.append,
                                   "-serial",
                                   "file:" + dir_ + "/console.log"};
  if (!o.socket.empty()) {
    argv.push_back("-chardev");
    argv.push_back("socket,id=vhu0,path=" + o.socket + o.chardev);
  }
  argv.insert(argv.end(), devices.begin(), devices.end());
  unlink((dir_ + "/console.log").c_str());
  qemu_pid_ = Spawn(argv, dir_ + "/qemu.log");
  const absl::Time deadline = absl::Now() + o.timeout;
  int status = 0;
  while (absl::Now() < deadline) {
    if (waitpid(qemu_pid_, &status, WNOHANG) == qemu_pid_) {
      qemu_pid_ = 0;
      return console();
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  KillAndReap(&qemu_pid_);
  return absl::DeadlineExceededError(absl::StrCat("the guest did not power off in ",
                                                  absl::FormatDuration(o.timeout), "\nconsole:\n",
                                                  console(), "\nqemu:\n", qemu_log()));
}

std::string LinuxGuest::console() const { return Slurp(dir_ + "/console.log"); }
std::string LinuxGuest::qemu_log() const { return Slurp(dir_ + "/qemu.log"); }

}  // namespace vdev::testing
