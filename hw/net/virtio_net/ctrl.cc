// virtio-net control queue (VIRTIO 1.2 §5.1.6.5): every command validated, acked OK or ERR.
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/logging.h"
#include "hw/net/virtio_net/virtio_net_internal.h"

namespace vdev::virtio {

void VirtIONet::HandleCtrl(VirtQueue* vq) {
  VirtQueueElement e;
  for (int n = 0; n < 2 * vq->size(); ++n) {
    const PopResult r = vq->Pop(&e);
    if (r == PopResult::kBroken) {
      MarkNeedsReset(absl::StrCat("control queue: ", vq->broken_reason()));
      return;
    }
    if (r == PopResult::kEmpty) break;
    if (e.out_len < sizeof(virtio_net_ctrl_hdr) || e.in_len < 1) {
      VDEV_LOG_GUEST_ERROR(counters(), "ctrl_bad_request",
                           "%s: control request without header or ack byte (%u/%u bytes)",
                           DisplayName(), e.out_len, e.in_len);
      vq->Push(e, 0);
      continue;
    }
    uint8_t ack = VIRTIO_NET_ERR;
    if (e.out_len - sizeof(virtio_net_ctrl_hdr) <= kMaxCtrlPayload) {
      ChainReader r(e.out);
      virtio_net_ctrl_hdr ch;
      r.ReadObject(&ch);
      std::vector<uint8_t> data(r.remaining());
      r.Read(data.data(), data.size());
      ack = CtrlCommand(ch.klass, ch.cmd, data);
    }
    if (ack != VIRTIO_NET_OK) counters().Increment("ctrl_err");
    ChainWriter w(e.in);
    w.WriteObject(ack);
    vq->Push(e, static_cast<uint32_t>(w.written()));
  }
  NotifyQueue(vq->index());
}

uint8_t VirtIONet::CtrlCommand(uint8_t cls, uint8_t cmd, const std::vector<uint8_t>& d) {
  constexpr uint8_t kOk = VIRTIO_NET_OK, kErr = VIRTIO_NET_ERR;
  switch (cls) {
    case VIRTIO_NET_CTRL_RX: {
      if (!negotiated(VIRTIO_NET_F_CTRL_RX) || d.size() != 1) return kErr;
      const bool on = d[0] != 0;
      const bool extra = negotiated(VIRTIO_NET_F_CTRL_RX_EXTRA);
      switch (cmd) {
        case VIRTIO_NET_CTRL_RX_PROMISC:
          filter_.promisc = on;
          return kOk;
        case VIRTIO_NET_CTRL_RX_ALLMULTI:
          filter_.allmulti = on;
          return kOk;
        case VIRTIO_NET_CTRL_RX_ALLUNI:
          if (!extra) return kErr;
          filter_.alluni = on;
          return kOk;
        case VIRTIO_NET_CTRL_RX_NOMULTI:
          if (!extra) return kErr;
          filter_.nomulti = on;
          return kOk;
        case VIRTIO_NET_CTRL_RX_NOUNI:
          if (!extra) return kErr;
          filter_.nouni = on;
          return kOk;
        case VIRTIO_NET_CTRL_RX_NOBCAST:
          if (!extra) return kErr;
          filter_.nobcast = on;
          return kOk;
        default:
          return kErr;
      }
    }
    case VIRTIO_NET_CTRL_MAC: {
      if (cmd == VIRTIO_NET_CTRL_MAC_ADDR_SET) {
        if (!negotiated(VIRTIO_NET_F_CTRL_MAC_ADDR) || d.size() != 6) return kErr;
        std::memcpy(mac_.bytes.data(), d.data(), 6);
        return kOk;
      }
      if (cmd != VIRTIO_NET_CTRL_MAC_TABLE_SET || !negotiated(VIRTIO_NET_F_CTRL_RX)) return kErr;
      // Two tables (unicast, then multicast), each a 32-bit count and that many addresses.
      RxFilter f = filter_;
      f.uni.clear();
      f.multi.clear();
      f.uni_overflow = f.multi_overflow = false;
      size_t off = 0;
      for (int table = 0; table < 2; ++table) {
        uint32_t entries;
        if (d.size() - off < sizeof(entries)) return kErr;
        std::memcpy(&entries, d.data() + off, sizeof(entries));
        off += sizeof(entries);
        if (uint64_t{entries} * 6 > d.size() - off) return kErr;
        std::vector<qom::MacAddress>& out = table == 0 ? f.uni : f.multi;
        if (f.uni.size() + entries <= kMacTableEntries) {
          for (uint32_t i = 0; i < entries; ++i) {
            qom::MacAddress m;
            std::memcpy(m.bytes.data(), d.data() + off + 6 * i, 6);
            out.push_back(m);
          }
        } else {
          (table == 0 ? f.uni_overflow : f.multi_overflow) = true;
        }
        off += size_t{entries} * 6;
      }
      if (off != d.size()) return kErr;
      filter_ = std::move(f);
      return kOk;
    }
    case VIRTIO_NET_CTRL_VLAN: {
      if (!negotiated(VIRTIO_NET_F_CTRL_VLAN) || d.size() != 2) return kErr;
      const uint16_t vid = static_cast<uint16_t>(d[0] | d[1] << 8);
      if (vid >= kMaxVlans) return kErr;
      if (cmd == VIRTIO_NET_CTRL_VLAN_ADD) {
        filter_.vlans.set(vid);
      } else if (cmd == VIRTIO_NET_CTRL_VLAN_DEL) {
        filter_.vlans.reset(vid);
      } else {
        return kErr;
      }
      return kOk;
    }
    case VIRTIO_NET_CTRL_ANNOUNCE: {
      if (!negotiated(VIRTIO_NET_F_GUEST_ANNOUNCE) || cmd != VIRTIO_NET_CTRL_ANNOUNCE_ACK ||
          !d.empty()) {
        return kErr;
      }
      net_status_ &= ~VIRTIO_NET_S_ANNOUNCE;
      return kOk;
    }
    case VIRTIO_NET_CTRL_MQ: {
      if (!negotiated(VIRTIO_NET_F_MQ) || cmd != VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET || d.size() != 2) {
        return kErr;
      }
      const uint16_t n = static_cast<uint16_t>(d[0] | d[1] << 8);
      if (n < VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN || n > pairs_.size()) return kErr;
      SetQueuePairs(n);
      for (size_t i = 0; i < n; ++i) ScheduleRxFlush(i);
      return kOk;
    }
    case VIRTIO_NET_CTRL_GUEST_OFFLOADS: {
      if (!negotiated(VIRTIO_NET_F_CTRL_GUEST_OFFLOADS) ||
          cmd != VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET || d.size() != 8) {
        return kErr;
      }
      uint64_t offloads;
      std::memcpy(&offloads, d.data(), 8);
      // Only offloads that were negotiated, and consistent among themselves.
      if (offloads & ~(negotiated() & kGuestOffloads)) return kErr;
      if (!CheckFeatures(offloads | Bit(VIRTIO_NET_F_CTRL_VQ)).empty()) return kErr;
      ApplyOffloads(offloads);
      return kOk;
    }
    default:
      return kErr;
  }
}

}  // namespace vdev::virtio
