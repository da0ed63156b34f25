#include "core/qdev/options.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace vdev {
namespace {

bool ValidKey(absl::string_view k) {
  if (k.empty()) return false;
  for (char c : k) {
    if (!(absl::ascii_isalnum(c) || c == '_' || c == '-' || c == '.')) return false;
  }
  return true;
}

// Splits at single commas; ",," is an escaped comma and stays inside the element (unescaped).
std::vector<std::string> SplitElements(absl::string_view text) {
  std::vector<std::string> out(1);
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == ',') {
      if (i + 1 < text.size() && text[i + 1] == ',') {
        out.back().push_back(',');
        ++i;
      } else {
        out.emplace_back();
      }
    } else {
      out.back().push_back(text[i]);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<QemuOpts> QemuOpts::Parse(absl::string_view text, absl::string_view implied_key) {
  QemuOpts opts;
  if (text.empty()) return absl::InvalidArgumentError("empty option string");
  // Key positions are found on the escaped text so that "a,,b=c" keeps its comma in the key
  // check; we split first (unescaping) and then look for the first '=' in each element. An
  // escaped comma cannot appear in a valid key, so splitting keys after unescaping is safe.
  std::vector<std::string> elems = SplitElements(text);
  for (size_t i = 0; i < elems.size(); ++i) {
    const std::string& e = elems[i];
    size_t eq = e.find('=');
    if (eq == std::string::npos) {
      if (e == "help" || e == "?") {
        opts.help_ = true;
        continue;
      }
      if (i == 0 && !implied_key.empty()) {
        if (e.empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat("Parameter '", implied_key, "' is missing"));
        }
        opts.entries_.emplace_back(std::string(implied_key), e);
        continue;
      }
      if (e.empty()) {
        if (i + 1 == elems.size()) continue;  // a trailing comma is harmless
        return absl::InvalidArgumentError(absl::StrCat("Invalid parameter '' in '", text, "'"));
      }
      if (!ValidKey(e))
        return absl::InvalidArgumentError(absl::StrCat("Invalid parameter '", e, "'"));
      if (opts.Has(e)) {
        return absl::InvalidArgumentError(absl::StrCat("Parameter '", e, "' given more than once"));
      }
      opts.entries_.emplace_back(e, "on");
      continue;
    }
    std::string key = e.substr(0, eq);
    if (!ValidKey(key)) {
      return absl::InvalidArgumentError(absl::StrCat("Invalid parameter '", key, "'"));
    }
    if (opts.Has(key)) {
      return absl::InvalidArgumentError(absl::StrCat("Parameter '", key, "' given more than once"));
    }
    opts.entries_.emplace_back(std::move(key), e.substr(eq + 1));
  }
  return opts;
}

std::optional<std::string> QemuOpts::Get(absl::string_view key) const {
  for (const auto& [k, v] : entries_) {
    if (k == key) return v;
  }
  return std::nullopt;
}

void QemuOpts::Set(std::string key, std::string value) {
  for (auto& [k, v] : entries_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  entries_.emplace_back(std::move(key), std::move(value));
}

std::optional<std::string> QemuOpts::Take(absl::string_view key) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->first == key) {
      std::string v = std::move(it->second);
      entries_.erase(it);
      return v;
    }
  }
  return std::nullopt;
}

std::string QemuOpts::ToString(absl::string_view implied_key) const {
  std::string out;
  for (const auto& [k, v] : entries_) {
    if (!out.empty()) out.push_back(',');
    if (out.empty() && !implied_key.empty() && k == implied_key &&
        v.find('=') == std::string::npos && v != "help" && v != "?") {
      absl::StrAppend(&out, EscapeOptionValue(v));
    } else {
      absl::StrAppend(&out, k, "=", EscapeOptionValue(v));
    }
  }
  if (help_) absl::StrAppend(&out, out.empty() ? "" : ",", "help");
  return out;
}

std::string EscapeOptionValue(absl::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    out.push_back(c);
    if (c == ',') out.push_back(',');
  }
  return out;
}

}  // namespace vdev
