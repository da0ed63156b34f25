#include "tests/testing/virtio_net_driver.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include "absl/time/clock.h"
#include "bus/virtio/virtio_uapi.h"

namespace vdev::testing {
namespace {

constexpr uint64_t kRingStride = 0x10000;     // per queue, for rings
constexpr uint64_t kBufferArea = 0x100000;    // buffers start 1 MiB above the rings
constexpr uint64_t kBufferStride = 0x200000;  // 2 MiB of buffers per queue (1024 x 2 KiB)

}  // namespace

VirtioNetDriver::VirtioNetDriver(VirtioPciDriver& pci, const GuestMemory& ram, GuestAddr base)
    : pci_(pci), ram_(ram), base_(base) {}

GuestAddr VirtioNetDriver::BufferAddr(uint16_t queue, uint16_t slot) const {
  return GuestAddr(base_.value() + kBufferArea + queue * kBufferStride +
                   uint64_t{slot} * buf_size_);
}

bool VirtioNetDriver::Init(uint64_t wanted, uint16_t pairs, uint16_t max_pairs, uint16_t ring_size,
                           uint32_t rx_buf_size, bool msix) {
  ring_size_ = ring_size;
  buf_size_ = rx_buf_size;
  auto accepted = pci_.Negotiate(wanted);
  if (!accepted) return false;
  features_ = *accepted;
  hdr_len_ = (Has(VIRTIO_NET_F_MRG_RXBUF) || Has(VIRTIO_F_VERSION_1))
                 ? sizeof(virtio_net_hdr_mrg_rxbuf)
                 : sizeof(virtio_net_hdr);
  const uint16_t nq = static_cast<uint16_t>(2 * max_pairs + (Has(VIRTIO_NET_F_CTRL_VQ) ? 1 : 0));
  queues_.assign(nq, Queue{});
  auto setup = [&](uint16_t q) {
    const uint16_t vector = msix ? static_cast<uint16_t>(1 + q) : 0xffff;
    // The control queue is smaller (64 entries).
    const uint16_t size = q == ctrl_index_ ? std::min<uint16_t>(ring_size, 64) : ring_size;
    queues_[q].ring = pci_.SetupQueue(q, GuestAddr(base_.value() + q * kRingStride), size, vector);
    return queues_[q].ring != nullptr;
  };
  for (uint16_t p = 0; p < pairs; ++p) {
    if (!setup(2 * p) || !setup(2 * p + 1)) return false;
  }
  if (Has(VIRTIO_NET_F_CTRL_VQ)) {
    ctrl_index_ = static_cast<uint16_t>(2 * max_pairs);
    if (!setup(ctrl_index_)) return false;
  }
  pci_.DriverOk();
  return true;
}

uint16_t VirtioNetDriver::PostBuffer(uint16_t queue, uint32_t len, bool write) {
  Queue& q = queues_[queue];
  const uint16_t slot = q.next_slot;
  q.next_slot = static_cast<uint16_t>((q.next_slot + 1) % q.ring->size());
  const uint16_t head = q.ring->AddChain({{BufferAddr(queue, slot), len, write}});
  ++q.in_flight;
  q.ring->Publish(head);
  return head;
}

void VirtioNetDriver::FillRx(uint16_t pair, int count, bool kick) {
  const uint16_t q = static_cast<uint16_t>(2 * pair);
  for (int i = 0; i < count && queues_[q].in_flight < queues_[q].ring->size(); ++i) {
    PostBuffer(q, buf_size_, true);
  }
  if (kick) pci_.Kick(q);
}

bool VirtioNetDriver::Send(uint16_t pair, const std::vector<uint8_t>& frame,
                           const virtio_net_hdr& hdr, bool kick) {
  const uint16_t q = static_cast<uint16_t>(2 * pair + 1);
  if (queues_[q].in_flight >= queues_[q].ring->size()) ReclaimTx(pair);
  if (queues_[q].in_flight >= queues_[q].ring->size()) return false;
  if (hdr_len_ + frame.size() > buf_size_) return false;
  const uint16_t slot = queues_[q].next_slot;
  std::vector<uint8_t> buf(hdr_len_ + frame.size());
  virtio_net_hdr_mrg_rxbuf h{};
  h.hdr = hdr;
  std::memcpy(buf.data(), &h, hdr_len_);
  std::memcpy(buf.data() + hdr_len_, frame.data(), frame.size());
  ram_.Write(BufferAddr(q, slot), absl::MakeConstSpan(buf));
  PostBuffer(q, static_cast<uint32_t>(buf.size()), false);
  if (kick) pci_.Kick(q);
  return true;
}

int VirtioNetDriver::ReclaimTx(uint16_t pair) {
  Queue& q = queues_[2 * pair + 1];
  const int n = static_cast<int>(q.ring->TakeUsed().size());
  // (Hostile tests also publish chains of their own: never below zero.)
  q.in_flight = static_cast<uint16_t>(std::max(0, q.in_flight - n));
  return n;
}

bool VirtioNetDriver::WaitTx(uint16_t pair, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    ReclaimTx(pair);
    if (queues_[2 * pair + 1].in_flight == 0) return true;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return false;
}

std::vector<VirtioNetDriver::RxFrame> VirtioNetDriver::TakeRx(uint16_t pair, bool refill) {
  const uint16_t qi = static_cast<uint16_t>(2 * pair);
  Queue& q = queues_[qi];
  std::vector<RxFrame> out;
  auto used = q.ring->TakeUsed();
  size_t consumed = 0;
  for (size_t i = 0; i < used.size();) {
    RxFrame f;
    std::vector<uint8_t> first(used[i].second);
    ram_.Read(BufferAddr(qi, static_cast<uint16_t>(used[i].first)), absl::MakeSpan(first));
    if (first.size() < static_cast<size_t>(hdr_len_)) {
      ++i;
      ++consumed;
      continue;  // malformed: shows up as a missing frame
    }
    std::memcpy(&f.hdr, first.data(), hdr_len_);
    f.buffers = Has(VIRTIO_NET_F_MRG_RXBUF) ? f.hdr.num_buffers : 1;
    f.data.assign(first.begin() + hdr_len_, first.end());
    for (uint16_t b = 1; b < f.buffers && i + b < used.size(); ++b) {
      std::vector<uint8_t> more(used[i + b].second);
      ram_.Read(BufferAddr(qi, static_cast<uint16_t>(used[i + b].first)), absl::MakeSpan(more));
      f.data.insert(f.data.end(), more.begin(), more.end());
    }
    i += std::max<uint16_t>(f.buffers, 1);
    consumed += std::max<uint16_t>(f.buffers, 1);
    out.push_back(std::move(f));
  }
  q.in_flight = static_cast<uint16_t>(q.in_flight - std::min<size_t>(consumed, q.in_flight));
  if (refill && consumed > 0) FillRx(pair, static_cast<int>(consumed));
  return out;
}

std::vector<VirtioNetDriver::RxFrame> VirtioNetDriver::WaitRx(uint16_t pair, size_t n,
                                                              absl::Duration timeout, bool refill) {
  std::vector<RxFrame> all;
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {  // at least one look, even with no time to wait
    for (auto& f : TakeRx(pair, refill)) all.push_back(std::move(f));
    if (all.size() >= n || absl::Now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return all;
}

std::optional<uint8_t> VirtioNetDriver::Ctrl(uint8_t cls, uint8_t cmd,
                                             const std::vector<uint8_t>& data) {
  Queue& q = queues_[ctrl_index_];
  const GuestAddr req = BufferAddr(ctrl_index_, 0);
  const GuestAddr ack = BufferAddr(ctrl_index_, 1);
  std::vector<uint8_t> buf = {cls, cmd};
  buf.insert(buf.end(), data.begin(), data.end());
  ram_.Write(req, absl::MakeConstSpan(buf));
  const uint8_t poison = 0xee;
  ram_.Write(ack, absl::MakeConstSpan(&poison, 1));
  const uint16_t head =
      q.ring->AddChain({{req, static_cast<uint32_t>(buf.size()), false}, {ack, 1, true}});
  q.ring->Publish(head);
  pci_.Kick(ctrl_index_);
  auto used = q.ring->TakeUsed();
  if (used.size() != 1 || used[0].second != 1) return std::nullopt;
  uint8_t a = 0;
  ram_.Read(ack, absl::MakeSpan(&a, 1));
  return a;
}

std::array<uint8_t, 6> VirtioNetDriver::ConfigMac() {
  std::array<uint8_t, 6> m{};
  for (int i = 0; i < 6; ++i) m[i] = static_cast<uint8_t>(pci_.DeviceConfigRead(i, 1));
  return m;
}

uint16_t VirtioNetDriver::ConfigStatus() {
  return static_cast<uint16_t>(pci_.DeviceConfigRead(offsetof(virtio_net_config, status), 2));
}

uint16_t VirtioNetDriver::ConfigMaxPairs() {
  return static_cast<uint16_t>(
      pci_.DeviceConfigRead(offsetof(virtio_net_config, max_virtqueue_pairs), 2));
}

}  // namespace vdev::testing
