#!/usr/bin/env python3
"""Prints one BENCH line per measured operation with its same-run baseline and the ratio.

Usage: summarize.py RESULTS.json   (Google Benchmark --benchmark_out_format=json)
"""
import json
import sys

# name -> (baseline name, target in the benchmark's unit or None, unit)
PAIRS = {
    "BM_TypeLookup": ("BM_Baseline_HashMapLookup", None),
    "BM_DynamicCastHit": ("BM_Baseline_CxxDynamicCastHit", 10.0),
    "BM_DynamicCastMiss": ("BM_Baseline_CxxDynamicCastHit", 10.0),
    "BM_DynamicCastInterfaceMiss": ("BM_Baseline_CxxDynamicCastHit", 10.0),
    "BM_PropertySetFromString": ("BM_Baseline_FromChars", None),
    "BM_Lifecycle1000Devices": ("BM_Baseline_NewDelete1000", 50.0),
    "BM_MmioDispatch/10": ("BM_Baseline_DirectHandlerCall", None),
    "BM_MmioDispatch/1000": ("BM_Baseline_DirectHandlerCall", 25.0),
    "BM_ConfigReadCf8Cfc": ("BM_Baseline_DirectConfigRead", None),
    "BM_GuestMemoryTranslate": ("BM_Baseline_UncheckedPointer", None),
    "BM_PopPush/descs:1/event_idx:0": ("BM_Baseline_UncheckedPopPush", 25.0),
    "BM_PopPush/descs:2/event_idx:0": ("BM_Baseline_UncheckedPopPush", None),
    "BM_PopPush/descs:3/event_idx:0": ("BM_Baseline_UncheckedPopPush", None),
    "BM_PopPush/descs:1/event_idx:1": ("BM_Baseline_UncheckedPopPush", 25.0),
    "BM_PopPush/descs:2/event_idx:1": ("BM_Baseline_UncheckedPopPush", None),
    "BM_PopPush/descs:3/event_idx:1": ("BM_Baseline_UncheckedPopPush", None),
}


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        data = json.load(f)
    runs = {b["name"]: b for b in data["benchmarks"] if b.get("run_type", "iteration") == "iteration"}
    failed = False
    for name, (base, target) in PAIRS.items():
        if name not in runs or base not in runs:
            continue
        ours, ref = runs[name], runs[base]
        unit = ours.get("time_unit", "ns")
        ratio = ours["real_time"] / ref["real_time"] if ref["real_time"] else float("inf")
        line = (f"BENCH {name[3:]} {unit}={ours['real_time']:.3f} "
                f"baseline({base[12:]})={ref['real_time']:.3f} ratio={ratio:.2f}")
        if target is not None:
            ok = ours["real_time"] <= target
            failed |= not ok
            line += f" target<={target:g}{unit} {'met' if ok else 'MISSED'}"
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
