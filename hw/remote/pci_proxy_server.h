// PciProxyServer: serves one of our PCI functions to a QEMU 7.2 `x-pci-proxy-dev` over the
// multi-process protocol (mpqemu.h). QEMU runs the CPU; every config-space and BAR access of the
// function comes to us, and we answer from the real device:
//
//   SYNC_SYSMEM   the guest's RAM table replaces the machine's GuestMemory (old maps and fds go),
//                 swapped on the machine's main loop so no data plane is in the middle of a copy
//   PCI_CFG*      the device's config space (we are the source of truth for IDs, BARs, caps)
//   BAR_*         decoded against the BARs the guest programmed, dispatched into the BAR's own
//                 region (an access that hits no BAR of the right kind reads all-ones, is dropped
//                 and counted)
//   SET_IRQFD     the device's INTx level is signalled on QEMU's eventfd
//   DEVICE_RESET  the device is reset
//
// Example:
//   PciProxyServer server(*machine, *pci_dev, std::move(sock));
//   absl::Status s = server.Serve();   // until QEMU closes the socket (OK) or misbehaves
//
// Thread-safety: Serve runs on one thread (the "vCPU" of the remote guest).
#ifndef VDEV_HW_REMOTE_PCI_PROXY_SERVER_H_
#define VDEV_HW_REMOTE_PCI_PROXY_SERVER_H_

#include <array>
#include <memory>

#include "absl/status/status.h"
#include "bus/pci/pci_device.h"
#include "core/base/counters.h"
#include "core/base/unique_fd.h"
#include "core/memory/irq.h"
#include "core/memory/memory.h"
#include "core/qdev/machine.h"
#include "hw/remote/mpqemu.h"

namespace vdev::remote {

class PciProxyServer {
 public:
  PciProxyServer(Machine& machine, pci::PCIDevice& dev, UniqueFd sock);
  ~PciProxyServer();

  // Serves until the peer closes the connection (OK) or sends a malformed message (the error;
  // the connection cannot be trusted after it).
  absl::Status Serve();
  // Handles one message, replying when the command wants a reply.
  absl::Status Handle(MpqemuMessage& msg);

  Counters& counters() { return counters_; }
  int sock() const { return sock_.get(); }

 private:
  class IrqForwarder;
  absl::Status SyncSysmem(MpqemuMessage& msg);
  // The BAR holding [addr, addr + size) of the given kind, or -1.
  int DecodeBar(uint64_t addr, unsigned size, bool memory) const;

  Machine& machine_;
  pci::PCIDevice& dev_;
  UniqueFd sock_;
  Counters counters_;
  std::array<std::unique_ptr<AddressSpace>, pci::kNumBars> bar_as_;
  std::unique_ptr<IrqForwarder> irq_;
};

}  // namespace vdev::remote

#endif  // VDEV_HW_REMOTE_PCI_PROXY_SERVER_H_
