#include "core/backends/rng_backend.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace vdev {

size_t FillFromGetrandom(absl::Span<uint8_t> buf) {
  size_t done = 0;
  while (done < buf.size()) {
    const ssize_t n = getrandom(buf.data() + done, buf.size() - done, GRND_NONBLOCK);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    done += static_cast<size_t>(n);
  }
  return done;
}

void RngRandom::ClassInit(qom::ObjectClass& k) {
  k.description = "entropy read from a file (character device)";
  k.AddProperty(qom::Prop("filename", &RngRandom::filename_, std::string("/dev/urandom"),
                          "the entropy source"));
}

absl::Status RngRandom::Complete() {
  auto fd = UniqueFd::Open(filename_.c_str(), O_RDONLY | O_NONBLOCK);
  if (!fd.ok()) return Annotate(fd.status(), absl::StrCat("rng-random '", name(), "'"));
  fd_ = std::move(*fd);
  return absl::OkStatus();
}

size_t RngRandom::Fill(absl::Span<uint8_t> buf) {
  if (!fd_.valid()) return 0;
  size_t done = 0;
  while (done < buf.size()) {
    const ssize_t n = read(fd_.get(), buf.data() + done, buf.size() - done);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      break;  // EAGAIN (nothing now), EOF, or an error: give what we have
    }
    done += static_cast<size_t>(n);
  }
  return done;
}

void RngBuiltin::ClassInit(qom::ObjectClass& k) { k.description = "entropy from getrandom(2)"; }

size_t RngBuiltin::Fill(absl::Span<uint8_t> buf) { return FillFromGetrandom(buf); }

VDEV_REGISTER_TYPE(RngBackend);
VDEV_REGISTER_TYPE(RngRandom);
VDEV_REGISTER_TYPE(RngBuiltin);

}  // namespace vdev
