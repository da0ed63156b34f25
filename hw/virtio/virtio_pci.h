// VirtIOPCIProxy: the virtio-over-PCI transport (VIRTIO 1.2 §4.1), the base of every
// `virtio-*-pci` device. It is a PCI function (vendor 0x1af4) that owns a virtio bus with one
// VirtIODevice on it and maps the virtio registers onto PCI:
//
//   BAR0  I/O, legacy interface (transitional devices only, `disable-legacy=off`)
//   BAR1  MSI-X table and PBA (`vectors` > 0)
//   BAR4  modern interface, one 32-bit non-prefetchable memory BAR (`modern-bar64=on`: 64-bit):
//           0x0000 common configuration   (vendor capability type 1)
//           0x1000 ISR status             (type 3, read-to-clear)
//           0x2000 device configuration   (type 4)
//           0x3000 notifications          (type 2, queue i at 0x3000 + 4 * i)
//         plus the PCI configuration access capability (type 5), which iPXE requires.
//
// Device IDs: 0x1040 + virtio id (modern only, revision 1) or the legacy 0x1000-range id
// (transitional, revision 0); subsystem 0x1af4:<virtio id>. Interrupts: MSI-X vectors chosen by
// the driver per queue and for config changes; without MSI-X, INTx with the ISR register.
//
//   -device virtio-rng-pci[,disable-legacy=off][,disable-modern=on][,vectors=N][,modern-bar64=on]
//
// Thread-safety: register accesses arrive from vCPU threads through the address spaces; the
// transport's state is guarded by `mu_`, and the device serialises itself.
#ifndef VDEV_HW_VIRTIO_VIRTIO_PCI_H_
#define VDEV_HW_VIRTIO_VIRTIO_PCI_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "bus/pci/pci_device.h"
#include "bus/virtio/virtio_bus.h"
#include "bus/virtio/virtio_device.h"
#include "bus/virtio/virtio_regs.h"

namespace vdev::virtio {

class VirtIOPCIProxyClass : public pci::PCIDeviceClass {
 public:
  // The QOM type of the device every instance creates as its child "virtio-backend" when it is
  // created (QEMU's virtio_instance_init_common), and plugs into its bus at realize.
  std::string backend_type;
  // Declares every property of `backend_type` (except those the proxy has already) as an alias:
  // a proxy property with the same name, type, help and default whose value lives in the
  // backend, parsed and checked once, when it is set (QEMU's qdev_alias_all_properties).
  void AliasBackendProperties();
};

class VirtIOPCIProxy : public pci::PCIDevice, public VirtioTransport {
 public:
  static constexpr char kTypeName[] = "virtio-pci";
  static constexpr bool kAbstract = true;
  using Parent = pci::PCIDevice;
  using Class = VirtIOPCIProxyClass;
  static void ClassInit(VirtIOPCIProxyClass& k);

  static constexpr int kLegacyBar = 0;
  static constexpr int kMsixBar = 1;
  static constexpr int kModernBar = 4;
  static constexpr uint32_t kCommonOffset = 0x0000;
  static constexpr uint32_t kIsrOffset = 0x1000;
  static constexpr uint32_t kDeviceOffset = 0x2000;
  static constexpr uint32_t kNotifyOffset = 0x3000;
  static constexpr uint32_t kNotifyMultiplier = 4;

  VirtIOPCIProxy();
  ~VirtIOPCIProxy() override;

  const VirtIOPCIProxyClass& proxy_class() const {
    return static_cast<const VirtIOPCIProxyClass&>(object_class());
  }
  VirtioBus& bus() { return *bus_; }
  // The plugged device (realized proxies), or nullptr.
  VirtIODevice* vdev() const { return bus_->device(); }
  // The child "virtio-backend", from creation on (nullptr when the class names no backend).
  VirtIODevice* backend() const { return backend_; }

