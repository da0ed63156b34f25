#include "core/memory/memory.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "core/base/logging.h"

namespace vdev {
namespace {

// Serialises every change to any region tree and every flat-view rebuild.
ABSL_CONST_INIT absl::Mutex g_topology_mu(absl::kConstInit);
// Held while a destroyed region waits for in-flight accesses, and by a destroyed address space,
// so that the wait never looks at an address space being freed. Taken before g_topology_mu.
ABSL_CONST_INIT absl::Mutex g_sync_mu(absl::kConstInit);
// Every address space (guarded by g_topology_mu).
std::vector<AddressSpace*>* g_all_spaces = nullptr;

// Regions whose handlers run on this thread right now (the re-entrancy guard), and the number of
// dispatches in progress on this thread.
constexpr int kMaxDispatchDepth = 8;
struct DispatchStack {
  const MemoryRegion* active[kMaxDispatchDepth];
  int depth = 0;
};
// initial-exec: libvdev.so is linked, not dlopen()ed, so the cheap TLS model applies (the
// general-dynamic default costs a __tls_get_addr call on every dispatch).
__attribute__((tls_model("initial-exec"))) thread_local DispatchStack tls_dispatch;

// Address spaces whose rebuild is deferred by a MemoryTransaction on this thread.
thread_local int tls_transaction_depth = 0;
thread_local absl::flat_hash_set<AddressSpace*>* tls_pending = nullptr;

constexpr uint64_t Ones(unsigned size) {
  return size >= 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * size)) - 1;
}

bool IsAccessWidth(unsigned size) { return size == 1 || size == 2 || size == 4 || size == 8; }

using Int128 = __int128;

// Adds [lo, hi] (inclusive) of `mr` to `out` wherever `out` has no range yet. `base` is the
// address-space address of offset 0 of `mr`.
void FillGaps(std::map<uint64_t, FlatRange>& out, MemoryRegion* mr, Int128 base, uint64_t lo,
              uint64_t hi) {
  auto emit = [&](uint64_t s, uint64_t e) {
    out.emplace(s, FlatRange{s, e - s + 1, mr, static_cast<uint64_t>(Int128{s} - base)});
  };
  uint64_t cur = lo;
  auto it = out.upper_bound(cur);
  if (it != out.begin()) {
    const FlatRange& p = std::prev(it)->second;
    const uint64_t p_last = p.start + (p.size - 1);
    if (p_last >= cur) {
      if (p_last >= hi) return;
      cur = p_last + 1;
    }
  }
  while (true) {
    it = out.lower_bound(cur);
    if (it == out.end() || it->first > hi) {
      emit(cur, hi);
      return;
    }
    if (it->first > cur) emit(cur, it->first - 1);
    const uint64_t last = it->second.start + (it->second.size - 1);
    if (last >= hi) return;
    cur = last + 1;
  }
}

void Render(MemoryRegion* mr, Int128 base, uint64_t clip_lo, uint64_t clip_hi,
            std::map<uint64_t, FlatRange>& out, int depth) {
  if (!mr->enabled() || mr->size() == 0 || depth > 64) return;
  const Int128 last = base + Int128{mr->size()} - 1;
  const Int128 lo128 = std::max<Int128>(base, clip_lo);
  const Int128 hi128 = std::min<Int128>(last, clip_hi);
  if (lo128 > hi128) return;
  const uint64_t lo = static_cast<uint64_t>(lo128);
  const uint64_t hi = static_cast<uint64_t>(hi128);
  switch (mr->kind()) {
    case MemoryRegion::Kind::kRam:
    case MemoryRegion::Kind::kIo:
      FillGaps(out, mr, base, lo, hi);
      break;
    case MemoryRegion::Kind::kAlias:
      if (mr->alias_target() != nullptr) {
        Render(mr->alias_target(), base - Int128{mr->alias_offset()}, lo, hi, out, depth + 1);
      }
      break;
    case MemoryRegion::Kind::kContainer:
      for (MemoryRegion* sub : mr->subregions()) {
        Render(sub, base + Int128{sub->offset()}, lo, hi, out, depth + 1);
      }
      break;
  }
}

}  // namespace

// ---- MemoryRegion ----

MemoryRegion::MemoryRegion(Kind kind, std::string name, uint64_t size)
    : kind_(kind), name_(std::move(name)), size_(size) {}

