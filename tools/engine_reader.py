"""Read a Lamina engine directory, and read the model a checkpoint holds without Lamina, to compare the two.

The engine (src/build/engine_format.h): config.json holds the model config and a tensor table (name, dtype,
shape, byte offset in weights.bin); weights.bin holds each tensor at its offset; tokenizer.lamina.json the
vocabulary. Engine tensors are the Hugging Face tensors in HF layout, fused row-wise (wqkv = [q; k; v],
w_gate_up = [gate; up]); norms and biases are f32, the rest in the build's dtype.

The reference is read from the checkpoint by other code than Lamina's:
  Hugging Face directory: the config through transformers' AutoConfig (its strict field types, its
    defaults, its RoPE functions), the tensors through the `safetensors` library, the tokenizer through
    `tokenizers`.
  GGUF file: `gguf`'s GGUFReader (it refuses duplicate keys and tensors), the hyperparameters as llama.cpp
    reads a LLaMA file (context_length and the RMS epsilon required, head_count_kv defaulting to head_count),
    tensors through gguf.quants.dequantize, q/k rows un-interleaved as convert_hf_to_gguf's permute
    interleaved them.
A checkpoint the reference cannot read, or reads as a model that cannot run (a missing tensor, a shape
that does not fit the config, a non-positive size), raises RefRejects.

compare(engine, ref) lists every difference: config, RoPE frequencies, tensor names, shapes and bits, and
the vocabulary. An f32 engine must hold the source's values exactly (f16/bf16 widen exactly to f32).
"""

import json
import math
import os
import struct

import numpy as np

ENGINE_DTYPES = {"float32": (np.float32, 4), "float16": (np.float16, 2), "bfloat16": (None, 2)}

# The engine tensors of a LLaMA model (src/model/names_llama.cpp restated): name, HF parts, when present.
GLOBAL_TENSORS = [
    ("tok_embd", ["model.embed_tokens.weight"], "always"),
    ("output_norm", ["model.norm.weight"], "always"),
    ("output", ["lm_head.weight"], "untied"),
]
LAYER_TENSORS = [
    ("attn_norm", ["input_layernorm.weight"], "always"),
    ("wqkv", ["self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"], "always"),
    ("bqkv", ["self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"], "attn_bias"),
    ("wo", ["self_attn.o_proj.weight"], "always"),
    ("bo", ["self_attn.o_proj.bias"], "attn_bias"),
    ("ffn_norm", ["post_attention_layernorm.weight"], "always"),
    ("w_gate_up", ["mlp.gate_proj.weight", "mlp.up_proj.weight"], "always"),
    ("b_gate_up", ["mlp.gate_proj.bias", "mlp.up_proj.bias"], "mlp_bias"),
    ("w_down", ["mlp.down_proj.weight"], "always"),
    ("b_down", ["mlp.down_proj.bias"], "mlp_bias"),
]
# GGUF names (llama.cpp's tensor names for LLaMA) of the HF names above.
GGUF_GLOBALS = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                "lm_head.weight": "output.weight"}
GGUF_LAYER = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
              "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
              "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}

CONFIG_KEYS = ["n_vocab", "n_embd", "n_layer", "n_head", "n_head_kv", "head_dim", "n_ff", "n_ctx",
               "tied_embeddings", "attn_bias", "mlp_bias"]


class RefRejects(Exception):
    """The reference cannot read the checkpoint, or reads a model that cannot run."""


# ----------------------------------------------------------------------------------------------- engine


def read_engine(engine_dir):
    """{"model": the config's model object, "tensors": name -> f32 array, "vocab": tokenizer.lamina.json or None}."""
    with open(os.path.join(engine_dir, "config.json")) as f:
        config = json.load(f)
    weights = config["weights"]
    if isinstance(weights, list):
        raise ValueError("tensor-parallel engine: the mutation run builds tp_size 1")
    with open(os.path.join(engine_dir, weights["file"]), "rb") as f:
        blob = f.read()
    magic, version, _, file_bytes = struct.unpack_from("<8sIIQ", blob, 0)
    if magic != b"LAMINAWT" or file_bytes != len(blob):
        raise ValueError(f"weights header: magic {magic!r}, file_bytes {file_bytes}, file {len(blob)} bytes")
    tensors = {}
    for t in weights["tensors"]:
        np_dtype, size = ENGINE_DTYPES[t["dtype"]]
        n = math.prod(t["shape"])
        raw = np.frombuffer(blob, dtype=np.uint16 if np_dtype is None else np_dtype, count=n, offset=t["offset"])
        if np_dtype is None:  # bfloat16: the top half of an f32
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        tensors[t["name"]] = raw.astype(np.float32).reshape(t["shape"])
        assert t["bytes"] == n * size, t
    vocab = None
    if config.get("tokenizer"):
        with open(os.path.join(engine_dir, config["tokenizer"]), encoding="utf-8") as f:
            vocab = json.load(f)
    return {"model": config["model"], "tensors": tensors, "vocab": vocab}


