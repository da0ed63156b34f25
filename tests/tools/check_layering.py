#!/usr/bin/env python3
"""Checks that includes point down the layer list (docs/architecture.md):

    core/base < qom < {core/memory, core/loop} < {core/backends, core/qdev} < {bus/pci, bus/virtio, net}
      < hw < apps

A file may include its own layer and the layers its layer is allowed below. Peers may not include
each other (bus/pci, bus/virtio and net; core/memory and core/loop; core/backends and core/qdev);
nothing below apps/ includes apps/, and only tests/ and examples/ include tests/. The CMake
libraries enforce the same graph at compile time (each sees only its DEPS' headers); this check
keeps the documented order and the folders in step.
"""
import os
import re
import sys

_BASE = {"core/base"}
_QOM = _BASE | {"qom"}
_MEMORY = _QOM | {"core/memory"}
_LOOP = _QOM | {"core/loop"}
_QDEV = _MEMORY | _LOOP | {"core/qdev"}
_BACKENDS = _QOM | {"core/backends"}
_BELOW_BUS = _QDEV | _BACKENDS
# layer -> the include prefixes it may use (besides system and third-party headers).
ALLOWED = {
    "core/base": _BASE,
    "qom": _QOM,
    "core/memory": _MEMORY,
    "core/loop": _LOOP,
    "core/backends": _BACKENDS,
    "core/qdev": _QDEV,
    "bus/pci": _BELOW_BUS | {"bus/pci"},
    "bus/virtio": _BELOW_BUS | {"bus/virtio"},
    "net": _BELOW_BUS | {"net"},
    "hw": _BELOW_BUS | {"bus/pci", "bus/virtio", "net", "hw"},
    "apps": _BELOW_BUS | {"bus/pci", "bus/virtio", "net", "hw", "apps"},
}
PROJECT_PREFIXES = ("core/", "qom/", "bus/", "net/", "hw/", "apps/", "tests/")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def layer_of(path):
    parts = path.split("/")
    two = "/".join(parts[:2])
    if two in ALLOWED:
        return two
    return parts[0] if parts[0] in ALLOWED else None


def include_layer(inc):
    return layer_of(inc) or inc.split("/", 1)[0]


def violations(files):
    """files: iterable of (relative path, text). Yields messages."""
    for rel, text in files:
        layer = layer_of(rel)
        if layer is None:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            m = INCLUDE.match(line)
            if not m or not m.group(1).startswith(PROJECT_PREFIXES):
                continue
            target = include_layer(m.group(1))
            if target not in ALLOWED[layer]:
                yield f"{rel}:{n}: layer '{layer}' may not include '{m.group(1)}'"


def scan(root):
    for top in ALLOWED:
        base = os.path.join(root, top)
        for dirpath, _, names in os.walk(base):
            for name in names:
                if name.endswith((".h", ".cc")):
                    full = os.path.join(dirpath, name)
                    with open(full, encoding="utf-8") as f:
                        yield os.path.relpath(full, root), f.read()


def self_test():
    bad = [("core/base/x.h", '#include "qom/object.h"\n'),
           ("net/tap.cc", '#include "hw/net/virtio_net.h"\n'),
           ("bus/pci/p.cc", '#include "net/net.h"\n'),
           ("qom/o.cc", '#include "tests/testing/x.h"\n'),
           ("core/memory/m.cc", '#include "core/loop/event_loop.h"\n'),
           ("bus/pci/p.cc", '#include "bus/virtio/virtqueue.h"\n')]
    good = [("hw/net/v.cc", '#include "net/net.h"\n#include "bus/pci/pci_device.h"\n'),
            ("core/qdev/m.cc", '#include "qom/object.h"\n#include <vector>\n#include "absl/x.h"\n')]
    found = list(violations(bad))
    ok = len(found) == len(bad) and not list(violations(good))
    print("self-test", "passed" if ok else f"FAILED: {found}")
    return 0 if ok else 1


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--self-test":
        return self_test()
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    found = list(violations(scan(root)))
    for v in found:
        print(v)
    print(f"{len(found)} layering violation(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
