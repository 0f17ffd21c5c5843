#!/usr/bin/env python3
"""Writes tests/data/quant/: llama.cpp's own quantized bytes and dequantized values for the ten GGML block
types lamina handles (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K), the reference that
tests/core/ggml_quants_test.cpp holds src/core/ggml_quants.cpp to, bit for bit.

llama.cpp's library is called through ctypes: quantize_row_<type>_ref (the reference quantizers that
llama-quantize uses without an importance matrix) and dequantize_row_<type>. Build it first:

    tools/build_llama_cpp.sh                                   # .cache/llama.cpp/build/bin/libggml-base.so
    /opt/hfref/bin/python tools/make_quant_vectors.py          # needs numpy and gguf (pip install gguf)

Files (little-endian):
  inputs.f32               every case's inputs, concatenated in manifest order (each case whole super-blocks)
  <TYPE>.quantized         quantize_row_<type>_ref of inputs.f32
  <TYPE>.blocks            random blocks (random bytes, finite random f16 scales): bit patterns the
                           quantizer never writes
  <TYPE>.blocks.f32        dequantize_row_<type> of <TYPE>.blocks
  manifest.json            cases, per type the FNV-1a 64 hash of dequantize_row_<type>(<TYPE>.quantized) per
                           case (the full floats would be ten times the size), ggml's block size and bytes
                           for every type code, the versions, and the gguf-py cross-checks
The gguf Python package's dequantize must agree with llama.cpp on every byte written here (checked; the
script stops otherwise), and its quantize where it has one is compared and reported.
"""
import ctypes
import importlib.metadata
import json
import re
import sys
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "quant"
LLAMA_CPP_PYTHON = "0.3.36"  # tools/build_llama_cpp.sh's VERSION
LIB = ROOT / ".cache" / "llama.cpp" / "build" / "bin" / "libggml-base.so"
GGML_H = ROOT / ".cache" / "llama.cpp" / f"llama_cpp_python-{LLAMA_CPP_PYTHON}" / "vendor" / "llama.cpp" / "ggml" / "include" / "ggml.h"
QK_K = 256

TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
# Byte offsets of each block's f16 scales (ggml-common.h), overwritten in random blocks with finite values.
HALF_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q2_K": [80, 82],
               "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}
RANDOM_BLOCK_ELEMS = 256  # per type: 8 blocks of 32 or one super-block


def cases(rng):
    """(name, f32 array) pairs, each a whole number of super-blocks."""
    n = QK_K
    normal = lambda k=n: rng.standard_normal(k).astype(np.float32)
    outlier = normal() * 0.1
    for b in range(0, n, 32):  # one large value per 32-block, random position and sign
        outlier[b + rng.integers(32)] = rng.choice([-1, 1]) * rng.uniform(10, 50)
    mixed = normal()
    for s in range(0, n, 16):  # sub-blocks of very different scales: some K-quant scales round to zero
        mixed[s:s + 16] *= 10.0 ** rng.uniform(-4, 1)
    sparse = np.zeros(n, np.float32)
    sparse[rng.choice(n, 12, replace=False)] = rng.standard_normal(12)
    return [
        ("normal", normal(4 * n)),                                   # several blocks
        ("zeros", np.zeros(n, np.float32)),
        ("constant", np.full(n, 0.3, np.float32)),
        ("constant_negative", np.full(n, -1.75, np.float32)),
        ("huge", normal() * 1e4),                                    # scales near the f16 range
        ("tiny", normal() * 1e-4),                                   # f16 subnormal scales
        ("vanishing", normal() * 1e-20),                             # below ggml's GROUP_MAX_EPS
        ("outlier", outlier),
        ("mixed_scales", mixed.astype(np.float32)),
        ("sparse", sparse),
        ("grid", (rng.integers(-16, 16, n) * 0.125).astype(np.float32)),  # exact halves: rounding ties
        ("positive", (np.abs(normal()) + 0.5).astype(np.float32)),   # min > 0
    ]


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