std::unique_ptr<MemoryRegion> MemoryRegion::CreateRam(std::string name, uint64_t size,
                                                      uint8_t* host) {
  std::unique_ptr<MemoryRegion> mr(new MemoryRegion(Kind::kRam, std::move(name), size));
  mr->ram_host_ = host;
  return mr;
}

std::unique_ptr<MemoryRegion> MemoryRegion::CreateIo(std::string name, uint64_t size,
                                                     MemoryRegionOps ops) {
  VDEV_CHECK(IsAccessWidth(ops.valid.min_size) && IsAccessWidth(ops.valid.max_size) &&
             ops.valid.min_size <= ops.valid.max_size);
  VDEV_CHECK(ops.impl_max_size == 0 ||
             (IsAccessWidth(ops.impl_max_size) && ops.impl_max_size >= ops.valid.min_size));
  std::unique_ptr<MemoryRegion> mr(new MemoryRegion(Kind::kIo, std::move(name), size));
  if (ops.impl_max_size == 0) ops.impl_max_size = ops.valid.max_size;
  mr->ops_ = std::move(ops);
  return mr;
}

std::unique_ptr<MemoryRegion> MemoryRegion::CreateAlias(std::string name, MemoryRegion* target,
                                                        uint64_t offset, uint64_t size) {
  std::unique_ptr<MemoryRegion> mr(new MemoryRegion(Kind::kAlias, std::move(name), size));
  absl::MutexLock l(&g_topology_mu);
  mr->alias_target_ = target;
  mr->alias_offset_ = offset;
  target->aliased_by_.push_back(mr.get());
  return mr;
}

std::unique_ptr<MemoryRegion> MemoryRegion::CreateContainer(std::string name, uint64_t size) {
  return std::unique_ptr<MemoryRegion>(new MemoryRegion(Kind::kContainer, std::move(name), size));
}

MemoryRegion* MemoryRegion::Root() {
  MemoryRegion* r = this;
  while (r->container_ != nullptr) r = r->container_;
  return r;
}

namespace {}  // namespace

// Every address space that renders `mr`: through its containers and through aliases of it.
void MemoryRegion::CollectSpaces(MemoryRegion* mr, absl::flat_hash_set<MemoryRegion*>& seen,
                                 std::vector<AddressSpace*>& out) {
  for (MemoryRegion* r = mr; r != nullptr; r = r->container_) {
    if (!seen.insert(r).second) return;
    for (AddressSpace* as : r->address_spaces_) {
      if (std::find(out.begin(), out.end(), as) == out.end()) out.push_back(as);
    }
    for (MemoryRegion* a : r->aliased_by_) CollectSpaces(a, seen, out);
  }
}

std::vector<AddressSpace*> MemoryRegion::SpacesRenderingThis() {
  absl::flat_hash_set<MemoryRegion*> seen;
  std::vector<AddressSpace*> out;
  CollectSpaces(this, seen, out);
  return out;
}

// Called with g_topology_mu held.
void MemoryRegion::TopologyChanged() {
  for (AddressSpace* as : SpacesRenderingThis()) {
    if (tls_transaction_depth > 0) {
      as->dirty_ = true;
      tls_pending->insert(as);
    } else {
      as->Rebuild();
    }
  }
}

MemoryRegion::~MemoryRegion() {
  // A thread inside a dispatch may itself be a reader of the views that mention this region:
  // it cannot wait for them (nor block behind a thread that waits for it).
  const bool can_wait = tls_dispatch.depth == 0;
  std::unique_ptr<absl::MutexLock> sync;
  if (can_wait) sync = std::make_unique<absl::MutexLock>(&g_sync_mu);
  std::vector<AddressSpace*> spaces;
  {
    absl::MutexLock l(&g_topology_mu);
    const std::vector<AddressSpace*> affected = SpacesRenderingThis();
    if (container_ != nullptr) {
      auto& v = container_->subregions_;
      v.erase(std::remove(v.begin(), v.end(), this), v.end());
      container_ = nullptr;
    }
    for (MemoryRegion* sub : subregions_) sub->container_ = nullptr;
    subregions_.clear();
    if (alias_target_ != nullptr) {
      auto& v = alias_target_->aliased_by_;
      v.erase(std::remove(v.begin(), v.end(), this), v.end());
    }
    for (MemoryRegion* a : aliased_by_) a->alias_target_ = nullptr;
    aliased_by_.clear();
    for (AddressSpace* as : address_spaces_) as->root_ = nullptr;
    // Rebuild now, even inside a transaction: the current views may point at this region (also
    // those of address spaces it already left during a transaction that has not ended yet).
    if (g_all_spaces != nullptr) {
      for (AddressSpace* as : *g_all_spaces) {
        if (as->dirty_ || std::find(affected.begin(), affected.end(), as) != affected.end()) {
          as->Rebuild();
        }
      }
      spaces = *g_all_spaces;
    }
  }
  // Accesses that started before the rebuild may still be running a handler of this region (or
  // of a region it contained): wait for every address space's in-flight accesses to finish. The
  // region may have left its address space earlier (RemoveSubregion does not wait), so all are
  // checked, not only those it was still visible in.
  if (can_wait) {
    for (AddressSpace* as : spaces) as->Synchronize();
  }
}

