// Ethernet/ARP/IPv4/ICMP/UDP frames for the software guest's tests: builders with correct
// checksums, and a few parsers.
#ifndef VDEV_TESTS_TESTING_NET_FRAMES_H_
#define VDEV_TESTS_TESTING_NET_FRAMES_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vdev::testing {

using Mac = std::array<uint8_t, 6>;
using Ip4 = std::array<uint8_t, 4>;

inline constexpr Mac kBroadcastMac = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
inline constexpr uint16_t kEtherArp = 0x0806;
inline constexpr uint16_t kEtherIp4 = 0x0800;

std::vector<uint8_t> EthFrame(const Mac& dst, const Mac& src, uint16_t type,
                              const std::vector<uint8_t>& payload);
// A frame with an 802.1Q tag.
std::vector<uint8_t> VlanFrame(const Mac& dst, const Mac& src, uint16_t vid, uint16_t type,
                               const std::vector<uint8_t>& payload);
std::vector<uint8_t> ArpRequest(const Mac& src, const Ip4& src_ip, const Ip4& target_ip);
std::vector<uint8_t> ArpReply(const Mac& src, const Ip4& src_ip, const Mac& dst, const Ip4& dst_ip);
std::vector<uint8_t> Ip4Frame(const Mac& dst, const Mac& src, const Ip4& src_ip, const Ip4& dst_ip,
                              uint8_t proto, const std::vector<uint8_t>& payload);
std::vector<uint8_t> IcmpEcho(const Mac& dst, const Mac& src, const Ip4& src_ip, const Ip4& dst_ip,
                              uint16_t id, uint16_t seq, const std::vector<uint8_t>& data);
std::vector<uint8_t> UdpFrame(const Mac& dst, const Mac& src, const Ip4& src_ip, const Ip4& dst_ip,
                              uint16_t sport, uint16_t dport, const std::vector<uint8_t>& data);
uint16_t InetChecksum(const uint8_t* p, size_t n, uint32_t sum = 0);

struct ParsedFrame {
  Mac dst{}, src{};
  uint16_t type = 0;
  // ARP
  uint16_t arp_op = 0;
  Mac arp_sha{};
  Ip4 arp_spa{}, arp_tpa{};
  // IPv4
  Ip4 ip_src{}, ip_dst{};
  uint8_t proto = 0;
  bool ip_checksum_ok = false;
  // ICMP
  uint8_t icmp_type = 0;
  uint16_t icmp_id = 0, icmp_seq = 0;
  // UDP
  uint16_t sport = 0, dport = 0;
  std::vector<uint8_t> payload;  // ICMP data or UDP payload
};
std::optional<ParsedFrame> ParseFrame(const std::vector<uint8_t>& f);

std::string FormatMac(const Mac& m);

}  // namespace vdev::testing

#endif  // VDEV_TESTS_TESTING_NET_FRAMES_H_
