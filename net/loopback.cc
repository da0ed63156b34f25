#include "net/loopback.h"

#include "absl/time/clock.h"

namespace vdev::net {

class Loopback::Client : public NetClientState {
 public:
  Client(Loopback* owner, std::string name) : NetClientState("loopback", std::move(name)), owner_(owner) {}
  ssize_t ReceiveIov(const iovec* iov, int n) override { return owner_->Received(iov, n); }

 private:
  Loopback* owner_;
};

void Loopback::ClassInit(qom::ObjectClass& k) {
  k.description = "in-memory peer: counts what the NIC sends and, with reflect=on, sends it back";
  k.AddProperty(qom::Prop("reflect", &Loopback::reflect_, true,
                          "send every frame back to the NIC"));
}

Loopback::~Loopback() {
  // Frames being reflected reference the client: let the loop finish them.
  if (!clients_.empty()) loop().RunAndWait([] {});
}

absl::Status Loopback::Complete() {
  (void)loop();  // bound now, while the object is in the machine's tree
  clients_.push_back(std::make_unique<Client>(this, name()));
  return absl::OkStatus();
}

ssize_t Loopback::Received(const iovec* iov, int n) {
  const size_t size = IovSize(iov, n);
  frames_.fetch_add(1, std::memory_order_relaxed);
  bytes_.fetch_add(size, std::memory_order_relaxed);
  std::vector<uint8_t> copy;
  {
    absl::MutexLock l(&mu_);
    if (capture_ || reflect_) {
      copy.resize(size);
      IovToBuf(iov, n, 0, copy.data(), size);
    }
    if (capture_) captured_.push_back(copy);
  }
  if (reflect_) {
    // Not from inside the NIC's transmit path (it holds the NIC's lock): from the loop.
    loop().Post([this, frame = std::move(copy)] { clients_[0]->Send(frame.data(), frame.size()); });
  }
  return static_cast<ssize_t>(size);
}

ssize_t Loopback::Inject(const std::vector<uint8_t>& frame) {
  return clients_[0]->Send(frame.data(), frame.size());
}

void Loopback::SetCapture(bool on) {
  absl::MutexLock l(&mu_);
  capture_ = on;
}

std::vector<std::vector<uint8_t>> Loopback::TakeCaptured() {
  absl::MutexLock l(&mu_);
  return std::exchange(captured_, {});
}

bool Loopback::WaitCaptured(size_t n, absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return captured_.size() >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

VDEV_REGISTER_TYPE(Loopback);

}  // namespace vdev::net