class Ggml:
    def __init__(self, path):
        if not path.exists():
            sys.exit(f"{path} is missing: run tools/build_llama_cpp.sh first")
        self.lib = ctypes.CDLL(str(path))
        self.lib.ggml_type_name.restype = ctypes.c_char_p
        self.lib.ggml_type_name.argtypes = [ctypes.c_int]
        self.lib.ggml_blck_size.restype = ctypes.c_int64
        self.lib.ggml_blck_size.argtypes = [ctypes.c_int]
        self.lib.ggml_type_size.restype = ctypes.c_size_t
        self.lib.ggml_type_size.argtypes = [ctypes.c_int]

    def fn(self, name):
        f = getattr(self.lib, name)
        f.restype = None
        f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        return f

    def quantize(self, type_name, x):
        n_bytes = len(x) // gguf.GGML_QUANT_SIZES[T[type_name]][0] * gguf.GGML_QUANT_SIZES[T[type_name]][1]
        out = np.zeros(n_bytes, np.uint8)
        x = np.ascontiguousarray(x, np.float32)
        self.fn(f"quantize_row_{type_name.lower().replace('_k', '_K')}_ref")(x.ctypes.data, out.ctypes.data, len(x))
        return out

    def dequantize(self, type_name, blocks, n):
        out = np.empty(n, np.float32)
        blocks = np.ascontiguousarray(blocks, np.uint8)
        self.fn(f"dequantize_row_{type_name.lower().replace('_k', '_K')}")(blocks.ctypes.data, out.ctypes.data, n)
        return out

    def type_table(self):
        """ggml's block elements and bytes for every type code it defines (removed codes have block size 0)."""
        # ggml_type_name does not check its argument: stay below GGML_TYPE_COUNT, read from ggml.h.
        count = int(re.search(r"GGML_TYPE_COUNT\s*=\s*(\d+)", GGML_H.read_text()).group(1))
        table = []
        for code in range(count):
            name = self.lib.ggml_type_name(code)
            if self.lib.ggml_blck_size(code) == 0:
                continue
            table.append({"code": code, "name": name.decode(), "block_elems": self.lib.ggml_blck_size(code),
                          "block_bytes": self.lib.ggml_type_size(code)})
        return table


def random_blocks(rng, type_name):
    elems, size = gguf.GGML_QUANT_SIZES[T[type_name]]
    n_blocks = RANDOM_BLOCK_ELEMS // elems
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    for off in HALF_FIELDS[type_name]:
        halves = rng.uniform(-1, 1, n_blocks).astype(np.float16)
        raw[:, off:off + 2] = halves.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1)


def gguf_py_dequantize(type_name, blocks, n):
    return quants.dequantize(blocks.reshape(1, -1), T[type_name]).astype(np.float32).reshape(n)


def gguf_py_quantize(type_name, x):
    """gguf-py's own quantizer, or None where it has none."""
    try:
        return quants.quantize(x.reshape(1, -1), T[type_name]).reshape(-1)
    except (NotImplementedError, KeyError, TypeError):
        return None


def main():
    ggml = Ggml(LIB)
    rng = np.random.default_rng(20261207)
    OUT.mkdir(parents=True, exist_ok=True)
    all_cases = cases(rng)
    x = np.concatenate([c for _, c in all_cases]).astype(np.float32)
    (OUT / "inputs.f32").write_bytes(x.tobytes())
    manifest = {
        "generator": "tools/make_quant_vectors.py",
        "versions": {"llama-cpp-python (vendored llama.cpp)": LLAMA_CPP_PYTHON,
                     "gguf": importlib.metadata.version("gguf"), "numpy": np.__version__},
        "cases": [{"name": name, "n": len(c)} for name, c in all_cases],
        "types": {},
        "ggml_types": ggml.type_table(),
    }
    bounds = np.cumsum([0] + [len(c) for _, c in all_cases])
    for type_name in TYPES:
        elems, size = gguf.GGML_QUANT_SIZES[T[type_name]]
        q = ggml.quantize(type_name, x)
        (OUT / f"{type_name}.quantized").write_bytes(q.tobytes())
        deq = ggml.dequantize(type_name, q, len(x))
        if not np.array_equal(deq.view(np.uint32), gguf_py_dequantize(type_name, q, len(x)).view(np.uint32)):
            sys.exit(f"{type_name}: gguf-py's dequantize differs from llama.cpp's on the quantized inputs")
        hashes = [fnv1a64(deq[bounds[i]:bounds[i + 1]].tobytes()) for i in range(len(all_cases))]

        blocks = random_blocks(rng, type_name)
        (OUT / f"{type_name}.blocks").write_bytes(blocks.tobytes())
        blocks_deq = ggml.dequantize(type_name, blocks, RANDOM_BLOCK_ELEMS)
        (OUT / f"{type_name}.blocks.f32").write_bytes(blocks_deq.tobytes())
        py = gguf_py_dequantize(type_name, blocks, RANDOM_BLOCK_ELEMS)
        if not np.array_equal(blocks_deq.view(np.uint32), py.view(np.uint32)):
            sys.exit(f"{type_name}: gguf-py's dequantize differs from llama.cpp's on random blocks")

        py_q = gguf_py_quantize(type_name, x)
        gguf_py_quantize_equal = None if py_q is None else bool(np.array_equal(py_q, q))
        manifest["types"][type_name] = {
            "code": int(T[type_name]), "block_elems": elems, "block_bytes": size,
            "dequantized_fnv1a64": hashes,
            "gguf_py_dequantize_equal": True,
            "gguf_py_quantize_equal": gguf_py_quantize_equal,
        }
        print(f"{type_name}: {len(q)} bytes quantized, gguf-py dequantize equal, gguf-py quantize "
              f"{'absent' if py_q is None else 'equal' if gguf_py_quantize_equal else 'DIFFERS'}")
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {OUT.relative_to(ROOT)} ({total} bytes)")


if __name__ == "__main__":
    main()
