#!/usr/bin/env python3
"""Summarize an in-pipeline kernel trace (src/backend/cuda/kernel_trace.cuh) of one graph replay.

Input: the CSV that a -DLAMINA_KERNEL_TRACE=ON build writes for LAMINA_KERNEL_TRACE=path (one row per
block: tag, launch (the launch's %gridid), block, grid, sm, start_ns, waited_ns, end_ns; start from the
replay's first block, waited and end from the block's own start, waited -1 when the block never waited).

Blocks become launches by their launch id; launches in order of their first block's start are the step
(a kernel launches, under PDL or not, only once every block of the one before has started).
For each launch:
  share      its last block's end minus the previous launch's: what it adds to the step (the sum of the
             shares is the step);
  release    its first pdl_wait() return minus the previous launch's last end (PDL's hand-over latency);
  tail       its last end minus its first pdl_wait() return (its own dependent work);
  early      blocks that started before the previous launch ended (resident and loading under PDL).
A kernel's role is its name and the name of the kernel before it (o_proj is "gemv_store after attention",
down "gemv_store after gemv_swiglu"). Printed: the step's span, then per role the mean of each column over
its launches, in step order.

Usage: trace_summary.py trace.csv [--launches launches.csv] [--blocks FIRST-LAST blocks.csv]
  --launches  also write one row per launch (role, blocks, first start, first wait return, last end, early
              blocks; ns from the step's first block): the per-block CSV is large, this one is not.
  --blocks    also write the blocks of launches FIRST..LAST (indices in step order, as in --launches): launch,
              role, block, SM, start, wait return (empty: never waited) and end, ns from the step's first block.
              One layer's launches are enough to see which block of a kernel ends it and why.
"""
import argparse
import csv
import sys
from collections import OrderedDict, defaultdict

EPILOGUES = ["store", "add", "swiglu", "rope"]


NAMES = {1: "embedding", 2: "rms_norm", 4: "attention", 5: "gather_rows", 6: "argmax", 7: "out_proj"}


def name_of(tag):
    if tag in NAMES:
        return NAMES[tag]
    if tag % 16 == 3:
        e = (tag % 256) // 16
        return "gemv_" + (EPILOGUES[e] if e < len(EPILOGUES) else str(e)) + ("_norm" if tag >= 256 else "")
    return f"tag{tag}"


def launches_of(rows):
    by_launch = defaultdict(list)
    for r in rows:
        by_launch[r["launch"]].append(r)
    launches = []
    for run in by_launch.values():
        tag, grid = run[0]["tag"], run[0]["grid"]
        if len(run) != grid:
            print(f"warning: {name_of(tag)}: a launch of {grid} blocks has {len(run)} recorded "
                  "(the buffer filled, or blocks started before the trace was armed)", file=sys.stderr)
        waits = [b["start"] + b["waited"] for b in run if b["waited"] >= 0]
        launches.append({
            "name": name_of(tag),
            "blocks": len(run),
            "first_start": min(b["start"] for b in run),
            "last_end": max(b["start"] + b["end"] for b in run),
            "first_wait": min(waits) if waits else None,
            "starts": [b["start"] for b in run],
            "blocks_of": sorted(run, key=lambda b: b["block"]),
        })
    launches.sort(key=lambda l: l["first_start"])
    return launches


def write_blocks(path, launches, first, last):
    t0 = launches[0]["first_start"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "role", "block", "sm", "start_ns", "wait_ns", "end_ns"])
        for i in range(first, min(last, len(launches) - 1) + 1):
            l = launches[i]
            for b in l["blocks_of"]:
                start = b["start"] - t0
                w.writerow([i, l["role"], b["block"], b["sm"], start, "" if b["waited"] < 0 else start + b["waited"],
                            start + b["end"]])


def summarize(path, launches_path=None, blocks=None):
    with open(path, newline="") as f:
        rows = [{k: int(v) for k, v in r.items()} for r in csv.DictReader(f)]
    if not rows:
        sys.exit(f"{path}: no blocks recorded")
    for r in rows:
        r["start"] = r.pop("start_ns")
        r["waited"] = r.pop("waited_ns")
        r["end"] = r.pop("end_ns")
    launches = launches_of(rows)
    roles = OrderedDict()
    prev = None
    for l in launches:
        role = l["name"] + (" after " + prev["name"] if prev else "")
        l["role"] = role
        base = prev["last_end"] if prev else l["first_start"]
        stats = roles.setdefault(role, defaultdict(list))
        stats["share"].append(l["last_end"] - base)
        stats["blocks"].append(l["blocks"])
        l["early"] = sum(1 for s in l["starts"] if s < base) if prev else 0
        stats["early"].append(l["early"])
        if l["first_wait"] is not None:
            stats["release"].append(l["first_wait"] - base)
            stats["tail"].append(l["last_end"] - l["first_wait"])
        prev = l
    span = launches[-1]["last_end"] - launches[0]["first_start"]
    if launches_path:
        with open(launches_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["index", "role", "blocks", "first_start_ns", "first_wait_ns", "last_end_ns", "early_blocks"])
            for i, l in enumerate(launches):
                w.writerow([i, l["role"], l["blocks"], l["first_start"],
                            "" if l["first_wait"] is None else l["first_wait"], l["last_end"], l["early"]])
    if blocks:
        write_blocks(blocks[2], launches, blocks[0], blocks[1])
    print(f"kernel trace {path}: {len(launches)} launches, {len(rows)} blocks, step span {span / 1000:.1f} us")
    print()
    print("| kernel (after) | launches | blocks | share us (mean) | share of step | release us | tail us | early blocks |")
    print("|---|---|---|---|---|---|---|---|")
    mean = lambda v: sum(v) / len(v) if v else float("nan")
    for role, s in roles.items():
        print(f"| {role} | {len(s['share'])} | {mean(s['blocks']):.0f} | {mean(s['share']) / 1000:.2f} | "
              f"{100 * sum(s['share']) / span:.1f}% | {mean(s['release']) / 1000:.2f} | {mean(s['tail']) / 1000:.2f} | "
              f"{mean(s['early']):.0f} |")


def launch_range(text):
    first, sep, last = text.partition("-")
    if not sep or not first.isdigit() or not last.isdigit() or int(first) > int(last):
        raise argparse.ArgumentTypeError(f"'{text}' is not FIRST-LAST (launch indices, FIRST <= LAST)")
    return int(first), int(last)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trace")
    parser.add_argument("--launches")
    parser.add_argument("--blocks", nargs=2, metavar=("FIRST-LAST", "PATH"))
    a = parser.parse_args()
    blocks = None
    if a.blocks:
        try:
            blocks = (*launch_range(a.blocks[0]), a.blocks[1])
        except argparse.ArgumentTypeError as e:
            parser.error(f"--blocks: {e}")
    summarize(a.trace, a.launches, blocks)
