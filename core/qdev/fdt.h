// FdtBuilder: writes a flattened device tree (DTB) with libfdt's sequential-write API, for boards
// that describe their devices to an arm64/riscv kernel (virtio-mmio nodes, memory, chosen).
//
// Example:
//   FdtBuilder fdt;
//   fdt.BeginNode("");                       // the root
//   fdt.PropU32("#address-cells", 2);
//   fdt.BeginNode("memory@40000000");
//   fdt.PropString("device_type", "memory");
//   fdt.PropU64s("reg", {0x40000000, 128 << 20});
//   fdt.EndNode();
//   fdt.EndNode();
//   VDEV_ASSIGN_OR_RETURN(std::vector<uint8_t> dtb, fdt.Finish());
//
// Errors are collected: the first failing call's error is what Finish() returns.
// Thread-safety: none (one builder per thread).
#ifndef VDEV_CORE_QDEV_FDT_H_
#define VDEV_CORE_QDEV_FDT_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace vdev {

class FdtBuilder {
 public:
  explicit FdtBuilder(size_t max_size = 64 * 1024);

  void BeginNode(absl::string_view name);
  void EndNode();
  void PropEmpty(absl::string_view name);
  void PropU32(absl::string_view name, uint32_t v);
  void PropU32s(absl::string_view name, std::initializer_list<uint32_t> v);
  void PropU64s(absl::string_view name, std::initializer_list<uint64_t> v);
  void PropString(absl::string_view name, absl::string_view v);
  void PropBytes(absl::string_view name, const void* data, size_t len);

  absl::StatusOr<std::vector<uint8_t>> Finish();

 private:
  void Check(int err, absl::string_view what);
  std::vector<uint8_t> buf_;
  absl::Status status_;
};

}  // namespace vdev

#endif  // VDEV_CORE_QDEV_FDT_H_
