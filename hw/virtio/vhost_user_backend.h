// VhostUserBackend: the third virtio transport, beside virtio-pci and virtio-mmio. Its "guest" is
// a vhost-user frontend (QEMU's -netdev vhost-user, DPDK's virtio-user, our own), which owns the
// virtio device model as the guest sees it and hands over the rings: this device speaks the
// backend side of the protocol on a chardev socket and serves those rings with the VirtIODevice
// plugged into its bus. The same VirtIONet that runs in process serves them (features, offloads,
// mergeable buffers, the netdevs).
//
//   vdev -chardev socket,id=c0,path=/run/vu.sock,server=on
//        -netdev tap,id=n0,ifname=t0
//        -device vhost-user-backend,id=vu0,chardev=c0
//        -device virtio-net-device,bus=vu0.0,netdev=n0      (one command line)
//
// The frontend's requests are decoded by VhostUserBackendSession (hw/virtio/vhost) and applied
// here onto the device through the register model, as virtio-pci's common configuration is:
// SET_FEATURES is the driver's feature negotiation (ACKNOWLEDGE, DRIVER, features, FEATURES_OK), a
// complete ring is the queue's size, addresses and enable, and the device goes to DRIVER_OK at
// the frontend's SET_STATUS(DRIVER_OK) or, without the STATUS protocol feature, at the first kick
// (which comes after the frontend set up every ring). Kicks arrive on the kick eventfds; used-ring
// notifications leave through the call eventfds. A frontend that goes away (hang-up, a refused
// request) stops the device and leaves the transport ready for the next: in server mode it
// accepts the next connection, in client mode it reconnects.
//
// Thread-safety: the connection, the session and the kick watches live on the machine's main
// loop; device callbacks (NotifyQueue) may come from the netdev's loop.
#ifndef VDEV_HW_VIRTIO_VHOST_USER_BACKEND_H_
#define VDEV_HW_VIRTIO_VHOST_USER_BACKEND_H_

#include <atomic>
#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "bus/virtio/virtio_bus.h"
#include "bus/virtio/virtio_device.h"
#include "bus/virtio/virtio_regs.h"
#include "core/backends/chardev.h"
#include "core/loop/event_loop.h"
#include "core/qdev/sysbus.h"
#include "hw/virtio/vhost/vhost_user_backend.h"

namespace vdev::virtio {

class VhostUserBackend : public SysBusDevice,
                         public VirtioTransport,
                         public vhost::VhostUserBackendDevice {
 public:
  static constexpr char kTypeName[] = "vhost-user-backend";
  using Parent = SysBusDevice;
  static void ClassInit(DeviceClass& k);

  VhostUserBackend();
  ~VhostUserBackend() override;

  // The bus ("<id>.0"; nullptr until realized) and its device.
  VirtioBus* bus() const { return bus_; }
  VirtIODevice* vdev() const { return bus_ ? bus_->device() : nullptr; }
  // Whether a frontend is connected now, and how many have connected so far.
  bool connected() const { return session_ != nullptr; }
  uint64_t connections() const { return connections_; }

  // VirtioTransport.
  void NotifyQueue(uint16_t index) override;
  void NotifyConfig() override {}
  const GuestMemory* dma_memory() const override;

  // vhost::VhostUserBackendDevice (the session's requests, on the main loop).
  uint64_t DeviceFeatures() const override;
  absl::Status SetFeatures(uint64_t features) override;
  absl::Status StartRing(uint32_t index, const vhost::BackendRing& ring,
                         const GuestMemory& mem) override;
  uint32_t StopRing(uint32_t index) override;
  void CallChanged(uint32_t index, int fd) override;
  void ResetDevice() override;
  absl::Status SendRarp(const uint8_t mac[6]) override;
  uint32_t ConfigSize() const override;
  std::vector<uint8_t> GetConfig(uint32_t offset, uint32_t size) override;
  absl::Status SetConfig(uint32_t offset, const std::vector<uint8_t>& data) override;

 protected:
  absl::Status Realize() override;
  void Unrealize() override;

 private:
  // Accepts (server) or connects (client) on the loop; a failure retries later.
  void Listen();
  void TryConnect();
  void Connected(UniqueFd sock);
  void Readable();
  // The frontend is gone: stop the device, drop the session, wait for the next one.
  void Disconnect(const absl::Status& why);
  void KickArrived(uint16_t index);
  // Without DRIVER_OK from the frontend, whether it has set up every ring it enabled (then a kick
  // starts the device); kicks before that wait in pending_kicks_.
  bool EnabledRingsComplete() const;
  void MaybeStartOnKicks();
  // DRIVER_OK with the rings configured so far.
  void StartDevice();
  void StopDevice();
  // Tells the device which rings the frontend runs (started and enabled), when that changed or
  // `force`.
  void SyncFrontendQueues(bool force);

  ChardevSocket* chardev_ = nullptr;  // property
  VirtioBus* bus_ = nullptr;
  EventLoop* loop_ = nullptr;
  VirtioRegisters regs_;

  UniqueFd sock_;
  FdWatch sock_watch_, listen_watch_;
  Timer retry_;
  std::unique_ptr<vhost::VhostUserBackendSession> session_;
  std::vector<FdWatch> kick_watches_;
  bool device_running_ = false;
  std::vector<uint16_t> stopped_at_;   // last_avail of each queue when the device stopped
  std::vector<bool> frontend_queues_;  // as last told to the device
  std::vector<uint16_t> pending_kicks_;
  uint64_t connections_ = 0;

  // The frontend's memory as the session maps it (read by the device on any thread).
  std::atomic<const GuestMemory*> mem_{nullptr};
  // Call eventfds by queue (read by NotifyQueue on any thread).
  mutable absl::Mutex call_mu_;
  std::vector<int> call_fds_ ABSL_GUARDED_BY(call_mu_);
};

}  // namespace vdev::virtio

#endif  // VDEV_HW_VIRTIO_VHOST_USER_BACKEND_H_
