#!/usr/bin/env python3
"""Summarizes an ncu --csv log (one row per kernel and metric) of `lamina bench`: the kernels of the timed
half of the run (the warm-up's kernels are the first half), grouped by name and launch shape, with time
and DRAM bytes per launch. Used by `bash bench/gpu_bench.sh profile`.

    python3 bench/ncu_summary.py ncu.csv
"""
import csv
import sys
from collections import defaultdict

SCALE = {"nsecond": 1e-9, "ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "usecond": 1e-6, "msecond": 1e-3, "second": 1.0,
         "byte": 1.0, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def number(value, unit):
    return float(value.replace(",", "")) * SCALE.get(unit, 1.0)


def main():
    rows = [line for line in open(sys.argv[1]) if line.startswith('"')]
    kernels = {}
    for r in csv.DictReader(rows):
        k = kernels.setdefault(int(r["ID"]), {"name": r["Kernel Name"], "grid": r["Grid Size"], "block": r["Block Size"]})
        try:
            k[r["Metric Name"]] = number(r["Metric Value"], r["Metric Unit"])
        except ValueError:
            k[r["Metric Name"]] = r["Metric Value"]
    ids = sorted(kernels)
    timed = [kernels[i] for i in ids[len(ids) // 2:]]
    groups = defaultdict(lambda: [0, 0.0, 0.0])
    for k in timed:
        g = groups[(k["name"][:70], k["grid"], k["block"])]
        g[0] += 1
        g[1] += k.get("gpu__time_duration.sum", 0.0)
        g[2] += k.get("dram__bytes_read.sum", 0.0) + k.get("dram__bytes_write.sum", 0.0)
    total = sum(g[1] for g in groups.values())
    print(f"{len(timed)} kernels in the timed half, {total * 1e3:.3f} ms of kernel time\n")
    print("| kernel | grid | block | launches | total ms | us/launch | DRAM GB/s |\n|---|---|---|---|---|---|---|")
    for (name, grid, block), (n, t, b) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
        print(f"| {name} | {grid} | {block} | {n} | {t * 1e3:.3f} | {t / n * 1e6:.1f} | {b / t / 1e9 if t else 0:.0f} |")


if __name__ == "__main__":
    main()
