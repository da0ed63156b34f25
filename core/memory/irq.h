// Interrupts: the sink a VMM supplies, a recording sink for tests, and level-triggered lines.
//
// A VMM implements IrqSink: SetIrq drives a GSI (INTx after routing) to a level, SendMsi delivers
// a message-signalled interrupt. Devices do not call the sink directly: they raise level
// sources on an IrqRouter, which wire-ORs every source sharing a GSI (PCI INTx is level-triggered
// and shared) and tells the sink only when a line's level changes.
//
// Example:
//   RecordingIrqSink sink;
//   IrqRouter router(&sink);
//   router.SetLevel(/*gsi=*/11, /*source=*/dev_a, true);   // sink: gsi 11 -> 1
//   router.SetLevel(11, dev_b, true);                        // still 1: no call
//   router.SetLevel(11, dev_a, false);                       // dev_b holds it: no call
//   router.SetLevel(11, dev_b, false);                       // sink: gsi 11 -> 0
//   router.SendMsi({0xfee00000, 0x4021});
//
// Thread-safety: IrqRouter and RecordingIrqSink are thread-safe. A VMM's sink must accept calls
// from any thread (vCPU threads, iothreads).
#ifndef VDEV_CORE_MEMORY_IRQ_H_
#define VDEV_CORE_MEMORY_IRQ_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace vdev {

struct MsiMessage {
  uint64_t address = 0;
  uint32_t data = 0;
  bool operator==(const MsiMessage&) const = default;
};

class IrqSink {
 public:
  virtual ~IrqSink() = default;
  // Drives `gsi` to `level` (called only on changes).
  virtual void SetIrq(uint32_t gsi, bool level) = 0;
  virtual void SendMsi(const MsiMessage& msg) = 0;
};

// Remembers everything it is told; for tests and for a VMM-less `vdev`.
class RecordingIrqSink : public IrqSink {
 public:
  void SetIrq(uint32_t gsi, bool level) override;
  void SendMsi(const MsiMessage& msg) override;

  bool level(uint32_t gsi) const;
  // Number of 0->1 transitions seen on `gsi`.
  int raised_count(uint32_t gsi) const;
  std::vector<MsiMessage> msis() const;
  // Removes and returns the MSIs received so far.
  std::vector<MsiMessage> TakeMsis();
  // Waits until at least `n` MSIs were received (not taken); false on timeout.
  bool WaitForMsis(size_t n, absl::Duration timeout);

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint32_t, bool> levels_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, int> raised_ ABSL_GUARDED_BY(mu_);
  std::vector<MsiMessage> msis_ ABSL_GUARDED_BY(mu_);
};

class IrqRouter {
 public:
  explicit IrqRouter(IrqSink* sink) : sink_(sink) {}
  // The VMM's sink (borrowed). Lines already high are re-announced to the new sink.
  void set_sink(IrqSink* sink);
  IrqSink* sink() const;

  // Sets `source`'s contribution to `gsi`; the line is high while any source holds it high.
  void SetLevel(uint32_t gsi, const void* source, bool level);
  bool level(uint32_t gsi) const;
  void SendMsi(const MsiMessage& msg);

 private:
  mutable absl::Mutex mu_;
  IrqSink* sink_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, absl::flat_hash_set<const void*>> high_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vdev

#endif  // VDEV_CORE_MEMORY_IRQ_H_
