#include "net/tap.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"
#include "core/loop/io_uring.h"
#include "net/tap_queue_internal.h"
#include "net/vhost_net.h"
#include "net/virtio_net_uapi.h"

namespace vdev::net {
namespace {

std::string Errno(const char* what) { return absl::StrCat(what, ": ", strerror(errno)); }

}  // namespace

void Tap::ClassInit(qom::ObjectClass& k) {
  k.description = "Linux TAP interface";
  k.AddProperty(qom::Prop("ifname", &Tap::ifname_, std::string(""),
                          "interface name (created if absent; default: tapN)"));
  k.AddProperty(qom::Prop("fd", &Tap::fd_, int32_t{-1}, "an open TAP fd to use (taken over)"));
  k.AddProperty(qom::Prop("queues", &Tap::queues_, uint32_t{1},
                          "number of queues (IFF_MULTI_QUEUE when > 1)"));
  k.AddProperty(qom::EnumProp("vnet_hdr", &Tap::vnet_hdr_, qom::OnOffAuto::kAuto,
                              qom::OnOffAutoNames(),
                              "carry virtio-net headers (IFF_VNET_HDR) for checksum/GSO offload"));
  k.AddProperty(qom::Prop("script", &Tap::script_, std::string(""),
                          "must be empty or 'no' (helper scripts are not run)"));
  k.AddProperty(qom::Prop("downscript", &Tap::downscript_, std::string(""),
                          "must be empty or 'no' (helper scripts are not run)"));
  k.AddProperty(qom::Prop("sndbuf", &Tap::sndbuf_, qom::Size{0},
                          "send buffer limit in bytes (TUNSETSNDBUF; 0: unlimited)"));
  k.AddProperty(qom::Prop("x-uring", &Tap::uring_, true,
                          "batch TAP reads and writes with io_uring (with an unlimited sndbuf)"));
  k.AddProperty(qom::EnumProp(
      "vhost", &Tap::vhost_, qom::OnOffAuto::kOff, qom::OnOffAutoNames(),
      "vhost-net offload: the kernel serves the rings (auto: when /dev/vhost-net opens)"));
  k.AddProperty(qom::Prop("vhostfd", &Tap::vhostfd_, std::string(""),
                          "open /dev/vhost-net fds, one per queue (N[:N...]), taken over"));
}

Tap::~Tap() {
  if (clients_.empty()) return;
  OnLoop([&] {
    for (auto& c : clients_) static_cast<TapQueue*>(c.get())->Stop();
  });
  clients_.clear();
}

int Tap::fd(size_t queue) const {
  return queue < clients_.size() ? static_cast<TapQueue*>(clients_[queue].get())->fd() : -1;
}

absl::Status Tap::Complete() {
  const std::string ctx = absl::StrCat("tap '", name(), "'");
  for (const std::string* s : {&script_, &downscript_}) {
    if (!s->empty() && *s != "no") {
      return absl::InvalidArgumentError(
          absl::StrCat(ctx, ": script=", *s,
                       " is not supported: vdev runs no helper scripts; use script=no and "
                       "configure the interface yourself"));
    }
  }
  if (queues_ < 1 || queues_ > 256) {
    return absl::InvalidArgumentError(absl::StrCat(ctx, ": queues must be 1..256, got ", queues_));
  }
  if (vhost_ != qom::OnOffAuto::kOff || !vhostfd_.empty()) {
    if (absl::Status s = OpenVhost(); !s.ok()) {
      vhost_fds_.clear();
      if (vhost_ != qom::OnOffAuto::kAuto || !vhostfd_.empty()) {
        return absl::Status(s.code(), absl::StrCat(ctx, ": vhost=on: ", s.message()));
      }
    }
  }
  if (queues_ < 1 || queues_ > 256) {
    return absl::InvalidArgumentError(absl::StrCat(ctx, ": queues must be 1..256, got ", queues_));
  }
  if (fd_ >= 0 && (queues_ != 1 || !ifname_.empty())) {
    return absl::InvalidArgumentError(
        absl::StrCat(ctx, ": fd= takes one queue and excludes ifname="));
  }
  if (ifname_.size() >= IFNAMSIZ) {
    return absl::InvalidArgumentError(
        absl::StrCat(ctx, ": ifname '", ifname_, "' is longer than ", IFNAMSIZ - 1, " characters"));
  }
  (void)loop();
  if (absl::Status s = OpenQueues(); !s.ok()) {
    clients_.clear();
    return s;
  }
  absl::Status s;
  OnLoop([&] {
    for (auto& c : clients_) {
      if (s.ok()) s = static_cast<TapQueue*>(c.get())->Start(loop());
    }
  });
  if (!s.ok()) {
    OnLoop([&] {
      for (auto& c : clients_) static_cast<TapQueue*>(c.get())->Stop();
    });
    clients_.clear();
    return absl::Status(s.code(), absl::StrCat(ctx, ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status Tap::OpenVhost() {
  if (vhostfd_.empty()) {
    // The device first: a machine without it gets the line that says so.
    for (uint32_t q = 0; q < queues_; ++q) {
      VDEV_ASSIGN_OR_RETURN(UniqueFd fd, OpenVhostNet());
      vhost_fds_.push_back(std::move(fd));
    }
    return absl::OkStatus();
  }
  // vhostfd=N[:N...]: one open /dev/vhost-net fd per queue, taken over once all are valid (a
  // refused list closes none of them).
  std::vector<int> fds;
  for (absl::string_view part : absl::StrSplit(vhostfd_, ':')) {
    int n;
    if (!absl::SimpleAtoi(part, &n) || n < 0 || fcntl(n, F_GETFD) < 0) {
      return absl::InvalidArgumentError(absl::StrCat("vhostfd '", part, "' is not an open fd"));
    }
    if (std::find(fds.begin(), fds.end(), n) != fds.end()) {
      return absl::InvalidArgumentError(absl::StrCat("vhostfd ", n, " is named twice"));
    }
    if (n == fd_)
      return absl::InvalidArgumentError(absl::StrCat("vhostfd ", n, " is the TAP's fd="));
    fds.push_back(n);
  }
  if (fds.size() != queues_) {
    return absl::InvalidArgumentError(
        absl::StrCat("vhostfd= names ", fds.size(), " fds for ", queues_, " queues"));
  }
  for (int n : fds) vhost_fds_.emplace_back(n);
  return absl::OkStatus();
}

int Tap::vhost_fd(size_t queue) const {
  return queue < vhost_fds_.size() ? vhost_fds_[queue].get() : -1;
}

absl::Status Tap::OpenQueues() {
  const std::string ctx = absl::StrCat("tap '", name(), "'");
  std::vector<UniqueFd> fds;
  if (fd_ >= 0) {
    UniqueFd fd(fd_);
    fd_ = -1;  // ours now
    ifreq ifr{};
    if (ioctl(fd.get(), TUNGETIFF, &ifr) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(ctx, ": fd ", fd.get(), " is not a TAP device (", Errno("TUNGETIFF"), ")"));
    }
    if (!(ifr.ifr_flags & IFF_TAP) || !(ifr.ifr_flags & IFF_NO_PI)) {
      return absl::InvalidArgumentError(
          absl::StrCat(ctx, ": fd ", fd.get(), " must be a TAP opened with IFF_TAP | IFF_NO_PI"));
    }
    const bool has = ifr.ifr_flags & IFF_VNET_HDR;
    if (vnet_hdr_ == qom::OnOffAuto::kOn && !has) {
      return absl::InvalidArgumentError(
          absl::StrCat(ctx, ": vnet_hdr=on but fd ", fd.get(), " was opened without IFF_VNET_HDR"));
    }
    vnet_hdr_enabled_ = has && vnet_hdr_ != qom::OnOffAuto::kOff;
    if (has && !vnet_hdr_enabled_) {
      return absl::InvalidArgumentError(
          absl::StrCat(ctx, ": vnet_hdr=off but fd ", fd.get(), " carries vnet headers"));
    }
    actual_ifname_ = ifr.ifr_name;
    const int fl = fcntl(fd.get(), F_GETFL);
    if (fl < 0 || fcntl(fd.get(), F_SETFL, fl | O_NONBLOCK) != 0) {
      return absl::InternalError(absl::StrCat(ctx, ": ", Errno("fcntl")));
    }
    fds.push_back(std::move(fd));
  } else {
    unsigned features = 0;
    {
      auto probe = UniqueFd::Open("/dev/net/tun", O_RDWR | O_CLOEXEC);
      if (!probe.ok()) {
        return absl::Status(
            probe.status().code(),
            absl::StrCat(ctx, ": cannot open /dev/net/tun: ", probe.status().message()));
      }
      if (ioctl(probe->get(), TUNGETFEATURES, &features) != 0) features = 0;
    }
    if (vnet_hdr_ == qom::OnOffAuto::kOn && !(features & IFF_VNET_HDR)) {
      return absl::FailedPreconditionError(
          absl::StrCat(ctx, ": vnet_hdr=on but the kernel's TAP lacks IFF_VNET_HDR"));
    }
    vnet_hdr_enabled_ = vnet_hdr_ != qom::OnOffAuto::kOff && (features & IFF_VNET_HDR);
    multi_queue_ = queues_ > 1;
    if (multi_queue_ && !(features & IFF_MULTI_QUEUE)) {
      return absl::FailedPreconditionError(
          absl::StrCat(ctx, ": queues=", queues_, " but the kernel's TAP lacks IFF_MULTI_QUEUE"));
    }
    std::string name = ifname_;
    for (uint32_t q = 0; q < queues_; ++q) {
      auto fd = UniqueFd::Open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
      if (!fd.ok()) {
        return absl::Status(
            fd.status().code(),
            absl::StrCat(ctx, ": cannot open /dev/net/tun: ", fd.status().message()));
      }
      ifreq ifr{};
      ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnet_hdr_enabled_ ? IFF_VNET_HDR : 0) |
                      (multi_queue_ ? IFF_MULTI_QUEUE : 0);
      std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
      if (ioctl(fd->get(), TUNSETIFF, &ifr) != 0) {
        const int err = errno;
        std::string hint;
        if (err == EPERM) hint = " (needs CAP_NET_ADMIN)";
        if (err == EBUSY) hint = " (the interface is in use, or its flags differ)";
        if (err == EINVAL && !multi_queue_) hint = " (an existing interface with other flags?)";
        return absl::FailedPreconditionError(
            absl::StrCat(ctx, ": cannot create TAP '", name, "': ", strerror(err), hint));
      }
      name = ifr.ifr_name;  // the kernel's choice for "tap%d"
      fds.push_back(std::move(*fd));
    }
    actual_ifname_ = name;
  }
  // As QEMU: no limit unless one is given.
  const int sndbuf = sndbuf_.bytes == 0 || sndbuf_.bytes > INT_MAX ? INT_MAX : int(sndbuf_.bytes);
  for (auto& fd : fds) {
    int v = sndbuf;
    if (ioctl(fd.get(), TUNSETSNDBUF, &v) != 0) {
      return absl::InternalError(absl::StrCat(ctx, ": ", Errno("TUNSETSNDBUF")));
    }
  }
  for (size_t q = 0; q < fds.size(); ++q) {
    std::unique_ptr<TapQueue> c =
        NewTapQueue(fds.size() == 1 ? name() : absl::StrCat(name(), ".", q), actual_ifname_,
                    multi_queue_, std::move(fds[q]), vnet_hdr_enabled_);
    if (uring_) c->EnableBatching(sndbuf_.bytes == 0);
    clients_.push_back(std::move(c));
  }
  return absl::OkStatus();
}

VDEV_REGISTER_TYPE(Tap);

}  // namespace vdev::net
