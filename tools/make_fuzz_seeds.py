#!/usr/bin/env python3
"""Makes the fuzzers' seed corpora in fuzz/corpus/<harness>/: small valid inputs of each surface, so
libFuzzer starts from files that get past the first checks. Multi-file inputs are joined with the
separator line of fuzz/fuzz_util.h.

    python3 tools/make_fuzz_seeds.py --lamina build/lamina   # needs numpy and gguf (pip install gguf)

Every seed is a few KB: micro LLaMA models (hidden 32, one layer) with random weights in every GGML type
lamina reads, HF checkpoints (single file and sharded), the test fixtures' tokenizers, chat templates and
ROUGE/dataset inputs, and an engine built from a micro GGUF by `lamina build`.
"""
import argparse
import json
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
DATA = ROOT / "tests" / "data"
SEP = b"\n#LAMINA-FUZZ-PART#\n"
HIDDEN, HEADS, KV_HEADS = 32, 2, 1
HEAD_DIM = HIDDEN // HEADS


def join(*parts):
    return SEP.join(parts)


def random_quant(rng, qtype, shape):
    """Random blocks of a quantized type with small finite fp16 scales (shape is numpy order)."""
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = int(np.prod(shape)) // block_elems
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    half = {T.Q8_0: [0], T.Q4_0: [0], T.Q4_1: [0, 2], T.Q4_K: [0, 2], T.Q6_K: [block_bytes - 2]}[qtype]
    for off in half:
        raw[:, off:off + 2] = rng.uniform(-0.05, 0.05, n_blocks).astype(np.float16).view(np.uint8).reshape(-1, 2)
    return raw.reshape(shape[0], -1)


def spm_tokens():
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    pieces = ["▁", "▁H", "e", "l", "o", "▁w", "r", "d", "▁the", ","]
    types = [2, 3, 3] + [6] * 256 + [1] * len(pieces)
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(pieces))]
    return tokens + pieces, types, scores


def gpt2_tokens():
    # GPT-2's byte-to-unicode map: the 256 byte tokens, then a few merges.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    tokens = [chr(c) for c in cs]
    merges = ["Ġ t", "h e", "Ġt he", "l l", "o ,"]
    tokens += ["Ġt", "he", "Ġthe", "ll", "o,", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    types = [1] * (len(tokens) - 3) + [3, 3, 3]
    return tokens, types, merges


def spm_tokenizer_json():
    """A LLaMA-2-style tokenizer.json: BPE over "▁"-prefixed text with byte fallback, as tokenizers writes it."""
    from tokenizers import Tokenizer, decoders, models, normalizers

    tokens, _, _ = spm_tokens()
    merges = [("▁", "e"), ("e", "l"), ("l", "l"), ("▁w", "o"), ("▁", "d")]
    vocab = {t: i for i, t in enumerate(tokens)}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    return tok.to_str().encode()


def write_gguf(path, rng, kind, n_ff, types_by_tensor):
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    if kind == "llama":
        tokens, ttypes, scores = spm_tokens()
        w.add_tokenizer_model("llama")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(ttypes)
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        w.add_unk_token_id(0)
    else:
        tokens, ttypes, merges = gpt2_tokens()
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("smollm")
        w.add_token_list(tokens)
        w.add_token_types(ttypes)
        w.add_token_merges(merges)
        w.add_bos_token_id(len(tokens) - 3)
        w.add_eos_token_id(len(tokens) - 1)
        w.add_chat_template((DATA / "chat_templates" / "HuggingFaceTB-SmolLM2-135M-Instruct.jinja").read_text())
    n_vocab = len(tokens)
    w.add_vocab_size(n_vocab)
    shapes = {  # numpy order [rows, cols]
        "token_embd.weight": (n_vocab, HIDDEN),
        "blk.0.attn_norm.weight": (HIDDEN,),
        "blk.0.attn_q.weight": (HEADS * HEAD_DIM, HIDDEN),
        "blk.0.attn_k.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
        "blk.0.attn_v.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
        "blk.0.attn_output.weight": (HIDDEN, HEADS * HEAD_DIM),
        "blk.0.ffn_norm.weight": (HIDDEN,),
        "blk.0.ffn_gate.weight": (n_ff, HIDDEN),
        "blk.0.ffn_up.weight": (n_ff, HIDDEN),
        "blk.0.ffn_down.weight": (HIDDEN, n_ff),
        "output_norm.weight": (HIDDEN,),
    }
    for name, shape in shapes.items():
        qtype = types_by_tensor.get(name, T.F32)
        if qtype == T.F32:
            data = rng.standard_normal(shape).astype(np.float32) * (1.0 if len(shape) == 1 else 0.1)
            w.add_tensor(name, data)
        elif qtype == T.F16:
            w.add_tensor(name, (rng.standard_normal(shape) * 0.1).astype(np.float16))
        elif qtype == T.BF16:
            data = gguf.quants.quantize((rng.standard_normal(shape) * 0.1).astype(np.float32), T.BF16)
            w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=T.BF16)
        else:
            data = random_quant(rng, qtype, shape)
            w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def safetensors_bytes(tensors):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, arr in tensors.items():
        dtype = {np.float32: "F32", np.float16: "F16"}[arr.dtype.type]
        data = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def hf_tensors(rng, n_vocab, n_ff, dtype):
    shapes = {
        "model.embed_tokens.weight": (n_vocab, HIDDEN),
        "model.layers.0.input_layernorm.weight": (HIDDEN,),
        "model.layers.0.self_attn.q_proj.weight": (HEADS * HEAD_DIM, HIDDEN),
        "model.layers.0.self_attn.k_proj.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
        "model.layers.0.self_attn.v_proj.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
        "model.layers.0.self_attn.o_proj.weight": (HIDDEN, HEADS * HEAD_DIM),
        "model.layers.0.post_attention_layernorm.weight": (HIDDEN,),
        "model.layers.0.mlp.gate_proj.weight": (n_ff, HIDDEN),
        "model.layers.0.mlp.up_proj.weight": (n_ff, HIDDEN),
        "model.layers.0.mlp.down_proj.weight": (HIDDEN, n_ff),
        "model.norm.weight": (HIDDEN,),
    }
    return {k: (rng.standard_normal(s) * 0.1).astype(dtype) for k, s in shapes.items()}


