#!/usr/bin/env python3
"""Saves a LLaMA-7B-shape model with random weights as a Hugging Face directory (fp16 safetensors), so
transformers and lamina run the very same weights. Run where torch + transformers are (the device).

    python3 tools/make_random_llama.py --out /tmp/llama7b [--preset llama-7b] [--seed 0]
"""
import argparse
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

PRESETS = {
    # LLaMA-7B (Touvron et al. 2023): the shape the DESIGN's performance numbers are quoted for.
    "llama-7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                     rms_norm_eps=1e-5, rope_theta=10000.0),
    # SmolLM2-135M's shapes (its embeddings untied here): a model whose decode step is short, so the host's
    # share of a step shows (bench: LAMINA_DECODE_AHEAD on/off).
    "smollm2-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                         rms_norm_eps=1e-5, rope_theta=100000.0),
    "small": dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=4096,
                  rms_norm_eps=1e-5, rope_theta=10000.0),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", default="llama-7b", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.time()
    torch.manual_seed(args.seed)
    config = LlamaConfig(**PRESETS[args.preset], torch_dtype="float16", tie_word_embeddings=False,
                         bos_token_id=1, eos_token_id=2)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.float16)  # HF init: normal(0, 0.02) matrices, ones for norms
    model.save_pretrained(args.out, safe_serialization=True, max_shard_size="20GB")
    with open(f"{args.out}/generated_by.json", "w") as f:
        json.dump({"command": f"python3 tools/make_random_llama.py --out {args.out} --preset {args.preset} --seed {args.seed}",
                   "torch": torch.__version__}, f)
    print(f"saved {args.preset} ({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params) to {args.out} "
          f"in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
