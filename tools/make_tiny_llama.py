#!/usr/bin/env python3
"""Make tiny random LLaMA checkpoints as Hugging Face directories (test fixtures).

Each variant is a directory that transformers' AutoModelForCausalLM loads as-is:
config.json, generation_config.json, safetensors weights, tokenizer.json and
tokenizer_config.json. Weights are drawn with numpy from a fixed seed, rounded to the
variant's storage dtype, and written with a small safetensors writer of our own (numpy
has no bfloat16). Sizes are deliberately odd (not powers of two) and every variant uses
grouped-query attention, so shape bugs show up.

  tiny_llama    hidden 72, 6 heads / 2 kv heads (head_dim 12), ff 200, 3 layers,
                untied, no biases, fp32, one model.safetensors
  tiny_llama_b  hidden 80, 5 heads / 1 kv head (head_dim 16), ff 144, 2 layers, tied
                embeddings, attention and MLP biases, llama3 rope scaling, bf16,
                sharded into 2 files with model.safetensors.index.json
  tiny_llama_c  as tiny_llama but linear rope scaling (factor 2), fp16, 2 layers

The tokenizer is a byte-level BPE trained with the `tokenizers` library on the fixed
text below, vocab 384 (<unk>=0, <s>=1, </s>=2), shared by all variants.

Usage: python3 tools/make_tiny_llama.py [--out tests/data]
Needs: numpy, tokenizers (no torch).
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

VOCAB_SIZE = 384
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]  # ids 0, 1, 2
BOS_ID, EOS_ID = 1, 2

# Fixed English training text for the tiny BPE (public-domain style prose, written for
# this fixture). Changing it changes the merges and so every tiny fixture.
TRAINING_TEXT = """\
The quick brown fox jumps over the lazy dog. A small model can still learn to count:
one, two, three, four, five, six, seven, eight, nine, ten. The rain in the plain stays
mainly in the hills, where the farmers grow wheat, barley and oats every summer.
Once upon a time there was a little engine that ran on a tiny computer. It read
numbers from a file, multiplied them together, added them up and wrote the answer.
Attention is a weighted average of values, where the weights come from queries and
keys. The residual stream carries information from one layer to the next, and the
normalization keeps its scale under control. Tokens are pieces of words; a byte pair
encoding merges the most frequent pairs of symbols again and again until the
vocabulary is full. Numbers like 3.14159, 2024 and 1,000,000 appear in text too.
She said: "Hello, world!" and he answered, 'Good morning.' Why? Because it was nine
o'clock and the sun was shining over the river, the bridge and the old stone houses.
def add(a, b):
    return a + b
for i in range(10):
    print(i * i)
The capital of France is Paris. The capital of Italy is Rome. The capital of Spain is
Madrid. Water boils at one hundred degrees and freezes at zero degrees Celsius.
"""

# Hyperparameters shared by the variants; each variant overrides some of them.
BASE_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": VOCAB_SIZE,
    "hidden_act": "silu",
    "max_position_embeddings": 256,
    "initializer_range": 0.08,
    "rms_norm_eps": 1e-6,
    "use_cache": True,
    "bos_token_id": BOS_ID,
    "eos_token_id": EOS_ID,
    "pad_token_id": None,
    "pretraining_tp": 1,
    "attention_dropout": 0.0,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "tie_word_embeddings": False,
    "attention_bias": False,
    "mlp_bias": False,
}

VARIANTS = {
    "tiny_llama": {
        "seed": 1234,
        "storage_dtype": "float32",
        "n_shards": 1,
        "config": {
            "hidden_size": 72,
            "num_attention_heads": 6,
            "num_key_value_heads": 2,
            "head_dim": 12,
            "intermediate_size": 200,
            "num_hidden_layers": 3,
        },
    },
    "tiny_llama_b": {
        "seed": 5678,
        "storage_dtype": "bfloat16",
        "n_shards": 2,
        "config": {
            "hidden_size": 80,
            "num_attention_heads": 5,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "intermediate_size": 144,
            "num_hidden_layers": 2,
            "tie_word_embeddings": True,
            "attention_bias": True,
            "mlp_bias": True,
            "rope_theta": 500000.0,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        },
    },
    "tiny_llama_c": {
        "seed": 9012,
        "storage_dtype": "float16",
        "n_shards": 1,
        "config": {
            "hidden_size": 72,
            "num_attention_heads": 6,
            "num_key_value_heads": 2,
            "head_dim": 12,
            "intermediate_size": 200,
            "num_hidden_layers": 2,
            "rope_scaling": {"rope_type": "linear", "factor": 2.0},
        },
    },
}

# Standard deviations of the random weights. Large enough that logits are far from flat
# (greedy decoding must be well defined), small enough that activations stay O(1).
WEIGHT_STD = 0.08
EMBED_STD = 0.1
BIAS_STD = 0.05
NORM_STD = 0.1  # norm weights are 1 + NORM_STD * N(0, 1)

SAFETENSORS_DTYPE = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


def train_tokenizer():
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([TRAINING_TEXT], trainer=trainer)
    # Like Llama 3: encode() with add_special_tokens prepends <s>.
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", BOS_ID)]
    )
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    for i, name in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(name) == i, (name, tok.token_to_id(name))
    return tok


def tokenizer_config():
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "model_max_length": BASE_CONFIG["max_position_embeddings"],
        "clean_up_tokenization_spaces": False,
    }


def to_storage(x, storage_dtype):
    """fp32 array -> (bytes, the fp32 values those bytes hold)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if storage_dtype == "float32":
        return x.tobytes(), x
    if storage_dtype == "float16":
        h = x.astype(np.float16)
        return h.tobytes(), h.astype(np.float32)
    if storage_dtype == "bfloat16":
        # Round to nearest even on the upper 16 bits (the values here are finite).
        u = x.view(np.uint32).astype(np.uint64)
        u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
        b = u.astype(np.uint16)
        return b.tobytes(), (b.astype(np.uint32) << 16).view(np.float32)
    raise ValueError(storage_dtype)


