#!/usr/bin/env bash
# CPU benchmark of the default model (SmolLM2-135M), prefill of 512 tokens and batch-1 decode of 128
# tokens, 3 repeats each, writing JSON next to the printed tables:
#   1. engines of each weight format at default settings: the GGUF's Q4_1 blocks kept, dequantized to float32,
#      bfloat16 and float16, and quantized at build to q8_0, q4_0 and q4_k; each with its weight bytes, and
#      (PPL_SAMPLES, default 100; 0 skips it) its perplexity on the first CNN/DailyMail articles at ctx 512;
#      and llama.cpp's llama-bench on the same file in the same run when tools/build_llama_cpp.sh has built it;
#   2. CPU threads: the float32 engine idle and then beside one busy process (`yes > /dev/null`, one core's
#      worth of other work), at default settings (one thread per physical core), with busy/idle ratios of
#      the median tokens/s. A shared machine should cost the cores it lost, not collapse.
#   bash bench/cpu_bench.sh [out_dir]        LAMINA=path/to/lamina bench another build
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
lamina="${LAMINA:-$here/build/lamina}"
model="$here/models/SmolLM2-135M-Instruct.Q4_1.gguf"
out="${1:-$here/bench/out}"
mkdir -p "$out"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
engine_for() {  # engine_for <format>: keep, float32, bfloat16, float16 or a block type to quantize to
    local engine="$here/engines/smollm2-$1-bench" how=(--weights "$1")
    case $1 in float32 | bfloat16 | float16) how=(--weights float --dtype "$1") ;; esac
    [ -f "$engine/config.json" ] || "$lamina" build --model_dir "$model" --output_dir "$engine" "${how[@]}" \
        --max_batch_size 1 --max_input_len 512 --max_output_len 128 >/dev/null
    echo "$engine"
}
bench() {  # bench <engine> <json> : lamina bench at default settings
    "$lamina" bench --device cpu --engine_dir "$1" --input_len 512 --output_len 128 --repeats 3 --json "$2"
}
median_of() {  # median_of <json> <key>
    python3 -c 'import json,statistics,sys; print("%.1f" % statistics.median(json.load(open(sys.argv[1]))[sys.argv[2]]))' "$1" "$2"
}

ppl_samples="${PPL_SAMPLES:-100}"
formats=(keep float32 bfloat16 float16 q8_0 q4_0 q4_k)
for f in "${formats[@]}"; do
    bench "$(engine_for "$f")" "$out/smollm2-$f.json"
    if [ "$ppl_samples" != 0 ]; then
        "$lamina" perplexity --device cpu --engine_dir "$(engine_for "$f")" --dataset cnn_dailymail \
            --max_samples "$ppl_samples" --ctx 512 --output_json "$out/ppl-$f.json" 2>/dev/null | tail -1
    fi
done
echo
echo "| weights | engine MB | prefill 512 tokens/s | decode 128 after 512, tokens/s | perplexity ($ppl_samples articles, ctx 512) |"
echo "|---|---|---|---|---|"
for f in "${formats[@]}"; do
    mb=$(python3 -c 'import os,sys; print("%.1f" % (os.path.getsize(sys.argv[1]) / 1e6))' "$(engine_for "$f")/weights.bin")
    ppl=$( [ -f "$out/ppl-$f.json" ] && python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("%.4f ± %.4f" % (j["perplexity"], j["perplexity_stderr"] or 0))' "$out/ppl-$f.json" || echo -)
    echo "| $f | $mb | $(median_of "$out/smollm2-$f.json" prefill_tokens_per_s) | $(median_of "$out/smollm2-$f.json" decode_tokens_per_s) | $ppl |"
done
llama_bench="$here/.cache/llama.cpp/build/bin/llama-bench"
if [ -x "$llama_bench" ]; then
    echo
    echo "llama.cpp on the same file, 2 threads (prefill 512; decode 128 after 512):"
    "$llama_bench" -m "$model" -t "$(nproc)" -p 512 -n 0 -r 3 -o md | grep -E "pp512" || true
    "$llama_bench" -m "$model" -t "$(nproc)" -p 0 -n 128 -d 512 -r 3 -o md | grep -E "tg128" || true
fi

echo
echo "CPU threads: float32 engine, default settings, idle and beside one busy process (yes > /dev/null)"
engine="$(engine_for float32)"
bench "$engine" "$out/threads-idle.json" >/dev/null
yes >/dev/null &
busy=$!
trap 'kill $busy 2>/dev/null || true' EXIT
bench "$engine" "$out/threads-busy.json" >/dev/null
kill $busy
trap - EXIT
echo "| tokens/s (median of 3) | idle | busy | busy / idle |"
echo "|---|---|---|---|"
for metric in decode prefill; do
    idle=$(median_of "$out/threads-idle.json" "${metric}_tokens_per_s")
    busy=$(median_of "$out/threads-busy.json" "${metric}_tokens_per_s")
    echo "| $metric | $idle | $busy | $(python3 -c "print('%.0f%%' % (100 * $busy / $idle))") |"
done
