#!/usr/bin/env python3
"""Mutation run: thousands of corrupted copies of small checkpoints through `lamina build` and `lamina run`.

The bar (issue 24): every mutant ends in a clean error or a correct run; no signal, no hang, no exit 0 with
an engine that differs from its mutated source.

Sources: a Hugging Face directory in f32 (tests/data/tiny_llama), one in bf16 with tied embeddings, biases
and 5.x rope_parameters (tests/data/tiny_llama_v5_llama3), and a GGUF with bf16 tensors and rope_freqs
(tests/data/gguf/tiny_llama_v5_llama3.gguf). Mutant i of seed S is made by random.Random(f"{S}/{i}"), so
`--seed S --ids i` remakes it (and --replay remakes a finding from its recipe); the recipe records every edit
(offset, field, old and new value) and the source's sha256.

Each mutant is built (f32, batch 1, 24 + 8 positions, one thread) under a timeout and an address-space
limit, and classified:
  signal          killed by a signal (a segfault, or abort() from a broken invariant)
  sanitizer       an AddressSanitizer / UBSan report
  hang            still running at --timeout
  oom             "lamina: error: out of memory": a size in the file was trusted (the inputs are < 1 MB)
  raw-exception   one error line, but a library's message (nlohmann, std::) instead of one naming the input
  unclean-error   non-zero exit without exactly one "lamina: error: ..." line on stderr, or exit code not 1/2
  clean-error     the wanted refusal
When the build exits 0, `lamina run` must exit 0 or refuse cleanly, and the engine must equal the mutant as
tools/engine_reader.py reads it independently (transformers/safetensors/tokenizers, or gguf-py):
  run-<class>     lamina run ended as <class> above
  wrong-model     config, RoPE frequencies, a tensor's bits, the vocabulary or the tokenization differ
  accepted-ref-rejects  lamina built what the reference refuses (for a human to judge)
  run-refused     build accepted, run refused cleanly (for a human to judge)
  ok              a correct run

Usage:
  /opt/hfref/bin/python tools/mutation_run.py --lamina build/lamina --count 1000 --out DIR [--jobs 2]
  /opt/hfref/bin/python tools/mutation_run.py --lamina build/lamina --replay DIR/findings/signal-17.json --keep /tmp/m
Writes DIR/summary.json (counts, per-mutator counts, every non-clean case) and DIR/findings/<class>-<id>.json
(recipes, not files). Needs numpy, torch, transformers 5, safetensors, tokenizers, gguf.
"""

import argparse
import concurrent.futures
import hashlib
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import engine_reader  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HF_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"]
SOURCES = [  # name, kind, path, share of the mutants
    ("tiny_llama", "hf", "tests/data/tiny_llama", 0.35),
    ("tiny_llama_v5_llama3", "hf", "tests/data/tiny_llama_v5_llama3", 0.20),
    ("tiny_llama_v5_llama3.gguf", "gguf", "tests/data/gguf/tiny_llama_v5_llama3.gguf", 0.45),
]
BUILD_LIMITS = ["--dtype", "float32", "--max_batch_size", "1", "--max_input_len", "24", "--max_output_len", "8",
                "--threads", "1"]
SAMPLE_TEXT = "Hello world, the cat sat. héllo 12345 — ünïcode\n\ttabs  and   spaces!"

U32_BOUNDARY = [0, 1, 2, 3, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF, 0x10000]
U64_BOUNDARY = [0, 1, 2, 2**31, 2**32 - 1, 2**32, 2**40, 2**40 + 1, 2**63 - 1, 2**63, 2**64 - 1]
FLOAT_SPECIALS = [0.0, -0.0, -1.0, 1.0, 0.5, 2.0, 1e-45, 1e-30, 1e30, 3.4e38, float("inf"), float("-inf"), float("nan")]