void MemoryRegion::AddSubregion(uint64_t offset, MemoryRegion* sub, int priority) {
  absl::MutexLock l(&g_topology_mu);
  VDEV_CHECK(kind_ == Kind::kContainer);
  VDEV_CHECK(sub != this && sub->container_ == nullptr);
  sub->container_ = this;
  sub->offset_ = offset;
  sub->priority_ = priority;
  // Before the first subregion of lower or equal priority: between equals the newest wins.
  auto it = std::find_if(subregions_.begin(), subregions_.end(),
                         [&](MemoryRegion* o) { return priority >= o->priority_; });
  subregions_.insert(it, sub);
  TopologyChanged();
}

void MemoryRegion::RemoveSubregion(MemoryRegion* sub) {
  absl::MutexLock l(&g_topology_mu);
  VDEV_CHECK(sub->container_ == this);
  subregions_.erase(std::remove(subregions_.begin(), subregions_.end(), sub), subregions_.end());
  sub->container_ = nullptr;
  TopologyChanged();
}

std::vector<MemoryRegion*> MemoryRegion::subregions() const { return subregions_; }

void MemoryRegion::SetEnabled(bool enabled) {
  absl::MutexLock l(&g_topology_mu);
  if (enabled_ == enabled) return;
  enabled_ = enabled;
  TopologyChanged();
}

void MemoryRegion::SetOffset(uint64_t offset) {
  absl::MutexLock l(&g_topology_mu);
  if (offset_ == offset) return;
  offset_ = offset;
  TopologyChanged();
}

// ---- MemoryTransaction ----

MemoryTransaction::MemoryTransaction() {
  if (tls_transaction_depth++ == 0) tls_pending = new absl::flat_hash_set<AddressSpace*>();
}

MemoryTransaction::~MemoryTransaction() {
  if (--tls_transaction_depth > 0) return;
  std::unique_ptr<absl::flat_hash_set<AddressSpace*>> pending(tls_pending);
  tls_pending = nullptr;
  absl::MutexLock l(&g_topology_mu);
  for (AddressSpace* as : *pending) {
    if (as->dirty_) as->Rebuild();
  }
}

// ---- AddressSpace ----

AddressSpace::AddressSpace(std::string name, MemoryRegion* root)
    : name_(std::move(name)), root_(root) {
  absl::MutexLock l(&g_topology_mu);
  if (g_all_spaces == nullptr) g_all_spaces = new std::vector<AddressSpace*>();
  g_all_spaces->push_back(this);
  root_->address_spaces_.push_back(this);
  Rebuild();
}

AddressSpace::~AddressSpace() {
  {
    std::unique_ptr<absl::MutexLock> sync;
    if (tls_dispatch.depth == 0) sync = std::make_unique<absl::MutexLock>(&g_sync_mu);
    absl::MutexLock l(&g_topology_mu);
    g_all_spaces->erase(std::remove(g_all_spaces->begin(), g_all_spaces->end(), this),
                        g_all_spaces->end());
    if (root_ != nullptr) {
      auto& v = root_->address_spaces_;
      v.erase(std::remove(v.begin(), v.end(), this), v.end());
    }
    if (tls_pending != nullptr) tls_pending->erase(this);
  }
  while (readers_.load() != 0) std::this_thread::yield();
  delete view_.exchange(nullptr);
  absl::MutexLock l(&retired_mu_);
  for (const FlatView* v : retired_) delete v;
  retired_.clear();
}

