#include "hw/virtio/virtio_pci.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bus/pci/pci_regs.h"
#include "bus/virtio/virtio_uapi.h"
#include "core/base/byte_order.h"
#include "core/base/checked_math.h"
#include "core/base/logging.h"
#include "core/base/status_macros.h"
#include "hw/virtio/virtio_pci_internal.h"

// After virtio_uapi.h (it includes virtio_config.h, which virtio_pci.h needs).
#include <linux/virtio_pci.h>

namespace vdev::virtio {

void VirtIOPCIProxy::ClassInit(VirtIOPCIProxyClass& k) {
  k.vendor_id = kVirtioVendor;
  k.subsystem_vendor_id = kVirtioVendor;
  k.interrupt_pin = 1;
  k.AddProperty(qom::Prop("disable-legacy", &VirtIOPCIProxy::disable_legacy_, true,
                          "on: modern-only device (0x1040 + id); off: transitional, with the "
                          "legacy I/O BAR"));
  k.AddProperty(qom::Prop("disable-modern", &VirtIOPCIProxy::disable_modern_, false,
                          "on: no modern interface (legacy only; needs disable-legacy=off)"));
  k.AddProperty(
      qom::Prop("vectors", &VirtIOPCIProxy::vectors_, uint32_t{2}, "MSI-X vectors (0: INTx only)"));
  k.AddProperty(qom::Prop("ioeventfd", &VirtIOPCIProxy::ioeventfd_, true,
                          "let a VMM bind queue notifications to eventfds"));
  k.AddProperty(qom::Prop("modern-bar64", &VirtIOPCIProxy::modern_bar64_, false,
                          "make the modern BAR 64-bit (QEMU's proxy handles 32-bit BARs only)"));
}

void VirtIOPCIProxyClass::AliasBackendProperties() {
  const qom::TypeImpl* t = qom::TypeRegistry::Global().Find(backend_type);
  if (t == nullptr) {
    SetInitError(absl::StrCat("backend type '", backend_type, "' is not registered"));
    return;
  }
  for (const auto& bp : t->klass().properties()) {
    if (FindProperty(bp->name) != nullptr || !bp->set) continue;
    qom::PropertyInfo p;
    p.name = bp->name;
    p.type = bp->type;
    p.description = bp->description;
    p.default_value = bp->default_value;
    p.enum_values = bp->enum_values;
    p.runtime_settable = bp->runtime_settable;
    // No `init`: the backend applied its own defaults when it was created.
    p.set = [name = bp->name](qom::Object& o, absl::string_view v) {
      return qom::internal::OwnerOf<VirtIOPCIProxy>(o).backend_->SetProperty(name, v);
    };
    p.get = [name = bp->name](const qom::Object& o) -> std::string {
      auto v = qom::internal::OwnerOf<VirtIOPCIProxy>(o).backend_->GetProperty(name);
      return v.ok() ? *v : "";
    };
    AddProperty(std::move(p));
  }
}

VirtIOPCIProxy::VirtIOPCIProxy() : bus_(CreateChildBus<VirtioBus>("virtio-bus")) {
  bus_->set_transport(this);
}

VirtIOPCIProxy::~VirtIOPCIProxy() = default;

absl::Status VirtIOPCIProxy::InstancePostInit() {
  const VirtIOPCIProxyClass& k = proxy_class();
  if (k.backend_type.empty()) return absl::OkStatus();  // a plugin's proxy without a backend
  VDEV_ASSIGN_OR_RETURN(std::unique_ptr<qom::Object> obj, type().registry().Create(k.backend_type));
  std::unique_ptr<VirtIODevice> backend(qom::DynamicCast<VirtIODevice>(obj.release()));
  if (backend == nullptr) {
    return absl::InternalError(
        absl::StrCat(type_name(), ": backend type '", k.backend_type, "' is not a virtio device"));
  }
  VDEV_ASSIGN_OR_RETURN(qom::Object * placed, AddChild("virtio-backend", std::move(backend)));
  backend_ = static_cast<VirtIODevice*>(placed);
  return absl::OkStatus();
}

const GuestMemory* VirtIOPCIProxy::dma_memory() const {
  return bus_master() ? PCIDevice::dma_memory() : nullptr;  // no DMA without bus mastering
}

absl::Status VirtIOPCIProxy::Realize() {
  VDEV_RETURN_IF_ERROR(CheckProperties());
  VDEV_RETURN_IF_ERROR(PCIDevice::Realize());
  VDEV_ASSIGN_OR_RETURN(VirtIODevice * vdev, RealizeBackend());
  VDEV_RETURN_IF_ERROR(SetPciIds(*vdev));
  regs_.Configure(vdev->num_queues(), vectors_);
  if (vectors_ > 0) VDEV_RETURN_IF_ERROR(InitMsixExclusiveBar(vectors_, kMsixBar));
  if (!disable_modern_) VDEV_RETURN_IF_ERROR(MapModernInterface(*vdev));
  if (!disable_legacy_) MapLegacyInterface(*vdev);
  return absl::OkStatus();
}

absl::Status VirtIOPCIProxy::CheckProperties() const {
  if (disable_legacy_ && disable_modern_) {
    return absl::InvalidArgumentError(
        absl::StrCat(type_name(), ": disable-legacy and disable-modern cannot both be on"));
  }
  if (vectors_ > pci::kMsixMaxVectors) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: property 'vectors' must be at most %u, got %u", type_name(),
                        pci::kMsixMaxVectors, vectors_));
  }
  return absl::OkStatus();
}

