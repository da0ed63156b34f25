#include "core/qdev/fdt.h"

extern "C" {
#include <libfdt.h>
}

#include "absl/strings/str_cat.h"

namespace vdev {

FdtBuilder::FdtBuilder(size_t max_size) : buf_(max_size) {
  Check(fdt_create(buf_.data(), static_cast<int>(buf_.size())), "fdt_create");
  Check(fdt_finish_reservemap(buf_.data()), "fdt_finish_reservemap");
}

void FdtBuilder::Check(int err, absl::string_view what) {
  if (err < 0 && status_.ok()) {
    status_ = absl::InternalError(absl::StrCat("device tree: ", what, ": ", fdt_strerror(err)));
  }
}

void FdtBuilder::BeginNode(absl::string_view name) {
  Check(fdt_begin_node(buf_.data(), std::string(name).c_str()), name);
}

void FdtBuilder::EndNode() { Check(fdt_end_node(buf_.data()), "end node"); }

void FdtBuilder::PropBytes(absl::string_view name, const void* data, size_t len) {
  Check(fdt_property(buf_.data(), std::string(name).c_str(), data, static_cast<int>(len)), name);
}

void FdtBuilder::PropEmpty(absl::string_view name) { PropBytes(name, nullptr, 0); }

void FdtBuilder::PropU32(absl::string_view name, uint32_t v) { PropU32s(name, {v}); }

void FdtBuilder::PropU32s(absl::string_view name, std::initializer_list<uint32_t> v) {
  std::vector<fdt32_t> be;
  for (uint32_t x : v) be.push_back(cpu_to_fdt32(x));
  PropBytes(name, be.data(), be.size() * sizeof(fdt32_t));
}

void FdtBuilder::PropU64s(absl::string_view name, std::initializer_list<uint64_t> v) {
  std::vector<fdt64_t> be;
  for (uint64_t x : v) be.push_back(cpu_to_fdt64(x));
  PropBytes(name, be.data(), be.size() * sizeof(fdt64_t));
}

void FdtBuilder::PropString(absl::string_view name, absl::string_view v) {
  std::string s(v);
  PropBytes(name, s.c_str(), s.size() + 1);
}

absl::StatusOr<std::vector<uint8_t>> FdtBuilder::Finish() {
  Check(fdt_finish(buf_.data()), "fdt_finish");
  if (!status_.ok()) return status_;
  buf_.resize(fdt_totalsize(buf_.data()));
  return buf_;
}

}  // namespace vdev
