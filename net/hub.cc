#include "net/hub.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace vdev::net {
namespace {

// hubid -> ports. A port's clients live as long as the port is registered.
struct Hubs {
  absl::Mutex mu;
  std::map<std::pair<const void*, uint32_t>, std::vector<NetClientState*>> ports
      ABSL_GUARDED_BY(mu);
};
Hubs& hubs() {
  static Hubs* h = new Hubs;
  return *h;
}

}  // namespace

class HubPort::Client : public NetClientState {
 public:
  Client(std::pair<const void*, uint32_t> key, std::string name, EventLoop* loop)
      : NetClientState("hubport", std::move(name)), key_(key), loop_(loop) {}
  // A frame from this port's peer goes out of every other port (to their peers). From the loop,
  // not from here: the sender (a NIC) holds its lock, and another NIC on the hub may be sending
  // to it at the same moment.
  ssize_t ReceiveIov(const iovec* iov, int n) override {
    const size_t size = IovSize(iov, n);
    std::vector<uint8_t> frame(size);
    IovToBuf(iov, n, 0, frame.data(), size);
    loop_->Post([this, frame = std::move(frame)] {
      std::vector<NetClientState*> others;
      {
        Hubs& h = hubs();
        absl::MutexLock l(&h.mu);
        for (NetClientState* p : h.ports[key_]) {
          if (p != this) others.push_back(p);
        }
      }
      for (NetClientState* p : others) p->Send(frame.data(), frame.size());
    });
    return static_cast<ssize_t>(size);
  }

 private:
  const std::pair<const void*, uint32_t> key_;
  EventLoop* loop_;
};

void HubPort::ClassInit(qom::ObjectClass& k) {
  k.description = "a port of an Ethernet hub: frames entering one port leave by all others";
  k.AddProperty(qom::Prop("hubid", &HubPort::hubid_, uint32_t{0}, "the hub's number"));
  k.AddProperty(qom::LinkProp("netdev", &HubPort::netdev_, "a backend to wire to this port"));
}

HubPort::~HubPort() {
  if (registered_) {
    Hubs& h = hubs();
    absl::MutexLock l(&h.mu);
    auto& v = h.ports[key_];
    v.erase(std::remove(v.begin(), v.end(), clients_[0].get()), v.end());
    if (v.empty()) h.ports.erase(key_);
  }
  // Off the hub now; fan-outs already posted may still reference the client: let them finish.
  if (!clients_.empty()) loop().RunAndWait([] {});
  if (netdev_ != nullptr && !clients_.empty()) {
    clients_[0]->Disconnect();
    netdev_->Release();
  }
}

absl::Status HubPort::Complete() {
  (void)loop();
  key_ = {Root(), hubid_};  // hubs are per machine
  auto client = std::make_unique<Client>(key_, name(), &loop());
  if (netdev_ != nullptr) {
    if (netdev_ == this || netdev_->num_queues() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("hubport '", name(), "': netdev must be another single-queue backend"));
    }
    if (!netdev_->Claim()) {
      return absl::FailedPreconditionError(
          absl::StrCat("hubport '", name(), "': netdev '", netdev_->name(), "' is already in use"));
    }
    NetClientState::Connect(client.get(), netdev_->queue(0));
  }
  clients_.push_back(std::move(client));
  Hubs& h = hubs();
  absl::MutexLock l(&h.mu);
  h.ports[key_].push_back(clients_[0].get());
  registered_ = true;
  return absl::OkStatus();
}

size_t HubPort::PortCount(uint32_t hubid) const {
  Hubs& h = hubs();
  absl::MutexLock l(&h.mu);
  auto it = h.ports.find({key_.first, hubid});
  return it == h.ports.end() ? 0 : it->second.size();
}

VDEV_REGISTER_TYPE(HubPort);

}  // namespace vdev::net
