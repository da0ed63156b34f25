// PCIDevice: a function on a PCI bus: configuration space, BARs, capabilities, MSI, MSI-X, INTx.
//
// IDs, class, revision, subsystem and interrupt pin come from class metadata (PCIDeviceClass) set
// in class_init. The configuration space (256 bytes, 4 KiB for PCI Express functions) has
// per-byte write and write-1-to-clear masks, so a guest can only change what the spec lets it
// change. `addr=slot[.fn]` picks the slot and function; without it the bus takes the first free
// slot. Spec: PCI Local Bus 3.0 §6.
//
// A device declares BARs in Realize (RegisterBar returns the BAR's container region; the device
// adds its MMIO or I/O regions into it). Where a BAR appears is decided by the guest's writes to
// the BAR registers and the command register; the bus applies the mapping (a BAR is mapped only
// while decode is enabled and its address is valid: not 0, not wrapping, not overlapping another
// BAR or board memory).
//
//   absl::Status EduDevice::Realize() {
//     VDEV_RETURN_IF_ERROR(PCIDevice::Realize());
//     MemoryRegion* bar0 = RegisterBar(0, 1 << 20, /*type=*/0);
//     bar0->AddSubregion(0, mmio_.get());
//     VDEV_RETURN_IF_ERROR(InitMsi(0, 1, /*is_64bit=*/true, /*per_vector_mask=*/false));
//     return absl::OkStatus();
//   }
//
//   -device edu,addr=05.0        -device my-func,addr=6.1,multifunction=on
//
// Thread-safety: guest accesses (config space through the host bridge, MSI-X table and PBA
// through the memory address space) may arrive on any vCPU thread; they are serialised by the
// device's `mu_`. Interrupt calls (SetIrq, MsiNotify, MsixNotify) are thread-safe.
#ifndef VDEV_BUS_PCI_PCI_DEVICE_H_
#define VDEV_BUS_PCI_PCI_DEVICE_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "bus/pci/pci_regs.h"
#include "core/memory/guest_memory.h"
#include "core/memory/irq.h"
#include "core/memory/memory.h"
#include "core/qdev/device.h"
#include "qom/property.h"

namespace vdev::pci {

class PCIBus;
struct PciHostContext;

class PCIDeviceClass : public DeviceClass {
 public:
  uint16_t vendor_id = 0;
  uint16_t device_id = 0;
  uint8_t revision = 0;
  uint16_t class_id = 0xff00;  // class << 8 | subclass; 0xff00 = "unassigned"
  uint8_t prog_if = 0;
  uint16_t subsystem_vendor_id = 0;
  uint16_t subsystem_id = 0;
  uint8_t header_type = 0;  // 0: endpoint; kHeaderTypeBridge: PCI-to-PCI bridge (no subsystem IDs)
  uint8_t interrupt_pin = 0;  // 0: none, 1..4: INTA#..INTD#
  bool is_express = false;    // 4 KiB configuration space
};

// One BAR as the device declared it and as it is currently mapped.
struct PciBar {
  uint64_t size = 0;  // 0: not implemented
  uint32_t type = 0;  // kBarSpaceIo, or memory with kBarMemType64 / kBarMemPrefetch
  std::unique_ptr<MemoryRegion> region;  // container the device fills
  uint64_t mapped_at = kBarUnmapped;     // where the bus mapped it (kBarUnmapped: nowhere)
  bool is_io() const { return type & kBarSpaceIo; }
  bool is_64bit() const { return !is_io() && (type & kBarMemType64); }
};

class PCIDevice : public DeviceState {
 public:
  static constexpr char kTypeName[] = "pci-device";
  static constexpr bool kAbstract = true;
  using Parent = DeviceState;
  using Class = PCIDeviceClass;
  static void ClassInit(PCIDeviceClass& k);

  PCIDevice();
  ~PCIDevice() override;

  const PCIDeviceClass& pci_class() const {
    return static_cast<const PCIDeviceClass&>(object_class());
  }
  // Where the device sits on its bus (valid once plugged).
  qom::PciDevFn devfn() const { return addr_; }
  bool multifunction() const { return multifunction_; }
  PCIBus* pci_bus() const;
  // Realized and not being unrealized: what guests and the bus may touch.
  bool live() const { return realized() && !unplugging_.load(); }
  uint32_t config_size() const { return pci_class().is_express ? kExpressConfigSpaceSize : 256; }

