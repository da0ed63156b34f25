// Entropy backends for virtio-rng, as QEMU's -object rng-*:
//   -object rng-random,id=rng0,filename=/dev/urandom    reads a file (a character device)
//   -object rng-builtin,id=rng0                          getrandom(2)
// A device links to one with `rng=rng0`; without a link, virtio-rng uses getrandom(2) itself.
//
// Thread-safety: Fill may be called from any thread; one call at a time per backend.
#ifndef VDEV_CORE_BACKENDS_RNG_BACKEND_H_
#define VDEV_CORE_BACKENDS_RNG_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "core/base/unique_fd.h"
#include "qom/object.h"
#include "qom/user_creatable.h"

namespace vdev {

class RngBackend : public qom::Object, public qom::UserCreatable {
 public:
  static constexpr char kTypeName[] = "rng-backend";
  static constexpr bool kAbstract = true;
  static constexpr const char* kInterfaces[] = {qom::UserCreatable::kTypeName};
  using Parent = qom::Object;
  // Fills up to buf.size() bytes; returns how many (0 when the source has nothing right now).
  virtual size_t Fill(absl::Span<uint8_t> buf) = 0;
};

class RngRandom : public RngBackend {
 public:
  static constexpr char kTypeName[] = "rng-random";
  using Parent = RngBackend;
  static void ClassInit(qom::ObjectClass& k);
  absl::Status Complete() override;
  size_t Fill(absl::Span<uint8_t> buf) override;

 private:
  std::string filename_;
  UniqueFd fd_;
};

class RngBuiltin : public RngBackend {
 public:
  static constexpr char kTypeName[] = "rng-builtin";
  using Parent = RngBackend;
  static void ClassInit(qom::ObjectClass& k);
  size_t Fill(absl::Span<uint8_t> buf) override;
};

// getrandom(2) into `buf` (non-blocking); returns the bytes filled.
size_t FillFromGetrandom(absl::Span<uint8_t> buf);

}  // namespace vdev

#endif  // VDEV_CORE_BACKENDS_RNG_BACKEND_H_
