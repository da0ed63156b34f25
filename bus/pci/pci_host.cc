#include "bus/pci/pci_host.h"

#include "absl/strings/str_format.h"
#include "core/base/status_macros.h"

namespace vdev::pci {

void PCIHostBridge::ClassInit(DeviceClass& k) {
  k.category = DeviceCategory::kBridge;
  k.user_creatable = false;
  k.hotpluggable = false;
  k.AddProperty(qom::Prop("ecam-base", &PCIHostBridge::ecam_base_, uint64_t{0xb0000000},
                          "guest-physical base of the ECAM window"));
  k.AddProperty(qom::Prop("ecam-buses", &PCIHostBridge::ecam_buses_, uint32_t{256},
                          "buses decoded by the ECAM window (1 MiB each; 0: no ECAM)"));
  k.AddProperty(qom::Prop("config-ports", &PCIHostBridge::config_ports_, true,
                          "configuration mechanism #1 at I/O ports 0xcf8/0xcfc"));
}

PCIHostBridge::PCIHostBridge() : bus_(CreateChildBus<PCIBus>("pci.0")) {}

PCIHostBridge::~PCIHostBridge() = default;

void PCIHostBridge::Connect(MemoryRegion* memory, MemoryRegion* io, GuestMemory* dma,
                            IrqRouter* irq, std::function<int(int, int)> route_intx) {
  ctx_.memory = memory;
  ctx_.io = io;
  ctx_.dma = dma;
  ctx_.irq = irq;
  ctx_.route_intx = std::move(route_intx);
  bus_->set_host_context(&ctx_);
}

PCIDevice* PCIHostBridge::FunctionAt(uint8_t bus, uint8_t devfn) {
  PCIBus* b = bus_->FindBusByNumber(bus);
  if (b == nullptr) return nullptr;
  PCIDevice* d = b->device_at(devfn);
  // Functions other than 0 are visible only when function 0 exists (PCI 3.0 §6.2.1).
  PCIDevice* f0 = b->device_at(devfn & ~7);
  if (d == nullptr || !d->live() || f0 == nullptr || !f0->live()) return nullptr;
  return d;
}

uint32_t PCIHostBridge::ConfigRead(uint8_t bus, uint8_t devfn, uint32_t offset, int size) {
  absl::ReaderMutexLock l(&bus_->config_mutex());
  PCIDevice* d = FunctionAt(bus, devfn);
  if (d == nullptr || offset >= d->config_size()) {
    return size == 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
  }
  return d->ConfigRead(offset, size);
}

void PCIHostBridge::ConfigWrite(uint8_t bus, uint8_t devfn, uint32_t offset, uint32_t value,
                                int size) {
  absl::ReaderMutexLock l(&bus_->config_mutex());
  PCIDevice* d = FunctionAt(bus, devfn);
  if (d == nullptr || offset >= d->config_size()) return;
  d->ConfigWrite(offset, value, size);
}

absl::Status PCIHostBridge::Realize() {
  VDEV_RETURN_IF_ERROR(SysBusDevice::Realize());
  if (ecam_buses_ > 256) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: property 'ecam-buses' must be at most 256, got %u", DisplayName(), ecam_buses_));
  }
  if (config_ports_ && ctx_.io != nullptr) {
    MemoryRegionOps addr_ops;
    addr_ops.read = [this](MmioOffset, unsigned) -> uint64_t { return config_address_.load(); };
    addr_ops.write = [this](MmioOffset, uint64_t v, unsigned) {
      config_address_.store(static_cast<uint32_t>(v));
    };
    addr_ops.valid = {4, 4, false};
    cf8_ = MemoryRegion::CreateIo("pci-conf-idx", 4, std::move(addr_ops));
    cf8_->set_owner_counters(&counters());
    MemoryRegionOps data_ops;
    // The register number comes from the address register; the low two bits from the port.
    data_ops.read = [this](MmioOffset off, unsigned size) -> uint64_t {
      const uint32_t a = config_address_.load();
      if (!(a & 0x80000000u)) return (uint64_t{1} << (8 * size)) - 1;
      return ConfigRead(static_cast<uint8_t>(a >> 16), static_cast<uint8_t>(a >> 8),
                        (a & 0xfc) | static_cast<uint32_t>(off.value()), static_cast<int>(size));
    };
    data_ops.write = [this](MmioOffset off, uint64_t v, unsigned size) {
      const uint32_t a = config_address_.load();
      if (!(a & 0x80000000u)) return;
      ConfigWrite(static_cast<uint8_t>(a >> 16), static_cast<uint8_t>(a >> 8),
                  (a & 0xfc) | static_cast<uint32_t>(off.value()), static_cast<uint32_t>(v),
                  static_cast<int>(size));
    };
    data_ops.valid = {1, 4, false};
    cfc_ = MemoryRegion::CreateIo("pci-conf-data", 4, std::move(data_ops));
    cfc_->set_owner_counters(&counters());
    ctx_.io->AddSubregion(kConfigAddressPort, cf8_.get());
    ctx_.io->AddSubregion(kConfigDataPort, cfc_.get());
  }
  if (ecam_buses_ > 0 && ctx_.memory != nullptr) {
    MemoryRegionOps ops;
    ops.read = [this](MmioOffset off, unsigned size) -> uint64_t {
      const uint64_t o = off.value();
      return ConfigRead(static_cast<uint8_t>(o >> 20), static_cast<uint8_t>(o >> 12),
                        static_cast<uint32_t>(o & 0xfff), static_cast<int>(size));
    };
    ops.write = [this](MmioOffset off, uint64_t v, unsigned size) {
      const uint64_t o = off.value();
      ConfigWrite(static_cast<uint8_t>(o >> 20), static_cast<uint8_t>(o >> 12),
                  static_cast<uint32_t>(o & 0xfff), static_cast<uint32_t>(v),
                  static_cast<int>(size));
    };
    ops.valid = {1, 4, false};
    ecam_ = MemoryRegion::CreateIo("pcie-mmcfg", ecam_size(), std::move(ops));
    ecam_->set_owner_counters(&counters());
    ctx_.memory->AddSubregion(ecam_base_, ecam_.get());
  }
  return absl::OkStatus();
}

void PCIHostBridge::Unrealize() {
  ecam_.reset();  // leaving their containers
  cfc_.reset();
  cf8_.reset();
  SysBusDevice::Unrealize();
}

void PCIHostBridge::Reset() {
  config_address_.store(0);
  SysBusDevice::Reset();
}

VDEV_REGISTER_TYPE(PCIHostBridge);

}  // namespace vdev::pci