  // ---- configuration space ----
  // Config-space access as a guest sees it. Widths 1, 2, 4, naturally aligned and inside the
  // space; anything else reads all-ones / is dropped, and is counted as a guest error.
  uint32_t ConfigRead(uint32_t offset, int size);
  void ConfigWrite(uint32_t offset, uint32_t value, int size);

  // Direct access for device code (no masks). Device code writes only during Realize or under
  // its own lock.
  uint8_t* config() { return config_.data(); }
  void SetConfigWriteMask(uint32_t offset, uint8_t mask) { wmask_[offset] = mask; }
  void SetConfigW1cMask(uint32_t offset, uint8_t mask) { w1cmask_[offset] = mask; }
  // The IDs in configuration space (the class's, unless overridden by x-pci-* properties).
  uint16_t vendor_id() const { return Peek16(kVendorId); }
  uint16_t device_id() const { return Peek16(kDeviceId); }
  uint16_t subsystem_vendor_id() const { return Peek16(kSubsystemVendorId); }
  uint16_t subsystem_id() const { return Peek16(kSubsystemId); }
  // The command register as of the last config write or reset (lock-free: DMA checks read it
  // per frame; the register changes only through ConfigWrite and Reset).
  uint16_t command() const { return command_.load(std::memory_order_acquire); }
  bool bus_master() const { return command() & kCommandMaster; }

  // ---- BARs ----
  // Declares BAR `bar` (0..5; a 64-bit BAR also uses bar + 1) of `size` bytes (a power of two,
  // at least 16 for memory and 4 for I/O). Returns the container the device puts its regions
  // in. CHECKs the arguments: they are the device author's, not the user's.
  MemoryRegion* RegisterBar(int bar, uint64_t size, uint32_t type);
  const PciBar& bar(int i) const { return bars_[static_cast<size_t>(i)]; }
  // The address the guest programmed in BAR `i` (without type bits), whether or not it is mapped.
  uint64_t BarAddress(int i) const;

  // ---- capabilities ----
  // Adds a capability of `size` bytes with `id` at `offset` (0: the first free dword-aligned
  // space at or above 0x40), appended to the list. ResourceExhausted when there is no room;
  // AlreadyExists when [offset, offset + size) overlaps another capability.
  absl::StatusOr<uint8_t> AddCapability(uint8_t id, uint8_t size, uint8_t offset = 0);
  // The offset of the first capability with `id`, or 0. Bounded: a looping list ends the walk.
  uint8_t FindCapability(uint8_t id) const;
  // Every capability as (offset, id), in list order (bounded like FindCapability).
  std::vector<std::pair<uint8_t, uint8_t>> Capabilities() const;
  // One line about the capability at `pos`, for `info pci`. Devices with vendor-specific
  // capabilities override it and call the parent for the others.
  virtual std::string DescribeCapability(uint8_t pos) const;

  // ---- MSI (one capability, 1..32 vectors) ----
  absl::Status InitMsi(uint8_t offset, unsigned vectors, bool is_64bit, bool per_vector_mask);
  bool msi_enabled() const;
  // Sends MSI `vector` (< the enabled count) unless masked (then it becomes pending).
  void MsiNotify(unsigned vector);

  // ---- MSI-X ----
  // MSI-X with `vectors` entries; the table at `table_offset` and the PBA at `pba_offset` of BAR
  // `bar`, which must be registered (both must fit, table 8-byte aligned... see the .cc).
  absl::Status InitMsix(unsigned vectors, int bar, uint32_t table_offset, uint32_t pba_offset,
                        uint8_t cap_offset = 0);
  // The same with a BAR of its own (QEMU's msix_init_exclusive_bar).
  absl::Status InitMsixExclusiveBar(unsigned vectors, int bar);
  bool msix_enabled() const;
  unsigned msix_vectors() const {
    absl::MutexLock l(&mu_);
    return msix_vectors_;
  }
  // Delivers MSI-X `vector`, or sets its pending bit while it or the function is masked. A
  // vector >= the table size is no vector: counted as a guest error, nothing delivered.
  void MsixNotify(unsigned vector);
  bool MsixPending(unsigned vector) const;
  // The message MSI-X `vector` currently sends (nullopt: no such vector). For a VMM that routes
  // vectors to irqfds (KVM): it re-reads this when the guest reprograms the table.
  std::optional<MsiMessage> MsixVectorMessage(unsigned vector) const;

