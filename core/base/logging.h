// Logging, CHECK, and the rate-limited guest-error log.
//
// Host-side problems are reported through absl::Status, not logged and dropped. The log is for
// operators: lifecycle events, and guest misbehaviour, which is never a host error.
//
// Example:
//   VDEV_LOG(kInfo, "realized %s at %s", dev.id(), path);
//   VDEV_CHECK(queue_index < queues_.size());            // programmer error only
//   VDEV_LOG_GUEST_ERROR(counters_, "bad_width", "%s: %u-byte access at 0x%x", name, size, off);
//
// Thread-safety: all functions are thread-safe. The sink may be called from any thread.
#ifndef VDEV_CORE_BASE_LOGGING_H_
#define VDEV_CORE_BASE_LOGGING_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/base/attributes.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/base/counters.h"

namespace vdev {

enum class LogSeverity { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kFatal = 4 };

absl::string_view LogSeverityName(LogSeverity s);

// Where log lines go. The default writes "vdev: W file.cc:12] message" to stderr.
using LogSink =
    std::function<void(LogSeverity, absl::string_view file, int line, absl::string_view message)>;

// Replaces the sink; returns the previous one. An empty sink restores the default.
LogSink SetLogSink(LogSink sink);
// Messages below `s` are dropped (default kInfo; VDEV_LOG_LEVEL=debug|info|warning|error).
void SetMinLogSeverity(LogSeverity s);
LogSeverity MinLogSeverity();

namespace internal {
void LogMessage(LogSeverity s, const char* file, int line, absl::string_view message);
[[noreturn]] void CheckFailed(const char* expr, const char* file, int line,
                              absl::string_view extra);
}  // namespace internal

// Token bucket: at most `burst` messages at once, refilled by one every `interval`. Counts what
// it suppresses so the next allowed line can say how many were dropped.
class RateLimiter {
 public:
  explicit RateLimiter(int burst = 10, absl::Duration interval = absl::Seconds(1))
      : burst_(burst), interval_(interval) {}
  // True when a message may be emitted now. `*suppressed` receives the number of messages
  // dropped since the last allowed one.
  bool Allow(uint64_t* suppressed) { return AllowAt(absl::Now(), suppressed); }
  bool AllowAt(absl::Time now, uint64_t* suppressed);

 private:
  const int burst_;
  const absl::Duration interval_;
  absl::Mutex mu_;
  double tokens_ ABSL_GUARDED_BY(mu_) = -1;  // -1: not yet initialised (full bucket)
  absl::Time last_ ABSL_GUARDED_BY(mu_);
  uint64_t suppressed_ ABSL_GUARDED_BY(mu_) = 0;
};

namespace internal {
void LogGuestError(RateLimiter& limiter, const char* file, int line, absl::string_view message);
}  // namespace internal

}  // namespace vdev

#define VDEV_LOG(severity, ...)                                                       \
  do {                                                                                \
    if (::vdev::LogSeverity::severity >= ::vdev::MinLogSeverity())                    \
      ::vdev::internal::LogMessage(::vdev::LogSeverity::severity, __FILE__, __LINE__, \
                                   ::absl::StrFormat(__VA_ARGS__));                   \
  } while (0)

// For broken invariants inside vdev only. Never for anything a guest, peer or user controls.
#define VDEV_CHECK(cond)                                                                           \
  do {                                                                                             \
    if (ABSL_PREDICT_FALSE(!(cond))) ::vdev::internal::CheckFailed(#cond, __FILE__, __LINE__, {}); \
  } while (0)

// Counts a guest error on `counters` under `counter` and logs it, rate-limited per call site.
#define VDEV_LOG_GUEST_ERROR(counters, counter, ...)                               \
  do {                                                                             \
    (counters).Increment(counter);                                                 \
    static ::vdev::RateLimiter vdev_guest_error_limiter_;                          \
    ::vdev::internal::LogGuestError(vdev_guest_error_limiter_, __FILE__, __LINE__, \
                                    ::absl::StrFormat(__VA_ARGS__));               \
  } while (0)

#endif  // VDEV_CORE_BASE_LOGGING_H_
