#!/usr/bin/env python3
"""Hugging Face transformers on the same random checkpoint lamina builds from: the reference numbers and
the speed baseline, in one run on the device.

  - parity: logits at the last position of a fixed 512-token prompt and 128 greedy tokens, compared with
    `lamina logits` output (--lamina FILE): max relative logit error and greedy agreement;
  - speed: prefill of 512 tokens (tokens/s) and batch-1 decode of 128 tokens (tokens/s), eager fp16.

    python3 tools/hf_baseline_7b.py --model /tmp/llama7b --prompt_ids ids.txt [--lamina lamina.json] --json out.json
"""
import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt_ids", required=True)
    ap.add_argument("--lamina")
    ap.add_argument("--new_tokens", type=int, default=128)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    ids = [int(x) for x in open(args.prompt_ids).read().split()]
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float16,
                                                 attn_implementation="eager").cuda().eval()
    x = torch.tensor([ids], device="cuda")
    out = {"versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
           "card": torch.cuda.get_device_name()}
    with torch.no_grad():
        for _ in range(2):  # warm-up
            model(x)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        reps = 5
        for _ in range(reps):
            logits = model(x).logits
        torch.cuda.synchronize()
        out["prefill_tokens_per_s"] = reps * len(ids) / (time.perf_counter() - t0)
        last = logits[0, -1].float()
        t0 = time.perf_counter()
        gen = model.generate(x, do_sample=False, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                             pad_token_id=0)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        out["decode_tokens_per_s"] = args.new_tokens / elapsed  # includes one prefill: a lower bound
        greedy = gen[0, len(ids):].tolist()
    out["greedy_ids"] = greedy
    if args.lamina:
        lam = json.load(open(args.lamina))
        ll = torch.tensor(lam["last_logits"], device="cuda")
        out["max_rel_logit_error"] = float((ll - last).abs().max() / last.abs().max())
        out["rel_logit_error_l2"] = float((ll - last).norm() / last.norm())
        lg = lam.get("greedy_ids", [])
        agree = 0
        for a, b in zip(lg, greedy):
            if a != b:
                break
            agree += 1
        out["greedy_prefix_agreement"] = agree
        out["greedy_total"] = len(greedy)
        out["greedy_positions_equal"] = sum(a == b for a, b in zip(lg, greedy))
        out["top1_last_position_equal"] = int(ll.argmax()) == int(last.argmax())
    json.dump(out, open(args.json, "w"), indent=1)
    print(json.dumps({k: v for k, v in out.items() if k != "greedy_ids"}, indent=1))


if __name__ == "__main__":
    main()
