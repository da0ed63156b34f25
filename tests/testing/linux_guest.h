// A real Linux guest for end-to-end tests and benchmarks: Debian 12's cloud kernel (fetched by
// scripts/linux-guest-kernel) in QEMU 7.2 under TCG, with a busybox initramfs whose /init loads
// the virtio modules from the kernel package, runs a script and powers off. RAM is a shared
// memfd, so a vhost-user backend can map it; the guest's console goes to a file.
//
//   LinuxGuest g(dir);                                         // dir exists, is the guest's
//   ASSERT_TRUE(g.BuildInitrd(LinuxGuestInit("failover net_failover virtio_net", body)).ok());
//   absl::StatusOr<std::string> console = g.Run(
//       {"-netdev", "vhost-user,id=net0,chardev=vhu0", "-device", "virtio-net-pci,..."}, {...});
//
// The chardev "vhu0" is a vhost-user client socket at the `socket` of GuestOptions.
#ifndef VDEV_TESTS_TESTING_LINUX_GUEST_H_
#define VDEV_TESTS_TESTING_LINUX_GUEST_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace vdev::testing {

// Where the guest kernel and its modules are ($VDEV_LINUX_GUEST_DIR, else
// /var/cache/vdev/linux-guest).
std::string LinuxGuestDir();
// Why a Linux guest cannot run here ("" when it can): root and the network namespace tools,
// qemu-system-x86, busybox-static, the guest kernel.
std::string LinuxGuestSkipReason();
// The host's TSC rate in kHz (TCG's guest TSC is the host's), from /proc/cpuinfo; 0 if unknown.
long HostTscKhz();
// The guest's /init: load virtio (and `modules`) from the kernel's modules, run `body`, print
// GUEST-DONE, power off.
std::string LinuxGuestInit(const std::string& modules, const std::string& body);

// How the guest is booted.
struct GuestOptions {
  int cpus = 1;
  std::string machine = "pc";
  std::string append;   // more kernel command line
  std::string socket;   // the vhost-user socket of chardev "vhu0" ("" for none)
  std::string chardev;  // more options of that chardev (",reconnect=1")
  absl::Duration timeout = absl::Seconds(150);
};

class LinuxGuest {
 public:
  // `dir` holds the initramfs, the console and QEMU's log.
  explicit LinuxGuest(std::string dir) : dir_(std::move(dir)) {}
  ~LinuxGuest();  // kills a QEMU still running
  LinuxGuest(const LinuxGuest&) = delete;
  LinuxGuest& operator=(const LinuxGuest&) = delete;

  // The initramfs: busybox, the kernel's modules and `init` as /init.
  absl::Status BuildInitrd(const std::string& init);
  // Boots the guest with `devices` (more QEMU options) and waits for it to power off; returns its
  // console. DeadlineExceeded (QEMU killed) when it runs past the timeout.
  absl::StatusOr<std::string> Run(const std::vector<std::string>& devices,
                                  const GuestOptions& o = {});
  // Kills a QEMU still running.
  void Kill();
  std::string console() const;
  std::string qemu_log() const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  pid_t qemu_pid_ = 0;
};

}  // namespace vdev::testing

#endif  // VDEV_TESTS_TESTING_LINUX_GUEST_H_