def engine_inv_freq(m):
    """RoPE inverse frequencies of an engine config, as src/model/model_config.cpp rope_inv_freq computes them."""
    with np.errstate(all="ignore"):  # an engine built from a mutant may hold an overflowing base: compared as is
        return rope_from_engine_config(m)


def rope_from_engine_config(m):
    f32 = np.float32
    dim, half = m["head_dim"], m["head_dim"] // 2
    theta = f32(m["rope_theta"])
    pos = np.array([np.power(theta, f32(2 * i) / f32(dim)) for i in range(half)], dtype=f32)
    inv = (f32(1) / pos).astype(f32)
    s = m["rope_scaling"]
    kind, factor = s["type"], f32(s["factor"])
    if kind in ("none", "dynamic"):
        return inv, 1.0
    if kind == "linear":
        return (inv / factor).astype(f32), 1.0
    if kind == "freq_factors":
        return (inv / np.array(s["freq_factors"], dtype=f32)).astype(f32), 1.0
    if kind == "llama3":
        old_ctx = float(s["original_max_position"])
        low, high = f32(s["low_freq_factor"]), f32(s["high_freq_factor"])
        low_wavelen, high_wavelen = f32(old_ctx / float(low)), f32(old_ctx / float(high))
        band = f32(float(high) - float(low))
        out = inv.copy()
        for i, fr in enumerate(inv):
            wavelen = (f32(1) / fr) * f32(2 * math.pi)
            if wavelen > low_wavelen:
                out[i] = fr / factor
            elif not wavelen < high_wavelen:
                smooth = ((f32(1) / wavelen) * f32(old_ctx) - low) / band
                out[i] = (f32(1) - smooth) * fr / factor + smooth * fr
        return out, 1.0
    if kind == "yarn":
        def correction_dim(rotations):
            return dim * math.log(s["original_max_position"] / (rotations * 2 * math.pi)) / (2 * math.log(float(theta)))
        lo, hi = correction_dim(s["beta_fast"]), correction_dim(s["beta_slow"])
        if s["truncate"]:
            lo, hi = math.floor(lo), math.ceil(hi)
        lo, hi = max(lo, 0.0), min(hi, float(dim - 1))
        if lo == hi:
            hi += 0.001
        ramp = np.clip((np.arange(half, dtype=f32) - f32(lo)) / f32(hi - lo), 0, 1).astype(f32)
        extrapolation = f32(1) - ramp
        interpolated = f32(1) / (factor * pos)
        return (interpolated * (f32(1) - extrapolation) + inv * extrapolation).astype(f32), s["attention_factor"]
    raise ValueError(f"engine rope_scaling type {kind!r}")


# ----------------------------------------------------------------------------------------------- reference


def expected_engine_tensors(cfg, hf_tensors):
    """Engine name -> f32 array the engine must hold, from HF-layout tensors and a reference config."""
    present = {"always": True, "untied": not cfg["tied_embeddings"], "attn_bias": cfg["attn_bias"],
               "mlp_bias": cfg["mlp_bias"]}
    out = {}

    def add(engine_name, hf_names, when):
        if not present[when]:
            return
        missing = [n for n in hf_names if n not in hf_tensors]
        if missing:
            raise RefRejects(f"missing tensor {missing[0]}")
        out[engine_name] = np.concatenate([hf_tensors[n] for n in hf_names], axis=0)

    for name, parts, when in GLOBAL_TENSORS:
        add(name, parts, when)
    for layer in range(cfg["n_layer"]):
        for name, parts, when in LAYER_TENSORS:
            add(f"blk.{layer}.{name}", [f"model.layers.{layer}.{p}" for p in parts], when)
    return out


