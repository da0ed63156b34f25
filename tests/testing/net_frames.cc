#include "tests/testing/net_frames.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace vdev::testing {
namespace {

void Put16(std::vector<uint8_t>& v, uint16_t x) {
  v.push_back(x >> 8);
  v.push_back(x & 0xff);
}
void PutBytes(std::vector<uint8_t>& v, const uint8_t* p, size_t n) { v.insert(v.end(), p, p + n); }
uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

}  // namespace

uint16_t InetChecksum(const uint8_t* p, size_t n, uint32_t sum) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += Get16(p + i);
  if (n & 1) sum += p[n - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

std::vector<uint8_t> EthFrame(const Mac& dst, const Mac& src, uint16_t type,
                              const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> f;
  PutBytes(f, dst.data(), 6);
  PutBytes(f, src.data(), 6);
  Put16(f, type);
  f.insert(f.end(), payload.begin(), payload.end());
  while (f.size() < 60) f.push_back(0);  // minimum frame
  return f;
}

std::vector<uint8_t> VlanFrame(const Mac& dst, const Mac& src, uint16_t vid, uint16_t type,
                               const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> f;
  PutBytes(f, dst.data(), 6);
  PutBytes(f, src.data(), 6);
  Put16(f, 0x8100);
  Put16(f, vid & 0xfff);
  Put16(f, type);
  f.insert(f.end(), payload.begin(), payload.end());
  while (f.size() < 64) f.push_back(0);
  return f;
}

static std::vector<uint8_t> Arp(uint16_t op, const Mac& sha, const Ip4& spa, const Mac& tha,
                                const Ip4& tpa) {
  std::vector<uint8_t> a;
  Put16(a, 1);       // Ethernet
  Put16(a, 0x0800);  // IPv4
  a.push_back(6);
  a.push_back(4);
  Put16(a, op);
  PutBytes(a, sha.data(), 6);
  PutBytes(a, spa.data(), 4);
  PutBytes(a, tha.data(), 6);
  PutBytes(a, tpa.data(), 4);
  return a;
}

std::vector<uint8_t> ArpRequest(const Mac& src, const Ip4& src_ip, const Ip4& target_ip) {
  return EthFrame(kBroadcastMac, src, kEtherArp, Arp(1, src, src_ip, Mac{}, target_ip));
}

std::vector<uint8_t> ArpReply(const Mac& src, const Ip4& src_ip, const Mac& dst,
                              const Ip4& dst_ip) {
  return EthFrame(dst, src, kEtherArp, Arp(2, src, src_ip, dst, dst_ip));
}

std::vector<uint8_t> Ip4Frame(const Mac& dst, const Mac& src, const Ip4& src_ip, const Ip4& dst_ip,
                              uint8_t proto, const std::vector<uint8_t>& payload) {
  static uint16_t ident = 1;
  std::vector<uint8_t> ip;
  ip.push_back(0x45);
  ip.push_back(0);
  Put16(ip, static_cast<uint16_t>(20 + payload.size()));
  Put16(ip, ident++);
  Put16(ip, 0x4000);  // DF
  ip.push_back(64);
  ip.push_back(proto);
  Put16(ip, 0);
  PutBytes(ip, src_ip.data(), 4);
  PutBytes(ip, dst_ip.data(), 4);
  const uint16_t c = InetChecksum(ip.data(), 20);
  ip[10] = c >> 8;
  ip[11] = c & 0xff;
  ip.insert(ip.end(), payload.begin(), payload.end());
  return EthFrame(dst, src, kEtherIp4, ip);
}

std::vector<uint8_t> IcmpEcho(const Mac& dst, const Mac& src, const Ip4& src_ip, const Ip4& dst_ip,
                              uint16_t id, uint16_t seq, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> icmp = {8, 0, 0, 0};
  Put16(icmp, id);
  Put16(icmp, seq);
  icmp.insert(icmp.end(), data.begin(), data.end());
  const uint16_t c = InetChecksum(icmp.data(), icmp.size());
  icmp[2] = c >> 8;
  icmp[3] = c & 0xff;
  return Ip4Frame(dst, src, src_ip, dst_ip, 1, icmp);
}

std::vector<uint8_t> UdpFrame(const Mac& dst, const Mac& src, const Ip4& src_ip, const Ip4& dst_ip,
                              uint16_t sport, uint16_t dport, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> udp;
  Put16(udp, sport);
  Put16(udp, dport);
  Put16(udp, static_cast<uint16_t>(8 + data.size()));
  Put16(udp, 0);  // no checksum (allowed over IPv4)
  udp.insert(udp.end(), data.begin(), data.end());
  return Ip4Frame(dst, src, src_ip, dst_ip, 17, udp);
}

std::optional<ParsedFrame> ParseFrame(const std::vector<uint8_t>& f) {
  if (f.size() < 14) return std::nullopt;
  ParsedFrame p;
  std::memcpy(p.dst.data(), f.data(), 6);
  std::memcpy(p.src.data(), f.data() + 6, 6);
  p.type = Get16(f.data() + 12);
  const uint8_t* l3 = f.data() + 14;
  const size_t n = f.size() - 14;
  if (p.type == kEtherArp) {
    if (n < 28) return std::nullopt;
    p.arp_op = Get16(l3 + 6);
    std::memcpy(p.arp_sha.data(), l3 + 8, 6);
    std::memcpy(p.arp_spa.data(), l3 + 14, 4);
    std::memcpy(p.arp_tpa.data(), l3 + 24, 4);
    return p;
  }
  if (p.type != kEtherIp4) return p;
  if (n < 20 || (l3[0] >> 4) != 4) return std::nullopt;
  const size_t ihl = (l3[0] & 0xf) * 4;
  const size_t total = Get16(l3 + 2);
  if (ihl < 20 || total < ihl || total > n) return std::nullopt;
  p.ip_checksum_ok = InetChecksum(l3, ihl) == 0;
  p.proto = l3[9];
  std::memcpy(p.ip_src.data(), l3 + 12, 4);
  std::memcpy(p.ip_dst.data(), l3 + 16, 4);
  const uint8_t* l4 = l3 + ihl;
  const size_t l4n = total - ihl;
  if (p.proto == 1 && l4n >= 8) {
    p.icmp_type = l4[0];
    p.icmp_id = Get16(l4 + 4);
    p.icmp_seq = Get16(l4 + 6);
    p.payload.assign(l4 + 8, l4 + l4n);
  } else if (p.proto == 17 && l4n >= 8) {
    p.sport = Get16(l4);
    p.dport = Get16(l4 + 2);
    const size_t ulen = Get16(l4 + 4);
    if (ulen < 8 || ulen > l4n) return std::nullopt;
    p.payload.assign(l4 + 8, l4 + ulen);
  }
  return p;
}

std::string FormatMac(const Mac& m) {
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

}  // namespace vdev::testing