absl::StatusOr<VirtIODevice*> VirtIOPCIProxy::RealizeBackend() {
  if (backend_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(type_name(), ": no backend device (the class names no backend_type)"));
  }
  // The backend has had its properties since they were set on us (they are aliases).
  if (absl::Status s = bus_->Attach(*backend_); !s.ok()) return DetachBackend(s);
  if (absl::Status s = backend_->RealizeDevice(); !s.ok()) return DetachBackend(s);
  return backend_;
}

absl::Status VirtIOPCIProxy::DetachBackend(absl::Status why) {
  if (vdev() != nullptr) bus_->Detach(*backend_);
  return Annotate(why, DisplayName());
}

absl::Status VirtIOPCIProxy::SetPciIds(VirtIODevice& vdev) {
  const uint16_t id = vdev.device_id();
  const int legacy_id = LegacyDeviceId(id);
  if (!disable_legacy_ && legacy_id < 0) {
    vdev.UnrealizeDevice();
    return DetachBackend(absl::InvalidArgumentError(absl::StrFormat(
        "virtio device id %u has no transitional PCI id: use disable-legacy=on", id)));
  }
  {
    absl::MutexLock l(&config_lock());
    uint8_t* c = config();
    const uint16_t did =
        disable_legacy_ ? static_cast<uint16_t>(0x1040 + id) : static_cast<uint16_t>(legacy_id);
    c[pci::kDeviceId] = static_cast<uint8_t>(did);
    c[pci::kDeviceId + 1] = static_cast<uint8_t>(did >> 8);
    c[pci::kRevisionId] = disable_legacy_ ? 1 : 0;
    c[pci::kSubsystemId] = static_cast<uint8_t>(id);
    c[pci::kSubsystemId + 1] = static_cast<uint8_t>(id >> 8);
  }
  return absl::OkStatus();
}

void VirtIOPCIProxy::Unrealize() {
  // The backend was unrealized first (devices on our bus go before us); it stays our child, as
  // it was before realize, until we are destroyed.
  if (VirtIODevice* d = vdev()) bus_->Detach(*d);
  legacy_.reset();
  notify_.reset();
  device_.reset();
  isr_region_.reset();
  common_.reset();
  PCIDevice::Unrealize();
}

void VirtIOPCIProxy::Reset() {
  {
    absl::MutexLock l(&mu_);
    ResetInterruptsLocked();
  }
  regs_.Reset();
  PCIDevice::Reset();
}

void VirtIOPCIProxy::ResetInterruptsLocked() {
  isr_ = 0;
  regs_.ResetVectors();
  SetIrq(false);
}

