// Named 64-bit event counters, one set per device (guest errors, packets, kicks...).
//
// Example:
//   Counters c;
//   Counter* kicks = c.Get("kicks");   // stable pointer; cache it on hot paths
//   kicks->Add();
//   c.Increment("bad_width");
//   c.Value("kicks");                  // 1
//
// Thread-safety: thread-safe. Counter::Add is a relaxed atomic increment.
#ifndef VDEV_CORE_BASE_COUNTERS_H_
#define VDEV_CORE_BASE_COUNTERS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace vdev {

class Counter {
 public:
  void Add(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }
  void Reset() { v_.store(0, std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Counters {
 public:
  // The counter named `name`, created at zero on first use. The pointer stays valid for the
  // lifetime of this Counters.
  Counter* Get(absl::string_view name);
  void Increment(absl::string_view name, uint64_t n = 1) { Get(name)->Add(n); }
  // 0 for a counter never touched.
  uint64_t Value(absl::string_view name) const;
  // All counters, sorted by name.
  std::vector<std::pair<std::string, uint64_t>> Snapshot() const;

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<Counter>> counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vdev

#endif  // VDEV_CORE_BASE_COUNTERS_H_