void AddressSpace::Rebuild() {
  dirty_ = false;
  std::map<uint64_t, FlatRange> ranges;
  if (root_ != nullptr) Render(root_, 0, 0, ~uint64_t{0}, ranges, 0);
  auto* v = new FlatView;
  v->ranges.reserve(ranges.size());
  v->starts.reserve(ranges.size());
  for (auto& [start, r] : ranges) {
    v->starts.push_back(start);
    v->ranges.push_back(r);
  }
  const FlatView* old = view_.exchange(v);
  if (old != nullptr) {
    absl::MutexLock l(&retired_mu_);
    retired_.push_back(old);
    retired_pending_.store(true);
  }
  ReclaimRetired();
}

void AddressSpace::ReclaimRetired() {
  absl::MutexLock l(&retired_mu_);
  if (retired_.empty() || readers_.load() != 0) return;
  for (const FlatView* v : retired_) delete v;
  retired_.clear();
  retired_pending_.store(false);
}

void AddressSpace::Synchronize() {
  if (tls_dispatch.depth > 0) return;  // we may be one of the readers; the reclaim is deferred
  while (readers_.load() != 0) std::this_thread::yield();
  ReclaimRetired();
}

const FlatRange* AddressSpace::FlatView::Find(uint64_t addr) const {
  // Branchless binary search for the last start <= addr.
  size_t n = starts.size();
  if (n == 0 || addr < starts[0]) return nullptr;
  const uint64_t* base = starts.data();
  while (n > 1) {
    const size_t half = n / 2;
    base = base[half] <= addr ? base + half : base;
    n -= half;
  }
  const FlatRange& r = ranges[static_cast<size_t>(base - starts.data())];
  return addr - r.start < r.size ? &r : nullptr;
}

std::vector<FlatRange> AddressSpace::FlatRanges() const {
  auto* self = const_cast<AddressSpace*>(this);
  self->readers_.fetch_add(1);
  std::vector<FlatRange> out = view_.load()->ranges;
  if (self->readers_.fetch_sub(1) == 1 && self->retired_pending_.load()) self->ReclaimRetired();
  return out;
}

MemoryRegion* AddressSpace::Lookup(uint64_t addr, uint64_t* offset_in_mr) const {
  auto* self = const_cast<AddressSpace*>(this);
  self->readers_.fetch_add(1);
  const FlatRange* r = view_.load()->Find(addr);
  MemoryRegion* mr = r ? r->mr : nullptr;
  if (r && offset_in_mr) *offset_in_mr = r->offset_in_mr + (addr - r->start);
  if (self->readers_.fetch_sub(1) == 1 && self->retired_pending_.load()) self->ReclaimRetired();
  return mr;
}

MemTxResult AddressSpace::Read(uint64_t addr, unsigned size, uint64_t* value) {
  return Access(addr, size, value, false);
}

MemTxResult AddressSpace::Write(uint64_t addr, uint64_t value, unsigned size) {
  return Access(addr, size, &value, true);
}

