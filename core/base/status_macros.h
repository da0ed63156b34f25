// Status propagation macros. Debian 12's Abseil (20220623) ships none, so vdev carries its own.
//
// Example:
//   absl::StatusOr<int> ParsePort(absl::string_view s);
//   absl::Status Configure(absl::string_view s) {
//     VDEV_ASSIGN_OR_RETURN(int port, ParsePort(s));
//     VDEV_RETURN_IF_ERROR(Bind(port));
//     return absl::OkStatus();
//   }
#ifndef VDEV_CORE_BASE_STATUS_MACROS_H_
#define VDEV_CORE_BASE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#define VDEV_STATUS_CONCAT_INNER_(a, b) a##b
#define VDEV_STATUS_CONCAT_(a, b) VDEV_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status); returns it from the enclosing function if not OK.
#define VDEV_RETURN_IF_ERROR(expr)                       \
  do {                                                   \
    ::absl::Status vdev_status_tmp_ = (expr);            \
    if (!vdev_status_tmp_.ok()) return vdev_status_tmp_; \
  } while (0)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns the status, otherwise moves the
// value into `lhs`, which may be a declaration (`auto x`) or an existing lvalue.
#define VDEV_ASSIGN_OR_RETURN(lhs, rexpr) \
  VDEV_ASSIGN_OR_RETURN_IMPL_(VDEV_STATUS_CONCAT_(vdev_statusor_, __LINE__), lhs, rexpr)

#define VDEV_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr)  \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

namespace vdev {

// Returns `status` with `context` prepended ("context: message"), keeping the code. OK stays OK.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace vdev

#endif  // VDEV_CORE_BASE_STATUS_MACROS_H_
