#include "tests/testing/virtio_pci_driver.h"

#include <linux/virtio_pci.h>

#include "bus/pci/i440fx.h"
#include "bus/pci/pci_regs.h"
#include "bus/virtio/virtio_uapi.h"

namespace vdev::testing {

VirtioPciDriver::VirtioPciDriver(PciGuest& pci, const PciGuest::Function& fn, AddressSpace& mem,
                                 AddressSpace& io, const GuestMemory& ram, Mode mode)
    : pci_(pci), fn_(fn), mem_(mem), io_(io), ram_(ram), mode_(mode) {}

bool VirtioPciDriver::Probe() {
  if (mode_ == Mode::kLegacy) return fn_.bars[0].io && fn_.bars[0].addr != 0;
  for (auto [id, pos] : pci_.WalkCapabilities(fn_.bus, fn_.devfn)) {
    if (id != pci::kCapIdVendor) continue;
    const uint8_t type =
        static_cast<uint8_t>(pci_.ConfigRead(fn_, pos + VIRTIO_PCI_CAP_CFG_TYPE, 1));
    if (caps_.count(type)) continue;  // the first of each type is the one to use
    caps_[type] = pos;
    const uint8_t bar = static_cast<uint8_t>(pci_.ConfigRead(fn_, pos + VIRTIO_PCI_CAP_BAR, 1));
    const uint32_t off = pci_.ConfigRead(fn_, pos + VIRTIO_PCI_CAP_OFFSET, 4);
    if (bar < 6) struct_addr_[type] = fn_.bars[bar].addr + off;
    if (type == VIRTIO_PCI_CAP_NOTIFY_CFG) {
      notify_multiplier_ = pci_.ConfigRead(fn_, pos + VIRTIO_PCI_NOTIFY_CAP_MULT, 4);
    }
  }
  return caps_.count(VIRTIO_PCI_CAP_COMMON_CFG) && caps_.count(VIRTIO_PCI_CAP_NOTIFY_CFG) &&
         caps_.count(VIRTIO_PCI_CAP_ISR_CFG) && caps_.count(VIRTIO_PCI_CAP_DEVICE_CFG);
}

uint8_t VirtioPciDriver::cap(uint8_t cfg_type) const {
  auto it = caps_.find(cfg_type);
  return it == caps_.end() ? 0 : it->second;
}

uint64_t VirtioPciDriver::Addr(uint8_t cfg_type) const { return struct_addr_.at(cfg_type); }

uint64_t VirtioPciDriver::CommonRead(uint32_t off, unsigned size) {
  return mem_.ReadValue(Addr(VIRTIO_PCI_CAP_COMMON_CFG) + off, size);
}

MemTxResult VirtioPciDriver::CommonWrite(uint32_t off, uint64_t value, unsigned size) {
  return mem_.Write(Addr(VIRTIO_PCI_CAP_COMMON_CFG) + off, value, size);
}

uint64_t VirtioPciDriver::LegacyRead(uint32_t off, unsigned size) {
  return io_.ReadValue(fn_.bars[0].addr + off, size);
}

void VirtioPciDriver::LegacyWrite(uint32_t off, uint64_t value, unsigned size) {
  io_.Write(fn_.bars[0].addr + off, value, size);
}

uint8_t VirtioPciDriver::status() {
  return static_cast<uint8_t>(mode_ == Mode::kModern ? CommonRead(VIRTIO_PCI_COMMON_STATUS, 1)
                                                     : LegacyRead(VIRTIO_PCI_STATUS, 1));
}

void VirtioPciDriver::SetStatus(uint8_t s) {
  if (mode_ == Mode::kModern) {
    CommonWrite(VIRTIO_PCI_COMMON_STATUS, s, 1);
  } else {
    LegacyWrite(VIRTIO_PCI_STATUS, s, 1);
  }
}

std::optional<uint64_t> VirtioPciDriver::Negotiate(uint64_t wanted) {
  SetStatus(0);
  SetStatus(VIRTIO_CONFIG_S_ACKNOWLEDGE);
  SetStatus(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
  if (mode_ == Mode::kLegacy) {
    const uint64_t accepted = LegacyRead(VIRTIO_PCI_HOST_FEATURES, 4) & wanted;
    LegacyWrite(VIRTIO_PCI_GUEST_FEATURES, accepted, 4);
    return accepted;
  }
  uint64_t offered = 0;
  for (uint32_t sel = 0; sel < 2; ++sel) {
    CommonWrite(VIRTIO_PCI_COMMON_DFSELECT, sel, 4);
    offered |= CommonRead(VIRTIO_PCI_COMMON_DF, 4) << (32 * sel);
  }
  const uint64_t accepted = offered & wanted;
  for (uint32_t sel = 0; sel < 2; ++sel) {
    CommonWrite(VIRTIO_PCI_COMMON_GFSELECT, sel, 4);
    CommonWrite(VIRTIO_PCI_COMMON_GF, static_cast<uint32_t>(accepted >> (32 * sel)), 4);
  }
  SetStatus(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
  if (!(status() & VIRTIO_CONFIG_S_FEATURES_OK)) return std::nullopt;
  return accepted;
}

GuestVring* VirtioPciDriver::SetupQueue(uint16_t index, GuestAddr base, uint16_t size,
                                        uint16_t msix_vector) {
  if (mode_ == Mode::kLegacy) {
    LegacyWrite(VIRTIO_PCI_QUEUE_SEL, index, 2);
    const uint16_t n = static_cast<uint16_t>(LegacyRead(VIRTIO_PCI_QUEUE_NUM, 2));
    if (n == 0) return nullptr;
    auto ring = std::make_unique<GuestVring>(ram_, base, n);
    if (pci_.FindCapability(fn_, pci::kCapIdMsix) != 0 && msix_vector != 0xffff) {
      LegacyWrite(22, msix_vector, 2);  // queue vector (valid with MSI-X enabled)
    }
    LegacyWrite(VIRTIO_PCI_QUEUE_PFN, base.value() >> VIRTIO_PCI_QUEUE_ADDR_SHIFT, 4);
    return (rings_[index] = std::move(ring)).get();
  }
  CommonWrite(VIRTIO_PCI_COMMON_Q_SELECT, index, 2);
  if (CommonRead(VIRTIO_PCI_COMMON_Q_SIZE, 2) == 0) return nullptr;
  CommonWrite(VIRTIO_PCI_COMMON_Q_SIZE, size, 2);
  auto ring = std::make_unique<GuestVring>(ram_, base, size);
  CommonWrite(VIRTIO_PCI_COMMON_Q_MSIX, msix_vector, 2);
  const uint64_t parts[3] = {ring->desc_addr().value(), ring->avail_addr().value(),
                             ring->used_addr().value()};
  const uint32_t lo[3] = {VIRTIO_PCI_COMMON_Q_DESCLO, VIRTIO_PCI_COMMON_Q_AVAILLO,
                          VIRTIO_PCI_COMMON_Q_USEDLO};
  for (int i = 0; i < 3; ++i) {
    CommonWrite(lo[i], static_cast<uint32_t>(parts[i]), 4);
    CommonWrite(lo[i] + 4, static_cast<uint32_t>(parts[i] >> 32), 4);
  }
  CommonWrite(VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
  return (rings_[index] = std::move(ring)).get();
}

void VirtioPciDriver::SetConfigVector(uint16_t vector) {
  if (mode_ == Mode::kModern) {
    CommonWrite(VIRTIO_PCI_COMMON_MSIX, vector, 2);
  } else {
    LegacyWrite(20, vector, 2);
  }
}

void VirtioPciDriver::DriverOk() {
  uint8_t s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK;
  if (mode_ == Mode::kModern) s |= VIRTIO_CONFIG_S_FEATURES_OK;
  SetStatus(s);
}

MemTxResult VirtioPciDriver::NotifyWrite(uint16_t queue, uint16_t value) {
  // queue_notify_off for `queue`, then the notify structure plus off * multiplier (§4.1.4.4).
  CommonWrite(VIRTIO_PCI_COMMON_Q_SELECT, queue, 2);
  const uint64_t off = CommonRead(VIRTIO_PCI_COMMON_Q_NOFF, 2);
  return mem_.Write(Addr(VIRTIO_PCI_CAP_NOTIFY_CFG) + off * notify_multiplier_, value, 2);
}

MemTxResult VirtioPciDriver::NotifyAt(uint32_t offset, uint16_t value) {
  return mem_.Write(Addr(VIRTIO_PCI_CAP_NOTIFY_CFG) + offset, value, 2);
}

void VirtioPciDriver::Kick(uint16_t index) {
  if (mode_ == Mode::kLegacy) {
    LegacyWrite(VIRTIO_PCI_QUEUE_NOTIFY, index, 2);
  } else {
    NotifyWrite(index, index);
  }
}

uint8_t VirtioPciDriver::ReadIsr() {
  return static_cast<uint8_t>(mode_ == Mode::kModern
                                  ? mem_.ReadValue(Addr(VIRTIO_PCI_CAP_ISR_CFG), 1)
                                  : LegacyRead(VIRTIO_PCI_ISR, 1));
}

uint16_t VirtioPciDriver::NumQueues() {
  return static_cast<uint16_t>(CommonRead(VIRTIO_PCI_COMMON_NUMQ, 2));
}

uint64_t VirtioPciDriver::DeviceConfigRead(uint32_t off, unsigned size) {
  if (mode_ == Mode::kLegacy) {
    const bool msix = pci_.FindCapability(fn_, pci::kCapIdMsix) != 0 &&
                      (pci_.ConfigRead(fn_, pci_.FindCapability(fn_, pci::kCapIdMsix) + 2, 2) &
                       pci::kMsixFlagsEnable);
    return LegacyRead((msix ? 24 : 20) + off, size);
  }
  return mem_.ReadValue(Addr(VIRTIO_PCI_CAP_DEVICE_CFG) + off, size);
}

bool ProbePcVirtio(Machine& m, uint16_t device_id, PcVirtioFunction* out,
                   VirtioPciDriver::Mode mode) {
  out->guest =
      std::make_unique<PciGuest>(m.io_space(), m.memory_space(), PciGuest::Mechanism::kPortIo,
                                 0xb0000000, &pci::I440FXPciHost::RouteIntx);
  out->guest->Enumerate();
  out->fn = out->guest->Find(0x1af4, device_id);
  if (out->fn == nullptr) return false;
  out->driver = std::make_unique<VirtioPciDriver>(*out->guest, *out->fn, m.memory_space(),
                                                  m.io_space(), m.guest_memory(), mode);
  return out->driver->Probe();
}

}  // namespace vdev::testing
