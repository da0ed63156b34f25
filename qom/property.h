// Typed properties: the one descriptor that the -device parser, `help`, qom-get/qom-set and the
// tree printers all go through.
//
// A property has a name, a type name ("bool", "uint32", "macaddr", "link<netdev>"...), a
// description, an optional default, and a string form (parse and print). Class properties are
// declared in class_init and bound to a member field:
//
//   static void ClassInit(DeviceClass& k) {
//     k.AddProperty(qom::Prop("vectors", &VirtIOPCIProxy::vectors_, uint32_t{3},
//                             "number of MSI-X vectors"));
//     k.AddProperty(qom::Prop("mac", &VirtIONet::mac_, MacAddress{}, "MAC address"));
//     k.AddProperty(qom::EnumProp("vhost", &Tap::vhost_, OnOffAuto::kAuto, kOnOffAutoNames,
//                                 "use vhost"));
//     k.AddProperty(qom::BitProp("csum", &VirtIONet::host_features_, VIRTIO_NET_F_CSUM, true,
//                                "checksum offload"));
//   }
//
// Instance properties are added to one object at run time (Object::AddInstanceProperty).
// Properties are writable until the object is realized and read-only afterwards unless
// `runtime_settable`.
#ifndef VDEV_QOM_PROPERTY_H_
#define VDEV_QOM_PROPERTY_H_

#include <array>
#include <charconv>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace vdev::qom {

class Object;

// Describes one property. Setters receive the already-located object; `SetFromString` wraps them
// with the frozen-after-realize rule and error context (see Object::SetProperty).
struct PropertyInfo {
  std::string name;
  std::string type;         // e.g. "bool", "uint32", "str", "macaddr", "link<netdev>", "child<edu>"
  std::string description;  // one line, for help
  std::optional<std::string> default_value;  // printed form; nullopt when there is none
  bool runtime_settable = false;             // may change after realize
  std::vector<std::string> enum_values;      // for enum types: the accepted names

  // Parses `value` and stores it. Empty for read-only properties (children, computed values).
  // On a bad value returns InvalidArgument with the full message, e.g.
  //   "Parameter 'vectors' expects an integer, got 'x'".
  std::function<absl::Status(Object&, absl::string_view value)> set;
  // Prints the current value.
  std::function<std::string(const Object&)> get;
  // Sets the value to the default when an instance is created. May be empty. An error (only
  // possible for a default given as text, see ObjectClass::SetPropertyDefault) fails Create().
  std::function<absl::Status(Object&)> init;
  // For link properties: forgets the target without touching it (the target is going away).
  std::function<void(Object&)> clear_link;
};

// ---- value types with a string form ----

// A 48-bit MAC address. Parsed from and printed as "52:54:00:12:34:56".
struct MacAddress {
  std::array<uint8_t, 6> bytes{};
  bool operator==(const MacAddress&) const = default;
  bool IsZero() const { return bytes == std::array<uint8_t, 6>{}; }
  bool IsMulticast() const { return bytes[0] & 1; }
};

// A PCI device/function number within one bus, set as "slot[.fn]" (hex, like QEMU's `addr=`).
// -1 means "first free slot".
struct PciDevFn {
  int32_t devfn = -1;
  static constexpr PciDevFn Auto() { return PciDevFn{-1}; }
  static constexpr PciDevFn Of(int slot, int fn) { return PciDevFn{slot << 3 | fn}; }
  bool is_auto() const { return devfn < 0; }
  int slot() const { return devfn >> 3; }
  int fn() const { return devfn & 7; }
  bool operator==(const PciDevFn&) const = default;
};

// A byte count; accepts k/M/G/T (powers of 1024) suffixes: "64M".
struct Size {
  uint64_t bytes = 0;
  bool operator==(const Size&) const = default;
};

// The common tri-state QEMU uses for "on|off|auto" switches.
enum class OnOffAuto { kAuto = 0, kOn = 1, kOff = 2 };
inline const std::vector<std::pair<std::string, int>>& OnOffAutoNames() {
  static const auto* names =
      new std::vector<std::pair<std::string, int>>{{"auto", 0}, {"on", 1}, {"off", 2}};
  return *names;
}

// ---- codecs: parse and print for one C++ value type ----

// Each codec: kType (the type name shown by help); Parse(text, &out, &expects) returning false
// and describing what was expected on failure; Print(value).
template <typename V, typename = void>
struct Codec;

