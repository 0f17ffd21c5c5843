#!/usr/bin/env python3
"""Makes tests/data/gguf/quants.gguf and quants_expected.json: one small tensor of each GGML type lamina
dequantizes (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K), filled with random bytes (random scales kept
finite), and the values gguf-py's reference dequantization gives for them.

    python3 tools/make_quant_fixture.py   # needs numpy and gguf (pip install gguf)
"""
import json
import sys
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "gguf"
ROWS, COLS = 3, 512  # 512 = two K-quant super-blocks per row


def finite_half(rng, n):
    return rng.uniform(-0.05, 0.05, n).astype(np.float16).view(np.uint8)


def random_blocks(rng, qtype):
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = ROWS * COLS // block_elems
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    # Overwrite every fp16 scale with a finite value so the expected floats are finite.
    half_fields = {T.Q8_0: [0], T.Q4_0: [0], T.Q4_1: [0, 2], T.Q4_K: [0, 2], T.Q6_K: [block_bytes - 2]}[qtype]
    for off in half_fields:
        raw[:, off:off + 2] = finite_half(rng, n_blocks).reshape(n_blocks, 2)
    return raw.reshape(ROWS, -1)


def main():
    rng = np.random.default_rng(20261125)
    OUT.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(OUT / "quants.gguf"), arch="llama")
    expected = {}
    f32 = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    writer.add_tensor("t.F32", f32)
    expected["t.F32"] = f32.ravel().tolist()
    f16 = rng.standard_normal((ROWS, COLS)).astype(np.float16)
    writer.add_tensor("t.F16", f16)
    expected["t.F16"] = f16.astype(np.float32).ravel().tolist()
    bf16 = quants.quantize(rng.standard_normal((ROWS, COLS)).astype(np.float32), T.BF16)
    writer.add_tensor("t.BF16", bf16, raw_shape=bf16.shape, raw_dtype=T.BF16)
    expected["t.BF16"] = quants.dequantize(bf16, T.BF16).astype(np.float32).ravel().tolist()
    for qtype in (T.Q8_0, T.Q4_0, T.Q4_1, T.Q4_K, T.Q6_K):
        raw = random_blocks(rng, qtype)
        name = "t." + qtype.name
        writer.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
        expected[name] = quants.dequantize(raw, qtype).astype(np.float32).ravel().tolist()
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    meta = {
        "generated_by": "python3 tools/make_quant_fixture.py",
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__, "gguf": "0.19.0"},
        "rows": ROWS, "cols": COLS, "expected": expected,
    }
    (OUT / "quants_expected.json").write_text(json.dumps(meta))


if __name__ == "__main__":
    main()
