#include "hw/remote/pci_proxy_server.h"

#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "bus/pci/pci_regs.h"
#include "core/base/logging.h"

namespace vdev::remote {

// Interrupts out of the machine: an INTx level going high rings QEMU's eventfd (QEMU owns the
// interrupt controller; under TCG it may not listen, so guests poll). MSIs have nowhere to go:
// the proxy has no MSI; they are counted.
class PciProxyServer::IrqForwarder : public IrqSink {
 public:
  explicit IrqForwarder(Counters& c) : counters_(c) {}
  void SetIrq(uint32_t gsi, bool level) override {
    counters_.Increment(level ? "intx_raised" : "intx_lowered");
    absl::MutexLock l(&mu_);
    if (level && fd_.valid()) {
      const uint64_t one = 1;
      (void)!write(fd_.get(), &one, sizeof(one));
    }
  }
  void SendMsi(const MsiMessage&) override { counters_.Increment("msi_dropped"); }
  void SetFds(UniqueFd irq, UniqueFd resample) {
    absl::MutexLock l(&mu_);
    fd_ = std::move(irq);
    resample_ = std::move(resample);
  }

 private:
  Counters& counters_;
  absl::Mutex mu_;
  UniqueFd fd_ ABSL_GUARDED_BY(mu_);
  UniqueFd resample_ ABSL_GUARDED_BY(mu_);
};

PciProxyServer::PciProxyServer(Machine& machine, pci::PCIDevice& dev, UniqueFd sock)
    : machine_(machine),
      dev_(dev),
      sock_(std::move(sock)),
      irq_(std::make_unique<IrqForwarder>(counters_)) {
  for (int i = 0; i < pci::kNumBars; ++i) {
    const pci::PciBar& b = dev_.bar(i);
    if (b.size != 0 && b.region != nullptr) {
      bar_as_[i] = std::make_unique<AddressSpace>(absl::StrCat("proxy-bar", i), b.region.get());
    }
  }
  machine_.irq().set_sink(irq_.get());
}

PciProxyServer::~PciProxyServer() { machine_.irq().set_sink(nullptr); }

absl::Status PciProxyServer::Serve() {
  for (;;) {
    absl::StatusOr<MpqemuMessage> m = ReadMpqemuMessage(sock_.get());
    if (!m.ok()) {
      if (absl::IsNotFound(m.status())) return absl::OkStatus();  // QEMU went away
      counters_.Increment("bad_message");
      return m.status();
    }
    if (absl::Status s = Handle(*m); !s.ok()) return s;
  }
}

int PciProxyServer::DecodeBar(uint64_t addr, unsigned size, bool memory) const {
  for (int i = 0; i < pci::kNumBars; ++i) {
    const pci::PciBar& b = dev_.bar(i);
    if (b.size == 0 || bar_as_[i] == nullptr || b.is_io() == memory) continue;
    const uint64_t base = dev_.BarAddress(i);
    if (base == 0) continue;  // not programmed
    if (addr >= base && addr - base < b.size && size <= b.size - (addr - base)) return i;
  }
  return -1;
}

absl::Status PciProxyServer::SyncSysmem(MpqemuMessage& msg) {
  // A complete replacement. Swapped on the main loop: the data planes that touch guest memory
  // from there (TAP receive, transmit continuations) are not in the middle of a copy, and the
  // virtqueues re-translate because the generation moves.
  absl::Status result;
  machine_.main_loop().RunAndWait([&] {
    GuestMemory& mem = machine_.guest_memory();
    mem.Clear();
    for (size_t i = 0; i < msg.regions.size(); ++i) {
      MpqemuRegion& r = msg.regions[i];
      absl::Status s = mem.AdoptRegion(GuestAddr(r.gpa), r.size, std::move(r.fd), r.offset,
                                       absl::StrCat("qemu-ram", i));
      if (!s.ok() && result.ok()) result = s;
    }
  });
  counters_.Increment("sync_sysmem");
  return result;
}

absl::Status PciProxyServer::Handle(MpqemuMessage& msg) {
  uint64_t ret = 0;
  switch (msg.cmd) {
    case MpqemuCmd::kSyncSysmem:
      if (absl::Status s = SyncSysmem(msg); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat("mpqemu: SYNC_SYSMEM: ", s.message()));
      }
      return absl::OkStatus();
    case MpqemuCmd::kRet:
      // Only QEMU starts exchanges; a RET from it is out of place.
      counters_.Increment("unexpected_ret");
      return absl::InvalidArgumentError("mpqemu: unexpected RET from the peer");
    case MpqemuCmd::kPciCfgRead:
      counters_.Increment("cfg_read");
      ret = dev_.ConfigRead(msg.cfg_addr, msg.cfg_len);
      break;
    case MpqemuCmd::kPciCfgWrite:
      counters_.Increment("cfg_write");
      dev_.ConfigWrite(msg.cfg_addr, msg.cfg_val, msg.cfg_len);
      break;
    case MpqemuCmd::kBarRead:
    case MpqemuCmd::kBarWrite: {
      const bool read = msg.cmd == MpqemuCmd::kBarRead;
      const int bar = DecodeBar(msg.bar_addr, msg.bar_size, msg.bar_memory);
      if (bar < 0) {
        counters_.Increment("bar_miss");
        ret =
            read ? (msg.bar_size == 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * msg.bar_size)) - 1) : 0;
        break;
      }
      const uint64_t off = msg.bar_addr - dev_.BarAddress(bar);
      if (read) {
        counters_.Increment("bar_read");
        ret = bar_as_[bar]->ReadValue(off, msg.bar_size);
      } else {
        counters_.Increment("bar_write");
        bar_as_[bar]->Write(off, msg.bar_val, msg.bar_size);
      }
      break;
    }
    case MpqemuCmd::kSetIrqfd:
      counters_.Increment("set_irqfd");
      irq_->SetFds(std::move(msg.irq_fd), std::move(msg.resample_fd));
      return absl::OkStatus();
    case MpqemuCmd::kDeviceReset:
      counters_.Increment("device_reset");
      dev_.ResetDevice();
      break;
  }
  return SendMpqemuRet(sock_.get(), ret);
}

}  // namespace vdev::remote