bool ParseBool(absl::string_view s, bool* out);
std::optional<uint64_t> ParseU64(absl::string_view s);  // decimal or 0x hex, no sign
std::optional<int64_t> ParseI64(absl::string_view s);   // optional '-', decimal or 0x hex
bool ParseMac(absl::string_view s, MacAddress* out);
std::string PrintMac(const MacAddress& m);
bool ParsePciDevFn(absl::string_view s, PciDevFn* out);
std::string PrintPciDevFn(PciDevFn d);
bool ParseSize(absl::string_view s, uint64_t* out);

template <>
struct Codec<bool> {
  static constexpr const char* kType = "bool";
  static bool Parse(absl::string_view s, bool* out, std::string* expects) {
    if (ParseBool(s, out)) return true;
    *expects = "'on' or 'off'";
    return false;
  }
  static std::string Print(bool v) { return v ? "on" : "off"; }
};

template <typename I>
struct Codec<I, std::enable_if_t<std::is_integral_v<I> && !std::is_same_v<I, bool>>> {
  static constexpr const char* kType = std::is_signed_v<I> ? (sizeof(I) == 1   ? "int8"
                                                              : sizeof(I) == 2 ? "int16"
                                                              : sizeof(I) == 4 ? "int32"
                                                                               : "int64")
                                                           : (sizeof(I) == 1   ? "uint8"
                                                              : sizeof(I) == 2 ? "uint16"
                                                              : sizeof(I) == 4 ? "uint32"
                                                                               : "uint64");
  static bool Parse(absl::string_view s, I* out, std::string* expects) {
    if constexpr (std::is_signed_v<I>) {
      auto v = ParseI64(s);
      if (!v) return *expects = "an integer", false;
      if (*v < std::numeric_limits<I>::min() || *v > std::numeric_limits<I>::max()) {
        *expects = absl::StrCat("an integer in [", int64_t{std::numeric_limits<I>::min()}, ", ",
                                int64_t{std::numeric_limits<I>::max()}, "]");
        return false;
      }
      *out = static_cast<I>(*v);
    } else {
      auto v = ParseU64(s);
      if (!v) {
        // A negative number is an integer, just not one this property takes.
        *expects = ParseI64(s) ? absl::StrCat("an integer in [0, ",
                                              uint64_t{std::numeric_limits<I>::max()}, "]")
                               : "an integer";
        return false;
      }
      if (*v > std::numeric_limits<I>::max()) {
        *expects = absl::StrCat("an integer in [0, ", uint64_t{std::numeric_limits<I>::max()}, "]");
        return false;
      }
      *out = static_cast<I>(*v);
    }
    return true;
  }
  static std::string Print(I v) { return absl::StrCat(v); }
};

template <>
struct Codec<std::string> {
  static constexpr const char* kType = "str";
  static bool Parse(absl::string_view s, std::string* out, std::string*) {
    out->assign(s.data(), s.size());
    return true;
  }
  static std::string Print(const std::string& v) { return v; }
};

template <>
struct Codec<MacAddress> {
  static constexpr const char* kType = "macaddr";
  static bool Parse(absl::string_view s, MacAddress* out, std::string* expects) {
    if (ParseMac(s, out)) return true;
    *expects = "a MAC address (aa:bb:cc:dd:ee:ff)";
    return false;
  }
  static std::string Print(const MacAddress& v) { return PrintMac(v); }
};

template <>
struct Codec<PciDevFn> {
  static constexpr const char* kType = "pci-devfn";
  static bool Parse(absl::string_view s, PciDevFn* out, std::string* expects) {
    if (ParsePciDevFn(s, out)) return true;
    *expects = "a PCI address (slot[.fn], slot 0-1f, fn 0-7)";
    return false;
  }
  static std::string Print(PciDevFn v) { return PrintPciDevFn(v); }
};

template <>
struct Codec<Size> {
  static constexpr const char* kType = "size";
  static bool Parse(absl::string_view s, Size* out, std::string* expects) {
    if (ParseSize(s, &out->bytes)) return true;
    *expects = "a size (bytes, or with a k/M/G/T suffix)";
    return false;
  }
  static std::string Print(Size v) { return absl::StrCat(v.bytes); }
};

// The message every bad value produces.
absl::Status BadValueError(absl::string_view name, absl::string_view expects,
                           absl::string_view got);

namespace internal {
// Casts the generic object to the class that owns the field. Checked in debug builds.
template <typename Owner>
Owner& OwnerOf(Object& o);
template <typename Owner>
const Owner& OwnerOf(const Object& o);
}  // namespace internal