MemTxResult AddressSpace::Access(uint64_t addr, unsigned size, uint64_t* value, bool write) {
  if (!IsAccessWidth(size)) {
    VDEV_LOG_GUEST_ERROR(counters_, "invalid_access", "%s: %u-byte %s at 0x%x", name_, size,
                         write ? "write" : "read", addr);
    if (!write) *value = ~uint64_t{0};
    return MemTxResult::kRejected;
  }
  readers_.fetch_add(1);
  const FlatView* view = view_.load();
  MemTxResult result;
  const FlatRange* r = view->Find(addr);
  if (r != nullptr && r->size >= size && addr - r->start <= r->size - size) {
    result = AccessRange(*r, addr, size, value, write);  // the common case: one range
  } else {
    // The access straddles ranges (or is partly unassigned): RAM pieces are read or written,
    // device pieces are refused, missing pieces are unassigned; little-endian, in address order.
    result = MemTxResult::kOk;
    uint64_t acc = 0;
    unsigned done = 0;
    while (done < size) {
      const uint64_t a = addr + done;
      if (a < addr) {  // wrapped past the top of the address space: the rest is unassigned
        acc |= Ones(size - done) << (8 * done);
        if (result == MemTxResult::kOk) result = MemTxResult::kUnassigned;
        break;
      }
      const FlatRange* p = view->Find(a);
      unsigned n;
      uint64_t piece = 0;
      if (p == nullptr) {
        n = 1;
        piece = 0xff;
        if (result == MemTxResult::kOk) result = MemTxResult::kUnassigned;
      } else {
        n = static_cast<unsigned>(std::min<uint64_t>(size - done, p->size - (a - p->start)));
        if (p->mr->kind_ != MemoryRegion::Kind::kRam) {
          // An access that does not fit a device's region is not a valid access to it: the
          // device never sees a piece of it (its declared widths are about whole accesses).
          if (p->mr->owner_counters_ != nullptr) p->mr->owner_counters_->Increment("bad_access");
          VDEV_LOG_GUEST_ERROR(counters_, "invalid_access",
                               "%s: %u-byte %s at 0x%x runs past region '%s'", name_, size,
                               write ? "write" : "read", addr, p->mr->name_);
          piece = Ones(n);
          result = MemTxResult::kRejected;
        } else {
          if (write) piece = (*value >> (8 * done)) & Ones(n);
          MemTxResult pr = AccessRange(*p, a, n, &piece, write);
          if (pr != MemTxResult::kOk && result == MemTxResult::kOk) result = pr;
        }
      }
      if (!write) acc |= (piece & Ones(n)) << (8 * done);
      done += n;
    }
    if (!write) *value = acc;
  }
  if (r == nullptr) {
    if (write) {
      counters_.Increment("unassigned_write");
    } else {
      counters_.Increment("unassigned_read");
    }
  }
  if (readers_.fetch_sub(1) == 1 && retired_pending_.load()) ReclaimRetired();
  return result;
}

MemTxResult AddressSpace::AccessRange(const FlatRange& r, uint64_t addr, unsigned size,
                                      uint64_t* value, bool write) {
  MemoryRegion* mr = r.mr;
  const uint64_t off = r.offset_in_mr + (addr - r.start);
  if (mr->kind_ == MemoryRegion::Kind::kRam) {
    if (mr->ram_host_ == nullptr) {
      if (!write) *value = Ones(size);
      return MemTxResult::kUnassigned;
    }
    // The host is little-endian (x86-64, arm64 in LE mode), like the guests we emulate.
    if (write) {
      std::memcpy(mr->ram_host_ + off, value, size);
    } else {
      uint64_t v = 0;
      std::memcpy(&v, mr->ram_host_ + off, size);
      *value = v;
    }
    return MemTxResult::kOk;
  }
  const MemoryRegionOps& ops = mr->ops_;
  const bool width_ok = size >= ops.valid.min_size && size <= ops.valid.max_size &&
                        (ops.valid.unaligned || (off & (size - 1)) == 0);
  if (!width_ok) {
    if (mr->owner_counters_ != nullptr) mr->owner_counters_->Increment("bad_access");
    VDEV_LOG_GUEST_ERROR(counters_, "invalid_access",
                         "%s: invalid %u-byte %s at offset 0x%x of region '%s'", name_, size,
                         write ? "write" : "read", off, mr->name_);
    if (!write) *value = Ones(size);
    return MemTxResult::kRejected;
  }
  DispatchStack& st = tls_dispatch;
  bool reentrant = st.depth >= kMaxDispatchDepth;
  for (int i = 0; i < st.depth && !reentrant; ++i) reentrant = st.active[i] == mr;
  if (reentrant) {
    if (mr->owner_counters_ != nullptr) mr->owner_counters_->Increment("reentrant_access");
    VDEV_LOG_GUEST_ERROR(counters_, "reentrant_access",
                         "%s: re-entrant %s of region '%s' at offset 0x%x refused", name_,
                         write ? "write" : "read", mr->name_, off);
    if (!write) *value = Ones(size);
    return MemTxResult::kRejected;
  }
  st.active[st.depth++] = mr;
  const unsigned step = std::min(size, ops.impl_max_size);
  if (write) {
    if (ops.write) {
      for (unsigned i = 0; i < size; i += step) {
        ops.write(MmioOffset(off + i), (*value >> (8 * i)) & Ones(step), step);
      }
    }
  } else if (ops.read) {
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i += step) {
      v |= (ops.read(MmioOffset(off + i), step) & Ones(step)) << (8 * i);
    }
    *value = v;
  } else {
    *value = Ones(size);
  }
  --st.depth;
  return MemTxResult::kOk;
}

}  // namespace vdev
