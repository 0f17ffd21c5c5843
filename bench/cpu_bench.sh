#!/usr/bin/env bash
# CPU benchmark of the default model (SmolLM2-135M), prefill of 512 tokens and batch-1 decode of 128
# tokens, 3 repeats each, writing JSON next to the printed tables:
#   1. engines in float32, bfloat16 and float16 at default settings;
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
engine_for() {
    local engine="$here/engines/smollm2-$1-bench"
    [ -f "$engine/config.json" ] || "$lamina" build --model_dir "$model" --output_dir "$engine" --dtype "$1" \
        --max_batch_size 1 --max_input_len 512 --max_output_len 128 >/dev/null
    echo "$engine"
}
bench() {  # bench <engine> <json> : lamina bench at default settings
    "$lamina" bench --device cpu --engine_dir "$1" --input_len 512 --output_len 128 --repeats 3 --json "$2"
}
median_of() {  # median_of <json> <key>
    python3 -c 'import json,statistics,sys; print("%.1f" % statistics.median(json.load(open(sys.argv[1]))[sys.argv[2]]))' "$1" "$2"
}

for dtype in float32 bfloat16 float16; do
    bench "$(engine_for $dtype)" "$out/smollm2-$dtype.json"
done

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
