#include "net/loopback.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace vdev::net {

class Loopback::Client : public NetClientState {
 public:
  Client(Loopback* owner, size_t queue, std::string name)
      : NetClientState("loopback", std::move(name)), owner_(owner), queue_(queue) {}
  ssize_t ReceiveIov(const iovec* iov, int n) override { return owner_->Received(queue_, iov, n); }
  // What InjectBurst writes straight into a NIC's buffers; larger frames take the copy path.
  size_t MaxFrameSize() const override { return Loopback::kDirectFrame; }

 private:
  Loopback* owner_;
  const size_t queue_;
};

void Loopback::ClassInit(qom::ObjectClass& k) {
  k.description = "in-memory peer: counts what the NIC sends and, with reflect=on, sends it back";
  k.AddProperty(
      qom::Prop("reflect", &Loopback::reflect_, true, "send every frame back to the NIC"));
  k.AddProperty(qom::Prop("queues", &Loopback::queues_, uint32_t{1}, "number of queues (1..256)"));
}

Loopback::~Loopback() {
  // Frames being reflected reference the client: let the loop finish them.
  if (!clients_.empty()) loop().RunAndWait([] {});
}

absl::Status Loopback::Complete() {
  if (queues_ < 1 || queues_ > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("loopback '", name(), "': queues must be 1..256, got ", queues_));
  }
  (void)loop();  // bound now, while the object is in the machine's tree
  counts_ = std::make_unique<QueueCount[]>(queues_);
  for (uint32_t q = 0; q < queues_; ++q) {
    clients_.push_back(
        std::make_unique<Client>(this, q, queues_ == 1 ? name() : absl::StrCat(name(), ".", q)));
  }
  return absl::OkStatus();
}

ssize_t Loopback::Received(size_t queue, const iovec* iov, int n) {
  const size_t size = IovSize(iov, n);
  // One sender per queue at a time (its NIC queue, under the NIC's lock): no read-modify-write.
  QueueCount& c = counts_[queue];
  c.frames.store(c.frames.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  c.bytes.store(c.bytes.load(std::memory_order_relaxed) + size, std::memory_order_relaxed);
  std::vector<uint8_t> copy;
  const bool capture = capture_.load(std::memory_order_acquire);
  if (capture || reflect_) {
    copy.resize(size);
    IovToBuf(iov, n, 0, copy.data(), size);
  }
  if (capture) {  // counting alone takes no lock
    absl::MutexLock l(&mu_);
    captured_.push_back(copy);
    captured_queues_.push_back(queue);
  }
  if (reflect_) {
    // Not from inside the NIC's transmit path (it holds the NIC's lock): from the loop.
    loop().Post([this, queue, frame = std::move(copy)] {
      clients_[queue]->Send(frame.data(), frame.size());
    });
  }
  return static_cast<ssize_t>(size);
}

uint64_t Loopback::frames() const {
  uint64_t n = 0;
  for (uint32_t q = 0; counts_ != nullptr && q < queues_; ++q) {
    n += counts_[q].frames.load(std::memory_order_relaxed);
  }
  return n;
}

uint64_t Loopback::bytes() const {
  uint64_t n = 0;
  for (uint32_t q = 0; counts_ != nullptr && q < queues_; ++q) {
    n += counts_[q].bytes.load(std::memory_order_relaxed);
  }
  return n;
}

ssize_t Loopback::Inject(const std::vector<uint8_t>& frame, size_t queue) {
  return clients_[queue]->Send(frame.data(), frame.size());
}

int Loopback::InjectBurst(const std::vector<uint8_t>& frame, int count, size_t queue) {
  NetClientState& c = *clients_[queue];
  int n = 0;
  if (frame.size() <= kDirectFrame) {
    // As a TAP reads: straight into the NIC's buffers, a batch of them per call (one lock and
    // one readiness check per batch). The NIC checks, filters and counts each frame as usual.
    while (n < count) {
      const ssize_t tried = c.SendDirectBatch(
          count - n, [&frame](const NetClientState::BufferSet* sets, int k, ssize_t* lens) {
            for (int i = 0; i < k; ++i) {
              IovFromBuf(sets[i].iov, sets[i].n, 0, frame.data(), frame.size());
              lens[i] = static_cast<ssize_t>(frame.size());  // more than the set: truncated
            }
            return k;
          });
      if (tried <= 0) break;  // no direct path now (no buffers, a filter, a queue): copy
      n += static_cast<int>(tried);
    }
    c.EndDirectBatch();
  }
  c.BeginSendBatch();
  while (n < count && c.Send(frame.data(), frame.size()) > 0) ++n;
  c.EndSendBatch();
  return n;
}

void Loopback::SetCapture(bool on) {
  absl::MutexLock l(&mu_);
  capture_.store(on, std::memory_order_release);
}

std::vector<std::vector<uint8_t>> Loopback::TakeCaptured(std::vector<size_t>* queues) {
  absl::MutexLock l(&mu_);
  if (queues != nullptr) *queues = captured_queues_;
  captured_queues_.clear();
  return std::exchange(captured_, {});
}

bool Loopback::WaitCaptured(size_t n, absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return captured_.size() >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

VDEV_REGISTER_TYPE(Loopback);

}  // namespace vdev::net
