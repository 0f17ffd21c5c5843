#!/usr/bin/env python3
"""Compare two runs of tools/hf_reference.py tiny (e.g. CPU vs GPU, or two versions).

Prints, per model and case, whether the greedy ids agree and the largest absolute
difference of prompt logits and step logits. Exits non-zero if greedy ids differ.

Usage: python3 tools/compare_reference.py DIR_A DIR_B   (each holding <model>/reference.json)
Needs: numpy.
"""

import json
import os
import sys

import numpy as np


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    dir_a, dir_b = sys.argv[1:]
    ok = True
    for name in sorted(os.listdir(dir_b)):
        path_a, path_b = (os.path.join(d, name, "reference.json") for d in (dir_a, dir_b))
        if not (os.path.exists(path_a) and os.path.exists(path_b)):
            continue
        ref_a, ref_b = (json.load(open(p)) for p in (path_a, path_b))
        print(f"{name}: {ref_a['versions'].get('device')} vs {ref_b['versions'].get('device')}")
        for case_a, case_b in zip(ref_a["cases"], ref_b["cases"], strict=True):
            assert case_a["input_ids"] == case_b["input_ids"]
            same = case_a["greedy_ids"] == case_b["greedy_ids"]
            ok &= same
            d_prompt = np.abs(np.array(case_a["logits"]) - np.array(case_b["logits"])).max()
            d_step = np.abs(np.array(case_a["step_logits"]) - np.array(case_b["step_logits"])).max()
            print(
                f"  len {len(case_a['input_ids']):2d}: greedy {'same' if same else 'DIFFERENT'}, "
                f"max |d logits| {d_prompt:.3g}, max |d step_logits| {d_step:.3g}, "
                f"min top-2 gap {case_a['min_top2_gap']:.4g}"
            )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
