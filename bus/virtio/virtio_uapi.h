// The Linux uapi virtio headers, the authoritative layouts and constants, made usable from C++:
// virtio_ring.h's legacy vring_init() helper is C-only, so it is left out (we do not use it).
#ifndef VDEV_BUS_VIRTIO_VIRTIO_UAPI_H_
#define VDEV_BUS_VIRTIO_VIRTIO_UAPI_H_

#define VIRTIO_RING_NO_LEGACY 1
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_ring.h>

#endif  // VDEV_BUS_VIRTIO_VIRTIO_UAPI_H_
