#include "core/memory/guest_memory.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/checked_math.h"

namespace vdev {

absl::StatusOr<std::unique_ptr<GuestMemory>> GuestMemory::Create() {
  return std::unique_ptr<GuestMemory>(new GuestMemory());
}

GuestMemory::~GuestMemory() { Clear(); }

void GuestMemory::Clear() {
  for (size_t i = 0; i < regions_.size(); ++i) {
    GuestRamRegion& r = regions_[i];
    if (owns_mapping_[i]) munmap(r.host, r.size);
    if (r.fd >= 0) close(r.fd);
  }
  regions_.clear();
  owns_mapping_.clear();
  ++generation_;
}

uint64_t GuestMemory::total_size() const {
  uint64_t n = 0;
  for (const GuestRamRegion& r : regions_) n += r.size;
  return n;
}

absl::Status GuestMemory::Insert(GuestRamRegion r, bool owned_mapping) {
  for (const GuestRamRegion& o : regions_) {
    if (RangesOverlap(r.gpa.value(), r.size, o.gpa.value(), o.size)) {
      return absl::AlreadyExistsError(absl::StrFormat(
          "guest memory: region '%s' [0x%x, +0x%x) overlaps region '%s' [0x%x, +0x%x)", r.name,
          r.gpa.value(), r.size, o.name, o.gpa.value(), o.size));
    }
  }
  auto it = std::lower_bound(regions_.begin(), regions_.end(), r.gpa,
                             [](const GuestRamRegion& a, GuestAddr g) { return a.gpa < g; });
  const auto idx = it - regions_.begin();
  regions_.insert(it, std::move(r));
  owns_mapping_.insert(owns_mapping_.begin() + idx, owned_mapping);
  ++generation_;
  return absl::OkStatus();
}

static absl::Status CheckRange(GuestAddr gpa, uint64_t size, const std::string& name) {
  if (size == 0) {
    return absl::InvalidArgumentError(absl::StrCat("guest memory: region '", name, "' has size 0"));
  }
  if (!CheckedAdd<uint64_t>(gpa.value(), size - 1)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("guest memory: region '%s' at 0x%x of size 0x%x wraps the address space",
                        name, gpa.value(), size));
  }
  return absl::OkStatus();
}

absl::Status GuestMemory::AddRam(GuestAddr gpa, uint64_t size, std::string name) {
  if (absl::Status s = CheckRange(gpa, size, name); !s.ok()) return s;
  const int fd = memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, "memfd_create");
  UniqueFd owned(fd);
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) return ErrnoToStatus(errno, "ftruncate");
  return AdoptRegion(gpa, size, std::move(owned), 0, std::move(name));
}

absl::Status GuestMemory::AdoptRegion(GuestAddr gpa, uint64_t size, UniqueFd fd, uint64_t offset,
                                      std::string name, bool read_only) {
  if (absl::Status s = CheckRange(gpa, size, name); !s.ok()) return s;
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return ErrnoToStatus(errno, "fstat");
  auto end = CheckedAdd<uint64_t>(offset, size);
  if (!end || *end > static_cast<uint64_t>(st.st_size)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "guest memory: region '%s' needs bytes [0x%x, +0x%x) of its fd, which has 0x%x", name,
        offset, size, static_cast<uint64_t>(st.st_size)));
  }
  for (const GuestRamRegion& o : regions_) {  // check before mapping: nothing to undo
    if (RangesOverlap(gpa.value(), size, o.gpa.value(), o.size)) {
      return absl::AlreadyExistsError(absl::StrFormat(
          "guest memory: region '%s' [0x%x, +0x%x) overlaps region '%s' [0x%x, +0x%x)", name,
          gpa.value(), size, o.name, o.gpa.value(), o.size));
    }
  }
  const int prot = PROT_READ | (read_only ? 0 : PROT_WRITE);
  void* p = mmap(nullptr, size, prot, MAP_SHARED, fd.get(), static_cast<off_t>(offset));
  if (p == MAP_FAILED) return ErrnoToStatus(errno, "mmap");
  GuestRamRegion r;
  r.gpa = gpa;
  r.size = size;
  r.host = static_cast<uint8_t*>(p);
  r.fd = fd.Release();
  r.fd_offset = offset;
  r.read_only = read_only;
  r.name = std::move(name);
  return Insert(std::move(r), /*owned_mapping=*/true);
}

