#include "core/memory/irq.h"

#include <utility>

namespace vdev {

void RecordingIrqSink::SetIrq(uint32_t gsi, bool level) {
  absl::MutexLock l(&mu_);
  bool& cur = levels_[gsi];
  if (level && !cur) ++raised_[gsi];
  cur = level;
}

void RecordingIrqSink::SendMsi(const MsiMessage& msg) {
  absl::MutexLock l(&mu_);
  msis_.push_back(msg);
}

bool RecordingIrqSink::level(uint32_t gsi) const {
  absl::MutexLock l(&mu_);
  auto it = levels_.find(gsi);
  return it != levels_.end() && it->second;
}

int RecordingIrqSink::raised_count(uint32_t gsi) const {
  absl::MutexLock l(&mu_);
  auto it = raised_.find(gsi);
  return it == raised_.end() ? 0 : it->second;
}

std::vector<MsiMessage> RecordingIrqSink::msis() const {
  absl::MutexLock l(&mu_);
  return msis_;
}

std::vector<MsiMessage> RecordingIrqSink::TakeMsis() {
  absl::MutexLock l(&mu_);
  return std::exchange(msis_, {});
}

bool RecordingIrqSink::WaitForMsis(size_t n, absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return msis_.size() >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

void IrqRouter::set_sink(IrqSink* sink) {
  absl::MutexLock l(&mu_);
  sink_ = sink;
  if (sink_ == nullptr) return;
  for (const auto& [gsi, sources] : high_) {
    if (!sources.empty()) sink_->SetIrq(gsi, true);
  }
}

IrqSink* IrqRouter::sink() const {
  absl::MutexLock l(&mu_);
  return sink_;
}

void IrqRouter::SetLevel(uint32_t gsi, const void* source, bool level) {
  absl::MutexLock l(&mu_);
  auto& sources = high_[gsi];
  const bool was = !sources.empty();
  if (level) {
    sources.insert(source);
  } else {
    sources.erase(source);
  }
  const bool now = !sources.empty();
  if (was != now && sink_ != nullptr) sink_->SetIrq(gsi, now);
}

bool IrqRouter::level(uint32_t gsi) const {
  absl::MutexLock l(&mu_);
  auto it = high_.find(gsi);
  return it != high_.end() && !it->second.empty();
}

void IrqRouter::SendMsi(const MsiMessage& msg) {
  IrqSink* s;
  {
    absl::MutexLock l(&mu_);
    s = sink_;
  }
  if (s != nullptr) s->SendMsi(msg);
}

}  // namespace vdev
