// Captures vdev log lines for the duration of a scope.
#ifndef VDEV_TESTS_TESTING_LOG_CAPTURE_H_
#define VDEV_TESTS_TESTING_LOG_CAPTURE_H_

#include <memory>
#include <string>
#include <vector>

#include "core/base/logging.h"

namespace vdev::testing {

class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  const std::vector<std::string>& lines() const { return *lines_; }

 private:
  std::shared_ptr<std::vector<std::string>> lines_;
  LogSink previous_;
};

}  // namespace vdev::testing

#endif  // VDEV_TESTS_TESTING_LOG_CAPTURE_H_