  // ioeventfd support: the guest-physical address of queue `index`'s notification register
  // while the modern BAR is mapped (a VMM binds an eventfd there), or nullopt.
  std::optional<uint64_t> QueueNotifyAddress(uint16_t index) const;
  bool ioeventfd() const { return ioeventfd_; }
  // irqfd support: the MSI-X vector queue `index` (or, with kConfigVector, the configuration
  // change) interrupts on, and the message it sends; nullopt without MSI-X or with NO_VECTOR.
  static constexpr int kConfigVector = -1;
  std::optional<std::pair<uint16_t, MsiMessage>> InterruptRoute(int index);
  // A VMM's eventfds for queue `index` (borrowed; -1 to unset): `ioeventfd` bound at
  // QueueNotifyAddress(index), `irqfd` bound to InterruptRoute(index). Taken by a vhost data
  // plane at its next start (DRIVER_OK).
  void SetQueueEventfds(uint16_t index, int ioeventfd, int irqfd);
  int QueueIoeventfd(uint16_t index) const override;
  int QueueIrqfd(uint16_t index) const override;

  std::string DescribeCapability(uint8_t pos) const override;

  // VirtioTransport.
  void NotifyQueue(uint16_t index) override;
  void NotifyConfig() override;
  const GuestMemory* dma_memory() const override;

 protected:
  absl::Status InstancePostInit() override;
  absl::Status Realize() override;
  void Unrealize() override;
  void Reset() override;

 private:
  // Realize, step by step.
  absl::Status CheckProperties() const;
  // Plugs the backend into our bus and realizes it.
  absl::StatusOr<VirtIODevice*> RealizeBackend();
  // Unplugs the backend after a failed realize (it stays our child); returns `why` in our name.
  absl::Status DetachBackend(absl::Status why);
  // Device and subsystem IDs, revision (modern or transitional).
  absl::Status SetPciIds(VirtIODevice& vdev);
  // The modern BAR, its regions and the virtio vendor capabilities (virtio_pci_modern.cc).
  absl::Status MapModernInterface(VirtIODevice& vdev);
  // The legacy I/O BAR (virtio_pci_legacy.cc).
  void MapLegacyInterface(VirtIODevice& vdev);

  uint64_t CommonRead(uint64_t off, unsigned size);
  void CommonWrite(uint64_t off, uint64_t val, unsigned size);
  uint64_t IsrRead();
  uint64_t LegacyRead(uint64_t off, unsigned size);
  void LegacyWrite(uint64_t off, uint64_t val, unsigned size);
  void RaiseLocked(uint8_t isr_bit, uint16_t vector) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ResetInterruptsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A status write through the modern or the legacy interface.
  void WriteStatus(bool legacy, uint8_t status);
  void ConfigWritten(uint32_t offset, int size) override;
  void BeforeConfigRead(uint32_t offset, int size) override;
  // The PCI configuration access capability's window (§4.1.4.9): whether a config access touches
  // its data bytes, and the access through it.
  bool TouchesPciCfgData(uint32_t offset, int size) const;
  void PciCfgAccess(bool write);

  friend class VirtIOPCIProxyClass;
  VirtIODevice* backend_ = nullptr;  // our child "virtio-backend"

  // Properties.
  bool disable_legacy_ = true;
  bool disable_modern_ = false;
  uint32_t vectors_ = 2;
  bool ioeventfd_ = true;
  bool modern_bar64_ = false;

  VirtioBus* bus_;
  // What the driver programs: selectors, queue fields, vectors (the model every transport shares).
  VirtioRegisters regs_;
  mutable absl::Mutex mu_;
  uint8_t isr_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::pair<int, int>> queue_eventfds_ ABSL_GUARDED_BY(mu_);  // ioeventfd, irqfd
  uint8_t pci_cfg_cap_ = 0;

  std::unique_ptr<MemoryRegion> common_, isr_region_, device_, notify_, legacy_;
};

}  // namespace vdev::virtio

#endif  // VDEV_HW_VIRTIO_VIRTIO_PCI_H_
