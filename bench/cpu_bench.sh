#!/usr/bin/env bash
# CPU benchmark of the default model: SmolLM2-135M engines in float32, bfloat16 and float16, prefill of
# 512 tokens and batch-1 decode of 128 tokens, 3 repeats each. Writes JSON next to the printed tables.
#   bash bench/cpu_bench.sh [out_dir]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
lamina="$here/build/lamina"
model="$here/models/SmolLM2-135M-Instruct.Q4_1.gguf"
out="${1:-$here/bench/out}"
mkdir -p "$out"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, OMP_NUM_THREADS=${OMP_NUM_THREADS:-all}"
for dtype in float32 bfloat16 float16; do
    engine="$here/engines/smollm2-$dtype-bench"
    [ -f "$engine/config.json" ] || "$lamina" build --model_dir "$model" --output_dir "$engine" --dtype "$dtype" \
        --max_batch_size 1 --max_input_len 512 --max_output_len 128 >/dev/null
    "$lamina" bench --device cpu --engine_dir "$engine" --input_len 512 --output_len 128 --repeats 3 \
        --json "$out/smollm2-$dtype.json"
done
