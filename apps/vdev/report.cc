#include "apps/vdev/report.h"

#include <ostream>

#include "absl/strings/str_cat.h"
#include "core/qdev/device.h"
#include "net/netdev.h"
#include "qom/object.h"

namespace vdev::cli {
namespace {

bool AnyNonZero(const Counters& c) {
  for (const auto& [name, value] : c.Snapshot()) {
    if (value != 0) return true;
  }
  return false;
}

void Walk(qom::Object& o, std::ostream& out) {
  if (auto* d = qom::DynamicCast<DeviceState>(&o); d != nullptr && AnyNonZero(d->counters())) {
    out << o.CanonicalPath() << " (" << o.type_name() << "): " << Summary(d->counters()) << "\n";
  }
  if (auto* nd = qom::DynamicCast<net::Netdev>(&o); nd != nullptr) {
    for (size_t i = 0; i < nd->num_queues(); ++i) {
      net::NetClientState* q = nd->queue(i);
      if (q == nullptr || !AnyNonZero(q->counters())) continue;
      out << o.CanonicalPath() << " queue " << i << ": " << Summary(q->counters()) << "\n";
    }
  }
  for (qom::Object* c : o.children()) Walk(*c, out);
}

}  // namespace

std::string Summary(const Counters& c) {
  std::string out;
  for (const auto& [name, value] : c.Snapshot()) {
    if (value != 0) absl::StrAppend(&out, out.empty() ? "" : " ", name, "=", value);
  }
  return out.empty() ? "(none)" : out;
}

void PrintCounters(Machine& m, std::ostream& out) {
  Walk(m.root(), out);
  out.flush();
}

}  // namespace vdev::cli