absl::Status GuestMemory::AddHostMemory(GuestAddr gpa, uint64_t size, void* host,
                                        std::string name) {
  if (absl::Status s = CheckRange(gpa, size, name); !s.ok()) return s;
  GuestRamRegion r;
  r.gpa = gpa;
  r.size = size;
  r.host = static_cast<uint8_t*>(host);
  r.name = std::move(name);
  return Insert(std::move(r), /*owned_mapping=*/false);
}

int GuestMemory::FindRegion(uint64_t addr) const {
  const uint32_t h = hint_.load(std::memory_order_relaxed);
  if (h < regions_.size()) {
    const GuestRamRegion& r = regions_[h];
    if (addr >= r.gpa.value() && addr - r.gpa.value() < r.size) return static_cast<int>(h);
  }
  // Last region starting at or below addr.
  size_t lo = 0, hi = regions_.size();
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (regions_[mid].gpa.value() <= addr) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo == 0) return -1;
  const GuestRamRegion& r = regions_[lo - 1];
  if (addr - r.gpa.value() >= r.size) return -1;
  hint_.store(static_cast<uint32_t>(lo - 1), std::memory_order_relaxed);
  return static_cast<int>(lo - 1);
}

bool GuestMemory::Translate(GuestAddr gpa, uint64_t len, bool write,
                            std::vector<iovec>* out) const {
  if (len == 0) return true;
  if (!CheckedAdd<uint64_t>(gpa.value(), len - 1)) return false;
  const size_t mark = out->size();
  uint64_t addr = gpa.value();
  uint64_t left = len;
  while (left > 0) {
    const int i = FindRegion(addr);
    if (i < 0 || (write && regions_[static_cast<size_t>(i)].read_only)) {
      out->resize(mark);
      return false;
    }
    const GuestRamRegion& r = regions_[static_cast<size_t>(i)];
    const uint64_t off = addr - r.gpa.value();
    const uint64_t n = std::min(left, r.size - off);
    out->push_back(iovec{r.host + off, n});
    left -= n;
    addr += n;  // cannot wrap: the end was checked above
  }
  return true;
}

uint8_t* GuestMemory::HostPointer(GuestAddr gpa, uint64_t len, bool write) const {
  const int i = FindRegion(gpa.value());
  if (i < 0) return nullptr;
  const GuestRamRegion& r = regions_[static_cast<size_t>(i)];
  if (write && r.read_only) return nullptr;
  const uint64_t off = gpa.value() - r.gpa.value();
  if (len > r.size - off) return nullptr;
  return r.host + off;
}

bool GuestMemory::IsRam(GuestAddr gpa, uint64_t len) const {
  if (len == 0) return true;
  if (!CheckedAdd<uint64_t>(gpa.value(), len - 1)) return false;
  uint64_t addr = gpa.value();
  uint64_t left = len;
  while (left > 0) {
    const int i = FindRegion(addr);
    if (i < 0) return false;
    const GuestRamRegion& r = regions_[static_cast<size_t>(i)];
    const uint64_t n = std::min(left, r.size - (addr - r.gpa.value()));
    left -= n;
    addr += n;
  }
  return true;
}

bool GuestMemory::Read(GuestAddr gpa, absl::Span<uint8_t> dst) const {
  if (uint8_t* p = HostPointer(gpa, dst.size(), false)) {  // the common case: one region
    std::memcpy(dst.data(), p, dst.size());
    return true;
  }
  std::vector<iovec> iov;
  if (!Translate(gpa, dst.size(), false, &iov)) return false;
  uint8_t* d = dst.data();
  for (const iovec& v : iov) {
    std::memcpy(d, v.iov_base, v.iov_len);
    d += v.iov_len;
  }
  return true;
}

bool GuestMemory::Write(GuestAddr gpa, absl::Span<const uint8_t> src) const {
  if (uint8_t* p = HostPointer(gpa, src.size(), true)) {
    std::memcpy(p, src.data(), src.size());
    return true;
  }
  std::vector<iovec> iov;
  if (!Translate(gpa, src.size(), true, &iov)) return false;
  const uint8_t* s = src.data();
  for (const iovec& v : iov) {
    std::memcpy(v.iov_base, s, v.iov_len);
    s += v.iov_len;
  }
  return true;
}

}  // namespace vdev