void VirtIOPCIProxy::WriteStatus(bool legacy, uint8_t status) {
  VirtIODevice* d = vdev();
  d->SetLegacy(legacy);  // effective only at the start of initialisation
  d->SetStatus(status);
  if (status == 0) {  // a device reset also resets the transport's interrupt state
    absl::MutexLock l(&mu_);
    ResetInterruptsLocked();
  }
}

std::optional<uint64_t> VirtIOPCIProxy::QueueNotifyAddress(uint16_t index) const {
  const pci::PciBar& b = bar(kModernBar);
  if (disable_modern_ || b.mapped_at == pci::kBarUnmapped || vdev() == nullptr ||
      index >= vdev()->num_queues()) {
    return std::nullopt;
  }
  return b.mapped_at + kNotifyOffset + uint64_t{index} * kNotifyMultiplier;
}

void VirtIOPCIProxy::SetQueueEventfds(uint16_t index, int ioeventfd, int irqfd) {
  absl::MutexLock l(&mu_);
  if (queue_eventfds_.size() <= index) queue_eventfds_.resize(index + 1, {-1, -1});
  queue_eventfds_[index] = {ioeventfd, irqfd};
}

int VirtIOPCIProxy::QueueIoeventfd(uint16_t index) const {
  absl::MutexLock l(&mu_);
  return index < queue_eventfds_.size() ? queue_eventfds_[index].first : -1;
}

int VirtIOPCIProxy::QueueIrqfd(uint16_t index) const {
  absl::MutexLock l(&mu_);
  return index < queue_eventfds_.size() ? queue_eventfds_[index].second : -1;
}

std::string VirtIOPCIProxy::DescribeCapability(uint8_t pos) const {
  const std::string generic = PCIDevice::DescribeCapability(pos);
  auto* self = const_cast<VirtIOPCIProxy*>(this);
  absl::MutexLock l(&self->config_lock());
  const uint8_t* c = self->config() + pos;
  if (c[0] != pci::kCapIdVendor) return generic;
  static constexpr const char* kNames[] = {"?",   "common config", "notify",
                                           "ISR", "device config", "PCI config access"};
  const uint8_t type = c[VIRTIO_PCI_CAP_CFG_TYPE];
  auto get32 = [c](int o) { return LoadLe32(c + o); };
  if (type == VIRTIO_PCI_CAP_PCI_CFG) return "virtio PCI config access (type 5)";
  return absl::StrFormat("virtio %s (type %u), BAR%u+0x%x, 0x%x bytes",
                         type < 6 ? kNames[type] : "?", type, c[VIRTIO_PCI_CAP_BAR],
                         get32(VIRTIO_PCI_CAP_OFFSET), get32(VIRTIO_PCI_CAP_LENGTH));
}

std::optional<std::pair<uint16_t, MsiMessage>> VirtIOPCIProxy::InterruptRoute(int index) {
  if (index != kConfigVector && (index < 0 || index > 0xffff)) return std::nullopt;
  const uint16_t vector = index == kConfigVector ? regs_.config_vector()
                                                 : regs_.queue_vector(static_cast<uint16_t>(index));
  if (vector == kNoVector || !msix_enabled()) return std::nullopt;
  auto msg = MsixVectorMessage(vector);
  if (!msg) return std::nullopt;
  return std::make_pair(vector, *msg);
}

// ---- interrupts ----

void VirtIOPCIProxy::RaiseLocked(uint8_t isr_bit, uint16_t vector) {
  if (msix_enabled()) {
    if (vector != kNoVector) MsixNotify(vector);
    return;
  }
  isr_ |= isr_bit;
  SetIrq(true);
}

void VirtIOPCIProxy::NotifyQueue(uint16_t index) {
  absl::MutexLock l(&mu_);
  RaiseLocked(kIsrQueue, regs_.queue_vector(index));
}

void VirtIOPCIProxy::NotifyConfig() {
  absl::MutexLock l(&mu_);
  RaiseLocked(VIRTIO_PCI_ISR_CONFIG, regs_.config_vector());
}

VDEV_REGISTER_TYPE(VirtIOPCIProxy);

}  // namespace vdev::virtio
