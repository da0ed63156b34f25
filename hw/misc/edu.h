// edu: QEMU's educational PCI device (1234:11e8), after the register layout of QEMU's
// docs/specs/edu.rst. It is small enough to read in one sitting and exercises everything a PCI
// device does: a memory BAR with access-width rules, INTx and MSI (and, as a vdev extension,
// MSI-X), and bus-master DMA between guest RAM and a 4 KiB buffer inside the device.
//
//   -device edu[,addr=05.0][,dma_mask=0xfffffff][,msix-vectors=2]
//
// BAR0 (1 MiB, 32-bit memory) holds the registers below (EduReg).
// Registers below 0x80 take 4-byte accesses only; from 0x80, 4 or 8 bytes. Others are refused
// (reads return all-ones) and counted as "bad_access".
//
// The DMA buffer is at device address 0x40000..0x40fff. A transfer whose device-side range leaves
// it, or whose RAM side is not RAM (or bus mastering is off), does nothing and is counted
// ("dma_bad_range" / "dma_error"); QEMU aborts the process there. Transfers and the factorial
// complete synchronously with the register write that starts them.
//
// Thread-safety: register accesses are serialised by the device's lock.
#ifndef VDEV_HW_MISC_EDU_H_
#define VDEV_HW_MISC_EDU_H_

#include <array>
#include <cstdint>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "bus/pci/pci_device.h"
#include "core/memory/memory.h"

namespace vdev::misc {

// BAR0 registers.
enum EduReg : uint32_t {
  kEduId = 0x00,         // RO: 0x010000ed (version 1.0)
  kEduLiveness = 0x04,   // RW: reads back the bitwise inverse of what was written
  kEduFactorial = 0x08,  // RW: write n; read n! (mod 2^32) once status bit 0 is clear
  kEduStatus = 0x20,     // RW: bit 0 computing (RO), bit 7 raise interrupt 0x1 when done
  kEduIrqStatus = 0x24,  // RO: the interrupt bits raised and not yet acknowledged
  kEduIrqRaise = 0x60,   // WO: ORs the value into the interrupt status and interrupts
  kEduIrqAck = 0x64,     // WO: clears those bits; the line drops when none is left
  kEduDmaSrc = 0x80,     // RW, 4 or 8 bytes: DMA source address
  kEduDmaDst = 0x88,     // RW, 4 or 8 bytes: DMA destination address
  kEduDmaCount = 0x90,   // RW, 4 or 8 bytes: bytes to transfer
  kEduDmaCmd = 0x98,     // RW, 4 or 8 bytes: bit 0 start, bit 1 edu-to-RAM, bit 2 interrupt 0x100
};

class EduDevice : public pci::PCIDevice {
 public:
  static constexpr char kTypeName[] = "edu";
  using Parent = pci::PCIDevice;
  static void ClassInit(pci::PCIDeviceClass& k);

  static constexpr uint64_t kBarSize = 1 << 20;
  static constexpr uint64_t kDmaStart = 0x40000;
  static constexpr uint64_t kDmaSize = 4096;
  static constexpr uint32_t kDmaIrq = 0x100;
  static constexpr uint32_t kFactorialIrq = 0x1;

 protected:
  absl::Status Realize() override;
  void Unrealize() override;
  void Reset() override;

 private:
  uint64_t MmioRead(uint64_t addr, unsigned size);
  void MmioWrite(uint64_t addr, uint64_t val, unsigned size);
  void RaiseIrqLocked(uint32_t bits) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LowerIrqLocked(uint32_t bits) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunDmaLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Properties.
  uint64_t dma_mask_ = (uint64_t{1} << 28) - 1;
  uint32_t msix_vectors_prop_ = 0;

  absl::Mutex mu_;
  uint32_t liveness_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t fact_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t status_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t irq_status_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dma_src_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dma_dst_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dma_count_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dma_cmd_ ABSL_GUARDED_BY(mu_) = 0;
  std::array<uint8_t, kDmaSize> dma_buf_ ABSL_GUARDED_BY(mu_){};

  std::unique_ptr<MemoryRegion> mmio_;  // declared last: leaves the BAR before the state dies
};

}  // namespace vdev::misc

#endif  // VDEV_HW_MISC_EDU_H_
