#!/usr/bin/env python3
"""Turns the JSON that bench/gpu_bench.sh leaves in its output folder into one Markdown table."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])


def load(name):
    p = out / name
    return json.loads(p.read_text()) if p.exists() else None


ceil = load("ceilings.json") or {}
hf = load("hf.json") or {}
copy = ceil.get("copy_GBps", 0.0)
gemm = ceil.get("gemm_float16_TFLOPs", 0.0)
# LLaMA-7B: 6.74e9 weights; a token's forward costs 2 FLOPs per weight (+ attention, small at 512).
flops_per_token = 2 * 6.74e9
print(f"card: {ceil.get('card', '?')}; copy {copy:.0f} GB/s, fp16 GEMM {gemm:.0f} TFLOP/s, "
      f"bf16 GEMM {ceil.get('gemm_bfloat16_TFLOPs', 0):.0f} TFLOP/s\n")
print("| measurement | lamina | HF transformers (eager fp16) |\n|---|---|---|")
b1 = load("bench_b1.json")
if b1:
    pre = max(b1["prefill_tokens_per_s"])
    dec = max(b1["decode_tokens_per_s"])
    gbs = b1["decode_achieved_gb_per_s"]
    print(f"| prefill 512 tokens/s (MFU) | {pre:,.0f} ({100 * pre * flops_per_token / (gemm * 1e12):.0f}%) | "
          f"{hf.get('prefill_tokens_per_s', 0):,.0f} |")
    print(f"| decode batch 1 tokens/s | {dec:.1f} ({1e3 / dec:.2f} ms/token) | {hf.get('decode_tokens_per_s', 0):.1f} |")
    print(f"| decode batch 1 achieved GB/s | {gbs:.0f} ({100 * gbs / copy:.0f}% of copy) | |")
for b in (8, 32, 64):
    j = load(f"bench_b{b}.json")
    if j:
        print(f"| decode batch {b} tokens/s | {max(j['decode_tokens_per_s']):,.0f} | |")
off = load("bench_b1_plugin_off.json")
if b1 and off:
    print(f"| --rmsnorm_plugin on / off: decode tok/s | {max(b1['decode_tokens_per_s']):.1f} / "
          f"{max(off['decode_tokens_per_s']):.1f} | |")
    print(f"| --rmsnorm_plugin on / off: prefill tok/s | {max(b1['prefill_tokens_per_s']):,.0f} / "
          f"{max(off['prefill_tokens_per_s']):,.0f} | |")
if "max_rel_logit_error" in hf:
    print(f"| parity: max rel. logit error, last position | {hf['max_rel_logit_error']:.2e} (l2 {hf['rel_logit_error_l2']:.2e}) | reference |")
    print(f"| parity: greedy tokens agreeing before first divergence | {hf['greedy_prefix_agreement']}/{hf['greedy_total']} "
          f"(same position: {hf['greedy_positions_equal']}) | reference |")
rms = ceil.get("torch_rmsnorm", {})
if rms:
    print("\nPyTorch RMSNorm (fp16, x 4096), GB/s: " + ", ".join(
        f"{t} tokens: HF composition {v['hf_composition_GBps']:.0f}" + (f", F.rms_norm {v['F.rms_norm_GBps']:.0f}" if "F.rms_norm_GBps" in v else "")
        for t, v in rms.items()))
