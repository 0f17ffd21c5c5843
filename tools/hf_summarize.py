#!/usr/bin/env python3
"""Hugging Face transformers on the `lamina summarize` task: the reference side of the side-by-side.

Runs the HF half of TensorRT-LLM's examples/summarize.py with the prompt rules of `lamina summarize`
and writes the JSON that `lamina summarize --output_json` writes, for `--reference_json`:

  prompt   (article + " TL;DR: ").strip().replace(" n't", "n't"), tokenized with the tokenizer that
           transformers converts from the same GGUF (default add_special_tokens, no truncation), then
           only the last --max_input_length ids kept (summarize.py's input_ids[:, -max_input_length:]).
  examples the first max_ite x batch_size rows of the dataset (summarize.py's loop); HF runs them one
           at a time (no padding), whatever --batch_size says.
  generate model.generate(ids, attention_mask=ones, max_new_tokens=output_len, eos/pad = the model's
           generation_config eos_token_id, repetition_penalty, and either greedy (num_beams 1,
           do_sample=False; top_k > 1 samples) or beam search (num_beams, num_return_sequences,
           length_penalty, early_stopping, no_repeat_ngram_size)). The model is the GGUF dequantized
           to fp32, eager attention.
  outputs  each returned sequence's new ids, cut after the first eos (HF pads finished beams with it),
           decoded with skip_special_tokens=True.
  latency  per example: tokenization + generate + decode (time.perf_counter), summed. First-token
           latency comes from a streamer (greedy) or is left null (beam search).
  scores   rouge-score's RougeScorer(["rouge1","rouge2","rougeL","rougeLsum"], use_stemmer) per
           returned beam: mean F1 x 100 over the examples (what `lamina summarize` prints).

Note: transformers 5.17's GGUF tokenizer conversion sets eos_token to the bos id (see tools/README.md),
so eos comes from model.generation_config, never from the tokenizer.

Usage:
  /opt/hfref/bin/python tools/hf_summarize.py --out tests/data/summarize/hf_greedy_20.json \\
      [--gguf models/SmolLM2-135M-Instruct.Q4_1.gguf] [--dataset_path data/cnn_dailymail/test_100.jsonl] \\
      [--max_ite 20] [--batch_size 1] [--max_input_length 923] [--output_len 100] [--num_beams 1] ...
"""

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import time

import numpy as np
import torch
import transformers
from rouge_score import rouge_scorer
from transformers import AutoModelForCausalLM, AutoTokenizer

ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]


def summarize_prompt(article):
    return (article + " TL;DR: ").strip().replace(" n't", "n't")


def read_dataset(path):
    examples = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            obj = json.loads(line)
            examples.append({"id": str(obj.get("id", f"line {n}")), "line": n, "article": obj["article"],
                             "highlights": obj["highlights"]})
    return examples


