#include "tests/testing/log_capture.h"

#include <memory>

namespace vdev::testing {

LogCapture::LogCapture() : lines_(std::make_shared<std::vector<std::string>>()) {
  auto lines = lines_;
  previous_ = SetLogSink([lines](LogSeverity, absl::string_view, int, absl::string_view msg) {
    lines->emplace_back(msg);
  });
}

LogCapture::~LogCapture() { SetLogSink(std::move(previous_)); }

}  // namespace vdev::testing
