#!/usr/bin/env bash
# `lamina summarize --device cuda` on SmolLM2-135M (the CNN/DailyMail task of issue 4) on a device
# machine, side by side with the committed Hugging Face reference (tests/data/summarize/hf_greedy_20.json).
#   bash bench/gpu_summarize.sh MODEL.gguf     after `bash bench/gpu_bench.sh test` built build-gpu
# The GGUF (98 MB) is larger than what one device call carries: send it in two halves (see docs/developing.md).
set -euo pipefail
model="$1"
out=/tmp/lamina-run
mkdir -p "$out"
trap '[ -n "${OUT:-}" ] && tar czf "$OUT/results-summarize.tgz" -C /tmp lamina-run' EXIT
cd "$(dirname "$0")/.."
sha256sum "$model" | tee "$out/model.sha256"
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$out/card.txt"
for dtype in float32 float16; do
    eng=/tmp/smollm2-$dtype
    [ -f "$eng/config.json" ] || ./build-gpu/lamina build --model_dir "$model" --output_dir "$eng" --dtype $dtype \
        --max_batch_size 1 --max_input_len 923 --max_output_len 100 > "$out/build_$dtype.log"
    ./build-gpu/lamina summarize --device cuda --engine_dir "$eng" --max_ite 20 \
        --reference_json tests/data/summarize/hf_greedy_20.json --output_json "$out/summarize_cuda_$dtype.json" \
        > "$out/summarize_cuda_$dtype.md" 2>&1
    echo "== $dtype"; tail -20 "$out/summarize_cuda_$dtype.md"
done
