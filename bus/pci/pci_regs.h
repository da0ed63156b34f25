// PCI configuration-space register offsets and bits (PCI Local Bus 3.0 §6.1, type 0 header).
#ifndef VDEV_BUS_PCI_PCI_REGS_H_
#define VDEV_BUS_PCI_PCI_REGS_H_

#include <cstdint>

namespace vdev::pci {

enum ConfigReg : uint16_t {
  kVendorId = 0x00,           // RO
  kDeviceId = 0x02,           // RO
  kCommand = 0x04,            // RW (masked)
  kStatus = 0x06,             // RO, some bits RW1C
  kRevisionId = 0x08,         // RO
  kClassProg = 0x09,          // RO
  kClassDevice = 0x0a,        // RO, subclass (low byte) and class (high byte)
  kCacheLineSize = 0x0c,      // RW
  kLatencyTimer = 0x0d,       // RO here
  kHeaderType = 0x0e,         // RO, bit 7: multifunction
  kBist = 0x0f,               // RO (no BIST)
  kBar0 = 0x10,               // BARs 0x10..0x24; writable bits are the size mask
  kSubsystemVendorId = 0x2c,  // RO
  kSubsystemId = 0x2e,        // RO
  kRomAddress = 0x30,         // RO (no ROM)
  kCapabilityList = 0x34,     // RO
  kInterruptLine = 0x3c,      // RW, for the OS only
  kInterruptPin = 0x3d,       // RO
};

inline constexpr uint16_t kCommandIo = 0x1;
inline constexpr uint16_t kCommandMemory = 0x2;
inline constexpr uint16_t kCommandMaster = 0x4;
inline constexpr uint16_t kCommandSerr = 0x100;
inline constexpr uint16_t kCommandIntxDisable = 0x400;

inline constexpr uint16_t kStatusInterrupt = 0x8;   // RO
inline constexpr uint16_t kStatusCapList = 0x10;    // RO
inline constexpr uint16_t kStatusW1cMask = 0xf900;  // parity, aborts, SERR: write 1 to clear

inline constexpr uint8_t kHeaderTypeMultiFunction = 0x80;
inline constexpr uint8_t kHeaderTypeBridge = 0x01;

// Type 1 (PCI-to-PCI bridge) header, PCI-to-PCI Bridge Architecture 1.2 §3.2.
enum BridgeReg : uint16_t {
  kPrimaryBus = 0x18,          // RW
  kSecondaryBus = 0x19,        // RW: the bus number behind the bridge
  kSubordinateBus = 0x1a,      // RW
  kSecondaryLatency = 0x1b,    // RO here
  kIoBase = 0x1c,              // RW upper nibble; low nibble 1 = 32-bit I/O
  kIoLimit = 0x1d,             // as kIoBase
  kSecondaryStatus = 0x1e,     // RW1C error bits
  kMemoryBase = 0x20,          // RW bits 15:4
  kMemoryLimit = 0x22,         // RW bits 15:4
  kPrefetchBase = 0x24,        // RW bits 15:4; low nibble 1 = 64-bit
  kPrefetchLimit = 0x26,       // as kPrefetchBase
  kPrefetchBaseUpper = 0x28,   // RW
  kPrefetchLimitUpper = 0x2c,  // RW
  kIoBaseUpper = 0x30,         // RW
  kIoLimitUpper = 0x32,        // RW
  kBridgeRomAddress = 0x38,    // RO (no ROM)
  kBridgeControl = 0x3e,       // RW (bits 11:0)
};

// Base address registers (PCI 3.0 §6.2.5.1).
inline constexpr int kNumBars = 6;
inline constexpr uint32_t kBarSpaceIo = 0x1;      // bit 0: I/O space
inline constexpr uint32_t kBarMemType64 = 0x4;    // bits 2:1 = 10b: 64-bit memory
inline constexpr uint32_t kBarMemPrefetch = 0x8;  // bit 3: prefetchable
inline constexpr uint32_t kBarMemMask = ~0xfu;
inline constexpr uint32_t kBarIoMask = ~0x3u;
inline constexpr uint64_t kBarUnmapped = ~uint64_t{0};

// Capabilities (PCI 3.0 §6.7). The list starts at kCapabilityList; entries live at or above 0x40.
inline constexpr uint8_t kCapIdPm = 0x01;
inline constexpr uint8_t kCapIdMsi = 0x05;
inline constexpr uint8_t kCapIdVendor = 0x09;
inline constexpr uint8_t kCapIdSlotId = 0x04;
inline constexpr uint8_t kCapIdExpress = 0x10;
inline constexpr uint8_t kCapIdMsix = 0x11;
inline constexpr int kCapListNext = 1;  // byte offset of the next pointer in a capability
inline constexpr int kConfigHeaderSize = 0x40;
inline constexpr int kMaxCapabilities = 48;  // (256 - 64) / 4: a longer walk is a loop

// MSI capability (PCI 3.0 §6.8.1).
inline constexpr int kMsiFlags = 2;  // message control, 16 bits
inline constexpr uint16_t kMsiFlagsEnable = 0x1;
inline constexpr uint16_t kMsiFlagsQmaskShift = 1;  // multiple message capable, bits 3:1
inline constexpr uint16_t kMsiFlagsQsizeShift = 4;  // multiple message enable, bits 6:4
inline constexpr uint16_t kMsiFlags64Bit = 0x80;
inline constexpr uint16_t kMsiFlagsMaskBit = 0x100;  // per-vector masking capable
inline constexpr int kMsiAddressLo = 4;

// MSI-X capability and table (PCI 3.0 §6.8.2).
inline constexpr int kMsixFlags = 2;  // message control
inline constexpr uint16_t kMsixFlagsQsizeMask = 0x07ff;
inline constexpr uint16_t kMsixFlagsMaskAll = 0x4000;
inline constexpr uint16_t kMsixFlagsEnable = 0x8000;
inline constexpr int kMsixTable = 4;  // BIR in bits 2:0, offset in 31:3
inline constexpr int kMsixPba = 8;
inline constexpr int kMsixCapSize = 12;
inline constexpr int kMsixEntrySize = 16;
inline constexpr int kMsixEntryLowerAddr = 0;
inline constexpr int kMsixEntryUpperAddr = 4;
inline constexpr int kMsixEntryData = 8;
inline constexpr int kMsixEntryVectorCtrl = 12;
inline constexpr uint32_t kMsixEntryCtrlMasked = 0x1;
inline constexpr unsigned kMsixMaxVectors = 2048;

inline constexpr int kConfigSpaceSize = 256;
inline constexpr int kExpressConfigSpaceSize = 4096;
inline constexpr int kSlotsPerBus = 32;
inline constexpr int kFunctionsPerSlot = 8;

}  // namespace vdev::pci

#endif  // VDEV_BUS_PCI_PCI_REGS_H_
