#!/usr/bin/env python3
"""Compares lamina's GGML block conversions (src/core/ggml_quants.cpp) with llama.cpp's on many blocks, beyond
what the committed fixtures hold: quantize_row against quantize_row_<type>_ref, dequantize_row against
dequantize_row_<type> on those bytes and on random bytes, for the ten types and 16 input distributions.

    tools/build_llama_cpp.sh
    /opt/hfref/bin/python tools/compare_quants_llama_cpp.py [--seed S] [--blocks N] [--cxxflags "-O2 -march=native"]

It compiles src/core's ggml_quants.cpp, ggml_type.cpp and dtype.cpp into a small shared library under
.cache/ with g++ (-O2 -ffp-contract=off, as CMakeLists.txt compiles ggml_quants.cpp, plus --cxxflags) and
prints each mismatch; the exit status is the number of mismatching (distribution, type, check) triples.
"""
import argparse
import ctypes
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_quant_vectors as mqv  # noqa: E402  (the ctypes wrapper of llama.cpp's library)

ROOT = mqv.ROOT
SHIM = r"""
#include "core/ggml_quants.h"
extern "C" void lq_quantize(unsigned t, const float* x, void* y, long n) { lamina::quantize_row(t, x, y, n); }
extern "C" void lq_dequantize(unsigned t, const void* x, float* y, long n) { lamina::dequantize_row(t, x, y, n); }
"""


def build_lamina(cxxflags):
    out = ROOT / ".cache" / "quant_compare"
    out.mkdir(parents=True, exist_ok=True)
    (out / "shim.cpp").write_text(SHIM)
    lib = out / "liblamina_quants.so"
    sources = [out / "shim.cpp"] + [ROOT / "src" / "core" / f for f in ("ggml_quants.cpp", "ggml_type.cpp", "dtype.cpp")]
    cmd = ["g++", "-std=c++20", "-O2", "-ffp-contract=off", *cxxflags.split(), "-fPIC", "-shared",
           f"-I{ROOT / 'src'}", *map(str, sources), "-o", str(lib)]
    subprocess.run(cmd, check=True)
    so = ctypes.CDLL(str(lib))
    for f in (so.lq_quantize, so.lq_dequantize):
        f.argtypes = [ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
        f.restype = None
    return so


def distribution(rng, kind, n):
    x = rng.standard_normal(n)
    if kind == "uniform": return rng.uniform(-1, 1, n)
    if kind == "cauchy": return np.clip(rng.standard_cauchy(n), -1e4, 1e4)
    if kind == "student_t3": return rng.standard_t(3, n)
    if kind in ("mixed16", "mixed32"):  # sub-blocks of scales 1e-6 … 1e3
        step = 16 if kind == "mixed16" else 32
        for s in range(0, n, step): x[s:s + step] *= 10.0 ** rng.uniform(-6, 3)
        return x
    if kind == "sparse":
        y = np.zeros(n)
        idx = rng.choice(n, n // 20, replace=False)
        y[idx] = rng.standard_normal(len(idx))
        return y
    if kind == "grid": return rng.integers(-20, 20, n) * rng.choice([0.125, 0.25, 1 / 3, 0.1, 1.0])
    if kind == "ints": return rng.integers(-8, 8, n).astype(float)
    if kind == "positive": return np.abs(x) + rng.uniform(0, 3)
    if kind == "negative": return -np.abs(x) - rng.uniform(0, 3)
    if kind == "tiny": return x * 10.0 ** rng.uniform(-12, -3)
    if kind == "huge": return x * 10.0 ** rng.uniform(2, 4.2)
    if kind == "constant": return np.full(n, rng.standard_normal())
    if kind == "outlier":
        x *= 0.05
        for s in range(0, n, 32): x[s + rng.integers(32)] = rng.choice([-1, 1]) * rng.uniform(1, 100)
        return x
    if kind == "f16_exact": return x.astype(np.float16).astype(float)
    return x  # normal


KINDS = ["normal", "uniform", "cauchy", "student_t3", "mixed16", "mixed32", "sparse", "grid", "ints", "positive",
         "negative", "tiny", "huge", "constant", "outlier", "f16_exact"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--blocks", type=int, default=2000, help="super-blocks per distribution and type")
    ap.add_argument("--cxxflags", default="", help="extra g++ flags for lamina's side, e.g. -march=native")
    args = ap.parse_args()
    ggml = mqv.Ggml(mqv.LIB)
    lamina = build_lamina(args.cxxflags)
    rng = np.random.default_rng(args.seed)
    bad = 0
    for kind in KINDS:
        x = np.concatenate([distribution(rng, kind, mqv.QK_K) for _ in range(args.blocks)]).astype(np.float32)
        for type_name in mqv.TYPES:
            code = int(T[type_name])
            block_bytes = gguf.GGML_QUANT_SIZES[T[type_name]][1]
            want = ggml.quantize(type_name, x)
            got = np.zeros_like(want)
            lamina.lq_quantize(code, x.ctypes.data, got.ctypes.data, len(x))
            if not np.array_equal(want, got):
                diff = np.nonzero(want != got)[0]
                print(f"{kind} {type_name}: quantize differs in {len(diff)} bytes, first in block {diff[0] // block_bytes}")
                bad += 1
            for what, blocks in (("quantized", want), ("random", rng.integers(0, 256, len(want), dtype=np.uint8))):
                ref = ggml.dequantize(type_name, blocks, len(x))
                out = np.empty_like(ref)
                lamina.lq_dequantize(code, blocks.ctypes.data, out.ctypes.data, len(x))
                if not np.array_equal(ref.view(np.uint32), out.view(np.uint32)):
                    print(f"{kind} {type_name}: dequantize of {what} bytes differs")
                    bad += 1
    checks = len(KINDS) * len(mqv.TYPES) * 3
    print(f"{args.blocks} super-blocks per distribution and type, {checks} checks, {bad} mismatching")
    sys.exit(min(bad, 255))


if __name__ == "__main__":
    main()
