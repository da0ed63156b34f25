// Numbered test frames and a windowed round trip through the software guest's virtio-net driver,
// for tests whose peer sends every frame back (a reflecting netdev, testpmd's macswap).
//
//   auto got = RoundTrip(drv, 500, /*first_seq=*/0, [](uint32_t s) { return SeqFrame(a, b, 100, s);
//   }); ASSERT_EQ(got.size(), 500u);
#ifndef VDEV_TESTS_TESTING_FRAME_ROUND_TRIP_H_
#define VDEV_TESTS_TESTING_FRAME_ROUND_TRIP_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/time/time.h"
#include "tests/testing/net_frames.h"
#include "tests/testing/virtio_net_driver.h"

namespace vdev::testing {

// An Ethernet frame (type 0x88b5, local experimental) whose payload of `payload` bytes starts
// with `seq` and is a pattern of it after: any two frames differ, and a frame can be rebuilt from
// its number.
std::vector<uint8_t> SeqFrame(const Mac& dst, const Mac& src, size_t payload, uint32_t seq);

struct RoundTripOptions {
  // Frames in flight at most. A peer that drops what it cannot deliver at once (testpmd, as a
  // switch would) needs a window no larger than the receive buffers posted.
  uint32_t window = 64;
  uint16_t pair = 0;
  absl::Duration timeout = absl::Seconds(10);  // for each window to come back
};

// Sends frames first_seq .. first_seq + n - 1 (`frame(seq)` builds each) on `opts.pair`, window by
// window, and collects what comes back; stops early (returning fewer) when a window does not come
// back in time or the transmit ring is full.
std::vector<VirtioNetDriver::RxFrame> RoundTrip(
    VirtioNetDriver& drv, uint32_t n, uint32_t first_seq,
    const std::function<std::vector<uint8_t>(uint32_t)>& frame, const RoundTripOptions& opts = {});

}  // namespace vdev::testing

#endif  // VDEV_TESTS_TESTING_FRAME_ROUND_TRIP_H_
