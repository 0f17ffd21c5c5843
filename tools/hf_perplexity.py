#!/usr/bin/env python3
"""Reference perplexity from Hugging Face transformers for `lamina perplexity` (tests/eval/perplexity_test.cpp).

The loop is the one of transformers' guide "Perplexity of fixed-length models": windows of CTX ids
starting every STRIDE ids, end = min(begin + CTX, n), the ids before the previous window's end
masked with -100 in the labels, `model(input_ids, labels=target_ids).loss`, stop after the window
that reaches the end. Each window's loss is weighted by the ids it actually averaged: the labels
after the shift that are not -100 (the guide's `num_valid_tokens - batch_size` is one less than
that in the windows whose first id is masked). The per-token NLLs, from log_softmax of the same
forward pass, give the standard error as llama.cpp reports it: PPL * sqrt(var(NLL) / (N - 1)).

Cases (tiny_llama in tests/data, fp32, eager attention; each text tokenized by the model's
tokenizer with its defaults, which put BOS first):
  - the first article of data/cnn_dailymail/test_100.jsonl as a file: ctx 64 stride 64
    (disjoint windows), ctx 64 stride 16, ctx 100 stride 37;
  - the first 3 articles as `--dataset cnn_dailymail --max_samples 3`, ctx 128 stride 96: each
    article tokenized and windowed on its own, sums pooled over articles.

Writes:
  tests/data/perplexity/article0.txt     the first article
  tests/data/perplexity/tiny_llama.json  per case: flags, counts, per-window NLL, perplexity and its error

Usage: /opt/hfref/bin/python tools/hf_perplexity.py [--data tests/data]
"""

import argparse
import json
import math
import os
import platform
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

DATASET = "data/cnn_dailymail/test_100.jsonl"
FILE_CASES = [(64, 64), (64, 16), (100, 37)]  # (ctx, stride)
DATASET_CASE = {"max_samples": 3, "ctx": 128, "stride": 96}


def score(model, sequences, ctx, stride):
    """The guide's loop over each sequence; returns the counts, per-window NLL and per-token NLLs."""
    window_nll, window_scored, token_nll = [], [], []
    evaluated = 0
    guide_nll_sum, guide_n_tokens = 0.0, 0
    for ids in sequences:
        ids = torch.tensor([ids])
        seq_len = ids.size(1)
        prev_end_loc = 0
        for begin_loc in range(0, seq_len, stride):
            end_loc = min(begin_loc + ctx, seq_len)
            trg_len = end_loc - prev_end_loc
            input_ids = ids[:, begin_loc:end_loc]
            target_ids = input_ids.clone()
            target_ids[:, :-trg_len] = -100
            with torch.no_grad():
                out = model(input_ids, labels=target_ids)
            n_loss = int((target_ids[:, 1:] != -100).sum())  # the labels the shifted loss averaged
            if n_loss > 0:
                logp = torch.log_softmax(out.logits[0, :-1].double(), dim=-1)
                picked = -logp.gather(1, input_ids[0, 1:, None])[:, 0]
                scored = picked[target_ids[0, 1:] != -100]
                # The loss is the mean of exactly these NLLs (float32 there, double here).
                assert abs(float(out.loss) * n_loss - float(scored.sum())) <= 1e-4 * float(scored.sum()), "loss mismatch"
                window_nll.append(float(scored.sum()))
                window_scored.append(n_loss)
                token_nll.extend(float(x) for x in scored)
                evaluated += end_loc - begin_loc
            num_loss_tokens = int((target_ids != -100).sum()) - target_ids.size(0)  # the guide's count
            if num_loss_tokens > 0:
                guide_nll_sum += float(out.loss) * num_loss_tokens
                guide_n_tokens += num_loss_tokens
            prev_end_loc = end_loc
            if end_loc == seq_len:
                break
    n = len(token_nll)
    mean = sum(token_nll) / n
    var = max(0.0, sum(x * x for x in token_nll) / n - mean * mean)
    ppl = math.exp(mean)
    return {
        "ctx": ctx,
        "stride": stride,
        "sequence_tokens": [len(s) for s in sequences],
        "windows": len(window_nll),
        "scored_tokens": n,
        "evaluated_tokens": evaluated,
        "window_nll": window_nll,
        "window_scored": window_scored,
        "mean_nll": mean,
        "perplexity": ppl,
        "perplexity_stderr": ppl * math.sqrt(var / (n - 1)),
        "guide_weighting_perplexity": math.exp(guide_nll_sum / guide_n_tokens),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="tests/data")
    args = ap.parse_args()
    with open(DATASET, encoding="utf-8") as f:
        articles = [json.loads(line)["article"] for line in f]
    out_dir = os.path.join(args.data, "perplexity")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "article0.txt"), "w", encoding="utf-8", newline="") as f:
        f.write(articles[0])

    model_dir = os.path.join(args.data, "tiny_llama")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    cases = []
    for ctx, stride in FILE_CASES:
        case = {"file": "perplexity/article0.txt"}
        case.update(score(model, [tok(articles[0])["input_ids"]], ctx, stride))
        cases.append(case)
    n = DATASET_CASE["max_samples"]
    case = {"dataset": "cnn_dailymail", "max_samples": n}
    case.update(score(model, [tok(a)["input_ids"] for a in articles[:n]], DATASET_CASE["ctx"], DATASET_CASE["stride"]))
    cases.append(case)

    result = {
        "generated_by": "python3 " + " ".join(sys.argv),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "model": "tiny_llama",
        "notes": "guide_weighting_perplexity: the guide's own weighting (num_valid_tokens - batch_size), "
                 "for comparison only; perplexity counts each scored id once",
        "cases": cases,
    }
    with open(os.path.join(out_dir, "tiny_llama.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    for c in cases:
        src = c.get("file") or f"{c['dataset']} x{c['max_samples']}"
        print(f"{src} ctx {c['ctx']} stride {c['stride']}: perplexity {c['perplexity']:.6f} "
              f"± {c['perplexity_stderr']:.6f} over {c['scored_tokens']} tokens ({c['windows']} windows); "
              f"guide's weighting {c['guide_weighting_perplexity']:.6f}")


if __name__ == "__main__":
    main()
