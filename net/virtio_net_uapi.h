// <linux/virtio_net.h> for C++: the control header has a member named `class`, a keyword here;
// it is spelled `klass` in C++ code. Include this instead of the uapi header.
#ifndef VDEV_NET_VIRTIO_NET_UAPI_H_
#define VDEV_NET_VIRTIO_NET_UAPI_H_

#define class klass
#include <linux/virtio_net.h>
#undef class

#endif  // VDEV_NET_VIRTIO_NET_UAPI_H_