def versions(threads):
    v = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
         "numpy": np.__version__, "platform": platform.platform(),
         "device": "cpu: " + (platform.processor() or platform.machine()), "torch_threads": threads}
    for pkg in ["tokenizers", "gguf", "rouge-score", "nltk"]:
        try:
            v[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return v


def early_stopping_value(name):
    """summarize.py / lamina: true|false|never, or 1|0|another integer."""
    if name in ("true", "True", "1"):
        return True, "true"
    if name in ("false", "False", "0"):
        return False, "false"
    if name == "never" or name.lstrip("-").isdigit():
        return "never", "never"
    raise SystemExit(f"--early_stopping {name!r} is not one of true, false, never")


class FirstTokenTimer:
    """A generate() streamer that notes when the first new token arrives (the prompt comes first)."""

    def __init__(self):
        self.calls = 0
        self.first = None

    def put(self, value):
        self.calls += 1
        if self.calls == 2 and self.first is None:
            self.first = time.perf_counter()

    def end(self):
        pass


def cut_after_eos(ids, eos):
    return ids[: ids.index(eos) + 1] if eos in ids else ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--dataset_path", default="data/cnn_dailymail/test_100.jsonl")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max_input_length", type=int, default=923)
    ap.add_argument("--output_len", type=int, default=100)
    ap.add_argument("--batch_size", type=int, default=1)
    ap.add_argument("--max_ite", type=int, default=20)
    ap.add_argument("--num_beams", type=int, default=1)
    ap.add_argument("--num_return_sequences", type=int, default=0)
    ap.add_argument("--top_k", type=int, default=1)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--length_penalty", type=float, default=1.0)
    ap.add_argument("--early_stopping", default="true")
    ap.add_argument("--no_repeat_ngram_size", type=int, default=0)
    ap.add_argument("--repetition_penalty", type=float, default=1.0)
    ap.add_argument("--use_stemmer", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    args = ap.parse_args()
    command = "python3 tools/hf_summarize.py " + " ".join(sys.argv[1:])
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    n_return = args.num_return_sequences or args.num_beams
    early, early_name = early_stopping_value(args.early_stopping)
    gguf_dir, gguf_name = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    eos = model.generation_config.eos_token_id
    pad = model.generation_config.pad_token_id if model.generation_config.pad_token_id is not None else eos
    gen_kw = dict(max_new_tokens=args.output_len, eos_token_id=eos, pad_token_id=pad,
                  repetition_penalty=args.repetition_penalty)
    if args.num_beams == 1:
        gen_kw.update(do_sample=args.top_k != 1)
        if args.top_k != 1:
            gen_kw.update(top_k=args.top_k, temperature=args.temperature)
    else:
        gen_kw.update(do_sample=False, num_beams=args.num_beams, num_return_sequences=n_return,
                      length_penalty=args.length_penalty, early_stopping=early)
        if args.no_repeat_ngram_size > 0:
            gen_kw["no_repeat_ngram_size"] = args.no_repeat_ngram_size

    dataset = read_dataset(args.dataset_path)[: args.max_ite * args.batch_size]
    scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=args.use_stemmer)
    torch.manual_seed(0)
    examples, total = [], 0.0
    for n, ex in enumerate(dataset, start=1):
        timer = FirstTokenTimer() if args.num_beams == 1 else None
        t0 = time.perf_counter()
        ids = tok(summarize_prompt(ex["article"]))["input_ids"][-args.max_input_length:]
        input_ids = torch.tensor([ids])
        with torch.inference_mode():
            out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), streamer=timer, **gen_kw)
        seqs = [cut_after_eos(s, eos) for s in out[:, len(ids):].tolist()]
        texts = [tok.decode(s, skip_special_tokens=True) for s in seqs]
        t1 = time.perf_counter()
        total += t1 - t0
        rouge = [{k: v.fmeasure for k, v in scorer.score(ex["highlights"], t).items()} for t in texts]
        examples.append({"id": ex["id"], "line": ex["line"], "input_tokens": len(ids), "output_ids": seqs,
                         "output_tokens": [len(s) for s in seqs], "outputs": texts, "latency_s": t1 - t0,
                         "first_token_latency_s": (timer.first - t0) if timer and timer.first else None,
                         "rouge": rouge})
        print(f"[{n}/{len(dataset)}] {ex['id'][:8]} {len(ids)} -> {len(seqs[0])} tokens, {t1 - t0:.2f} s: "
              f"{texts[0][:70]!r}", flush=True)

    scores = [{"beam": b, **{k: 100.0 * float(np.mean([e["rouge"][b][k] for e in examples])) for k in ROUGE_TYPES}}
              for b in range(n_return)]
    doc = {
        "generated_by": command,
        "engine": "hf_transformers",
        "model": gguf_name,
        "dataset": args.dataset_path,
        "device": "cpu",
        "versions": versions(torch.get_num_threads()),
        "config": {"max_input_length": args.max_input_length, "output_len": args.output_len, "batch_size": 1,
                   "max_ite": args.max_ite * args.batch_size, "num_beams": args.num_beams,
                   "num_return_sequences": n_return, "top_k": args.top_k, "temperature": args.temperature,
                   "length_penalty": args.length_penalty, "early_stopping": early_name,
                   "no_repeat_ngram_size": args.no_repeat_ngram_size, "repetition_penalty": args.repetition_penalty,
                   "use_stemmer": args.use_stemmer, "eos_token_id": eos},
        "total_latency_s": total,
        "scores": scores,
        "examples": examples,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"HF (total latency: {total} sec)")
    for s in scores:
        print(f"HF beam {s['beam']} result")
        for k in ROUGE_TYPES:
            print(f"  {k} : {s[k]}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
