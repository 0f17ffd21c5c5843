#!/usr/bin/env python3
"""Make tiny random LLaMA / Mistral checkpoints saved by transformers 5 itself (test fixtures).

make_tiny_llama.py writes config.json by hand in the transformers 4.x layout (`rope_theta` and
`rope_scaling` at the top level). These variants are saved by transformers 5's own
`save_pretrained`, so their config.json has the 5.x layout (`rope_parameters` holding
`rope_type`, `rope_theta` and the scaling fields) that current checkpoints carry. Weights are
drawn with make_tiny_llama.py's generator (numpy, fixed seeds, rounded to the storage dtype),
loaded into the transformers model and saved with it; the tokenizer is make_tiny_llama.py's.

  tiny_llama_v5_llama3   hidden 64, 4 heads / 1 kv head, head_dim 24 (explicit, != 64 / 4), ff 96,
                         2 layers, tied embeddings, attention + MLP biases, llama3 RoPE (factor 8,
                         low 1, high 4, original 32, theta 5e5), bf16
  tiny_llama_v5_yarn     hidden 72, 6 heads / 2 kv heads, ff 120, 2 layers, yarn (factor 4,
                         original 64; attention factor, betas and truncate at their defaults), f16
  tiny_llama_v5_linear   hidden 48, 4 heads / 2 kv heads, ff 80, 2 layers, linear (factor 2.5), bf16
  tiny_llama_v5_dynamic  hidden 48, 3 heads / 3 kv heads, ff 80, 2 layers, dynamic NTK (factor 2),
                         max_position_embeddings 128, bf16
  tiny_mistral_v5        MistralForCausalLM, hidden 64, 4 heads / 2 kv heads, head_dim 32 (explicit),
                         ff 96, 2 layers, sliding_window 128, yarn (factor 2, original 128, theta 1e6,
                         beta_fast 8, beta_slow 2, truncate false, mscale 1.5, mscale_all_dim 0.8), bf16

It also converts two of them to GGUF the way llama.cpp's convert_hf_to_gguf.py does for LLaMA
(q/k rows permuted for llama.cpp's RoPE, Llama 3.1 scaling as per-dimension factors in a
`rope_freqs.weight` tensor, yarn as rope.scaling.* keys, weights in the checkpoint's dtype):
tests/data/gguf/tiny_llama_v5_llama3.gguf and tiny_llama_v5_yarn.gguf. Their reference is the
source directory's reference.json.

Usage: python3 tools/make_tiny_llama_v5.py [--out tests/data]
Needs: numpy, tokenizers, torch, transformers 5, safetensors, gguf.
"""

import argparse
import importlib.metadata
import json
import math
import os
import sys

import gguf
import numpy as np
import tokenizers
import torch
import transformers
from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_llama as base  # noqa: E402

COMMON = {
    "vocab_size": base.VOCAB_SIZE,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-6,
    "initializer_range": 0.08,
    "bos_token_id": base.BOS_ID,
    "eos_token_id": base.EOS_ID,
}

VARIANTS = {
    "tiny_llama_v5_llama3": {
        "seed": 2401,
        "class": LlamaConfig,
        "storage_dtype": "bfloat16",
        "config": {
            "hidden_size": 64,
            "num_attention_heads": 4,
            "num_key_value_heads": 1,
            "head_dim": 24,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "tie_word_embeddings": True,
            "attention_bias": True,
            "mlp_bias": True,
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            },
        },
        "gguf": True,
    },
    "tiny_llama_v5_yarn": {
        "seed": 2402,
        "class": LlamaConfig,
        "storage_dtype": "float16",
        "config": {
            "hidden_size": 72,
            "num_attention_heads": 6,
            "num_key_value_heads": 2,
            "intermediate_size": 120,
            "num_hidden_layers": 2,
            "rope_parameters": {
                "rope_type": "yarn",
                "rope_theta": 10000.0,
                "factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        },
        "gguf": True,
    },
    "tiny_llama_v5_linear": {
        "seed": 2413,
        "class": LlamaConfig,
        "storage_dtype": "bfloat16",
        "config": {
            "hidden_size": 48,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 80,
            "num_hidden_layers": 2,
            "rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.5},
        },
    },
    "tiny_llama_v5_dynamic": {
        "seed": 2404,
        "class": LlamaConfig,
        "storage_dtype": "bfloat16",
        "config": {
            "hidden_size": 48,
            "num_attention_heads": 3,
            "num_key_value_heads": 3,
            "intermediate_size": 80,
            "num_hidden_layers": 2,
            "max_position_embeddings": 128,
            "rope_parameters": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0},
        },
    },
    "tiny_mistral_v5": {
        "seed": 2405,
        "class": MistralConfig,
        "storage_dtype": "bfloat16",
        "config": {
            "hidden_size": 64,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 32,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "sliding_window": 128,
            "rope_parameters": {
                "rope_type": "yarn",
                "rope_theta": 1000000.0,
                "factor": 2.0,
                "original_max_position_embeddings": 128,
                "beta_fast": 8.0,
                "beta_slow": 2.0,
                "truncate": False,
                "mscale": 1.5,
                "mscale_all_dim": 0.8,
            },
        },
    },
}

TORCH_DTYPE = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def weights_config(config):
    """The keys make_tiny_llama.make_weights reads, from a transformers config."""
    return {
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "head_dim": config.head_dim,
        "num_hidden_layers": config.num_hidden_layers,
        "attention_bias": getattr(config, "attention_bias", False),
        "mlp_bias": getattr(config, "mlp_bias", False),
        "tie_word_embeddings": config.tie_word_embeddings,
    }


