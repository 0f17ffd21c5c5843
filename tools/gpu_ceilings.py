#!/usr/bin/env python3
"""Measures the card's ceilings in the same run as the benchmarks: device-to-device copy bandwidth
(bytes read + written per second, 4 GiB buffers) and the bf16 / fp16 GEMM rate (8192^3, cuBLAS via
torch), plus PyTorch's own RMSNorm at the benchmark shapes (HF LlamaRMSNorm composition and
torch.nn.functional.rms_norm), in GB/s. Prints JSON.

    python3 tools/gpu_ceilings.py --json out.json
"""
import argparse
import json

import torch


def timed(fn, reps=20):
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return times[len(times) // 2]


def hf_rmsnorm(x, w, eps=1e-5):
    h = x.to(torch.float32)
    var = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(var + eps)
    return w * h.to(x.dtype)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    out = {"card": torch.cuda.get_device_name(), "torch": torch.__version__}
    n = 1 << 31  # 4 GiB of bf16... as bytes: 2^31 elements * 2 bytes
    a = torch.empty(n, dtype=torch.bfloat16, device="cuda").uniform_()
    b = torch.empty_like(a)
    s = timed(lambda: b.copy_(a))
    out["copy_GBps"] = 2 * a.numel() * 2 / s / 1e9
    del a, b
    for dt in (torch.bfloat16, torch.float16):
        m = torch.randn(8192, 8192, dtype=dt, device="cuda")
        s = timed(lambda: m @ m)
        out[f"gemm_{str(dt).split('.')[-1]}_TFLOPs"] = 2 * 8192 ** 3 / s / 1e12
    rms = {}
    for tokens in (1, 16, 512, 4096):
        x = torch.randn(tokens, 4096, dtype=torch.float16, device="cuda")
        w = torch.ones(4096, dtype=torch.float16, device="cuda")
        bytes_moved = 2 * x.numel() * 2
        r = {"hf_composition_GBps": bytes_moved / timed(lambda: hf_rmsnorm(x, w), 50) / 1e9}
        if hasattr(torch.nn.functional, "rms_norm"):
            r["F.rms_norm_GBps"] = bytes_moved / timed(lambda: torch.nn.functional.rms_norm(x, (4096,), w, 1e-5), 50) / 1e9
        rms[str(tokens)] = r
    out["torch_rmsnorm"] = rms
    json.dump(out, open(args.json, "w"), indent=1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
