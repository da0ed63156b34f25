// Memory regions and address spaces: how a trapped guest access reaches a device handler.
//
// A MemoryRegion is one of:
//   - RAM: bytes at a host pointer (accesses are plain loads and stores);
//   - I/O: a read and a write handler with declared access constraints (MMIO, or port I/O when
//     the region sits in an I/O address space);
//   - alias: a window onto part of another region;
//   - container: holds subregions at offsets, each with a priority (the higher priority wins
//     where subregions overlap; between equal priorities the one added last wins, as in QEMU).
// An AddressSpace renders a root region into a flat, sorted list of ranges (the flat view),
// rebuilt whenever the tree under the root changes, and dispatches accesses through it.
//
// Dispatch validates widths centrally (QEMU's `.valid`): a device handler sees offsets relative
// to its region and only widths its region declared legal; wider legal accesses are split when
// the handler implements fewer bytes. An access no region claims is unassigned: reads return
// all-ones, writes are dropped; invalid accesses are treated the same; both are counted. A
// handler is never re-entered on the same thread (DMA re-entrancy, CVE-2021-3929).
//
// Example:
//   MemoryRegionOps ops;
//   ops.read = [&](MmioOffset off, unsigned size) -> uint64_t { return regs.Read(off); };
//   ops.write = [&](MmioOffset off, uint64_t v, unsigned size) { regs.Write(off, v); };
//   ops.valid = {.min_size = 4, .max_size = 4};
//   auto bar = MemoryRegion::CreateIo("edu-mmio", 1 << 20, std::move(ops));
//   auto root = MemoryRegion::CreateContainer("system", UINT64_MAX);
//   AddressSpace as("memory", root.get());
//   root->AddSubregion(0xfea00000, bar.get());
//   uint64_t v = as.ReadValue(0xfea00000, 4);
//
// Thread-safety: Read/Write are thread-safe and lock-free with respect to each other and to
// topology changes (a reader keeps the flat view it started with). Topology changes
// (Add/RemoveSubregion, SetEnabled, SetOffset) are serialised by one global lock. Destroying a
// region rebuilds the views that mention it and waits until no access that started before is
// still in flight in any address space (so its handlers and the state they use may go next),
// except on a thread that is itself inside a dispatch, which cannot wait for itself.
#ifndef VDEV_CORE_MEMORY_MEMORY_H_
#define VDEV_CORE_MEMORY_MEMORY_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "core/base/counters.h"
#include "core/base/strong_types.h"

namespace vdev {

// Which accesses a guest may make to a region (QEMU's MemoryRegionOps.valid).
struct AccessConstraints {
  unsigned min_size = 1;   // bytes
  unsigned max_size = 4;   // bytes
  bool unaligned = false;  // whether an access need not be aligned to its size
};

struct MemoryRegionOps {
  // Either may be empty: a missing read handler reads all-ones, a missing write handler drops.
  std::function<uint64_t(MmioOffset offset, unsigned size)> read;
  std::function<void(MmioOffset offset, uint64_t value, unsigned size)> write;
  AccessConstraints valid;
  // The widest access the handlers implement; 0 = valid.max_size. Wider valid accesses are split
  // into little-endian pieces of this size.
  unsigned impl_max_size = 0;
};

enum class MemTxResult {
  kOk,
  kUnassigned,  // no region at (part of) the address: read all-ones, write dropped
  kRejected,    // refused by the region's constraints or the re-entrancy guard
};

class AddressSpace;

class MemoryRegion {
 public:
  enum class Kind { kRam, kIo, kAlias, kContainer };

  static std::unique_ptr<MemoryRegion> CreateRam(std::string name, uint64_t size, uint8_t* host);
  static std::unique_ptr<MemoryRegion> CreateIo(std::string name, uint64_t size,
                                                MemoryRegionOps ops);
  static std::unique_ptr<MemoryRegion> CreateAlias(std::string name, MemoryRegion* target,
                                                   uint64_t offset, uint64_t size);
  static std::unique_ptr<MemoryRegion> CreateContainer(std::string name, uint64_t size);

  // Leaves its container and detaches its subregions.
  ~MemoryRegion();
  MemoryRegion(const MemoryRegion&) = delete;
  MemoryRegion& operator=(const MemoryRegion&) = delete;

  Kind kind() const { return kind_; }
  const std::string& name() const { return name_; }
  uint64_t size() const { return size_; }
  bool enabled() const { return enabled_; }
  MemoryRegion* container() const { return container_; }
  // Offset in its container (meaningful while it has one).
  uint64_t offset() const { return offset_; }
  int priority() const { return priority_; }
  const MemoryRegionOps& ops() const { return ops_; }
  uint8_t* ram_host() const { return ram_host_; }
  MemoryRegion* alias_target() const { return alias_target_; }
  uint64_t alias_offset() const { return alias_offset_; }

  // Rejected accesses are also counted here (the owning device's counters), as "bad_access".
  void set_owner_counters(Counters* c) { owner_counters_ = c; }
  Counters* owner_counters() const { return owner_counters_; }