def expected_shapes(cfg):
    """HF tensor name -> the shape a model of config cfg needs (what transformers' load would check)."""
    E, V, F, D = cfg["n_embd"], cfg["n_vocab"], cfg["n_ff"], cfg["head_dim"]
    Q, KV = cfg["n_head"] * D, cfg["n_head_kv"] * D
    shapes = {"model.embed_tokens.weight": (V, E), "model.norm.weight": (E,), "lm_head.weight": (V, E)}
    per_layer = {"input_layernorm.weight": (E,), "post_attention_layernorm.weight": (E,),
                 "self_attn.q_proj.weight": (Q, E), "self_attn.k_proj.weight": (KV, E),
                 "self_attn.v_proj.weight": (KV, E), "self_attn.o_proj.weight": (E, Q),
                 "self_attn.q_proj.bias": (Q,), "self_attn.k_proj.bias": (KV,), "self_attn.v_proj.bias": (KV,),
                 "self_attn.o_proj.bias": (E,), "mlp.gate_proj.weight": (F, E), "mlp.up_proj.weight": (F, E),
                 "mlp.down_proj.weight": (E, F), "mlp.gate_proj.bias": (F,), "mlp.up_proj.bias": (F,),
                 "mlp.down_proj.bias": (E,)}
    for layer in range(cfg["n_layer"]):
        for k, s in per_layer.items():
            shapes[f"model.layers.{layer}.{k}"] = s
    return shapes


def check_sizes(cfg):
    for k in ["n_vocab", "n_embd", "n_layer", "n_head", "n_head_kv", "head_dim", "n_ff", "n_ctx"]:
        v = cfg[k]
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise RefRejects(f"{k} = {v!r} is not a positive integer")
    if cfg["n_head"] % cfg["n_head_kv"]:
        raise RefRejects(f"n_head {cfg['n_head']} is not a multiple of n_head_kv {cfg['n_head_kv']}")
    if cfg["head_dim"] % 2:
        raise RefRejects(f"head_dim {cfg['head_dim']} is odd: RoPE rotates pairs")
    eps = cfg["rms_eps"]
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not math.isfinite(eps) or eps <= 0:
        raise RefRejects(f"rms_norm_eps = {eps!r}")
    if not np.all(np.isfinite(cfg["inv_freq"])) or not np.all(cfg["inv_freq"] > 0):
        raise RefRejects("RoPE frequencies are not finite and positive")


def pick_tensors(cfg, available, read):
    """The tensors the model needs, read with read(name) after their shapes are checked."""
    shapes = expected_shapes(cfg)
    present = {"always": True, "untied": not cfg["tied_embeddings"], "attn_bias": cfg["attn_bias"],
               "mlp_bias": cfg["mlp_bias"]}
    needed = []
    for _, parts, when in GLOBAL_TENSORS:
        needed += parts if present[when] else []
    for layer in range(cfg["n_layer"]):
        for _, parts, when in LAYER_TENSORS:
            needed += [f"model.layers.{layer}.{p}" for p in parts] if present[when] else []
    out = {}
    for name in needed:
        if name not in available:
            raise RefRejects(f"missing tensor {name}")
        if tuple(available[name]) != shapes[name]:
            raise RefRejects(f"tensor {name} has shape {tuple(available[name])}, the config needs {shapes[name]}")
        out[name] = read(name)
    return out