class Raw:
    """A JSON token written as is (1e999, NaN, 2^64): what a hand-edited or foreign file may hold."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return f"Raw({self.text})"


def dumps(v):
    """json.dumps that writes Raw tokens verbatim, duplicate keys from lists of pairs, and NaN/inf as Python does."""
    if isinstance(v, Raw):
        return v.text
    if isinstance(v, Pairs):
        return "{" + ", ".join(json.dumps(k) + ": " + dumps(x) for k, x in v) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join(json.dumps(k) + ": " + dumps(x) for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(dumps(x) for x in v) + "]"
    return json.dumps(v)


class Pairs(list):
    """A JSON object as a list of (key, value), so a mutant can hold a key twice."""


def shown(v):
    """A value for a recipe: JSON-safe and short (containers and raw tokens as their JSON text)."""
    if isinstance(v, (bytes, bytearray)):
        return v.hex() if len(v) <= 32 else v[:32].hex() + "..."
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    if isinstance(v, Raw):
        return f"raw:{v.text}"
    if isinstance(v, (int, float, bool)) or v is None:
        return v
    text = v if isinstance(v, str) else dumps(v)
    return text if len(text) <= 120 else text[:117] + "..."


def weighted(rng, table):
    """One key of {key: weight}."""
    keys = list(table)
    return rng.choices(keys, weights=[table[k] for k in keys])[0]


def int_candidates(rng, old, width):
    pool = list(U32_BOUNDARY if width <= 4 else U64_BOUNDARY)
    pool += [max(old - 1, 0), old + 1, old * 2, old // 2, rng.randrange(0, 64)]
    if width == 8:
        pool.append(old + 2**32)
    mask = (1 << (8 * width)) - 1
    return [v & mask for v in pool if (v & mask) != old]


# ----------------------------------------------------------------------------------------------- GGUF layout

GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q", 12: "<d"}
GGUF_STRING, GGUF_ARRAY = 8, 9


class GgufLayout:
    """Where every field of a GGUF header lies: what the GGUF mutators write over."""

    def __init__(self, data):
        self.data = data
        self.fields = []  # (offset, width, kind, label)
        self.kvs = []     # dicts: key, start, end, type, value (scalar/str), elems [(offset, width, type)]
        self.tensors = [] # dicts: name, start, end
        pos = 0

        def u(fmt, kind, label):
            nonlocal pos
            width = struct.calcsize(fmt)
            self.fields.append((pos, width, kind, label))
            (v,) = struct.unpack_from(fmt, data, pos)
            pos += width
            return v

        def string(kind, label):
            nonlocal pos
            n = u("<Q", kind, label + " length")
            s = data[pos:pos + n]
            pos += n
            return s.decode("utf-8", "replace")

        def value(vtype, label, depth):
            nonlocal pos
            if vtype in GGUF_SCALARS:
                fmt = GGUF_SCALARS[vtype]
                (v,) = struct.unpack_from(fmt, data, pos)
                self.fields.append((pos, struct.calcsize(fmt), "value", label))
                pos += struct.calcsize(fmt)
                return v
            if vtype == GGUF_STRING:
                return string("string_len" if depth == 0 else "element_string_len", label)
            assert vtype == GGUF_ARRAY and depth == 0
            etype = u("<I", "array_type", label + " element type")
            count = u("<Q", "array_count", label + " count")
            return [value(etype, f"{label}[{i}]", 1) for i in range(count)]

        assert data[:4] == b"GGUF"
        self.fields.append((0, 4, "magic", "magic"))
        pos = 4
        u("<I", "version", "version")
        n_tensors = u("<Q", "n_tensors", "tensor count")
        n_kv = u("<Q", "n_kv", "metadata count")
        self.alignment = 32
        for _ in range(n_kv):
            start = pos
            key = string("key_len", "key")
            vtype = u("<I", "value_type", f"{key} type")
            v = value(vtype, key, 0)
            self.kvs.append({"key": key, "start": start, "end": pos, "type": vtype, "value": v})
            if key == "general.alignment":
                self.alignment = v
        for _ in range(n_tensors):
            start = pos
            name = string("tensor_name_len", "tensor name")
            n_dims = u("<I", "n_dims", f"{name} n_dims")
            dims = [u("<Q", "dim", f"{name} dim {d}") for d in range(n_dims)]
            ttype = u("<I", "tensor_type", f"{name} type")
            u("<Q", "tensor_offset", f"{name} offset")
            self.tensors.append({"name": name, "start": start, "end": pos, "shape": (ttype, dims)})
        self.info_end = pos
        self.data_start = (pos + self.alignment - 1) // self.alignment * self.alignment

    def assemble(self, kv_blobs, tensor_blobs, n_kv=None, n_tensors=None):
        """A file from (edited) kv and tensor-info blobs, padded to the alignment, then the original data."""
        head = self.data[:8] + struct.pack("<QQ", len(tensor_blobs) if n_tensors is None else n_tensors,
                                           len(kv_blobs) if n_kv is None else n_kv)
        body = head + b"".join(kv_blobs) + b"".join(tensor_blobs)
        pad = (-len(body)) % self.alignment
        return body + b"\0" * pad + self.data[self.data_start:]

    def write(self, offset, raw):
        """The file with `raw` written over the bytes at `offset`."""
        return self.data[:offset] + raw + self.data[offset + len(raw):]

    def kv_blobs(self):
        return [self.data[k["start"]:k["end"]] for k in self.kvs]

    def tensor_blobs(self):
        return [self.data[t["start"]:t["end"]] for t in self.tensors]


def gguf_str(s):
    b = s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, vtype, payload):
    return gguf_str(key) + struct.pack("<I", vtype) + payload


def rename_blob(blob, new_name):
    """A kv or tensor-info blob with its leading name replaced."""
    (n,) = struct.unpack_from("<Q", blob, 0)
    return gguf_str(new_name) + blob[8 + n:]


# Keys whose presence or value changes how lamina reads a LLaMA GGUF: values to add them with.
GGUF_EXTRA_KEYS = {
    "general.alignment": (4, [0, 1, 3, 8, 64, 4096, 2**31]),
    "llama.vocab_size": (4, [0, 1, 383, 384, 385, 2**32 - 1]),
    "llama.context_length": (4, [0, 1, 31, 32, 2**31]),
    "llama.rope.scaling.type": (8, ["linear", "yarn", "none", "llama3", "bogus", ""]),
    "llama.rope.scaling.factor": (6, [0.0, 1.0, 2.0, -1.0, float("nan"), float("inf"), 1e30]),
    "llama.rope.scaling.original_context_length": (4, [0, 1, 16, 2**31]),
    "llama.rope.scale_linear": (6, [0.0, 2.0, -1.0, float("nan")]),
    "llama.attention.sliding_window": (4, [0, 1, 8, 32, 4096]),
    "llama.attention.scale": (6, [0.0, 0.5, float("nan")]),
    "llama.rope.dimension_count": (4, [0, 12, 24, 2**32 - 1]),
    "llama.attention.value_length": (4, [0, 12, 24]),
    "tokenizer.ggml.eos_token_id": (4, [0, 383, 384, 2**31]),
    "tokenizer.ggml.add_eos_token": (7, [0, 1, 2]),
    "tokenizer.chat_template": (8, ["{{ bos_token }}{% for m in messages %}", "{{", ""]),
}


def pack_value(vtype, v):
    if vtype == GGUF_STRING:
        return gguf_str(v)
    return struct.pack(GGUF_SCALARS[vtype], v)


def gguf_header_int(rng, lay):
    """A boundary integer over one integer field of the header: counts, lengths, types, dims, offsets."""
    kinds = {"magic": 2, "version": 3, "n_tensors": 4, "n_kv": 4, "key_len": 6, "value_type": 8, "string_len": 5,
             "array_type": 4, "array_count": 6, "element_string_len": 2, "tensor_name_len": 4, "n_dims": 6,
             "dim": 10, "tensor_type": 8, "tensor_offset": 8}
    kind = weighted(rng, kinds)
    off, width, _, label = rng.choice([f for f in lay.fields if f[2] == kind])
    old = int.from_bytes(lay.data[off:off + width], "little")
    if kind == "magic":
        new = int.from_bytes(rng.choice([b"GGUG", b"FUGG", b"\0\0\0\0", b"GGML", b"ggjt"]), "little")
    elif kind in ("value_type", "array_type", "tensor_type") and rng.random() < 0.5:
        new = rng.choice([t for t in range(0, 40) if t != old])
    else:
        new = rng.choice(int_candidates(rng, old, width))
    return lay.write(off, new.to_bytes(width, "little")), [
        {"op": "write_int", "field": label, "kind": kind, "offset": off, "width": width, "old": old, "new": new}]


def gguf_value(rng, lay):
    """A new value for one metadata entry: special floats, boundary integers, other strings, an array element."""
    k = rng.randrange(len(lay.kvs))
    kv = lay.kvs[k]
    key, vtype, v = kv["key"], kv["type"], kv["value"]
    if vtype == GGUF_ARRAY:
        if not v:
            return gguf_header_int(rng, lay)
        i = rng.randrange(len(v))
        off, width = [(f[0], f[1]) for f in lay.fields if f[3] in (f"{key}[{i}]", f"{key}[{i}] length")][0]
        if isinstance(v[i], str):  # a token or merge: another string, length and all
            new = rng.choice(["", " ", "a b", "ab", "zz qq", v[i] + v[i], v[i][:-1], "\u0120" * 3,
                              v[rng.randrange(len(v))], "\xff"])
            blob = lay.kv_blobs()[k]
            rel = off - kv["start"]
            blob = blob[:rel] + gguf_str(new) + blob[rel + 8 + len(v[i].encode("utf-8", "surrogateescape")):]
            return lay.assemble(replaced(lay.kv_blobs(), k, blob), lay.tensor_blobs()), [
                {"op": "set_array_element", "key": key, "index": i, "old": v[i], "new": new}]
        old = int.from_bytes(lay.data[off:off + width], "little")
        new = rng.choice(int_candidates(rng, old, width) + [0, 1, 2, 3, 4, 5, 6, 7])
        return lay.write(off, new.to_bytes(width, "little")), [
            {"op": "write_int", "field": f"{key}[{i}]", "offset": off, "width": width, "old": v[i], "new": new}]
    if vtype == GGUF_STRING:
        new = rng.choice(["", "llama", "mistral", "gpt2", "llama-bpe", "bogus", v + "x", v[:1], "a" * 300])
        blob = gguf_kv(key, GGUF_STRING, gguf_str(new))
        return lay.assemble(replaced(lay.kv_blobs(), k, blob), lay.tensor_blobs()), [
            {"op": "set_string", "key": key, "old": v, "new": new}]
    off, width = [(f[0], f[1]) for f in lay.fields if f[3] == key and f[2] == "value"][0]
    fmt = GGUF_SCALARS[vtype]
    if vtype in (6, 12):
        new = rng.choice(FLOAT_SPECIALS)
        raw = struct.pack(fmt, new)
    elif vtype == 7:  # bool
        new = rng.choice([2, 255, 1 - v])
        raw = bytes([new])
    else:
        old = int.from_bytes(lay.data[off:off + width], "little")
        raw = (rng.choice(int_candidates(rng, old, width) + [0, 1, 383, 384, 385]) & ((1 << 8 * width) - 1)).to_bytes(
            width, "little")
        new = struct.unpack(fmt, raw)[0]
    return lay.write(off, raw), [{"op": "set_value", "key": key, "type": vtype, "offset": off, "old": shown(v),
                                  "new": shown(new)}]


def gguf_key(rng, lay):
    """Rename, delete, duplicate (with another value) or add a metadata key; n_kv mostly kept consistent."""
    kvb = lay.kv_blobs()
    op = weighted(rng, {"rename": 4, "delete": 4, "duplicate": 3, "add": 4})
    i = rng.randrange(len(kvb))
    kv = lay.kvs[i]
    key = kv["key"]
    adjust = rng.random() < 0.85
    n_kv = None if adjust else len(lay.kvs)
    if op == "rename":
        others = [k["key"] for k in lay.kvs if k["key"] != key]
        new = rng.choice([flip_char(rng, key), rng.choice(others), "", key + "\0", key.upper(),
                          rng.choice(list(GGUF_EXTRA_KEYS)), "\xff" + key])
        kvb[i] = rename_blob(kvb[i], new)
        return lay.assemble(kvb, lay.tensor_blobs()), [{"op": "rename_key", "key": key, "new": new}]
    if op == "delete":
        del kvb[i]
        return lay.assemble(kvb, lay.tensor_blobs(), n_kv=n_kv), [
            {"op": "delete_key", "key": key, "count_adjusted": adjust}]
    if op == "duplicate":
        desc = {"op": "duplicate_key", "key": key, "second_value": "same", "count_adjusted": adjust}
        blob = kvb[i]
        if kv["type"] in GGUF_SCALARS and kv["type"] not in (6, 7, 12) and rng.random() < 0.7:
            v = kv["value"]
            new = rng.choice([v + 1, max(v - 1, 0), 0, 2 * v + 1]) & ((1 << 8 * struct.calcsize(GGUF_SCALARS[kv["type"]])) - 1)
            blob = gguf_kv(key, kv["type"], pack_value(kv["type"], new))
            desc["second_value"] = new
        kvb.insert(rng.choice([i + 1, len(kvb)]), blob)
        return lay.assemble(kvb, lay.tensor_blobs(), n_kv=n_kv), [desc]
    key = rng.choice(list(GGUF_EXTRA_KEYS))
    vtype, values = GGUF_EXTRA_KEYS[key]
    v = rng.choice(values)
    if rng.random() < 0.15:  # the right key with the wrong type
        vtype, v = rng.choice([(8, "1"), (6, 1.5), (10, 2**63), (5, -1), (7, 1)])
    kvb.append(gguf_kv(key, vtype, pack_value(vtype, v)))
    return lay.assemble(kvb, lay.tensor_blobs()), [{"op": "add_key", "key": key, "type": vtype, "value": shown(v)}]


def gguf_tensor_info(rng, lay):
    """Rename, swap the names of (mostly same-shaped), delete or duplicate tensor infos."""
    tb = lay.tensor_blobs()
    i = rng.randrange(len(tb))
    name = lay.tensors[i]["name"]
    op = weighted(rng, {"rename": 3, "swap_names": 3, "delete": 3, "duplicate": 2, "rename_layer": 2})
    if op in ("rename", "rename_layer"):
        layer_free = name.split(".", 2)[-1]
        new = (rng.choice([flip_char(rng, name), rng.choice([t["name"] for t in lay.tensors]), "", name + ".x",
                           "blk.00." + layer_free, "blk.-1." + layer_free]) if op == "rename" else
               re.sub(r"^blk\.\d+", f"blk.{rng.choice([0, 1, 2, 5, 999999999, 4294967296])}", name))
        tb[i] = rename_blob(tb[i], new)
        return lay.assemble(lay.kv_blobs(), tb), [{"op": "rename_tensor", "tensor": name, "new": new}]
    if op == "swap_names":  # mostly with a tensor of the same shape and type (another layer's twin)
        twins = [j for j, t in enumerate(lay.tensors) if t["shape"] == lay.tensors[i]["shape"] and j != i]
        j = rng.choice(twins) if twins and rng.random() < 0.7 else rng.randrange(len(tb))
        other = lay.tensors[j]["name"]
        tb[i], tb[j] = rename_blob(tb[i], other), rename_blob(tb[j], name)
        return lay.assemble(lay.kv_blobs(), tb), [{"op": "swap_tensor_names", "a": name, "b": other}]
    adjust = rng.random() < 0.85
    n_tensors = None if adjust else len(lay.tensors)
    if op == "delete":
        del tb[i]
    else:
        tb.insert(i + 1, tb[i])
    return lay.assemble(lay.kv_blobs(), tb, n_tensors=n_tensors), [
        {"op": f"{op}_tensor_info", "tensor": name, "count_adjusted": adjust}]


GGUF_MUTATE = {
    "gguf_header_int": gguf_header_int,
    "gguf_value": gguf_value,
    "gguf_key": gguf_key,
    "gguf_tensor_info": gguf_tensor_info,
    "header_bytes": lambda rng, lay: byte_edit(rng, lay.data, 0, lay.data_start),
    "data_bytes": lambda rng, lay: byte_edit(rng, lay.data, lay.data_start, len(lay.data)),
    "resize": lambda rng, lay: resize(rng, lay.data, lay.data_start),
}


def replaced(items, i, item):
    return items[:i] + [item] + items[i + 1:]


def flip_char(rng, s):
    if not s:
        return "x"
    i = rng.randrange(len(s))
    return s[:i] + chr(ord(s[i]) ^ (1 << rng.randrange(6))) + s[i + 1:]


def byte_edit(rng, data, lo, hi):
    """Flip bits of a few bytes, or overwrite a short run with random bytes, within [lo, hi)."""
    out = bytearray(data)
    ops = []
    if rng.random() < 0.6:
        for _ in range(rng.choice([1, 1, 1, 2, 4, 8])):
            off = rng.randrange(lo, hi)
            mask = rng.choice([1 << rng.randrange(8), 0xFF, rng.randrange(1, 256)])
            ops.append({"op": "xor_byte", "offset": off, "old": out[off], "mask": mask})
            out[off] ^= mask
    else:
        n = rng.choice([1, 2, 4, 8, 16])
        off = rng.randrange(lo, max(lo + 1, hi - n))
        new = bytes(rng.randrange(256) for _ in range(n))
        ops.append({"op": "random_bytes", "offset": off, "old": bytes(out[off:off + n]).hex(), "new": new.hex()})
        out[off:off + n] = new
    return bytes(out), ops


def resize(rng, data, header_end):
    """Truncate (mostly inside the header) or append bytes."""
    if rng.random() < 0.7:
        cut = rng.randrange(0, header_end) if rng.random() < 0.7 else rng.randrange(header_end, len(data))
        return data[:cut], [{"op": "truncate", "new_size": cut, "old_size": len(data)}]
    n = rng.choice([1, 7, 64, 4096])
    tail = b"\0" * n if rng.random() < 0.5 else bytes(rng.randrange(256) for _ in range(n))
    return data + tail, [{"op": "append", "bytes": n, "zeros": tail == b"\0" * n}]


# ----------------------------------------------------------------------------------------------- safetensors


def split_safetensors(data):
    (n,) = struct.unpack_from("<Q", data, 0)
    header = Pairs(json.loads(data[8:8 + n]).items())
    return n, header, data[8 + n:]


def join_safetensors(header, body):
    text = dumps(header).encode("utf-8", "surrogateescape")
    return struct.pack("<Q", len(text)) + text + body


SHAPE_VALUES = [0, 1, -1, 2**31, 2**32, 2**63 - 1, Raw("9223372036854775808"), Raw("18446744073709551615"),
                Raw("18446744073709551616"), 1.5, "72", None, True]
OFFSET_VALUES = [0, 1, -1, 2**31, 2**32, 2**63, Raw("18446744073709551615"), Raw("18446744073709551616"), 1.5,
                 "0", None]


def mutate_safetensors(rng, data, what):
    n, header, body = split_safetensors(data)
    if what == "st_header_len":
        new = rng.choice([0, 1, 7, 8, n - 1, n + 1, n + 7, n + 8, len(data) - 8, len(data), 2**31, 2**32, 2**63,
                          2**64 - 1, 100 << 20, (100 << 20) + 1])
        return struct.pack("<Q", new) + data[8:], [{"op": "write_int", "field": "header length", "old": n, "new": new}]
    if what == "st_header_bytes":
        return byte_edit(rng, data, 8, 8 + n)
    if what == "st_data_bytes":
        return byte_edit(rng, data, 8 + n, len(data))
    if what == "st_resize":
        return resize(rng, data, 8 + n)
    return st_header_edit(rng, header, body)


def st_header_edit(rng, header, body):
    """A JSON-level edit of one tensor's entry (dtype, shape, data_offsets), or of the entries themselves."""
    tensors = [i for i, (k, _) in enumerate(header) if k != "__metadata__"]
    i = rng.choice(tensors)
    name, info = header[i]
    info = dict(info)
    op = weighted(rng, {"dtype": 3, "shape": 5, "offsets": 5, "delete": 2, "duplicate": 2, "rename": 3,
                        "swap_names": 2, "metadata": 1, "add": 2, "info_type": 1})
    desc = {"op": op, "tensor": name}
    if op == "dtype":
        desc["old"] = info["dtype"]
        info["dtype"] = desc["new"] = rng.choice(["F16", "BF16", "F32", "F64", "I8", "U8", "I32", "I64", "F8_E4M3",
                                                  "BOOL", "f32", "", 3, None])
        header[i] = (name, info)
    elif op == "shape":
        desc["old"] = info["shape"]
        desc["sub"], info["shape"] = new_shape(rng, list(info["shape"]))
        desc["new"] = shown(info["shape"])
        header[i] = (name, info)
    elif op == "offsets":
        desc["old"] = info["data_offsets"]
        desc["sub"], info["data_offsets"] = new_offsets(rng, *info["data_offsets"], len(body),
                                                        [header[j][1]["data_offsets"] for j in tensors])
        desc["new"] = shown(info["data_offsets"])
        header[i] = (name, info)
    elif op == "delete":
        del header[i]
    elif op == "duplicate":  # the name twice: with its own entry, or another tensor's
        dup = dict(info) if rng.random() < 0.5 else dict(header[rng.choice(tensors)][1])
        desc["second_entry"] = "same" if dup == info else "another tensor's"
        header.insert(rng.choice([i + 1, len(header)]), (name, dup))
    elif op == "rename":
        others = [header[j][0] for j in tensors if j != i]
        desc["new"] = rng.choice([flip_char(rng, name), rng.choice(others), "", name.replace("layers.0", "layers.00"),
                                  name.replace("layers.", "layers.-"), "__metadata__", name + " "])
        header[i] = (desc["new"], info)
    elif op == "swap_names":  # two tensors of the same shape trade names: a valid, different checkpoint
        twins = [j for j in tensors if j != i and header[j][1]["shape"] == info["shape"]]
        j = rng.choice(twins or tensors)
        desc["other"] = header[j][0]
        header[i], header[j] = (header[j][0], info), (name, header[j][1])
    elif op == "metadata":
        meta = [j for j, (k, _) in enumerate(header) if k == "__metadata__"]
        new = rng.choice([None, 5, "pt", [], {"format": 5}, {"format": "tf"}, {"x": {"y": 1}}])
        desc.update(tensor="__metadata__", new=shown(new))
        if meta:
            header[meta[0]] = ("__metadata__", new)
        else:
            header.insert(0, ("__metadata__", new))
    elif op == "add":  # a new name over this tensor's bytes
        desc["new"] = rng.choice(["lm_head.weight", "model.layers.9.mlp.up_proj.weight", "model.rotary_emb.inv_freq",
                                  "model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.o_proj.bias"])
        header.append((desc["new"], dict(info)))
    else:  # the entry is not an object of the three keys
        new = rng.choice([None, [], "F32", 5, {"dtype": info["dtype"], "shape": info["shape"]}])
        desc["new"] = shown(new)
        header[i] = (name, new)
    return join_safetensors(header, body), [desc]