def write_variant(out_dir, name, spec, tok, command):
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.endswith(".safetensors") or f.endswith(".json") and f != "reference.json":
            os.remove(os.path.join(d, f))

    kw = dict(COMMON)
    kw.update(spec["config"])
    config = spec["class"](**kw, generated_by=command)
    config.architectures = [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM"}[config.model_type]]
    weights = base.make_weights(weights_config(config), spec["seed"])
    # The fp32 values the storage dtype holds: what transformers loads back and lamina reads.
    stored = {n: base.to_storage(x, spec["storage_dtype"])[1] for n, x in weights}

    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict({n: torch.from_numpy(x) for n, x in stored.items()}, strict=False)
    assert not unexpected, unexpected
    assert set(missing) <= ({"lm_head.weight"} if config.tie_word_embeddings else set()), missing
    model = model.to(TORCH_DTYPE[spec["storage_dtype"]])
    model.generation_config.do_sample = False
    model.save_pretrained(d)

    with open(os.path.join(d, "config.json")) as f:
        saved = json.load(f)
    assert "rope_parameters" in saved and "rope_scaling" not in saved and "rope_theta" not in saved, saved
    tok.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(base.tokenizer_config(), f, indent=2)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{name}: {sum(x.size for x in stored.values())} params, {spec['storage_dtype']}, dir {size} bytes")
    return config, stored


def permute_for_gguf(w, n_head):
    """convert_hf_to_gguf.LlamaModel.permute: each head's rotate-half row order to llama.cpp's pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(config):
    """convert_hf_to_gguf.LlamaModel.generate_extra_tensors: Llama 3.1 scaling as per-dimension divisors."""
    rp = config.rope_parameters
    base_theta, dim = rp["rope_theta"], config.head_dim
    freqs = 1.0 / (base_theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor, low, high = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"]
    old_context_len = rp["original_max_position_embeddings"]
    low_freq_wavelen, high_freq_wavelen = old_context_len / low, old_context_len / high
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            factors.append(1)
        elif wavelen > low_freq_wavelen:
            factors.append(factor)
        else:
            smooth = (old_context_len / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


GGUF_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    _, _, i, rest = hf.split(".", 3)
    for h, g in GGUF_LAYER_NAMES.items():
        if rest.startswith(h):
            return f"blk.{i}.{g}{rest[len(h):]}"
    raise KeyError(hf)


def write_gguf(path, config, stored, storage_dtype, tok, command):
    w = gguf.GGUFWriter(path, "llama")
    w.add_name(os.path.basename(path)[: -len(".gguf")])
    w.add_description(command)
    w.add_vocab_size(config.vocab_size)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_block_count(config.num_hidden_layers)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_key_length(config.head_dim)
    w.add_value_length(config.head_dim)
    w.add_rope_dimension_count(config.head_dim)
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    rp = config.rope_parameters
    w.add_rope_freq_base(rp["rope_theta"])
    if rp["rope_type"] == "yarn":  # convert_hf_to_gguf TextModel.set_gguf_parameters
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(rp["factor"])
        w.add_rope_scaling_orig_ctx_len(rp["original_max_position_embeddings"])
        for key, add in [("attention_factor", w.add_rope_scaling_yarn_attn_factor),
                         ("beta_fast", w.add_rope_scaling_yarn_beta_fast),
                         ("beta_slow", w.add_rope_scaling_yarn_beta_slow)]:
            if rp.get(key) is not None:
                add(rp[key])
    # Tokenizer as convert_hf_to_gguf's _set_vocab_gpt2 writes a byte-level BPE.
    vocab = tok.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in base.SPECIAL_TOKENS else gguf.TokenType.NORMAL for t in tokens])
    merges = json.loads(tok.to_str())["model"]["merges"]
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    w.add_bos_token_id(base.BOS_ID)
    w.add_eos_token_id(base.EOS_ID)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)

    qtype = {"float32": gguf.GGMLQuantizationType.F32, "float16": gguf.GGMLQuantizationType.F16,
             "bfloat16": gguf.GGMLQuantizationType.BF16}[storage_dtype]
    for hf, x in stored.items():
        if ".q_proj." in hf:
            x = permute_for_gguf(x, config.num_attention_heads)
        elif ".k_proj." in hf:
            x = permute_for_gguf(x, config.num_key_value_heads)
        if x.ndim == 1:  # norms and biases stay F32, as convert_hf_to_gguf keeps them
            w.add_tensor(gguf_name(hf), np.ascontiguousarray(x, dtype=np.float32))
        else:  # the checkpoint's own dtype: the values are exact in it
            w.add_tensor(gguf_name(hf), gguf.quants.quantize(np.ascontiguousarray(x, dtype=np.float32), qtype), raw_dtype=qtype)
    if rp["rope_type"] == "llama3":
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(config))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{path}: {os.path.getsize(path)} bytes")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "data"))
    ap.add_argument("--only", nargs="*", choices=sorted(VARIANTS), help="variants to write (default all)")
    args = ap.parse_args()
    command = (
        "python3 tools/make_tiny_llama_v5.py"
        + (" --only " + " ".join(args.only) if args.only else "")
        + f" (transformers {transformers.__version__}, torch {torch.__version__}, numpy {np.__version__},"
        + f" tokenizers {tokenizers.__version__}, gguf {importlib.metadata.version('gguf')},"
        + f" python {sys.version.split()[0]})"
    )
    tok = base.train_tokenizer()
    for name in args.only or sorted(VARIANTS):
        spec = VARIANTS[name]
        config, stored = write_variant(args.out, name, spec, tok, command)
        if spec.get("gguf"):
            os.makedirs(os.path.join(args.out, "gguf"), exist_ok=True)
            write_gguf(os.path.join(args.out, "gguf", name + ".gguf"), config, stored, spec["storage_dtype"], tok, command)


if __name__ == "__main__":
    main()
