#!/usr/bin/env python3
"""Summarizes an ncu --csv log (one row per kernel and metric) of `lamina bench`: the kernels of the timed
half of the run (the warm-up's kernels are the first half), grouped by name and launch shape, with time
and DRAM bytes per launch, then a column per other metric in the log (its mean over the group's launches; e.g.
PROFILE_METRICS=lts__t_sector_hit_rate.pct,launch__shared_mem_config_size). Used by `bash bench/gpu_bench.sh
profile`.

    python3 bench/ncu_summary.py ncu.csv
"""
import csv
import sys
from collections import defaultdict

SCALE = {"nsecond": 1e-9, "ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "usecond": 1e-6, "msecond": 1e-3, "second": 1.0,
         "byte": 1.0, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def number(value, unit):
    return float(value.replace(",", "")) * SCALE.get(unit, 1.0)


BASE = ("gpu__time_duration.sum", "dram__bytes_read.sum", "dram__bytes_write.sum")


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
    extra = sorted({m for k in timed for m in k if m not in BASE and m not in ("name", "grid", "block")})
    groups = defaultdict(lambda: [0, 0.0, 0.0, defaultdict(list)])
    for k in timed:
        g = groups[(k["name"][:70], k["grid"], k["block"])]
        g[0] += 1
        g[1] += k.get("gpu__time_duration.sum", 0.0)
        g[2] += k.get("dram__bytes_read.sum", 0.0) + k.get("dram__bytes_write.sum", 0.0)
        for m in extra:
            if m in k:
                g[3][m].append(k[m])
    total = sum(g[1] for g in groups.values())
    print(f"{len(timed)} kernels in the timed half, {total * 1e3:.3f} ms of kernel time\n")
    print("| kernel | grid | block | launches | total ms | us/launch | DRAM GB/s |" + "".join(f" {m} |" for m in extra))
    print("|---|---|---|---|---|---|---|" + "---|" * len(extra))
    for (name, grid, block), (n, t, b, values) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
        print(f"| {name} | {grid} | {block} | {n} | {t * 1e3:.3f} | {t / n * 1e6:.1f} | {b / t / 1e9 if t else 0:.0f} |"
              + "".join(f" {mean(values.get(m, []))} |" for m in extra))


def mean(values):
    """The mean of numbers (as few digits as they need), or the distinct strings joined, or empty."""
    if not values:
        return ""
    if all(isinstance(v, float) for v in values):
        m = sum(values) / len(values)
        return f"{m:.0f}" if m.is_integer() or abs(m) >= 1000 else f"{m:.4g}"
    return "/".join(sorted({str(v) for v in values}))


if __name__ == "__main__":
    main()
