// mini-vmm: the smallest VMM integration of vdev, and a guest program for QEMU's edu device.
//
// A VMM gives vdev three things and gets devices back:
//   1. an IrqSink: vdev calls it to change an INTx line or to send an MSI;
//   2. guest RAM: vdev allocates it memfd-backed (a hypervisor maps the same fds);
//   3. trapped accesses: every port I/O or MMIO exit is forwarded to io_space()/memory_space().
// Here there is no hypervisor: the "vCPU" below is a list of the port and MMIO accesses a guest
// driver would make, forwarded exactly as a KVM exit handler would forward them.
//
//   mini-vmm            (built as build/default/bin/mini-vmm; scripts/demo runs it)
#include <cstdio>
#include <memory>
#include <string>

#include "core/qdev/machine.h"
#include "hw/machine/pc.h"

namespace {

// The VMM's interrupt controller: here it just tells what it got.
class PrintingIrqSink : public vdev::IrqSink {
 public:
  void SetIrq(uint32_t gsi, bool level) override {
    std::printf("  [irq] GSI %u -> %s\n", gsi, level ? "high" : "low");
  }
  void SendMsi(const vdev::MsiMessage& m) override {
    std::printf("  [irq] MSI address 0x%llx data 0x%x\n",
                static_cast<unsigned long long>(m.address), m.data);
  }
};

// One vCPU's view: port I/O and MMIO exits forwarded into the machine.
struct Vcpu {
  vdev::Machine& m;
  uint32_t In32(uint16_t port) { return static_cast<uint32_t>(m.io_space().ReadValue(port, 4)); }
  void Out32(uint16_t port, uint32_t v) { m.io_space().Write(port, v, 4); }
  uint64_t Read(uint64_t a, unsigned size = 4) { return m.memory_space().ReadValue(a, size); }
  void Write(uint64_t a, uint64_t v, unsigned size = 4) { m.memory_space().Write(a, v, size); }
  // Configuration mechanism #1.
  uint32_t Cfg(int slot, int reg) {
    Out32(0xcf8, 0x80000000u | static_cast<uint32_t>(slot) << 11 | static_cast<uint32_t>(reg));
    return In32(0xcfc);
  }
  void Cfg(int slot, int reg, uint32_t v) {
    Out32(0xcf8, 0x80000000u | static_cast<uint32_t>(slot) << 11 | static_cast<uint32_t>(reg));
    Out32(0xcfc, v);
  }
};

int Fail(const std::string& what) {
  std::fprintf(stderr, "mini-vmm: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // keep our lines and vdev's guest-error log in order
  auto machine = vdev::Machine::Create("pc,ram-size=64M");
  if (!machine.ok()) return Fail(std::string(machine.status().message()));
  vdev::Machine& m = **machine;
  PrintingIrqSink sink;
  m.irq().set_sink(&sink);
  if (auto d = m.DeviceAdd("edu,id=edu0"); !d.ok()) return Fail(std::string(d.status().message()));
  m.Done();
  for (const vdev::GuestRamRegion& r : m.guest_memory().regions()) {
    std::printf("RAM '%s': guest 0x%llx, %llu MiB, memfd %d (what a hypervisor would map)\n",
                r.name.c_str(), static_cast<unsigned long long>(r.gpa.value()),
                static_cast<unsigned long long>(r.size >> 20), r.fd);
  }

  Vcpu cpu{m};
  // Firmware: find the device, size BAR0, place it, turn on decoding and bus mastering.
  int slot = -1;
  for (int s = 0; s < 32 && slot < 0; ++s) {
    if (cpu.Cfg(s, 0x00) == 0x11e81234) slot = s;
  }
  if (slot < 0) return Fail("edu not found on bus 0");
  cpu.Cfg(slot, 0x10, 0xffffffff);
  const uint32_t size = ~(cpu.Cfg(slot, 0x10) & ~0xfu) + 1;
  const uint32_t bar = 0xfe000000;
  cpu.Cfg(slot, 0x10, bar);
  // Interrupt line: where pin A of this slot is routed on this board (firmware knows it).
  const int irq = vdev::pci::I440FXPciHost::RouteIntx(slot, 0);
  cpu.Cfg(slot, 0x3c, static_cast<uint32_t>(irq));
  cpu.Cfg(slot, 0x04, 0x6);  // memory decode + bus master
  std::printf("edu at 00:%02x.0, BAR0 of %u KiB placed at 0x%x, INTA# on IRQ %d\n", slot,
              size >> 10, bar, irq);

  // The driver.
  std::printf("identification: 0x%08llx\n", static_cast<unsigned long long>(cpu.Read(bar + 0x00)));
  cpu.Write(bar + 0x04, 0x12345678);
  std::printf("liveness: wrote 0x12345678, read 0x%08llx\n",
              static_cast<unsigned long long>(cpu.Read(bar + 0x04)));
  cpu.Write(bar + 0x08, 10);
  std::printf("factorial: 10! = %llu\n", static_cast<unsigned long long>(cpu.Read(bar + 0x08)));

  std::printf("raise interrupt 0x1 (INTx), then acknowledge it:\n");
  cpu.Write(bar + 0x60, 0x1);
  cpu.Write(bar + 0x64, 0x1);

  // Switch to MSI: walk the capability list to the MSI capability and program it.
  uint32_t cap = cpu.Cfg(slot, 0x34) & 0xfc;
  while (cap != 0 && (cpu.Cfg(slot, static_cast<int>(cap)) & 0xff) != 0x05) {
    cap = (cpu.Cfg(slot, static_cast<int>(cap)) >> 8) & 0xfc;
  }
  if (cap == 0) return Fail("edu has no MSI capability");
  cpu.Cfg(slot, static_cast<int>(cap) + 4, 0xfee00000);  // address (low)
  cpu.Cfg(slot, static_cast<int>(cap) + 8, 0);           // address (high)
  cpu.Cfg(slot, static_cast<int>(cap) + 12, 0x41);       // data: vector 0x41
  cpu.Cfg(slot, static_cast<int>(cap), (cpu.Cfg(slot, static_cast<int>(cap)) | (1u << 16)));
  std::printf("MSI enabled; raise interrupt 0x2:\n");
  cpu.Write(bar + 0x60, 0x2);
  cpu.Write(bar + 0x64, 0x2);

  // DMA: a message in guest RAM goes into edu's buffer and back out somewhere else.
  std::printf("DMA RAM -> edu -> RAM, with the completion interrupt (0x100):\n");
  const char msg[] = "hello from guest RAM";
  m.guest_memory().Write(vdev::GuestAddr(0x10000),
                         absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(msg), sizeof(msg)));
  cpu.Write(bar + 0x80, 0x10000, 8);  // source: RAM
  cpu.Write(bar + 0x88, 0x40000, 8);  // destination: edu's buffer
  cpu.Write(bar + 0x90, sizeof(msg), 8);
  cpu.Write(bar + 0x98, 0x1, 8);  // start, RAM -> edu
  cpu.Write(bar + 0x80, 0x40000, 8);
  cpu.Write(bar + 0x88, 0x20000, 8);
  cpu.Write(bar + 0x98, 0x1 | 0x2 | 0x4, 8);  // start, edu -> RAM, interrupt when done
  char back[sizeof(msg)] = {};
  m.guest_memory().Read(vdev::GuestAddr(0x20000),
                        absl::MakeSpan(reinterpret_cast<uint8_t*>(back), sizeof(back)));
  std::printf("DMA round trip through the device: \"%s\"\n", back);
  cpu.Write(bar + 0x64, 0x100);

  // A misbehaving guest: wrong widths and DMA outside RAM are refused and counted.
  std::printf("a misbehaving guest (1-byte register read, DMA from beyond RAM):\n");
  cpu.Read(bar + 0x00, 1);                   // 1-byte register read
  cpu.Write(bar + 0x80, 0xfffffffffff0, 8);  // DMA from beyond RAM
  cpu.Write(bar + 0x88, 0x40000, 8);
  cpu.Write(bar + 0x98, 0x1, 8);
  std::printf("guest errors counted by edu:");
  for (const auto& [name, value] : m.FindDevice("edu0")->counters().Snapshot()) {
    std::printf(" %s=%llu", name.c_str(), static_cast<unsigned long long>(value));
  }
  std::printf("\nstill answering: identification 0x%08llx\n",
              static_cast<unsigned long long>(cpu.Read(bar + 0x00)));
  return 0;
}
