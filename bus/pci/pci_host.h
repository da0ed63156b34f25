// PCIHostBridge: the system-bus device that provides a root PCI bus and the guest's way into its
// configuration space: configuration mechanism #1 (an address register at port 0xCF8 and a data
// window at 0xCFC..0xCFF, PCI 3.0 §3.2.2.3.2) and an ECAM window (PCI Express 4.0 §7.2.2: 1 MiB
// per bus, 4 KiB per function).
//
// The board connects it before realize: the containers BARs are mapped into, guest RAM for DMA,
// the interrupt router, and the INTx routing of the root bus.
//
// Thread-safety: config accesses may come from any vCPU thread; the address register is shared
// by all of them (as on hardware), and each device serialises its own config space.
#ifndef VDEV_BUS_PCI_PCI_HOST_H_
#define VDEV_BUS_PCI_PCI_HOST_H_

#include <atomic>
#include <memory>

#include "bus/pci/pci_bus.h"
#include "core/memory/memory.h"
#include "core/qdev/sysbus.h"

namespace vdev::pci {

class PCIHostBridge : public SysBusDevice {
 public:
  static constexpr char kTypeName[] = "pci-host-bridge";
  static constexpr bool kAbstract = true;
  using Parent = SysBusDevice;
  static void ClassInit(DeviceClass& k);

  static constexpr uint16_t kConfigAddressPort = 0xcf8;
  static constexpr uint16_t kConfigDataPort = 0xcfc;

  PCIHostBridge();
  ~PCIHostBridge() override;
  PCIBus& bus() { return *bus_; }

  // Wires the host into the board. `io` may be null (no port I/O: ECAM only). Before realize.
  void Connect(MemoryRegion* memory, MemoryRegion* io, GuestMemory* dma, IrqRouter* irq,
               std::function<int(int slot, int pin)> route_intx);

  // A configuration access by (bus, devfn, register), as both mechanisms decode it. Absent
  // functions, and registers past a function's configuration space, read all-ones.
  uint32_t ConfigRead(uint8_t bus, uint8_t devfn, uint32_t offset, int size);
  void ConfigWrite(uint8_t bus, uint8_t devfn, uint32_t offset, uint32_t value, int size);

  uint64_t ecam_base() const { return ecam_base_; }
  uint64_t ecam_size() const { return uint64_t{ecam_buses_} << 20; }

 protected:
  absl::Status Realize() override;
  void Unrealize() override;
  void Reset() override;

 private:
  PCIDevice* FunctionAt(uint8_t bus, uint8_t devfn);

  PCIBus* bus_;
  PciHostContext ctx_;
  std::atomic<uint32_t> config_address_{0};
  uint64_t ecam_base_ = 0;
  uint32_t ecam_buses_ = 0;
  bool config_ports_ = true;
  std::unique_ptr<MemoryRegion> cf8_;
  std::unique_ptr<MemoryRegion> cfc_;
  std::unique_ptr<MemoryRegion> ecam_;
};

}  // namespace vdev::pci

#endif  // VDEV_BUS_PCI_PCI_HOST_H_
