// net_bench's shared parts: the ring layout of the software guest, the guest itself (a
// virtio-net-pci driven by a lean driver whose ring slots each own a fixed buffer), and timing.
#ifndef VDEV_BENCH_NET_BENCH_H_
#define VDEV_BENCH_NET_BENCH_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bus/virtio/virtio_uapi.h"
#include "core/qdev/machine.h"
#include "hw/net/virtio_net/pci.h"
#include "net/virtio_net_uapi.h"
#include "tests/testing/pci_guest.h"
#include "tests/testing/virtio_pci_driver.h"
#include "tests/testing/virtio_ring.h"

namespace vdev::bench {

using testing::GuestVring;
using testing::PciGuest;
using testing::VirtioPciDriver;
using Clock = std::chrono::steady_clock;

inline int Shell(const std::string& cmd) { return system((cmd + " >/dev/null 2>&1").c_str()); }

inline double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

constexpr uint64_t Bit(unsigned b) { return uint64_t{1} << b; }
constexpr uint16_t kRing = 256;
constexpr uint32_t kBuf = 2048;
constexpr int kHdr = sizeof(virtio_net_hdr_mrg_rxbuf);
constexpr uint64_t kRingBase = 0x1000000;
constexpr uint64_t kBufBase = 0x2000000;

inline std::vector<uint8_t> Frame(size_t size) {
  std::vector<uint8_t> f(size, 0);
  const uint8_t dst[6] = {0x02, 0xbe, 0xbe, 0x00, 0x00, 0x01};  // nobody's: dropped by the stack
  const uint8_t src[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  std::memcpy(f.data(), dst, 6);
  std::memcpy(f.data() + 6, src, 6);
  f[12] = 0x88;  // local experimental ethertype
  f[13] = 0xb5;
  for (size_t i = 14; i < size; ++i) f[i] = static_cast<uint8_t>(i);
  return f;
}

// A machine with one virtio-net-pci driven by a lean software guest: each ring slot has a fixed
// buffer, so recycling a buffer is publishing its descriptor again.
class Guest {
 public:
  bool Build(const std::string& netdev, uint64_t features, const std::string& chardev = "") {
    m_ = *Machine::Create("pc");
    if (!chardev.empty()) {
      if (auto c = m_->ObjectAdd("chardev", chardev); !c.ok()) {
        fprintf(stderr, "net_bench: %s\n", std::string(c.status().message()).c_str());
        return false;
      }
    }
    auto nd = m_->ObjectAdd("netdev", netdev);
    if (!nd.ok()) {
      fprintf(stderr, "net_bench: %s\n", std::string(nd.status().message()).c_str());
      return false;
    }
    netdev_ = qom::DynamicCast<net::Netdev>(*nd);
    auto d = m_->DeviceAdd("virtio-net-pci,id=nic0,netdev=n0,mac=52:54:00:12:34:56");
    if (!d.ok()) return false;
    proxy_ = static_cast<virtio::VirtIONetPCI*>(*d);
    testing::PcVirtioFunction f;
    if (!testing::ProbePcVirtio(*m_, proxy_->device_id(), &f)) return false;
    pci_guest_ = std::move(f.guest);
    fn_ = f.fn;
    drv_ = std::move(f.driver);
    if (!drv_->Negotiate(features)) return false;
    for (uint16_t q = 0; q < 2; ++q) {
      rings_[q] = drv_->SetupQueue(q, GuestAddr(kRingBase + q * 0x10000), kRing);
    }
    drv_->DriverOk();
    return true;
  }
  GuestAddr Buf(uint16_t q, uint16_t slot) const {
    return GuestAddr(kBufBase + q * 0x100000 + uint64_t{slot} * kBuf);
  }
  // Writes the descriptors once: slot i -> buffer i.
  void PrepareTx(const std::vector<uint8_t>& frame) {
    std::vector<uint8_t> b(kHdr + frame.size(), 0);
    std::memcpy(b.data() + kHdr, frame.data(), frame.size());
    for (uint16_t i = 0; i < kRing; ++i) {
      m_->guest_memory().Write(Buf(1, i), absl::MakeConstSpan(b));
      rings_[1]->WriteDesc(i, Buf(1, i).value(), static_cast<uint32_t>(b.size()), 0, 0);
    }
  }
  void PrepareRx() {
    for (uint16_t i = 0; i < kRing; ++i) {
      rings_[0]->WriteDesc(i, Buf(0, i).value(), kBuf, VRING_DESC_F_WRITE, 0);
    }
  }
  // Sends `n` frames (whole rings at a time, one kick per batch).
  void Transmit(uint64_t n) {
    GuestVring* r = rings_[1];
    uint64_t done = 0;
    uint16_t next = 0, free = kRing;
    while (done < n) {
      while (free > 0) {
        r->Publish(next);
        next = static_cast<uint16_t>((next + 1) % kRing);
        --free;
      }
      drv_->Kick(1);
      const size_t used = r->TakeUsed().size();
      free = static_cast<uint16_t>(free + used);
      done += used;
      if (used == 0) std::this_thread::yield();  // the backend holds the queue
    }
  }
  // Posts every receive buffer, once.
  void PostRx() {
    if (rx_posted_) return;
    for (uint16_t i = 0; i < kRing; ++i) rings_[0]->Publish(i);
    drv_->Kick(0);
    rx_posted_ = true;
  }
  // Gives the used receive buffers back, kicking only when the device asked (EVENT_IDX).
  template <typename Used>
  void Recycle(const Used& used) {
    GuestVring* r = rings_[0];
    const uint16_t old = r->avail_idx();
    for (const auto& u : used) r->Publish(static_cast<uint16_t>(u.first));
    const uint16_t ev = r->avail_event();
    const uint16_t now = r->avail_idx();
    if (static_cast<uint16_t>(now - ev - 1) < static_cast<uint16_t>(now - old)) drv_->Kick(0);
  }
  // Keeps the receive ring full until `n` more frames arrived after the first batch (which may
  // have been waiting in buffers posted earlier); returns the frames counted, timed from the first
  // batch. Gives up after 10 s without progress.
  uint64_t Receive(uint64_t n, Clock::time_point* start) {
    GuestVring* r = rings_[0];
    PostRx();
    uint64_t got = 0;
    bool started = false;
    auto last = Clock::now();
    while (got < n) {
      auto used = r->TakeUsed();
      if (used.empty()) {
        if (Seconds(last, Clock::now()) > 10) break;
        std::this_thread::yield();
        continue;
      }
      last = Clock::now();
      if (!started) {
        *start = last;
        started = true;
      } else {
        got += used.size();
      }
      Recycle(used);
    }
    return got;
  }
  // Moves `n` frames in through `inject(count)` (which offers the NIC up to `count` frames),
  // recycling each buffer as soon as the device used it, kicking when EVENT_IDX asks. Gives up
  // (false) after 10 s without progress.
  bool ReceiveFrom(uint64_t n, const std::function<void(int)>& inject) {
    GuestVring* r = rings_[0];
    PostRx();
    uint64_t done = 0;
    int free = kRing;
    auto last = Clock::now();
    while (done < n) {
      inject(free);
      auto used = r->TakeUsed();
      done += used.size();
      free = static_cast<int>(used.size());
      Recycle(used);
      if (!used.empty()) {
        last = Clock::now();
      } else {
        free = kRing;  // the NIC held frames back: offer more once it took them
        if (Seconds(last, Clock::now()) > 10) return false;
        std::this_thread::yield();
      }
    }
    return true;
  }
  // Host view of transmit slot `slot` (header + frame), for the baseline.
  uint8_t* TxHost(uint16_t slot, size_t len) {
    return m_->guest_memory().HostPointer(Buf(1, slot), len, false);
  }
  net::Netdev* netdev() { return netdev_; }
  virtio::VirtIONet* net() { return proxy_->net(); }

 private:
  std::unique_ptr<Machine> m_;
  net::Netdev* netdev_ = nullptr;
  virtio::VirtIONetPCI* proxy_ = nullptr;
  std::unique_ptr<PciGuest> pci_guest_;
  const PciGuest::Function* fn_ = nullptr;
  std::unique_ptr<VirtioPciDriver> drv_;
  GuestVring* rings_[2] = {nullptr, nullptr};
  bool rx_posted_ = false;
};

}  // namespace vdev::bench

#endif  // VDEV_BENCH_NET_BENCH_H_
