#!/usr/bin/env python3
"""Table of a tensor-parallel run (`bash bench/gpu_bench.sh tp`): per tp size, prefill 512 and decode at
batch 1 and 32 (tokens/s), the time rank 0 spends in collectives per decode step (measured in the run: `lamina bench`'s timed
collectives; and estimated from lamina_bench_allreduce's latency), and the greedy tokens (of 128, fixed 512-token prompt) equal to tp 1's before the first difference.
Rows "Np", in runs made before that switch was removed, are tp N with LAMINA_TP_EPILOGUES=0 (the ranks on the plain
decode ops; runs before 2026-11-29's run3 had them off by default and named the run with them on "Ne").

    python3 bench/summarize_tp.py RUN_DIR
"""
import json
import os
import re
import sys


def load(path):
    """The JSON at path, or {} when a run failed and left none."""
    return json.load(open(path)) if os.path.exists(path) else {}


def best(j, key):
    return max(j.get(key) or [0.0])


def main():
    d = sys.argv[1]
    allreduce = {}  # tokens -> ms per step
    path = os.path.join(d, "allreduce.md")
    if os.path.exists(path):
        for line in open(path):
            m = re.match(r"\| (\d+) \| \d+ \| [\d.]+ \| ([\d.]+) \|", line)
            if m:
                allreduce[int(m.group(1))] = float(m.group(2))
    base = load(os.path.join(d, "tp1_logits.json")).get("greedy_ids", [])
    print("| tp | prefill 512 tok/s | decode b1 tok/s (ms/token) | decode b32 tok/s | collectives ms/step b1 / b32 "
          "(in run) | all-reduce ms/step b1 / b32 (microbenchmark) | greedy = tp 1 |")
    print("|---|---|---|---|---|---|---|")
    # tp 1, 2, 4, 8; after each tp > 1 an older run's LAMINA_TP_EPILOGUES=0 row ("2p"), where there is one.
    for tp in ("1", "2", "2p", "4", "4p", "8", "8p"):
        j1, j32 = load(os.path.join(d, f"tp{tp}_b1.json")), load(os.path.join(d, f"tp{tp}_b32.json"))
        ids = load(os.path.join(d, f"tp{tp}_logits.json")).get("greedy_ids", [])
        if not j1 and not j32 and not ids:
            continue
        agree = next((i for i, (a, b) in enumerate(zip(ids, base)) if a != b), min(len(ids), len(base)))
        dec = best(j1, "decode_tokens_per_s")
        ar = "—" if tp == "1" else f"{allreduce.get(1, 0):.3f} / {allreduce.get(32, 0):.3f}"
        run = "—" if tp == "1" else (f"{j1.get('decode_collective_ms_per_step', 0):.3f} / "
                                   f"{j32.get('decode_collective_ms_per_step', 0):.3f}")
        ms = f"{1e3 / dec:.2f}" if dec else "failed"
        print(f"| {tp} | {best(j1, 'prefill_tokens_per_s'):,.0f} | {dec:.1f} ({ms}) | "
              f"{best(j32, 'decode_tokens_per_s'):,.0f} | {run} | {ar} | {agree}/{len(base)} |")


if __name__ == "__main__":
    main()