def write_safetensors(path, tensors, storage_dtype):
    """tensors: list of (name, fp32 array). Writes the safetensors format directly."""
    header, blobs, offset = {}, [], 0
    for name, x in tensors:
        data, _ = to_storage(x, storage_dtype)
        header[name] = {
            "dtype": SAFETENSORS_DTYPE[storage_dtype],
            "shape": list(x.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    return offset


def make_weights(cfg, seed):
    """Returns [(hf_name, fp32 array)] in HF LlamaForCausalLM naming and shapes."""
    rng = np.random.default_rng(seed)
    n_vocab, n_embd, n_ff = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"]
    n_head, n_head_kv, head_dim = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def norm(n):
        return (1.0 + rng.standard_normal(n) * NORM_STD).astype(np.float32)

    w = [("model.embed_tokens.weight", normal((n_vocab, n_embd), EMBED_STD))]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w.append((p + "input_layernorm.weight", norm(n_embd)))
        for proj, n_out, n_in in [
            ("q_proj", n_head * head_dim, n_embd),
            ("k_proj", n_head_kv * head_dim, n_embd),
            ("v_proj", n_head_kv * head_dim, n_embd),
            ("o_proj", n_embd, n_head * head_dim),
        ]:
            w.append((p + f"self_attn.{proj}.weight", normal((n_out, n_in), WEIGHT_STD)))
            if cfg["attention_bias"]:
                w.append((p + f"self_attn.{proj}.bias", normal((n_out,), BIAS_STD)))
        w.append((p + "post_attention_layernorm.weight", norm(n_embd)))
        for proj, n_out, n_in in [("gate_proj", n_ff, n_embd), ("up_proj", n_ff, n_embd), ("down_proj", n_embd, n_ff)]:
            w.append((p + f"mlp.{proj}.weight", normal((n_out, n_in), WEIGHT_STD)))
            if cfg["mlp_bias"]:
                w.append((p + f"mlp.{proj}.bias", normal((n_out,), BIAS_STD)))
    w.append(("model.norm.weight", norm(n_embd)))
    if not cfg["tie_word_embeddings"]:
        w.append(("lm_head.weight", normal((n_vocab, n_embd), EMBED_STD)))
    return w


def write_variant(out_dir, name, spec, tok, command):
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):  # drop stale weight files (a variant may change shard count)
        if f.endswith(".safetensors") or f == "model.safetensors.index.json":
            os.remove(os.path.join(d, f))

    cfg = dict(BASE_CONFIG)
    cfg.update(spec["config"])
    cfg["torch_dtype"] = spec["storage_dtype"]
    assert cfg["num_attention_heads"] % cfg["num_key_value_heads"] == 0
    weights = make_weights(cfg, spec["seed"])

    n_shards = spec["n_shards"]
    if n_shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), weights, spec["storage_dtype"])
    else:
        # Split by tensor order into n_shards contiguous groups, as save_pretrained does.
        groups = np.array_split(np.arange(len(weights)), n_shards)
        weight_map, total = {}, 0
        for k, idx in enumerate(groups):
            fname = f"model-{k + 1:05d}-of-{n_shards:05d}.safetensors"
            part = [weights[i] for i in idx]
            total += write_safetensors(os.path.join(d, fname), part, spec["storage_dtype"])
            weight_map.update({n: fname for n, _ in part})
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)
            f.write("\n")

    cfg["_generated_by"] = command
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    gen = {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "do_sample": False}
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
        f.write("\n")
    tok.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(tokenizer_config(), f, indent=2)
        f.write("\n")

    n_params = sum(x.size for _, x in weights)
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{name}: {n_params} params, {spec['storage_dtype']}, {n_shards} shard(s), dir {size} bytes")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "data"))
    ap.add_argument("--only", nargs="*", choices=sorted(VARIANTS), help="variants to write (default all)")
    args = ap.parse_args()
    command = (
        "python3 tools/make_tiny_llama.py"
        + (" --only " + " ".join(args.only) if args.only else "")
        + f" (numpy {np.__version__}, tokenizers {tokenizers.__version__},"
        + f" python {sys.version.split()[0]})"
    )
    tok = train_tokenizer()
    for name in args.only or sorted(VARIANTS):
        write_variant(args.out, name, VARIANTS[name], tok, command)


if __name__ == "__main__":
    main()
