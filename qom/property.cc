#include "qom/property.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"

namespace vdev::qom {
namespace {

bool ParseDigits(absl::string_view s, int base, uint64_t* out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, base);
  return ec == std::errc() && ptr == s.data() + s.size();
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

absl::Status BadValueError(absl::string_view name, absl::string_view expects,
                           absl::string_view got) {
  return absl::InvalidArgumentError(
      absl::StrCat("Parameter '", name, "' expects ", expects, ", got '", got, "'"));
}

bool ParseBool(absl::string_view s, bool* out) {
  if (s == "on" || s == "true" || s == "yes") return *out = true, true;
  if (s == "off" || s == "false" || s == "no") return *out = false, true;
  return false;
}

std::optional<uint64_t> ParseU64(absl::string_view s) {
  uint64_t v = 0;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    if (!ParseDigits(s.substr(2), 16, &v)) return std::nullopt;
    return v;
  }
  if (!ParseDigits(s, 10, &v)) return std::nullopt;
  return v;
}

std::optional<int64_t> ParseI64(absl::string_view s) {
  bool neg = false;
  if (!s.empty() && s[0] == '-') {
    neg = true;
    s.remove_prefix(1);
  }
  auto u = ParseU64(s);
  if (!u) return std::nullopt;
  if (neg) {
    if (*u > uint64_t{1} << 63) return std::nullopt;
    return static_cast<int64_t>(0 - *u);
  }
  if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  return static_cast<int64_t>(*u);
}

bool ParseMac(absl::string_view s, MacAddress* out) {
  if (s.size() != 17) return false;
  MacAddress m;
  for (int i = 0; i < 6; ++i) {
    int hi = HexValue(s[i * 3]);
    int lo = HexValue(s[i * 3 + 1]);
    if (hi < 0 || lo < 0) return false;
    if (i < 5 && s[i * 3 + 2] != ':') return false;
    m.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  *out = m;
  return true;
}

std::string PrintMac(const MacAddress& m) {
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", m.bytes[0], m.bytes[1], m.bytes[2],
                         m.bytes[3], m.bytes[4], m.bytes[5]);
}

bool ParsePciDevFn(absl::string_view s, PciDevFn* out) {
  // "slot[.fn]" in hex (an optional 0x on the slot), like QEMU's addr=; "-1" means auto.
  if (s == "-1") {
    *out = PciDevFn::Auto();
    return true;
  }
  absl::string_view slot_s = s, fn_s;
  if (size_t dot = s.find('.'); dot != absl::string_view::npos) {
    slot_s = s.substr(0, dot);
    fn_s = s.substr(dot + 1);
    if (fn_s.empty()) return false;
  }
  if (absl::StartsWithIgnoreCase(slot_s, "0x")) slot_s.remove_prefix(2);
  uint64_t slot = 0, fn = 0;
  if (slot_s.size() > 2 || !ParseDigits(slot_s, 16, &slot) || slot > 31) return false;
  if (!fn_s.empty() && (fn_s.size() != 1 || !ParseDigits(fn_s, 16, &fn) || fn > 7)) return false;
  *out = PciDevFn::Of(static_cast<int>(slot), static_cast<int>(fn));
  return true;
}

std::string PrintPciDevFn(PciDevFn d) {
  if (d.is_auto()) return "-1";
  return absl::StrFormat("%02x.%x", d.slot(), d.fn());
}

bool ParseSize(absl::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  const bool hex = s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
  int shift = 0;
  switch (s.back()) {
    case 'k':
    case 'K':
      shift = 10;
      break;
    case 'M':
    case 'm':
      shift = 20;
      break;
    case 'G':
    case 'g':
      shift = 30;
      break;
    case 'T':
    case 't':
      shift = 40;
      break;
    case 'B':
    case 'b':
      shift = hex ? -1 : 0;  // in "0x1b" the b is a digit
      break;
    default:
      shift = -1;
  }
  if (shift >= 0) s.remove_suffix(1);
  auto v = ParseU64(s);
  if (!v) return false;
  if (shift > 0) {
    if (*v > (std::numeric_limits<uint64_t>::max() >> shift)) return false;
    *v <<= shift;
  }
  *out = *v;
  return true;
}

}  // namespace vdev::qom
