#include "tests/testing/frame_round_trip.h"

#include <algorithm>
#include <cstring>

#include "absl/time/clock.h"

namespace vdev::testing {

std::vector<uint8_t> SeqFrame(const Mac& dst, const Mac& src, size_t payload, uint32_t seq) {
  std::vector<uint8_t> p(std::max<size_t>(payload, sizeof(seq)));
  for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<uint8_t>(seq * 31 + i * 7);
  std::memcpy(p.data(), &seq, sizeof(seq));
  return EthFrame(dst, src, 0x88b5, p);
}

std::vector<VirtioNetDriver::RxFrame> RoundTrip(
    VirtioNetDriver& drv, uint32_t n, uint32_t first_seq,
    const std::function<std::vector<uint8_t>(uint32_t)>& frame, const RoundTripOptions& opts) {
  std::vector<VirtioNetDriver::RxFrame> got;
  for (uint32_t sent = 0; sent < n;) {
    const uint32_t batch = std::min(opts.window, n - sent);
    for (uint32_t i = 0; i < batch; ++i) {
      drv.ReclaimTx(opts.pair);
      if (!drv.Send(opts.pair, frame(first_seq + sent + i))) return got;
    }
    sent += batch;
    const absl::Time deadline = absl::Now() + opts.timeout;
    while (got.size() < sent && absl::Now() < deadline) {
      for (auto& f : drv.WaitRx(opts.pair, sent - got.size(), absl::Milliseconds(20))) {
        got.push_back(std::move(f));
      }
    }
    if (got.size() < sent) return got;
  }
  drv.ReclaimTx(opts.pair);
  return got;
}

}  // namespace vdev::testing
