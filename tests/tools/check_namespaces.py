#!/usr/bin/env python3
"""Checks the namespace rule (docs/architecture.md, "Names"): the code of a folder lives in the
namespace of its layer.

  core/**                         vdev          (the framework's vocabulary: DeviceState, Machine)
  qom/                            vdev::qom
  bus/pci/                        vdev::pci
  bus/virtio/, hw/virtio/,
  hw/net/virtio_net/              vdev::virtio  (virtio transports and devices)
  hw/virtio/vhost/                vdev::vhost
  net/                            vdev::net
  hw/misc/                        vdev::misc
  hw/machine/                     vdev::machine
  hw/remote/                      vdev::remote
  apps/vdev/                      vdev::cli

Nested `internal` / `*_internal` and anonymous namespaces are allowed anywhere. Another
top-level namespace is allowed only for a block of forward declarations (`class X;`).

Usage: check_namespaces.py ROOT | --self-test
"""
import os
import re
import sys

RULES = [  # longest prefix first
    ("hw/virtio/vhost/", "vdev::vhost"),
    ("hw/net/virtio_net/", "vdev::virtio"),
    ("hw/virtio/", "vdev::virtio"),
    ("hw/misc/", "vdev::misc"),
    ("hw/machine/", "vdev::machine"),
    ("hw/remote/", "vdev::remote"),
    ("bus/pci/", "vdev::pci"),
    ("bus/virtio/", "vdev::virtio"),
    ("core/", "vdev"),
    ("qom/", "vdev::qom"),
    ("net/", "vdev::net"),
    ("apps/vdev/", "vdev::cli"),
]

OPEN = re.compile(r"^namespace ?([\w:]*) \{(\s*\}.*)?\s*$")
CLOSE = re.compile(r"^\}  // namespace")
FORWARD = re.compile(r"^\s*(class|struct) \w+;\s*$")


def expected_for(rel):
    for prefix, ns in RULES:
        if rel.startswith(prefix):
            return ns
    return None


def check_text(rel, text):
    """Returns a list of problems in one file."""
    want = expected_for(rel)
    if want is None:
        return []
    problems = []
    stack = []  # open namespaces
    top = None  # (line, name, body lines) of the open top-level block
    for n, line in enumerate(text.splitlines(), 1):
        m = OPEN.match(line)
        if m and m.group(2):  # "namespace {}  // namespace": opened and closed
            continue
        if m:
            if not stack:
                top = (n, m.group(1), [])
            stack.append(m.group(1))
            continue
        if CLOSE.match(line) and stack:
            stack.pop()
            if not stack and top is not None:
                start, name, body = top
                forward_only = all(not b.strip() or FORWARD.match(b) for b in body)
                nested_ok = name.startswith(want + "::") and name.endswith("internal")
                if name != want and not forward_only and not nested_ok:
                    problems.append(f"{rel}:{start}: namespace {name or '(anonymous)'}, "
                                    f"expected {want}")
                top = None
            continue
        if top is not None and len(stack) == 1:
            top[2].append(line)
    return problems


def check_tree(root):
    problems = []
    for top in ("core", "qom", "bus", "net", "hw", "apps"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for f in sorted(files):
                if not f.endswith((".h", ".cc")):
                    continue
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, root)
                with open(path, encoding="utf-8") as fh:
                    problems += check_text(rel, fh.read())
    return problems


def self_test():
    ok = "namespace vdev::pci {\nclass A {};\n}  // namespace vdev::pci\n"
    wrong = "namespace vdev {\nclass A {};\n}  // namespace vdev\n"
    forward = "namespace vdev {\nclass EventLoop;\n}  // namespace vdev\nnamespace vdev::net {\n}  // namespace vdev::net\n"
    internal = "namespace vdev::qom::internal {\nint x;\n}  // namespace vdev::qom::internal\n"
    cases = [
        ("bus/pci/a.h", ok, 0),
        ("bus/pci/a.h", wrong, 1),
        ("net/a.h", forward, 0),
        ("qom/a.h", internal, 0),
        ("core/loop/a.h", wrong, 0),
        ("hw/misc/a.cc", wrong, 1),
        ("tests/a.cc", wrong, 0),
    ]
    failed = 0
    for rel, text, n in cases:
        got = len(check_text(rel, text))
        if got != n:
            print(f"self-test: {rel}: {got} problems, expected {n}")
            failed += 1
    print("self-test:", "failed" if failed else "passed")
    return 1 if failed else 0


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "--self-test":
        return self_test()
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    problems = check_tree(sys.argv[1])
    for p in problems:
        print(p)
    print(f"namespaces: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