  // ---- INTx ----
  // Drives the device's interrupt pin (level-triggered). Ignored without a pin. Reflected in the
  // status register; held off the line while the command register's INTx-disable bit is set.
  void SetIrq(bool level);
  bool irq_level() const;

  // ---- DMA ----
  // Guest memory as this device sees it: RAM only, and only while bus mastering is enabled.
  // False (nothing transferred, counted as "dma_error") otherwise.
  bool DmaRead(GuestAddr addr, absl::Span<uint8_t> dst);
  bool DmaWrite(GuestAddr addr, absl::Span<const uint8_t> src);
  GuestMemory* dma_memory() const;

  // The host bridge context (address spaces, guest memory, interrupt router) or nullptr when the
  // device is not on a bus connected to a host.
  const PciHostContext* host_context() const;

 protected:
  absl::Status Realize() override;
  void Unrealize() override;
  void Reset() override;
  // Builds the standard header from the class metadata (called by Realize; subclasses that add
  // registers set their masks after it).
  void InitConfigHeader();
  // Called after a guest config write was applied (offset and size of the access). Overrides
  // call the parent's.
  virtual void ConfigWritten(uint32_t offset, int size);
  // Called before a valid guest config read is served (e.g. to fill a data window), without the
  // device's lock.
  virtual void BeforeConfigRead(uint32_t offset, int size) {}
  // The device's config-space lock, for device code that edits config() while guests run.
  absl::Mutex& config_lock() ABSL_LOCK_RETURNED(mu_) { return mu_; }
  // Counts and logs a refused DMA; returns `ok`.
  bool DmaDone(bool ok, const char* what, GuestAddr addr, size_t len);
  // Asks the bus to re-apply every BAR mapping (after command, BAR or bridge-window writes).
  void RequestRemap();

 private:
  friend class PCIBus;
  uint16_t CommandLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return Peek16(kCommand); }
  uint16_t Peek16(uint32_t off) const {
    return static_cast<uint16_t>(config_[off] | config_[off + 1] << 8);
  }
  uint32_t ConfigReadLocked(uint32_t offset, int size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateIntxLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MsixDeliverPendingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  MsiMessage MsixMessageLocked(unsigned vector) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool MsixMaskedLocked(unsigned vector) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MsiDeliverPendingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MsiSendLocked(unsigned vector) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t MsixTableRead(uint64_t off, unsigned size);
  void MsixTableWrite(uint64_t off, uint64_t value, unsigned size);
  uint64_t MsixPbaRead(uint64_t off, unsigned size);
  void MsixPbaWrite(uint64_t off, uint64_t value, unsigned size);

  static constexpr uint32_t kIdFromClass = 0xffffffff;
  std::atomic<bool> unplugging_{false};
  qom::PciDevFn addr_;
  bool multifunction_ = false;
  uint32_t vendor_id_prop_ = kIdFromClass;
  uint32_t device_id_prop_ = kIdFromClass;
  uint32_t sub_vendor_id_prop_ = kIdFromClass;
  uint32_t sub_device_id_prop_ = kIdFromClass;

  mutable absl::Mutex mu_;
  std::array<uint8_t, kExpressConfigSpaceSize> config_{};
  std::atomic<uint16_t> command_{0};  // a copy of config_'s command register
  std::array<uint8_t, kExpressConfigSpaceSize> wmask_{};
  std::array<uint8_t, kExpressConfigSpaceSize> w1cmask_{};
  std::array<bool, kExpressConfigSpaceSize / 4> cap_used_{};  // dwords taken by capabilities

  std::array<PciBar, kNumBars> bars_;

  uint8_t msi_cap_ ABSL_GUARDED_BY(mu_) = 0;
  unsigned msi_vectors_ ABSL_GUARDED_BY(mu_) = 0;

  uint8_t msix_cap_ ABSL_GUARDED_BY(mu_) = 0;
  unsigned msix_vectors_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<uint8_t> msix_table_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> msix_pba_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<MemoryRegion> msix_table_region_;
  std::unique_ptr<MemoryRegion> msix_pba_region_;

  bool intx_level_ ABSL_GUARDED_BY(mu_) = false;     // what the device drives
  bool intx_asserted_ ABSL_GUARDED_BY(mu_) = false;  // what reaches the line
};

}  // namespace vdev::pci

#endif  // VDEV_BUS_PCI_PCI_DEVICE_H_