def new_shape(rng, shape):
    """(what was done, the new shape): an entry set to a boundary value, a dim dropped or added, reversed, not a list."""
    sub = weighted(rng, {"entry": 6, "drop": 1, "add": 1, "reverse": 1, "empty": 1, "not_list": 1})
    if sub == "entry" and shape:
        j = rng.randrange(len(shape))
        shape[j] = rng.choice(SHAPE_VALUES + [shape[j] + 1, shape[j] - 1, shape[j] * 2, shape[j] // 2])
    elif sub == "drop" and shape:
        shape.pop(rng.randrange(len(shape)))
    elif sub == "add":
        shape.insert(rng.randrange(len(shape) + 1), rng.choice([1, 2, 0]))
    elif sub == "reverse":
        shape = shape[::-1]
    elif sub == "empty":
        shape = []
    elif sub == "not_list":
        shape = rng.choice(["72", 72, None, {"0": 72}])
    return sub, shape


def new_offsets(rng, begin, end, body_size, all_offsets):
    """(what was done, new data_offsets): boundary values, swapped, empty, shifted, another tensor's, not a pair."""
    sub = weighted(rng, {"begin": 3, "end": 3, "swap": 1, "equal": 1, "shift": 2, "alias": 2, "not_pair": 1})
    if sub == "begin":
        return sub, [rng.choice(OFFSET_VALUES + [begin + 1, begin - 1, end, body_size]), end]
    if sub == "end":
        return sub, [begin, rng.choice(OFFSET_VALUES + [end + 1, end - 1, body_size, body_size + 1])]
    if sub == "swap":
        return sub, [end, begin]
    if sub == "equal":
        return sub, [begin, begin]
    if sub == "shift":
        d = rng.choice([end - begin, begin - end, 2, -2, 4, body_size - end])
        return sub, [begin + d, end + d]
    if sub == "alias":  # another tensor's bytes: the same size only when the shapes agree
        return sub, list(rng.choice(all_offsets))
    return sub, rng.choice([[begin], [begin, end, end], begin, None])


# ----------------------------------------------------------------------------------------------- config.json

NUMBER_POOL = [0, 1, -1, 2, 3, 2**31, 2**31 - 1, 2**32, 2**63 - 1, Raw("9223372036854775808"),
               Raw("18446744073709551616"), 1e30, 1e308, Raw("1e999"), Raw("-1e999"), Raw("NaN"), Raw("Infinity"),
               -2**31, 0.5, 2.5, "2", "abc", "", None, True, False, [2], {}]
CONFIG_KEYS = {
    "num_hidden_layers": 5, "hidden_size": 5, "num_attention_heads": 5, "num_key_value_heads": 5,
    "intermediate_size": 4, "vocab_size": 5, "rms_norm_eps": 4, "rope_theta": 4, "rope_scaling": 6,
    "rope_parameters": 6, "max_position_embeddings": 4, "tie_word_embeddings": 3, "torch_dtype": 2, "dtype": 2,
    "bos_token_id": 2, "eos_token_id": 2, "head_dim": 4, "attention_bias": 2, "mlp_bias": 2, "architectures": 3,
    "model_type": 3, "hidden_act": 2, "sliding_window": 1, "quantization_config": 1, "partial_rotary_factor": 1,
}


def rope_object(rng):
    kind = rng.choice(["linear", "dynamic", "llama3", "yarn", "longrope", "default", "bogus", None])
    obj = {rng.choice(["rope_type", "type"]): kind}
    fields = {"factor": [2.0, 8.0, 1.0, 0.5, 0.0, -1.0, None, Raw("1e999"), "2", 2**40],
              "low_freq_factor": [1.0, 4.0, 0.0, -1.0, None], "high_freq_factor": [4.0, 1.0, 0.0, None],
              "original_max_position_embeddings": [32, 0, -1, 2**31, 1.5, None, 256],
              "beta_fast": [32.0, 0, -1.0, None], "beta_slow": [1.0, 0, -1.0, None],
              "attention_factor": [1.0, 0.0, -1.0, None, Raw("NaN")], "mscale": [1.0, 0.0], "mscale_all_dim": [0.8, 0.0],
              "truncate": [True, False, "no"], "rope_theta": [10000.0, 0.0, -1.0, None, 1e30, Raw("1e999")]}
    for k, values in fields.items():
        if rng.random() < 0.4:
            obj[k] = rng.choice(values)
    return obj


def mutate_config(rng, text):
    cfg = json.loads(text, object_pairs_hook=dict)
    key = weighted(rng, CONFIG_KEYS)
    old = cfg.get(key, "<absent>")
    op = weighted(rng, {"set": 8, "delete": 2, "set_field": 0 if not isinstance(old, dict) else 4})
    if op == "delete":
        if key not in cfg:
            op = "set"
        else:
            del cfg[key]
    if op == "set_field":  # one field of an existing rope object
        sub = dict(old)
        field = rng.choice(list(sub) + ["factor", "rope_type", "original_max_position_embeddings"])
        sub[field] = rng.choice(NUMBER_POOL + ["yarn", "linear", "llama3", "dynamic"])
        cfg[key] = sub
        return dumps(cfg), [{"op": "set_field", "key": key, "field": field, "old": shown(old.get(field, "<absent>")),
                             "new": shown(sub[field])}]
    if op == "set":
        if key in ("rope_scaling", "rope_parameters"):
            new = rope_object(rng) if rng.random() < 0.8 else rng.choice(["linear", 5, [], None, {}])
        elif key in ("torch_dtype", "dtype"):
            new = rng.choice(["float16", "bfloat16", "float64", "int8", "bogus", None, 5])
        elif key == "architectures":
            new = rng.choice([["MistralForCausalLM"], ["GPT2LMHeadModel"], [], "LlamaForCausalLM", [5], None,
                              ["LlamaForCausalLM", "X"]])
        elif key == "model_type":
            new = rng.choice(["mistral", "gpt2", "qwen2", "", None, 5])
        elif key == "hidden_act":
            new = rng.choice(["gelu", "relu", None, "SiLU"])
        elif key == "quantization_config":
            new = rng.choice([{"quant_method": "gptq"}, {}, None, "awq"])
        elif key in ("tie_word_embeddings", "attention_bias", "mlp_bias"):
            new = rng.choice([True, False, "true", 1, 0, None])
        elif isinstance(old, int) and not isinstance(old, bool) and rng.random() < 0.4:
            new = rng.choice([old + 1, old - 1, old * 2, old // 2, old + 0.5])
        else:
            new = rng.choice(NUMBER_POOL)
        cfg[key] = new
        return dumps(cfg), [{"op": "set", "key": key, "old": shown(old), "new": shown(new)}]
    return dumps(cfg), [{"op": "delete", "key": key, "old": shown(old)}]


# ----------------------------------------------------------------------------------------------- tokenizer


def mutate_tokenizer(rng, text):
    tj = json.loads(text, object_pairs_hook=Pairs)
    top = dict(tj)
    model = dict(top["model"])
    vocab = Pairs(model["vocab"])
    merges = list(model["merges"])
    op = weighted(rng, {"vocab_id": 4, "vocab_delete": 2, "vocab_rename": 2, "vocab_add": 1, "merge_delete": 2,
                        "merge_add": 2, "merge_malformed": 2, "merge_swap": 1, "added_token": 3, "model_type": 1,
                        "pre_tokenizer": 1, "normalizer": 1})
    desc = {"op": op}
    if op == "vocab_id":
        i = rng.randrange(len(vocab))
        tok, old = vocab[i]
        new = rng.choice([0, 1, 2, old + 1, -1, len(vocab) - 1, len(vocab), len(vocab) + 1, 2**31, 2**63 - 1,
                          1.5, "5", None])
        vocab[i] = (tok, new)
        desc.update(token=tok, old=old, new=shown(new))
    elif op == "vocab_delete":
        i = rng.randrange(len(vocab))
        desc["token"] = vocab.pop(i)[0]
    elif op == "vocab_rename":
        i = rng.randrange(len(vocab))
        tok, tid = vocab[i]
        new = rng.choice([flip_char(rng, tok), vocab[rng.randrange(len(vocab))][0], "", tok + tok])
        vocab[i] = (new, tid)
        desc.update(token=tok, new=new)
    elif op == "vocab_add":
        new = rng.choice(["zzz", "<s>", "\u0120zz"])
        tid = rng.choice([len(vocab), len(vocab) + 10, 0, 2**31])
        vocab.append((new, tid))
        desc.update(token=new, id=tid)
    elif op == "merge_delete":
        desc["merge"] = shown(merges.pop(rng.randrange(len(merges))))
    elif op == "merge_add":
        a, b = vocab[rng.randrange(len(vocab))][0], vocab[rng.randrange(len(vocab))][0]
        new = rng.choice([[a, b], f"{a} {b}"])
        merges.insert(rng.randrange(len(merges) + 1), new)
        desc["merge"] = shown(new)
    elif op == "merge_malformed":
        i = rng.randrange(len(merges))
        new = rng.choice(["abc", "a b c", "", " ", 5, None, ["a"], ["a", "b", "c"], ["a b", "c"], [1, 2]])
        desc.update(index=i, old=shown(merges[i]), new=shown(new))
        merges[i] = new
    elif op == "merge_swap":
        i, j = rng.randrange(len(merges)), rng.randrange(len(merges))
        merges[i], merges[j] = merges[j], merges[i]
        desc.update(i=i, j=j)
    elif op == "added_token":
        added = [dict(t) for t in top["added_tokens"]]
        i = rng.randrange(len(added))
        field = rng.choice(["id", "id", "content", "special", "delete"])
        if field == "delete":
            desc.update(token=added.pop(i)["content"], field="delete")
        else:
            old = added[i][field]
            new = {"id": [0, 5, 383, 384, 1000, -1, "1", None], "content": ["</s>", "a", "", "<new>", None],
                   "special": [False, "yes"]}[field]
            added[i][field] = rng.choice(new)
            desc.update(index=i, field=field, old=shown(old), new=shown(added[i][field]))
        top["added_tokens"] = added
    elif op == "model_type":
        model["type"] = rng.choice(["WordPiece", "Unigram", "WordLevel", "bogus", None])
        desc["new"] = model["type"]
    elif op == "pre_tokenizer":
        top["pre_tokenizer"] = rng.choice([None, {"type": "Metaspace"}, {"type": "Whitespace"}, {"type": "bogus"}, 5])
        desc["new"] = shown(top["pre_tokenizer"])
    else:
        top["normalizer"] = rng.choice([{"type": "Lowercase"}, {"type": "NFC"}, {"type": "bogus"}, 7])
        desc["new"] = shown(top["normalizer"])
    model["vocab"] = vocab
    model["merges"] = merges
    top["model"] = model
    return dumps(top), [desc]


def mutate_tokenizer_aux(rng, files):
    """tokenizer_config.json's special tokens and flags, generation_config.json's eos ids."""
    if rng.random() < 0.5:
        tc = json.loads(files["tokenizer_config.json"])
        key = rng.choice(["bos_token", "eos_token", "unk_token", "add_bos_token", "chat_template", "pad_token"])
        new = rng.choice(["<nope>", None, {"content": "</s>"}, {"content": 5}, 5, "</s>", "", True, "yes",
                          "{% for m in messages %}", "{{"])
        old = tc.get(key, "<absent>")
        tc[key] = new
        return {"tokenizer_config.json": dumps(tc).encode()}, [
            {"op": "set", "file": "tokenizer_config.json", "key": key, "old": shown(old), "new": shown(new)}]
    gc = json.loads(files["generation_config.json"])
    new = rng.choice([384, 383, -1, "2", [2, 3], [2, 384], [], 1.5, None, 2**31, Raw("1e999")])
    old = gc.get("eos_token_id")
    gc["eos_token_id"] = new
    return {"generation_config.json": dumps(gc).encode()}, [
        {"op": "set", "file": "generation_config.json", "key": "eos_token_id", "old": old, "new": shown(new)}]


def text_edit(rng, data):
    """Byte flips or a cut of a JSON text file."""
    if rng.random() < 0.3:
        cut = rng.randrange(len(data))
        return data[:cut], [{"op": "truncate", "new_size": cut, "old_size": len(data)}]
    return byte_edit(rng, data, 0, len(data))


# ----------------------------------------------------------------------------------------------- mutants

HF_MUTATORS = {"st_header": 20, "st_header_len": 4, "st_header_bytes": 6, "st_data_bytes": 8, "st_resize": 5,
               "config_value": 26, "config_bytes": 3, "tokenizer_json": 14, "tokenizer_bytes": 2, "tokenizer_aux": 5}
GGUF_MUTATORS = {"gguf_header_int": 32, "gguf_value": 14, "gguf_key": 16, "gguf_tensor_info": 8, "header_bytes": 10,
                 "data_bytes": 10, "resize": 10}


def load_sources():
    sources = []
    for name, kind, rel, share in SOURCES:
        path = os.path.join(ROOT, rel)
        if kind == "hf":
            files = {f: open(os.path.join(path, f), "rb").read() for f in HF_FILES if os.path.exists(os.path.join(path, f))}
        else:
            files = {"model.gguf": open(path, "rb").read()}
        digest = hashlib.sha256(b"".join(files[k] for k in sorted(files))).hexdigest()[:16]
        sources.append({"name": name, "kind": kind, "path": rel, "share": share, "files": files, "sha256": digest})
    return sources


def make_mutant(seed, index, sources, source_name=None):
    """(source, files, recipe) of mutant `index`: random.Random(f"{seed}/{index}") makes every choice.

    The source is drawn first with one random(); source_name forces it (a replay, or a run restricted with
    --only_source), and the mutation of that source is then the same as in a run that drew it."""
    rng = random.Random(f"{seed}/{index}")
    src = sources[rng.choices(range(len(sources)), weights=[s["share"] for s in sources])[0]]
    if source_name:
        src = next(s for s in sources if s["name"] == source_name)
    files = dict(src["files"])
    if src["kind"] == "gguf":
        mutator = weighted(rng, GGUF_MUTATORS)
        target = "model.gguf"
        files[target], ops = GGUF_MUTATE[mutator](rng, GgufLayout(files[target]))
    else:
        mutator = weighted(rng, HF_MUTATORS)
        if mutator.startswith("st_"):
            target = "model.safetensors"
            files[target], ops = mutate_safetensors(rng, files[target], mutator)
        elif mutator == "config_value":
            target = "config.json"
            text, ops = mutate_config(rng, files[target].decode())
            files[target] = text.encode("utf-8", "surrogateescape")
        elif mutator == "tokenizer_json":
            target = "tokenizer.json"
            text, ops = mutate_tokenizer(rng, files[target].decode())
            files[target] = text.encode("utf-8", "surrogateescape")
        elif mutator == "tokenizer_aux":
            changed, ops = mutate_tokenizer_aux(rng, files)
            target = next(iter(changed))
            files.update(changed)
        else:
            target = "config.json" if mutator == "config_bytes" else "tokenizer.json"
            files[target], ops = text_edit(rng, files[target])
    recipe = {"seed": seed, "id": index, "source": src["name"], "source_sha256": src["sha256"], "mutator": mutator,
              "file": target, "ops": ops}
    return src, files, recipe


# ----------------------------------------------------------------------------------------------- running

SANITIZER = re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:|ThreadSanitizer")
RAW_EXCEPTION = re.compile(r"^\[json\.exception|std::|basic_string|vector::|_M_|map::at|\bsto(i|l|ll|ul|ull|d|f)\b|"
                           r"bad_variant_access|bad_optional_access|filesystem error|bad_array_new_length")
PROGRESS_LINE = re.compile(r"^(build|building engine): |^\[(cpu|cuda)\] ")  # progress and timing lines


def limit_memory(mem_bytes):
    def apply():
        os.setsid()
        if mem_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def run_cmd(cmd, timeout, mem_bytes):
    """(returncode or None on timeout, stdout, stderr, seconds)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         preexec_fn=limit_memory(mem_bytes))
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        rc = None
    return rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), time.monotonic() - t0


def classify(rc, stderr):
    if rc is None:
        return "hang"
    if rc < 0:
        return "signal"
    if SANITIZER.search(stderr):
        return "sanitizer"
    if rc == 0:
        return "exit0"
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not PROGRESS_LINE.match(ln)]
    if rc not in (1, 2) or len(lines) != 1 or not lines[0].startswith("lamina: error: "):
        return "unclean-error"
    message = lines[0][len("lamina: error: "):]
    if message.startswith("out of memory"):
        return "oom"
    if RAW_EXCEPTION.search(message.split(": ", 1)[0]) or message.startswith("[json.exception"):
        return "raw-exception"
    return "clean-error"


def stderr_head(stderr, n=4):
    lines = [ln[:300] for ln in stderr.splitlines() if ln.strip()]
    return lines[:n] + ([f"... ({len(lines) - n} more lines)"] if len(lines) > n else [])


def build_and_check(args, src, files, work, case):
    """Writes the model under `work`, builds it, and returns its class (checking the engine on exit 0)."""
    os.makedirs(work)
    if src["kind"] == "gguf":
        model = os.path.join(work, "model.gguf")
        with open(model, "wb") as f:
            f.write(files["model.gguf"])
    else:
        model = os.path.join(work, "model")
        os.makedirs(model)
        for name, data in files.items():
            with open(os.path.join(model, name), "wb") as f:
                f.write(data)
    engine = os.path.join(work, "engine")
    build = [args.lamina, "build", "--model_dir", model, "--output_dir", engine] + BUILD_LIMITS
    rc, _, err, secs = run_cmd(build, args.timeout, args.mem_limit_mb << 20)
    case.update(command=" ".join(build), exit=rc, stderr=stderr_head(err), build_s=round(secs, 3))
    cls = classify(rc, err)
    return check_engine(args, src, model, engine, case) if cls == "exit0" else cls


def check_mutant(args, seed, index, sources, work_root, keep=None, source_name=None):
    src, files, recipe = make_mutant(seed, index, sources, source_name)
    work = os.path.join(work_root, f"m{index}")
    case = {"recipe": recipe}
    case["class"] = build_and_check(args, src, files, work, case)
    if keep:
        shutil.copytree(work, keep, dirs_exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    return json.loads(json.dumps(case, default=str).replace(work, "$WORK"))


def check_engine(args, src, model, engine, case):
    """The class of a mutant that `lamina build` accepted."""
    mem = args.mem_limit_mb << 20
    run = [args.lamina, "run", "--engine_dir", engine, "--input_text", "hello", "--max_output_len", "4",
           "--temperature", "0", "--threads", "1", "--device", "cpu"]
    rc, out, err, _ = run_cmd(run, args.timeout, mem)
    run_cls = classify(rc, err)
    case["run"] = {"command": " ".join(run), "exit": rc, "stderr": stderr_head(err)}
    if run_cls not in ("exit0", "clean-error"):
        return "run-" + run_cls
    with args.lock:
        if args.max_checks is not None and args.checks_done >= args.max_checks:
            return "unchecked"
        args.checks_done += 1
    try:
        ref = (engine_reader.read_gguf_reference(model) if src["kind"] == "gguf"
               else engine_reader.read_hf_reference(model))
    except engine_reader.RefRejects as e:
        case["reference"] = f"rejects: {e}"
        return "accepted-ref-rejects"
    try:
        diffs = engine_reader.compare(engine_reader.read_engine(engine), ref)
    except Exception as e:  # noqa: BLE001: an engine this reader cannot read is a wrong engine
        diffs = [f"engine unreadable: {type(e).__name__}: {engine_reader.first_line(e)}"]
    if not diffs and ref["vocab"]["encode"] is not None:
        tok = [args.lamina, "tokenize", "--model", engine, "--ids", "--text", SAMPLE_TEXT]
        rc, out, err, _ = run_cmd(tok, args.timeout, mem)
        want = ref["vocab"]["encode"](SAMPLE_TEXT)
        got = out.split() if rc == 0 else None
        if classify(rc, err) not in ("exit0", "clean-error"):
            case["tokenize"] = {"command": " ".join(tok), "exit": rc, "stderr": stderr_head(err)}
            return "run-" + classify(rc, err)
        got = [int(x) for x in got] if got is not None else None
        if got != want:
            at = next((i for i, (a, b) in enumerate(zip(got or [], want)) if a != b), min(len(got or []), len(want)))
            diffs.append(f"tokenize {SAMPLE_TEXT!r}: engine {len(got or [])} ids, source {len(want)}; first difference "
                         f"at {at}: engine {(got or [])[at:at + 3]}, source {want[at:at + 3]}")
    if diffs:
        case["diffs"] = diffs[:8]
        return "wrong-model"
    return "run-refused" if run_cls == "clean-error" else "ok"


def checker_sees_tampering(src, work):
    """The compare must notice a flipped weight bit, a changed rope_theta and a changed token in a good engine."""
    model = os.path.join(work, "model.gguf" if src["kind"] == "gguf" else "model")
    ref = (engine_reader.read_gguf_reference(model) if src["kind"] == "gguf"
           else engine_reader.read_hf_reference(model))
    blind = []
    for what in ("weight bit", "rope_theta", "token"):
        engine = engine_reader.read_engine(os.path.join(work, "engine"))
        if what == "weight bit":
            w = engine["tensors"]["blk.0.wqkv"]
            w.reshape(-1).view("uint32")[w.size // 2] ^= 1
        elif what == "rope_theta":
            engine["model"]["rope_theta"] *= 1.001
        else:
            engine["vocab"]["tokens"][5] += "x"
        if not engine_reader.compare(engine, ref):
            blind.append(what)
    if blind:
        print(f"the engine compare does not see a changed {', '.join(blind)} ({src['name']}): fix tools/engine_reader.py")
    return not blind


CLEAN = ("clean-error", "ok")
FOR_A_HUMAN = ("accepted-ref-rejects", "run-refused", "unchecked")


def tree_state():
    """The commit, and a hash of the uncommitted changes under src/ (the tree the binary was built from, if fresh)."""
    def git(*a):
        return subprocess.run(["git", "-C", ROOT, *a], capture_output=True).stdout
    try:
        return {"head": git("rev-parse", "HEAD").decode().strip(),
                "src_diff_sha256": hashlib.sha256(git("diff", "HEAD", "--", "src")).hexdigest()[:16]}
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--lamina", default=os.path.join(ROOT, "build", "lamina"), help="the lamina binary")
    ap.add_argument("--count", type=int, default=3000, help="mutants to make")
    ap.add_argument("--first", type=int, default=0, help="id of the first mutant")
    ap.add_argument("--ids", help="only these mutant ids (comma-separated)")
    ap.add_argument("--seed", type=int, default=24)
    ap.add_argument("--jobs", type=int, default=2, help="mutants at once (each lamina runs with one thread)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per lamina command before it is a hang")
    ap.add_argument("--mem_limit_mb", type=int, default=3072,
                    help="address-space limit per lamina command (0: none, e.g. for an ASan binary)")
    ap.add_argument("--max_checks", type=int, help="reference-check at most this many exit-0 mutants")
    ap.add_argument("--only_source", action="append",
                    help="mutate only this source (repeatable); mutant i of a source is the same as in a full run")
    ap.add_argument("--strict_controls", action="store_true",
                    help="stop when an unmutated source is not 'ok' (else it is reported and the run goes on)")
    ap.add_argument("--out", help="directory for summary.json and findings/")
    ap.add_argument("--log", help="write every case (clean ones too) here, one JSON a line")
    ap.add_argument("--replay", help="a findings/*.json: remake and rerun that mutant, print what happened")
    ap.add_argument("--keep", help="with --replay: copy the mutant and its engine here")
    args = ap.parse_args()
    args.lamina = os.path.abspath(args.lamina)
    with open(args.lamina, "rb") as f:
        if b"AddressSanitizer" in f.read() and args.mem_limit_mb:
            print("an AddressSanitizer binary: no address-space limit (ASan reserves terabytes of it)")
            args.mem_limit_mb = 0
    args.checks_done, args.lock = 0, threading.Lock()
    sources = load_sources()
    if args.only_source:
        unknown = set(args.only_source) - {s["name"] for s in sources}
        if unknown:
            ap.error(f"unknown --only_source {sorted(unknown)}; sources: {[s['name'] for s in sources]}")
        for s in sources:
            s["share"] = s["share"] if s["name"] in args.only_source else 0.0

    if args.replay:
        with open(args.replay) as f:
            recipe = json.load(f)["recipe"]
        src = next(s for s in sources if s["name"] == recipe["source"])
        if src["sha256"] != recipe["source_sha256"]:
            print(f"warning: {src['path']} changed since the run (sha256 {src['sha256']} vs {recipe['source_sha256']})")
        with tempfile.TemporaryDirectory(prefix="lamina-mutation-") as tmp:
            case = check_mutant(args, recipe["seed"], recipe["id"], sources, tmp, keep=args.keep,
                                source_name=recipe["source"])
        print(json.dumps(case, indent=2, default=str))
        return 0

    ids = [int(x) for x in args.ids.split(",")] if args.ids else list(range(args.first, args.first + args.count))
    t0 = time.monotonic()
    # The unmutated sources first: each must come out "ok", or the reference reader is what is wrong.
    controls = []
    with tempfile.TemporaryDirectory(prefix="lamina-mutation-") as tmp:
        for k, s in enumerate(sources):
            if s["share"] == 0:
                continue
            case = {}
            work = os.path.join(tmp, f"control{k}")
            case["class"] = build_and_check(args, s, s["files"], work, case)
            if case["class"] == "ok" and not checker_sees_tampering(s, work):
                return 1
            controls.append({"source": s["name"], "class": case["class"], "exit": case["exit"],
                             "stderr": case["stderr"], "diffs": case.get("diffs"), "reference": case.get("reference")})
            if case["class"] != "ok":
                print(f"CONTROL FAILED: unmutated {s['name']} is {case['class']}: "
                      f"{json.dumps(case, default=str)[:1000]}", flush=True)
                if args.strict_controls:
                    return 1
        print(f"controls: {', '.join(c['source'] + ' ' + c['class'] for c in controls)} "
              f"({time.monotonic() - t0:.1f} s)", flush=True)
        args.checks_done = 0

        cases = []
        t1 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(check_mutant, args, args.seed, i, sources, tmp) for i in ids]
            for n, fut in enumerate(concurrent.futures.as_completed(futures), 1):
                cases.append(fut.result())
                if n % 100 == 0 or n == len(ids):
                    print(f"  {n}/{len(ids)} mutants, {time.monotonic() - t1:.0f} s", flush=True)
    elapsed = time.monotonic() - t1
    cases.sort(key=lambda c: c["recipe"]["id"])
    report(args, sources, controls, cases, elapsed)
    return 0


def report(args, sources, controls, cases, elapsed):
    counts, by_mutator = {}, {}
    for c in cases:
        counts[c["class"]] = counts.get(c["class"], 0) + 1
        key = f"{c['recipe']['source']}:{c['recipe']['mutator']}"
        by_mutator.setdefault(key, {})
        by_mutator[key][c["class"]] = by_mutator[key].get(c["class"], 0) + 1
    findings = [c for c in cases if c["class"] not in CLEAN]
    summary = {
        "command": " ".join(sys.argv), "lamina": args.lamina, "tree": tree_state(), "seed": args.seed,
        "mutants": len(cases), "jobs": args.jobs, "timeout_s": args.timeout, "mem_limit_mb": args.mem_limit_mb,
        "elapsed_s": round(elapsed, 1), "seconds_per_1000": round(1000 * elapsed / max(len(cases), 1), 1),
        "exit0_reference_checked": args.checks_done,
        "sources": [{k: s[k] for k in ("name", "kind", "path", "sha256")} for s in sources],
        "controls": controls, "counts": dict(sorted(counts.items())), "by_mutator": dict(sorted(by_mutator.items())),
        "findings": findings,
    }
    if args.log:
        with open(args.log, "w") as f:
            for c in cases:
                f.write(json.dumps(c, default=str) + "\n")
    if args.out:
        fdir = os.path.join(args.out, "findings")
        os.makedirs(fdir, exist_ok=True)
        for old in os.listdir(fdir):
            if old.endswith(".json"):
                os.remove(os.path.join(fdir, old))
        for c in findings:
            with open(os.path.join(fdir, f"{c['class']}-{c['recipe']['id']}.json"), "w") as f:
                json.dump(c, f, indent=1, default=str)
                f.write("\n")
        with open(os.path.join(args.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1, default=str)
            f.write("\n")
    print(f"\n{len(cases)} mutants in {elapsed:.0f} s ({args.jobs} jobs); exit-0 builds reference-checked: "
          f"{args.checks_done}")
    names = [s["name"] for s in sources if s["share"] > 0]
    per_source = {}
    for c in cases:
        per_source[(c["class"], c["recipe"]["source"])] = per_source.get((c["class"], c["recipe"]["source"]), 0) + 1
    print(f"{'class':<22}{'all':>6}" + "".join(f"{n[:26]:>28}" for n in names))
    for cls, n in sorted(counts.items(), key=lambda kv: (kv[0] in CLEAN, kv[0] in FOR_A_HUMAN, -kv[1])):
        print(f"{cls:<22}{n:>6}" + "".join(f"{per_source.get((cls, name), 0):>28}" for name in names))
    # Findings grouped by class, source and message (numbers and quoted names blanked), a few recipes each.
    groups = {}
    for c in findings:
        detail = (c.get("diffs") or [c.get("reference", "")] if c["class"] in ("wrong-model", "accepted-ref-rejects")
                  else (c.get("run") or c)["stderr"][:1] or [f"exit {c['exit']}, no stderr"])
        key = (c["class"], c["recipe"]["source"], re.sub(r"\d+", "#", str(detail[0]))[:160])
        groups.setdefault(key, []).append((c, detail[0]))
    for (cls, source, _), members in sorted(groups.items(), key=lambda kv: (kv[0][0] in FOR_A_HUMAN, -len(kv[1]))):
        c, detail = members[0]
        print(f"\n{cls} x{len(members)} ({source}): {str(detail)[:300]}")
        for c, _ in members[:3]:
            r = c["recipe"]
            print(f"  #{r['id']} {r['mutator']}: " + "; ".join(json.dumps(op, default=str)[:200] for op in r["ops"]))


if __name__ == "__main__":
    sys.exit(main())
