#!/usr/bin/env python3
"""Reference token ids from Hugging Face `tokenizers` for the SmolLM2 tokenizer tests.

Reads tests/data/smollm2_hf_tokenizer/tokenizer.json (written by transformers from the SmolLM2
GGUF, see tools/hf_reference.py) and encodes, with add_special_tokens=False:
  - the 500 CNN/DailyMail articles (ids summarized per article as a count and an FNV-1a 64 hash of
    the ids written as decimal numbers joined by single spaces, to keep the fixture small),
  - a few short texts chosen to stress the pre-tokenizer (ids in full).
Two pipelines are run over the same vocab and merges:
  "as_converted": the tokenizer.json as transformers wrote it (ByteLevel pre-tokenizer only);
  "smollm":       the pre-tokenizer of the original SmolLM2 tokenizer.json and of llama.cpp's "smollm"
                  (Digits(individual_digits=True) then ByteLevel), which the GGUF declares.

Usage (needs only `pip install tokenizers`):
  python3 tests/data/tokenizer/make_smollm2_reference.py [--cnn PATH] > tests/data/tokenizer/smollm2_hf_reference.json
"""

import argparse
import hashlib
import json
import os
import sys

import tokenizers

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))

TEXTS = [
    "Hello world",
    "  leading and trailing spaces   ",
    "I'm sure they'll say it's the DOG's fault, we've WE'RE",
    "Call 0800-123-4567 or pay $1,299.99 by 2024/12/31 (v3.10)",
    "x1 = 42;\n\tif (x1 >= 100) { return -7; }\r\n",
    "Ünïcödé straße façade ﬁ naïve Ωmega",
    "日本語のテキストと中文文本，한국어 텍스트。",
    "emoji 🙂🙃 family 👨‍👩‍👧 flag 🇫🇷 ✅",
    "non\u00a0breaking\u2009thin\u3000ideographic\u2028line",
    "\n\n\n   \n \t\t  x",
    "٣٤٥ Arabic-Indic digits, ² superscript, Ⅻ roman",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
]


def fnv1a64(text: str) -> str:
    h = 0xCBF29CE484222325
    for b in text.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run(tok: tokenizers.Tokenizer, articles):
    out = {"articles": [], "texts": []}
    for a in articles:
        ids = tok.encode(a, add_special_tokens=False).ids
        out["articles"].append({"n": len(ids), "fnv1a64": fnv1a64(" ".join(map(str, ids)))})
    for t in TEXTS:
        out["texts"].append({"text": t, "ids": tok.encode(t, add_special_tokens=False).ids})
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cnn", default=os.path.join(ROOT, "..", "shared", "data", "cnn_dailymail", "test.jsonl"))
    p.add_argument("--tokenizer", default=os.path.join(ROOT, "tests", "data", "smollm2_hf_tokenizer", "tokenizer.json"))
    args = p.parse_args()
    with open(args.cnn, encoding="utf-8") as f:
        articles = [json.loads(line)["article"] for line in f]
    with open(args.tokenizer, encoding="utf-8") as f:
        spec = json.load(f)
    as_converted = tokenizers.Tokenizer.from_str(json.dumps(spec))
    spec["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [{"type": "Digits", "individual_digits": True}, spec["pre_tokenizer"]],
    }
    smollm = tokenizers.Tokenizer.from_str(json.dumps(spec))
    result = {
        "command": "python3 tests/data/tokenizer/make_smollm2_reference.py > tests/data/tokenizer/smollm2_hf_reference.json",
        "tokenizers_version": tokenizers.__version__,
        "python": sys.version.split()[0],
        "tokenizer_json_sha256": sha256(args.tokenizer),
        "cnn_sha256": sha256(args.cnn),
        "hash": "FNV-1a 64 of the ids as decimal numbers joined by single spaces",
        "pipelines": {"as_converted": run(as_converted, articles), "smollm": run(smollm, articles)},
    }
    json.dump(result, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
