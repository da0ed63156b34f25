#include "core/base/logging.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace vdev {
namespace {

absl::Mutex& SinkMutex() {
  static absl::Mutex mu;
  return mu;
}
LogSink& SinkSlot() {
  static LogSink* sink = new LogSink();
  return *sink;
}

LogSeverity InitialSeverity() {
  const char* env = std::getenv("VDEV_LOG_LEVEL");
  if (env == nullptr) return LogSeverity::kInfo;
  std::string v = absl::AsciiStrToLower(env);
  if (v == "debug") return LogSeverity::kDebug;
  if (v == "warning") return LogSeverity::kWarning;
  if (v == "error") return LogSeverity::kError;
  return LogSeverity::kInfo;
}

std::atomic<int>& MinSeverity() {
  static std::atomic<int> s{static_cast<int>(InitialSeverity())};
  return s;
}

const char* Basename(const char* file) {
  const char* slash = std::strrchr(file, '/');
  return slash ? slash + 1 : file;
}

void DefaultSink(LogSeverity s, absl::string_view file, int line, absl::string_view message) {
  std::string text = absl::StrCat("vdev: ", LogSeverityName(s).substr(0, 1), " ", file, ":", line,
                                  "] ", message, "\n");
  std::fwrite(text.data(), 1, text.size(), stderr);
}

}  // namespace

absl::string_view LogSeverityName(LogSeverity s) {
  switch (s) {
    case LogSeverity::kDebug:
      return "DEBUG";
    case LogSeverity::kInfo:
      return "INFO";
    case LogSeverity::kWarning:
      return "WARNING";
    case LogSeverity::kError:
      return "ERROR";
    case LogSeverity::kFatal:
      return "FATAL";
  }
  return "UNKNOWN";
}

LogSink SetLogSink(LogSink sink) {
  absl::MutexLock lock(&SinkMutex());
  return std::exchange(SinkSlot(), std::move(sink));
}

void SetMinLogSeverity(LogSeverity s) { MinSeverity().store(static_cast<int>(s)); }
LogSeverity MinLogSeverity() { return static_cast<LogSeverity>(MinSeverity().load()); }

namespace internal {

void LogMessage(LogSeverity s, const char* file, int line, absl::string_view message) {
  absl::MutexLock lock(&SinkMutex());
  if (SinkSlot()) {
    SinkSlot()(s, Basename(file), line, message);
  } else {
    DefaultSink(s, Basename(file), line, message);
  }
}

void CheckFailed(const char* expr, const char* file, int line, absl::string_view extra) {
  std::string msg = absl::StrCat("CHECK failed: ", expr, extra.empty() ? "" : ": ", extra);
  LogMessage(LogSeverity::kFatal, file, line, msg);
  std::abort();
}

void LogGuestError(RateLimiter& limiter, const char* file, int line, absl::string_view message) {
  if (LogSeverity::kWarning < MinLogSeverity()) return;
  uint64_t suppressed = 0;
  if (!limiter.Allow(&suppressed)) return;
  if (suppressed > 0) {
    LogMessage(
        LogSeverity::kWarning, file, line,
        absl::StrCat("guest error: ", message, " (", suppressed, " similar messages suppressed)"));
  } else {
    LogMessage(LogSeverity::kWarning, file, line, absl::StrCat("guest error: ", message));
  }
}

}  // namespace internal

bool RateLimiter::AllowAt(absl::Time now, uint64_t* suppressed) {
  absl::MutexLock lock(&mu_);
  if (tokens_ < 0) {
    tokens_ = burst_;
    last_ = now;
  }
  if (now > last_) {
    tokens_ += absl::FDivDuration(now - last_, interval_);
    if (tokens_ > burst_) tokens_ = burst_;
    last_ = now;
  }
  if (tokens_ >= 1) {
    tokens_ -= 1;
    *suppressed = std::exchange(suppressed_, 0);
    return true;
  }
  ++suppressed_;
  *suppressed = 0;
  return false;
}

}  // namespace vdev