  // ---- containers ----
  // Places `sub` at `offset`. `sub` must not already be in a container (CHECKed: a programmer
  // error), and must outlive its membership.
  void AddSubregion(uint64_t offset, MemoryRegion* sub, int priority = 0);
  void RemoveSubregion(MemoryRegion* sub);
  // Subregions, highest priority first (the order used to render).
  std::vector<MemoryRegion*> subregions() const;

  // Hides or shows the region (a disabled region is not rendered).
  void SetEnabled(bool enabled);
  // Moves the region within its container.
  void SetOffset(uint64_t offset);

 private:
  friend class AddressSpace;
  MemoryRegion(Kind kind, std::string name, uint64_t size);
  // Rebuilds every address space whose root contains this region.
  void TopologyChanged();
  // The address spaces that render this region (through containers and aliases).
  std::vector<AddressSpace*> SpacesRenderingThis();
  static void CollectSpaces(MemoryRegion* mr, absl::flat_hash_set<MemoryRegion*>& seen,
                            std::vector<AddressSpace*>& out);
  MemoryRegion* Root();

  Kind kind_;
  std::string name_;
  uint64_t size_;
  bool enabled_ = true;
  MemoryRegion* container_ = nullptr;
  uint64_t offset_ = 0;
  int priority_ = 0;
  MemoryRegionOps ops_;
  uint8_t* ram_host_ = nullptr;
  MemoryRegion* alias_target_ = nullptr;
  uint64_t alias_offset_ = 0;
  std::vector<MemoryRegion*> subregions_;      // highest priority first
  std::vector<AddressSpace*> address_spaces_;  // address spaces rooted here
  std::vector<MemoryRegion*> aliased_by_;      // aliases pointing here
  Counters* owner_counters_ = nullptr;
};

// A contiguous range of the flat view, and where it goes.
struct FlatRange {
  uint64_t start = 0;
  uint64_t size = 0;
  MemoryRegion* mr = nullptr;  // a RAM or I/O region (aliases and containers are resolved)
  uint64_t offset_in_mr = 0;   // offset in `mr` of `start`
};

// Batches topology changes: address spaces are rebuilt once, when the outermost transaction ends.
// Example:
//   { MemoryTransaction t; for (auto& r : regions) root->AddSubregion(...); }  // one rebuild
class MemoryTransaction {
 public:
  MemoryTransaction();
  ~MemoryTransaction();
  MemoryTransaction(const MemoryTransaction&) = delete;
  MemoryTransaction& operator=(const MemoryTransaction&) = delete;
};

class AddressSpace {
 public:
  // Renders `root` (borrowed; must outlive this address space).
  AddressSpace(std::string name, MemoryRegion* root);
  ~AddressSpace();
  AddressSpace(const AddressSpace&) = delete;
  AddressSpace& operator=(const AddressSpace&) = delete;

  const std::string& name() const { return name_; }
  MemoryRegion* root() const { return root_; }

  // One guest access of `size` bytes (1, 2, 4 or 8), little-endian.
  MemTxResult Read(uint64_t addr, unsigned size, uint64_t* value);
  MemTxResult Write(uint64_t addr, uint64_t value, unsigned size);
  // Read returning all-ones on failure.
  uint64_t ReadValue(uint64_t addr, unsigned size) {
    uint64_t v = 0;
    Read(addr, size, &v);
    return v;
  }

  // The current flat view (a copy), sorted by address.
  std::vector<FlatRange> FlatRanges() const;
  // The region that an access at `addr` reaches (nullptr: unassigned), and the offset in it.
  MemoryRegion* Lookup(uint64_t addr, uint64_t* offset_in_mr = nullptr) const;

  // unassigned_read, unassigned_write, invalid_access, reentrant_access.
  Counters& counters() { return counters_; }

 private:
  friend class MemoryRegion;
  friend class MemoryTransaction;
  struct FlatView {
    std::vector<uint64_t> starts;  // starts[i] == ranges[i].start, for a compact search
    std::vector<FlatRange> ranges;
    const FlatRange* Find(uint64_t addr) const;
  };
  // Renders the tree and publishes the new view. Called with the topology lock held.
  void Rebuild();
  void ReclaimRetired();
  // Waits until no access that started before now is in flight (not on a dispatching thread).
  void Synchronize();
  MemTxResult Access(uint64_t addr, unsigned size, uint64_t* value, bool write);
  MemTxResult AccessRange(const FlatRange& r, uint64_t addr, unsigned size, uint64_t* value,
                          bool write);

  const std::string name_;
  MemoryRegion* root_;
  std::atomic<const FlatView*> view_{nullptr};
  std::atomic<int64_t> readers_{0};
  std::atomic<bool> retired_pending_{false};
  absl::Mutex retired_mu_;
  std::vector<const FlatView*> retired_ ABSL_GUARDED_BY(retired_mu_);
  bool dirty_ = false;  // guarded by the global topology lock
  Counters counters_;
};

}  // namespace vdev

#endif  // VDEV_CORE_MEMORY_MEMORY_H_