def hf_config(n_vocab, n_ff, **extra):
    c = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": n_vocab,
         "hidden_size": HIDDEN, "intermediate_size": n_ff, "num_hidden_layers": 1,
         "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "max_position_embeddings": 64,
         "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": True, "torch_dtype": "float32"}
    c.update(extra)
    return json.dumps(c, indent=1).encode()


def write(harness, name, data):
    d = CORPUS / harness
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lamina", default=str(ROOT / "build" / "lamina"), help="lamina binary for the engine seed")
    args = ap.parse_args()
    rng = np.random.default_rng(20261207)
    shutil.rmtree(CORPUS, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix="lamina-seeds-"))
    try:
        # GGUF: an SPM micro model (f32/f16/q8_0/q4_0/q4_1), a BPE one with K-quants and bf16, and the
        # dequantization fixture (one tensor of each type).
        spm = tmp / "spm.gguf"
        write_gguf(spm, rng, "llama", 64, {"token_embd.weight": T.F16, "blk.0.attn_q.weight": T.Q8_0,
                                           "blk.0.attn_k.weight": T.Q8_0, "blk.0.attn_v.weight": T.Q4_0,
                                           "blk.0.ffn_gate.weight": T.Q4_1, "blk.0.ffn_up.weight": T.Q4_0})
        bpe = tmp / "bpe.gguf"
        write_gguf(bpe, rng, "gpt2", 256, {"token_embd.weight": T.BF16, "blk.0.ffn_down.weight": T.Q4_K,
                                           "blk.0.ffn_gate.weight": T.Q4_1, "blk.0.ffn_up.weight": T.Q8_0,
                                           "blk.0.attn_q.weight": T.Q4_0, "blk.0.attn_output.weight": T.F16})
        write("fuzz_gguf", "spm_micro.gguf", spm.read_bytes())
        write("fuzz_gguf", "bpe_micro.gguf", bpe.read_bytes())
        write("fuzz_gguf", "quants.gguf", (DATA / "gguf" / "quants.gguf").read_bytes())

        # HF checkpoints: one file (f32, tied), one sharded (f16, untied, with an index).
        t = hf_tensors(rng, 64, 64, np.float32)
        write("fuzz_hf_checkpoint", "single", join(hf_config(64, 64), safetensors_bytes(t)))
        t = hf_tensors(rng, 64, 64, np.float16)
        t["lm_head.weight"] = (rng.standard_normal((64, HIDDEN)) * 0.1).astype(np.float16)
        names = sorted(t)
        first, second = {k: t[k] for k in names[: len(names) // 2]}, {k: t[k] for k in names[len(names) // 2:]}
        index = {"metadata": {"total_size": sum(a.nbytes for a in t.values())},
                 "weight_map": {**{k: "model-00001-of-00002.safetensors" for k in first},
                                **{k: "model-00002-of-00002.safetensors" for k in second}}}
        write("fuzz_hf_checkpoint", "sharded",
              join(hf_config(64, 64, tie_word_embeddings=False, torch_dtype="float16",
                             rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
                   safetensors_bytes(first), json.dumps(index).encode(), safetensors_bytes(second)))

        # Tokenizers: the tiny test models' (byte-level BPE) and a LLaMA-2-style one (SentencePiece BPE with
        # byte fallback), each with a tokenizer_config.json and a text. tokenizer.json without indentation: the
        # same content in 6 KB instead of 14 to parse per input (the indented tokenizer_config.json still takes the
        # JSON reader through whitespace).
        text = "Hello world, the <s> ünïcode 12345 \n\n  x".encode()
        d = DATA / "tiny_llama"
        compact = json.dumps(json.loads((d / "tokenizer.json").read_text(encoding="utf-8")), ensure_ascii=False,
                             separators=(",", ":")).encode()
        write("fuzz_tokenizer", "byte_level", join(compact, (d / "tokenizer_config.json").read_bytes(), text))
        config = {"add_bos_token": True, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                  "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"}
        write("fuzz_tokenizer", "spm_style", join(spm_tokenizer_json(), json.dumps(config).encode(), text))

        # Chat templates: each fixture with a conversation that uses tools and a system prompt.
        messages = json.dumps([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                               {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "2+2?"}]).encode()
        for f in sorted((DATA / "chat_templates").glob("*.jinja")):
            write("fuzz_chat_template", f.stem, join(f.read_bytes(), messages, b'{"tools_in_user_message": false}'))

        # ROUGE examples and a summarize dataset.
        dataset = b"\n".join(json.dumps({"id": f"a{i}", "article": a, "highlights": h}).encode() for i, (a, h) in
                             enumerate([("The cat sat on the mat. It was warm.", "Cat sat.\nIt was warm."),
                                        ("Stocks fell 3% on Monday, said analysts.", "Stocks fell.")]))
        write("fuzz_eval_readers", "rouge", join((DATA / "rouge" / "prediction.txt").read_bytes(),
                                                 (DATA / "rouge" / "target.txt").read_bytes(), dataset))
        write("fuzz_eval_readers", "escaped", join(b"one\\ntwo\\\\ three\nrunning runs ran\n",
                                                   b"one two\\nthree\nrun running\n", dataset))

        # An engine: the SPM micro GGUF built by lamina at float32 and bfloat16.
        for dtype in ("bfloat16", "float16"):
            out = tmp / f"engine-{dtype}"
            subprocess.run([args.lamina, "build", "--model_dir", str(spm), "--output_dir", str(out), "--dtype", dtype,
                            "--max_batch_size", "1", "--max_input_len", "16", "--max_output_len", "8"],
                           check=True, stdout=subprocess.DEVNULL)
            config = json.loads((out / "config.json").read_text())
            config["build"]["source"] = "spm.gguf"  # not the temporary path: seeds stay the same run to run
            # The vocabulary without the indentation lamina writes: 4 KB instead of 7 to parse per input (the
            # indented config.json still takes the JSON reader through whitespace).
            vocab = json.dumps(json.loads((out / "tokenizer.lamina.json").read_text(encoding="utf-8")),
                               ensure_ascii=False, separators=(",", ":")).encode()
            write("fuzz_engine", dtype, join(json.dumps(config, indent=2).encode(), (out / "weights.bin").read_bytes(),
                                             vocab))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for d in sorted(CORPUS.iterdir()):
        sizes = [f.stat().st_size for f in d.iterdir()]
        print(f"{d.name:22s} {len(sizes)} seeds, {sum(sizes) / 1024:.1f} KB")


if __name__ == "__main__":
    main()
