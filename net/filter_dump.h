// filter-dump: writes every frame passing a netdev to a pcap file (QEMU's -object filter-dump).
//
//   -netdev tap,id=n0,... -object filter-dump,id=f0,netdev=n0,file=dump.pcap[,maxlen=65536]
//
// The file (created or truncated) gets a pcap header (magic 0xa1b2c3d4 in host byte order,
// version 2.4, snaplen = maxlen, link type 1: Ethernet), then one record per frame, in both
// directions, on every queue of the netdev: a wall-clock timestamp (CLOCK_REALTIME, microseconds),
// the captured length (at most maxlen bytes) and the frame's length. A virtio-net header carried
// in front of the frame (NetClientState::CarriedVnetHdrLen) is not part of the capture. Records
// are written with one write() each, so a concurrent reader never sees half a header; write
// errors are counted (write_errors) and the frame goes on undisturbed. The file may be a FIFO
// (`wireshark -k -i FIFO`): Complete then waits for a reader, as QEMU does, a slow reader slows
// the traffic, and a reader that goes away costs write errors, not a SIGPIPE.
//
// The filter holds a link to the netdev, so the netdev cannot be deleted while the filter exists
// (delete the filter first); if the netdev goes first anyway (machine teardown), the link is
// cleared and the filter only closes its file.
//
// Thread-safety: Observe runs on any thread that moves frames, concurrently; records are written
// under one lock. Control-plane calls (Complete, destruction) on the machine's thread.
#ifndef VDEV_NET_FILTER_DUMP_H_
#define VDEV_NET_FILTER_DUMP_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "core/base/counters.h"
#include "core/base/unique_fd.h"
#include "net/net.h"
#include "net/netdev.h"
#include "qom/object.h"
#include "qom/user_creatable.h"

namespace vdev::net {

class FilterDump : public qom::Object, public qom::UserCreatable, public NetFilter {
 public:
  static constexpr char kTypeName[] = "filter-dump";
  static constexpr const char* kInterfaces[] = {qom::UserCreatable::kTypeName};
  using Parent = qom::Object;
  static void ClassInit(qom::ObjectClass& k);

  ~FilterDump() override;
  absl::Status Complete() override;
  // Attached to its netdev: the link and the file stay as they are.
  bool PropertiesFrozen() const override { return attached_; }

  // NetFilter.
  void Observe(const NetClientState& nc, const iovec* iov, int n, bool sent_by_netdev) override;

  // frames (records written), write_errors.
  Counters& counters() { return counters_; }

 private:
  // Properties.
  Netdev* netdev_ = nullptr;
  std::string file_;
  uint32_t maxlen_ = 65536;

  bool attached_ = false;  // AddFilter was called on every queue of netdev_
  Counters counters_;
  Counter* frames_ = counters_.Get("frames");
  Counter* write_errors_ = counters_.Get("write_errors");

  absl::Mutex mu_;
  UniqueFd fd_ ABSL_GUARDED_BY(mu_);
  bool fifo_ ABSL_GUARDED_BY(mu_) = false;  // writes may raise SIGPIPE: block it around them
  std::vector<uint8_t> record_ ABSL_GUARDED_BY(mu_);  // the record being written
};

}  // namespace vdev::net

#endif  // VDEV_NET_FILTER_DUMP_H_