// A class property bound to field `member` of `Owner` (the class that declares the field; the
// object the property is used on derives from it).
template <typename Owner, typename V>
PropertyInfo Prop(std::string name, V Owner::*member, V default_value, std::string description) {
  using C = Codec<V>;
  PropertyInfo p;
  p.type = C::kType;
  p.description = std::move(description);
  p.default_value = C::Print(default_value);
  p.set = [member, n = name](Object& o, absl::string_view text) -> absl::Status {
    V v{};
    std::string expects;
    if (!C::Parse(text, &v, &expects)) return BadValueError(n, expects, text);
    internal::OwnerOf<Owner>(o).*member = std::move(v);
    return absl::OkStatus();
  };
  p.get = [member](const Object& o) { return C::Print(internal::OwnerOf<Owner>(o).*member); };
  p.init = [member, default_value](Object& o) {
    internal::OwnerOf<Owner>(o).*member = default_value;
    return absl::OkStatus();
  };
  p.name = std::move(name);
  return p;
}

// Prop() for an unsigned id or mask shown in hex ("0x1af4") in help and when read; it is set
// from decimal or hex like any integer.
template <typename Owner, typename V>
PropertyInfo HexProp(std::string name, V Owner::*member, V default_value, std::string description) {
  static_assert(std::is_unsigned_v<V>, "HexProp is for unsigned fields");
  PropertyInfo p = Prop(std::move(name), member, default_value, std::move(description));
  p.default_value = absl::StrCat("0x", absl::Hex(default_value));
  p.get = [member](const Object& o) {
    return absl::StrCat("0x", absl::Hex(internal::OwnerOf<Owner>(o).*member));
  };
  return p;
}

// A bool property backed by bit `bit` of the unsigned field `word` (QEMU's DEFINE_PROP_BIT64):
// several switches share one word, typically the feature bits a device offers, so the word is
// the device's state and the properties are only its spelling.
//
//   k.AddProperty(qom::BitProp("mrg_rxbuf", &VirtIONet::host_features_, VIRTIO_NET_F_MRG_RXBUF,
//                              true, "mergeable receive buffers"));
template <typename Owner, typename W>
PropertyInfo BitProp(std::string name, W Owner::*word, unsigned bit, bool default_value,
                     std::string description) {
  static_assert(std::is_unsigned_v<W> && !std::is_same_v<W, bool>);
  using C = Codec<bool>;
  const W mask = W{1} << bit;
  PropertyInfo p;
  p.type = C::kType;
  p.description = std::move(description);
  p.default_value = C::Print(default_value);
  auto store = [word, mask](Object& o, bool on) {
    W& w = internal::OwnerOf<Owner>(o).*word;
    w = on ? (w | mask) : (w & ~mask);
  };
  p.set = [store, n = name](Object& o, absl::string_view text) -> absl::Status {
    bool v = false;
    std::string expects;
    if (!C::Parse(text, &v, &expects)) return BadValueError(n, expects, text);
    store(o, v);
    return absl::OkStatus();
  };
  p.get = [word, mask](const Object& o) {
    return C::Print((internal::OwnerOf<Owner>(o).*word & mask) != 0);
  };
  p.init = [store, default_value](Object& o) {
    store(o, default_value);
    return absl::OkStatus();
  };
  p.name = std::move(name);
  return p;
}

// An enum class property. `names` maps each accepted string to the enum's integer value; the
// first name for a value is the one printed.
template <typename Owner, typename E>
PropertyInfo EnumProp(std::string name, E Owner::*member, E default_value,
                      const std::vector<std::pair<std::string, int>>& names,
                      std::string description, std::string type_name = "") {
  static_assert(std::is_enum_v<E>);
  PropertyInfo p;
  std::string expects = "one of ";
  for (size_t i = 0; i < names.size(); ++i) {
    p.enum_values.push_back(names[i].first);
    absl::StrAppend(&expects, i ? "/" : "", names[i].first);
  }
  auto print = [names](E v) -> std::string {
    for (const auto& [n, i] : names) {
      if (i == static_cast<int>(v)) return n;
    }
    return absl::StrCat(static_cast<int>(v));
  };
  p.type = type_name.empty() ? "enum" : std::move(type_name);
  p.description = std::move(description);
  p.default_value = print(default_value);
  p.set = [member, names, expects, n = name](Object& o, absl::string_view text) -> absl::Status {
    for (const auto& [s, i] : names) {
      if (s == text) {
        internal::OwnerOf<Owner>(o).*member = static_cast<E>(i);
        return absl::OkStatus();
      }
    }
    return BadValueError(n, expects, text);
  };
  p.get = [member, print](const Object& o) { return print(internal::OwnerOf<Owner>(o).*member); };
  p.init = [member, default_value](Object& o) {
    internal::OwnerOf<Owner>(o).*member = default_value;
    return absl::OkStatus();
  };
  p.name = std::move(name);
  return p;
}

}  // namespace vdev::qom

#endif  // VDEV_QOM_PROPERTY_H_
