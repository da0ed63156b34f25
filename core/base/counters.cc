#include "core/base/counters.h"

#include <algorithm>

namespace vdev {

Counter* Counters::Get(absl::string_view name) {
  absl::MutexLock lock(&mu_);
  auto& slot = counters_[name];
  if (!slot) slot = std::make_unique<Counter>();
  return slot.get();
}

uint64_t Counters::Value(absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  auto it = counters_.find(name);
  return it == counters_.end() ? 0 : it->second->value();
}

std::vector<std::pair<std::string, uint64_t>> Counters::Snapshot() const {
  std::vector<std::pair<std::string, uint64_t>> out;
  {
    absl::MutexLock lock(&mu_);
    out.reserve(counters_.size());
    for (const auto& [name, c] : counters_) out.emplace_back(name, c->value());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace vdev