def read_hf_reference(model_dir):
    """The reference model of a Hugging Face directory; RefRejects when transformers or safetensors refuse it."""
    import torch
    import transformers
    from safetensors import safe_open
    from transformers import AutoConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    transformers.logging.set_verbosity_error()  # a mutant's odd keys are the point, not news

    try:
        with open(os.path.join(model_dir, "config.json")) as f:
            json.load(f, parse_constant=reject_constant)  # NaN / Infinity literals are not JSON
        hf = AutoConfig.from_pretrained(model_dir)
    except Exception as e:  # noqa: BLE001: whatever transformers raises is a refusal
        raise RefRejects(f"transformers: {type(e).__name__}: {first_line(e)}") from None
    if hf.model_type not in ("llama", "mistral"):
        raise RefRejects(f"model_type {hf.model_type!r}")
    try:
        cfg = {
            "n_vocab": hf.vocab_size, "n_embd": hf.hidden_size, "n_layer": hf.num_hidden_layers,
            "n_head": hf.num_attention_heads, "n_head_kv": hf.num_key_value_heads,
            "head_dim": getattr(hf, "head_dim", None) or (hf.hidden_size // hf.num_attention_heads),
            "n_ff": hf.intermediate_size, "n_ctx": hf.max_position_embeddings, "rms_eps": hf.rms_norm_eps,
            "tied_embeddings": bool(hf.tie_word_embeddings),
            "attn_bias": bool(getattr(hf, "attention_bias", False)), "mlp_bias": bool(getattr(hf, "mlp_bias", False)),
        }
        rope = LlamaRotaryEmbedding(hf)
        cfg["inv_freq"], cfg["attention_factor"] = rope.inv_freq.numpy().astype(np.float32), float(rope.attention_scaling)
    except Exception as e:  # noqa: BLE001
        raise RefRejects(f"transformers config or RoPE: {type(e).__name__}: {first_line(e)}") from None
    check_sizes(cfg)

    path = os.path.join(model_dir, "model.safetensors")
    try:
        f = safe_open(path, framework="pt")
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # noqa: BLE001
        raise RefRejects(f"safetensors: {type(e).__name__}: {first_line(e)}") from None

    def read(name):
        return f.get_tensor(name).to(torch.float32).numpy()

    tensors = pick_tensors(cfg, shapes, read)
    tok = read_hf_tokenizer(model_dir, cfg["n_vocab"])
    return {"config": cfg, "tensors": expected_engine_tensors(cfg, tensors), "vocab": tok}


def read_hf_tokenizer(model_dir, n_vocab):
    import tokenizers

    path = os.path.join(model_dir, "tokenizer.json")
    try:
        tok = tokenizers.Tokenizer.from_file(path)
        with open(path, encoding="utf-8") as f:
            tj = json.load(f, parse_constant=reject_constant)
    except Exception as e:  # noqa: BLE001
        raise RefRejects(f"tokenizers: {type(e).__name__}: {first_line(e)}") from None
    vocab = tok.get_vocab(with_added_tokens=True)
    if any(i >= n_vocab for i in vocab.values()):
        raise RefRejects(f"token id {max(vocab.values())} has no embedding row (vocab_size {n_vocab})")
    id_to_token = {i: t for t, i in vocab.items()}
    merges = [m if isinstance(m, str) else " ".join(map(str, m)) for m in tj.get("model", {}).get("merges", [])]
    special = {}
    config_path = os.path.join(model_dir, "tokenizer_config.json")
    if os.path.exists(config_path):
        try:
            with open(config_path, encoding="utf-8") as f:
                tc = json.load(f, parse_constant=reject_constant)
        except Exception as e:  # noqa: BLE001
            raise RefRejects(f"tokenizer_config.json: {first_line(e)}") from None
        for key in ("bos_token", "eos_token"):
            text = tc.get(key)
            text = text.get("content") if isinstance(text, dict) else text
            if text is None:
                continue
            if not isinstance(text, str) or tok.token_to_id(text) is None:
                raise RefRejects(f"tokenizer_config.json {key} {text!r} is not a token")
            special[key[:3] + "_id"] = tok.token_to_id(text)
    return {"id_to_token": id_to_token, "merges": merges, "special": special,
            "encode": lambda text: tok.encode(text, add_special_tokens=False).ids}


def reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def unpermute_rows(w, n_head):
    """Undo convert_hf_to_gguf's permute: GGUF row (h, 2i + j) holds HF row (h, j * head_dim/2 + i)."""
    rows = w.shape[0]
    if n_head <= 0 or rows % n_head or (rows // n_head) % 2:
        raise RefRejects(f"{rows} rows cannot be {n_head} heads of RoPE pairs")
    half = rows // n_head // 2
    return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_hf_name(name):
    """The HF name of a GGUF tensor name, or None."""
    for hf, g in GGUF_GLOBALS.items():
        if name == g:
            return hf
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[1].isdigit() and str(int(parts[1])) == parts[1]:
        for hf, g in GGUF_LAYER.items():
            if parts[2] == g:
                return f"model.layers.{parts[1]}.{hf}.{parts[3]}"
    return None


def read_gguf_reference(path):
    """The reference model of a GGUF file, read as llama.cpp reads a LLaMA GGUF; RefRejects when it cannot be."""
    import gguf

    try:
        r = gguf.GGUFReader(path)
    except Exception as e:  # noqa: BLE001: whatever gguf-py raises is a refusal
        raise RefRejects(f"gguf: {type(e).__name__}: {first_line(e)}") from None

    def value(key, kinds, required=False):
        f = r.fields.get(key)
        if f is None:
            if required:
                raise RefRejects(f"GGUF key {key} is missing")
            return None
        try:
            v = f.contents()
        except Exception as e:  # noqa: BLE001
            raise RefRejects(f"GGUF key {key}: {first_line(e)}") from None
        if kinds == "int" and not (isinstance(v, (int, np.integer)) and not isinstance(v, bool)):
            raise RefRejects(f"GGUF key {key} = {v!r} is not an integer")
        if kinds == "float" and not isinstance(v, (int, float, np.integer, np.floating)):
            raise RefRejects(f"GGUF key {key} = {v!r} is not a number")
        if kinds == "str" and not isinstance(v, str):
            raise RefRejects(f"GGUF key {key} = {v!r} is not a string")
        return v

    arch = value("general.architecture", "str", required=True)
    if arch not in ("llama", "mistral"):
        raise RefRejects(f"architecture {arch!r}")
    k = arch + "."
    tensors = {t.name: t for t in r.tensors}
    n_embd = int(value(k + "embedding_length", "int", True))
    n_head = int(value(k + "attention.head_count", "int", True))
    head_dim = value(k + "attention.key_length", "int")
    head_dim = int(head_dim) if head_dim is not None else (n_embd // n_head if n_head > 0 else 0)
    v_len = value(k + "attention.value_length", "int")
    if v_len is not None and v_len != head_dim:
        raise RefRejects(f"value_length {v_len} != key_length {head_dim}")
    rope_dims = value(k + "rope.dimension_count", "int")
    if rope_dims is not None and rope_dims != head_dim:
        raise RefRejects(f"rope.dimension_count {rope_dims} != head_dim {head_dim}: partial RoPE")
    scale = value(k + "attention.scale", "float")
    if scale is not None and scale != 0:
        raise RefRejects(f"attention.scale {scale}")
    embd = tensors.get("token_embd.weight")
    if embd is None or len(embd.shape) != 2:
        raise RefRejects("token_embd.weight missing or not 2-d")
    n_vocab = int(embd.shape[1])
    vocab_size = value(k + "vocab_size", "int")
    if vocab_size is not None and vocab_size != n_vocab:
        raise RefRejects(f"vocab_size {vocab_size} != token_embd rows {n_vocab}")
    n_head_kv = value(k + "attention.head_count_kv", "int")
    cfg = {
        "n_vocab": n_vocab, "n_embd": n_embd, "n_layer": int(value(k + "block_count", "int", True)),
        "n_head": n_head, "n_head_kv": int(n_head_kv) if n_head_kv is not None else n_head, "head_dim": head_dim,
        "n_ff": int(value(k + "feed_forward_length", "int", True)),
        "n_ctx": int(value(k + "context_length", "int", True)),
        "rms_eps": float(value(k + "attention.layer_norm_rms_epsilon", "float", True)),
        "tied_embeddings": "output.weight" not in tensors,
        "attn_bias": "blk.0.attn_q.bias" in tensors, "mlp_bias": "blk.0.ffn_gate.bias" in tensors,
    }
    theta = value(k + "rope.freq_base", "float")
    theta = 10000.0 if theta is None else float(theta)
    cfg["inv_freq"], cfg["attention_factor"] = gguf_rope(r, value, k, cfg, theta, tensors)
    check_sizes(cfg)

    available = {}
    for name, t in tensors.items():
        hf = gguf_hf_name(name)
        if hf is not None:
            available[hf] = tuple(int(d) for d in reversed(t.shape))
    by_hf = {gguf_hf_name(n): t for n, t in tensors.items() if gguf_hf_name(n)}

    def read(hf):
        t = by_hf[hf]
        try:
            w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        except Exception as e:  # noqa: BLE001
            raise RefRejects(f"dequantize {t.name}: {first_line(e)}") from None
        w = w.reshape(available[hf])
        if ".q_proj." in hf:
            w = unpermute_rows(w, cfg["n_head"])
        elif ".k_proj." in hf:
            w = unpermute_rows(w, cfg["n_head_kv"])
        return w

    hf_tensors = pick_tensors(cfg, available, read)
    return {"config": cfg, "tensors": expected_engine_tensors(cfg, hf_tensors), "vocab": gguf_vocab(r, value, n_vocab)}


def gguf_rope(r, value, k, cfg, theta, tensors):
    """(inv_freq, attention factor) of a GGUF: llama.cpp's none / linear / rope_freqs; yarn as transformers'."""
    f32 = np.float32
    d = cfg["head_dim"]
    if d <= 0 or d % 2:
        raise RefRejects(f"head_dim {d}")
    with np.errstate(all="ignore"):  # a mutated base may overflow: check_sizes refuses what is not finite
        inv = (f32(1) / np.power(f32(theta), np.arange(0, d, 2, dtype=f32) / f32(d))).astype(f32)
    kind = value(k + "rope.scaling.type", "str") or "linear"
    factor = value(k + "rope.scaling.factor", "float")
    factor = float(factor) if factor is not None else 0.0
    freqs = tensors.get("rope_freqs.weight")
    if kind == "none" or (kind == "linear" and factor in (0.0, 1.0)):
        if freqs is not None:
            import gguf
            ff = gguf.quants.dequantize(freqs.data, freqs.tensor_type).astype(f32).reshape(-1)
            if ff.size != d // 2:
                raise RefRejects(f"rope_freqs.weight has {ff.size} factors for head_dim {d}")
            return (inv / ff).astype(f32), 1.0
        return inv, 1.0
    if freqs is not None:
        raise RefRejects(f"rope_freqs.weight with rope scaling {kind}")
    if kind == "linear":
        return (inv / f32(factor)).astype(f32), 1.0
    if kind == "yarn":
        from transformers import LlamaConfig
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
        params = {"rope_type": "yarn", "rope_theta": theta, "factor": factor,
                  "original_max_position_embeddings": int(value(k + "rope.scaling.original_context_length", "int")
                                                          or cfg["n_ctx"])}
        for key, name in [("yarn_beta_fast", "beta_fast"), ("yarn_beta_slow", "beta_slow"),
                          ("yarn_attn_factor", "attention_factor")]:
            if (v := value(k + "rope.scaling." + key, "float")) is not None:
                params[name] = float(v)
        try:
            hf = LlamaConfig(hidden_size=cfg["n_embd"], num_attention_heads=cfg["n_head"], head_dim=d,
                             max_position_embeddings=cfg["n_ctx"], rope_parameters=params)
            inv_t, att = ROPE_INIT_FUNCTIONS["yarn"](hf, None)
        except Exception as e:  # noqa: BLE001
            raise RefRejects(f"transformers yarn: {first_line(e)}") from None
        return inv_t.numpy().astype(f32), float(att)
    raise RefRejects(f"rope.scaling.type {kind!r}")


def gguf_vocab(r, value, n_vocab):
    f = r.fields.get("tokenizer.ggml.tokens")
    if f is None:
        raise RefRejects("tokenizer.ggml.tokens is missing")
    try:
        tokens = list(f.contents())
        merges = list(r.fields["tokenizer.ggml.merges"].contents()) if "tokenizer.ggml.merges" in r.fields else []
    except Exception as e:  # noqa: BLE001
        raise RefRejects(f"tokenizer arrays: {first_line(e)}") from None
    if not all(isinstance(t, str) for t in tokens) or not all(isinstance(m, str) for m in merges):
        raise RefRejects("tokenizer.ggml.tokens or merges holds a non-string")
    if len(tokens) > n_vocab:
        raise RefRejects(f"{len(tokens)} tokens for {n_vocab} embedding rows")
    special = {}
    for key, name in [("tokenizer.ggml.bos_token_id", "bos_id"), ("tokenizer.ggml.eos_token_id", "eos_id")]:
        v = value(key, "int")
        if v is not None and 0 <= v < len(tokens):  # llama.cpp ignores an out-of-range special id
            special[name] = int(v)
    add_bos = r.fields.get("tokenizer.ggml.add_bos_token")
    if add_bos is not None and isinstance(add_bos.contents(), bool):
        special["add_bos"] = add_bos.contents()
    encode = None
    if value("tokenizer.ggml.model", "str") == "gpt2" and value("tokenizer.ggml.pre", "str") in ("gpt-2", None):
        encode = byte_level_encoder(tokens, merges)
    return {"id_to_token": dict(enumerate(tokens)), "merges": merges, "special": special, "encode": encode}


def byte_level_encoder(tokens, merges):
    """GPT-2 byte-level BPE from a GGUF's token list and merges (llama.cpp's 'gpt2' model, 'gpt-2' pre)."""
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers

    # As llama.cpp's llama_vocab::load: a later duplicate wins, an empty token is renamed.
    vocab = {}
    for i, t in enumerate(tokens):
        vocab[t or f"[EMPTY_{i}]"] = i
    try:
        bpe = models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges])
        tok = tokenizers.Tokenizer(bpe)
    except Exception as e:  # noqa: BLE001
        raise RefRejects(f"tokenizers BPE from GGUF: {first_line(e)}") from None
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return lambda text: tok.encode(text, add_special_tokens=False).ids


def first_line(e):
    s = str(e).strip().splitlines()
    return s[0][:200] if s else type(e).__name__


# ----------------------------------------------------------------------------------------------- compare


def same_bits(a, b):
    """Equal as f32 bit patterns, NaNs (any payload) matching NaNs."""
    if a.shape != b.shape:
        return False
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    return bool(np.all((a32.view(np.uint32) == b32.view(np.uint32)) | (np.isnan(a32) & np.isnan(b32))))


def compare(engine, ref, exact=True):
    """Every way the engine differs from the reference model, as short strings (empty: the same model)."""
    diffs = []
    m, cfg = engine["model"], ref["config"]
    for key in CONFIG_KEYS:
        if m.get(key) != cfg[key]:
            diffs.append(f"config {key}: engine {m.get(key)!r}, source {cfg[key]!r}")
    if np.float32(m.get("rms_eps", 0)) != np.float32(cfg["rms_eps"]):
        diffs.append(f"config rms_eps: engine {m.get('rms_eps')!r}, source {cfg['rms_eps']!r}")
    try:
        inv, att = engine_inv_freq(m)
        if inv.shape != cfg["inv_freq"].shape or not np.allclose(inv, cfg["inv_freq"], rtol=1e-5, atol=0):
            diffs.append(f"RoPE inv_freq: engine {m['rope_scaling']['type']} {inv[:4]}..., source {cfg['inv_freq'][:4]}...")
        if not math.isclose(att, cfg["attention_factor"], rel_tol=1e-6):
            diffs.append(f"RoPE attention factor: engine {att}, source {cfg['attention_factor']}")
    except Exception as e:  # noqa: BLE001: an engine config this reader cannot follow is a difference too
        diffs.append(f"RoPE: engine config unreadable: {first_line(e)}")

    got, want = engine["tensors"], ref["tensors"]
    for name in sorted(set(got) ^ set(want)):
        diffs.append(f"tensor {name}: {'only in the engine' if name in got else 'missing from the engine'}")
    for name in sorted(set(got) & set(want)):
        a, b = got[name], want[name]
        if a.shape != b.shape:
            diffs.append(f"tensor {name}: engine shape {a.shape}, source {b.shape}")
        elif not (same_bits(a, b) if exact else np.allclose(a, b, rtol=1e-2, atol=1e-3, equal_nan=True)):
            bad = np.flatnonzero(~((a == b) | (np.isnan(a) & np.isnan(b))))
            i = int(bad[0]) if bad.size else 0
            diffs.append(f"tensor {name}: {bad.size} values differ, first at {i}: engine {a.reshape(-1)[i]!r}, "
                         f"source {b.reshape(-1)[i]!r}")
    diffs += compare_vocab(engine["vocab"], ref["vocab"], m.get("n_vocab"))
    return diffs


def compare_vocab(ev, rv, n_vocab):
    if ev is None:
        return ["vocab: the engine has no tokenizer"]
    diffs = []
    tokens = ev.get("tokens", [])
    if len(tokens) != n_vocab:
        diffs.append(f"vocab: engine has {len(tokens)} tokens for n_vocab {n_vocab}")
    wrong = [i for i, t in rv["id_to_token"].items() if i >= len(tokens) or tokens[i] != t]
    if wrong:
        i = wrong[0]
        diffs.append(f"vocab: {len(wrong)} tokens differ, first id {i}: engine "
                     f"{tokens[i] if i < len(tokens) else None!r}, source {rv['id_to_token'][i]!r}")
    if ev.get("merges", []) != rv["merges"]:
        diffs.append(f"vocab: merges differ (engine {len(ev.get('merges', []))}, source {len(rv['merges'])})")
    for key, want in rv["special"].items():
        if ev.get(key) != want:
            diffs.append(f"vocab: {key} engine {ev.get(key)}, source {want}")
    return diffs
