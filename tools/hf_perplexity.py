#!/usr/bin/env python3
"""Reference perplexity from Hugging Face transformers for `lamina perplexity` (tests/cli).

Takes the first article of data/cnn_dailymail/test_100.jsonl as the text, tokenizes it with the
tiny model's tokenizer (BOS first, as the model's post-processor adds it), cuts the ids into
consecutive windows of CTX tokens (at most MAX_WINDOWS), and scores every token after the first of
each window from the tokens before it in that window, with AutoModelForCausalLM in fp32 and eager
attention: PPL = exp(sum of NLL / tokens predicted). Writes:

  tests/data/perplexity/article0.txt     the text
  tests/data/perplexity/tiny_llama.json  ctx, windows, per-window NLL, perplexity, versions

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

CTX = 64
MAX_WINDOWS = 4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="tests/data")
    args = ap.parse_args()
    with open("data/cnn_dailymail/test_100.jsonl", encoding="utf-8") as f:
        text = json.loads(f.readline())["article"]
    out_dir = os.path.join(args.data, "perplexity")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "article0.txt"), "w", encoding="utf-8", newline="") as f:
        f.write(text)

    model_dir = os.path.join(args.data, "tiny_llama")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    ids = tok(text)["input_ids"]
    n_windows = min(len(ids) // CTX, MAX_WINDOWS)
    nlls = []
    with torch.no_grad():
        for w in range(n_windows):
            window = torch.tensor([ids[w * CTX:(w + 1) * CTX]])
            logits = model(window).logits[0].double()
            logp = torch.log_softmax(logits[:-1], dim=-1)
            nlls.append(float(-logp.gather(1, window[0, 1:, None]).sum()))
    predicted = n_windows * (CTX - 1)
    ppl = math.exp(sum(nlls) / predicted)
    result = {
        "generated_by": "python3 " + " ".join(sys.argv),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "model": "tiny_llama",
        "text_file": "perplexity/article0.txt",
        "file_tokens": len(ids),
        "ctx": CTX,
        "windows": n_windows,
        "predicted_tokens": predicted,
        "window_nll": nlls,
        "perplexity": ppl,
    }
    with open(os.path.join(out_dir, "tiny_llama.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"perplexity {ppl:.6f} over {predicted} tokens ({n_windows} windows of {CTX})")


if __name__ == "__main__":
    main()
