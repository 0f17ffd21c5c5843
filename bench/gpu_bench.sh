#!/usr/bin/env bash
# Everything that needs the GPU, for a device machine (see docs/developing.md):
#   bash bench/gpu_bench.sh test     build with CUDA, run the CUDA tests (ops vs CPU, models vs HF)
#   bash bench/gpu_bench.sh prepare  + the card's ceilings, the RMSNorm kernel benchmark, a random
#                                    LLaMA-7B saved by transformers and built by lamina (plugin on/off)
#   bash bench/gpu_bench.sh bench    parity vs transformers, lamina benchmarks, HF baseline, summary
#                                    (after prepare, on the same machine: each step fits the 10-minute
#                                    limit of one device call)
#   bash bench/gpu_bench.sh profile  per-kernel time and DRAM GB/s of one prefill + decode (ncu), after prepare
#                                    (PROFILE_BATCH: the batch; PROFILE_TAG: a suffix for its files; PROFILE_METRICS:
#                                    more ncu metrics, a column each, e.g. lts__t_sector_hit_rate.pct; PROFILE_ENV:
#                                    switches for the profiled run, "ENV=1+ENV2=0")
#   bash bench/gpu_bench.sh tp       on a multi-GPU machine: CUDA tensor-parallel tests, NCCL all-reduce latency,
#                                    random LLaMA-7B at tp 1/2/4/8 (prefill, decode b1/b32, greedy vs tp 1)
#   bash bench/gpu_bench.sh ab       quick A/B: prefill 512 + decode at each variant's batch (AB_VARIANTS="label:ENV=1+ENV2=0:batch ...",
#                                    default b1, b8, b64 with no switch;
#                                    AB_TESTS=1 runs the decode tests first, and AB_TEST_ENV="ENV=1" runs them
#                                    again under that switch; with a carried .ab-base/ from
#                                    bench/ab_base.sh REV, each variant also runs on that revision's build;
#                                    AB_TRACE="label ..." also records those variants' kernel timeline of one
#                                    decode step in a -DLAMINA_KERNEL_TRACE=ON build, bench/trace_summary.py,
#                                    with every block of launches AB_TRACE_BLOCKS (default 8-15: the second
#                                    layer at 7B) in trace_<label>_blocks.csv.gz; variant values take no ':')
# Logs and JSON go to /tmp/lamina-run, packed into $OUT/results-<mode>.tgz at exit (the device tool
# returns at most 8 files); the summary table is printed last.
set -euo pipefail
mode="${1:-test}"
out=/tmp/lamina-run
ckpt=/tmp/llama7b
mkdir -p "$out"
tag="${PROFILE_TAG:-}"  # profile: a suffix for its files, so that several profiles of one machine are kept
trap '[ -n "${OUT:-}" ] && tar czf "$OUT/results-$mode$tag.tgz" -C /tmp lamina-run' EXIT
cd "$(dirname "$0")/.."
jobs=$(nproc)
if [ "$mode" = "ab" ]; then
    # Checked before anything is built: a value holding ':' would shift into the batch field.
    for v in ${AB_VARIANTS:-}; do
        IFS=: read -r label envs batch extra <<< "$v"
        [[ "$batch" =~ ^[0-9]+$ && -z "$extra" ]] || { echo "AB_VARIANTS: '$v' is not label:ENV=V+ENV2=V:batch (no ':' in values)"; exit 2; }
    done
    rm -f "$out"/ab_* "$out"/trace_* "$out"/tests*.log  # a warm machine keeps the last call's files
fi

# PCRE2 headers are not on the device image: unpack the carried Debian packages (see docs/developing.md).
if [ -d .deps ] && ! [ -f /usr/include/pcre2.h ]; then
    mkdir -p /tmp/deps && for d in .deps/*.deb; do dpkg -x "$d" /tmp/deps; done
    export CMAKE_PREFIX_PATH=/tmp/deps/usr
    export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
fi
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DLAMINA_CUDA=ON > "$out/cmake.log" 2>&1 || { tail -30 "$out/cmake.log"; exit 1; }
cmake --build build-gpu -j"$jobs" > "$out/build.log" 2>&1 || { grep -E "error" "$out/build.log" | head -30; exit 1; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee "$out/card.txt"

if [ "$mode" = "test" ] || [ "$mode" = "prepare" ] || { [ "$mode" = "ab" ] && [ -n "${AB_TESTS:-}" ]; }; then
[ "$mode" = "ab" ] && filter='*CudaDecode*:CudaModel*:*CudaOps*' || filter='*Cuda*:*TinyParity*:CpuMatmul*:CpuNorm*:*Sampl*'
./build-gpu/lamina_tests --gtest_filter="$filter" > "$out/tests.log" 2>&1 || true
grep -E "^\[ *(FAILED|PASSED) |greedy|identical" "$out/tests.log" | sort | uniq | tail -30 || true
if [ -n "${AB_TEST_ENV:-}" ]; then  # ab: the same tests again under a switch (AB_TEST_ENV="ENV=1+ENV2=0")
    echo "tests with $AB_TEST_ENV:"
    env ${AB_TEST_ENV//+/ } ./build-gpu/lamina_tests --gtest_filter="$filter" > "$out/tests_env.log" 2>&1 || true
    grep -E "^\[ *(FAILED|PASSED) |greedy|identical" "$out/tests_env.log" | sort | uniq | tail -30 || true
fi
fi
[ "$mode" = "test" ] && exit 0

if [ "$mode" = "profile" ]; then  # per-kernel time and DRAM bytes of prefill + decode steps (ncu), after prepare
    penv="${PROFILE_ENV:-}"
    env ${penv//+/ } ncu --clock-control none --cache-control none --log-file "$out/ncu$tag.csv" --csv \
        --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__registers_per_thread${PROFILE_METRICS:+,$PROFILE_METRICS} \
        ./build-gpu/lamina bench --device cuda --engine_dir /tmp/llama7b-fp16-on --batch_size ${PROFILE_BATCH:-1} \
        --input_len 512 --output_len 3 --repeats 1 > "$out/ncu_bench$tag.md" 2>&1 || tail -5 "$out/ncu_bench$tag.md"
    python3 bench/ncu_summary.py "$out/ncu$tag.csv" > "$out/ncu_summary$tag.md"
    head -${PROFILE_LINES:-30} "$out/ncu_summary$tag.md"
    exit 0
fi

if [ "$mode" = "tp" ]; then  # tensor parallelism over this machine's GPUs (NCCL): tests, all-reduce, tp 1/2/4/8
    export NCCL_NVLS_ENABLE=0  # NVLink multicast off (lamina sets it too; the tests' own NCCL calls see it here)
    n=$(nvidia-smi -L | wc -l)
    ./build-gpu/lamina_tests --gtest_filter='*CudaTp*:*TpMatchesOneRank*:*TpCli*' > "$out/tp_tests.log" 2>&1 || true
    grep -E "^\[ *(FAILED|PASSED|SKIPPED) " "$out/tp_tests.log" | sort | uniq | tail -12 || true
    [ "$n" -ge 2 ] && { ./build-gpu/lamina_bench_allreduce "$n" 4096 32 | tee "$out/allreduce.md" || true; }
    [ -f "$ckpt/config.json" ] || python3 tools/make_random_llama.py --out "$ckpt" > "$out/make_ckpt.log"
    python3 -c "import random; random.seed(7); print(' '.join(str(random.randrange(3, 32000)) for _ in range(512)))" > /tmp/prompt_ids.txt
    tp_runs() {  # ENGINE LABEL: decode at batch 1 and 32, greedy tokens; files tp<LABEL>_*
        for b in 1 32; do  # a failing size is reported and the others still run
            ./build-gpu/lamina bench --device cuda --engine_dir "$1" --batch_size $b --input_len 512 \
                --output_len 128 --repeats 3 --json "$out/tp$2_b$b.json" > "$out/tp$2_b$b.md" 2>&1 ||
                { echo "tp $2 batch $b failed:"; tail -3 "$out/tp$2_b$b.md"; }
        done
        ./build-gpu/lamina logits --engine_dir "$1" --input_ids /tmp/prompt_ids.txt --greedy 128 \
            --output "$out/tp$2_logits.json" > "$out/tp$2_logits.log" 2>&1 || tail -3 "$out/tp$2_logits.log"
    }
    for tp in 1 2 4 8; do
        [ "$tp" -le "$n" ] || continue
        eng=/tmp/llama7b-fp16-tp$tp
        [ -f "$eng/config.json" ] || ./build-gpu/lamina build --model_dir "$ckpt" --output_dir "$eng" --dtype float16 \
            --max_batch_size 32 --max_input_len 512 --max_output_len 128 --tp_size $tp \
            --tokenizer tests/data/tokenizer/ggml-vocab-llama-spm.gguf >> "$out/build_engine.log" 2>&1 || { tail -3 "$out/build_engine.log"; continue; }
        tp_runs "$eng" "$tp"
    done
    python3 bench/summarize_tp.py "$out" | tee "$out/tp_summary.md" || true
    exit 0
fi

if [ "$mode" = "prepare" ]; then
python3 tools/gpu_ceilings.py --json /tmp/ceilings.json > /dev/null
cp /tmp/ceilings.json "$out/"
copy=$(python3 -c "import json;print(round(json.load(open('/tmp/ceilings.json'))['copy_GBps']))")
./build-gpu/lamina_bench_rmsnorm "$copy" | tee "$out/rmsnorm.md"

[ -f "$ckpt/config.json" ] || python3 tools/make_random_llama.py --out "$ckpt" | tee "$out/make_ckpt.log"
for plugin in on off; do
    eng=/tmp/llama7b-fp16-$plugin
    [ -f "$eng/config.json" ] || ./build-gpu/lamina build --model_dir "$ckpt" --output_dir "$eng" --dtype float16 \
        --max_batch_size 64 --max_input_len 512 --max_output_len 128 --rmsnorm_plugin $plugin \
        --tokenizer tests/data/tokenizer/ggml-vocab-llama-spm.gguf | tee -a "$out/build_engine.log"
done
exit 0
fi

if [ "$mode" = "ab" ]; then  # quick A/B of the decode and prefill switches on one engine (development)
    [ -f "$ckpt/config.json" ] || python3 tools/make_random_llama.py --out "$ckpt" > "$out/make_ckpt.log"
    eng=/tmp/llama7b-fp16-on
    [ -f "$eng/config.json" ] || ./build-gpu/lamina build --model_dir "$ckpt" --output_dir "$eng" --dtype float16 \
        --max_batch_size 64 --max_input_len 512 --max_output_len 128 \
        --tokenizer tests/data/tokenizer/ggml-vocab-llama-spm.gguf > "$out/build_engine.log"
    base=""  # the base revision's binary, when there is one and it builds
    if [ -f .ab-base/CMakeLists.txt ]; then  # the revision bench/ab_base.sh put there, built beside this tree
        cmake -S .ab-base -B build-base -DCMAKE_BUILD_TYPE=Release -DLAMINA_CUDA=ON > "$out/cmake_base.log" 2>&1 &&
            cmake --build build-base -j"$jobs" --target lamina > "$out/build_base.log" 2>&1 &&
            base=./build-base/lamina || echo "the base revision did not build (build_base.log); A/B of this tree only"
        echo "base: $(cat .ab-base/REVISION)"
    fi
    ab() {  # label, env, batch, binary; a failed run is a row that says so
        env ${2//+/ } "$4" bench --device cuda --engine_dir "$eng" --batch_size $3 --input_len 512 \
            --output_len 128 --repeats 3 --json "$out/ab_$1.json" > "$out/ab_$1.md" 2>&1 ||
            { echo "| $1 | b$3 | failed: $(tail -1 "$out/ab_$1.md" | cut -c1-80) | |"; return 0; }
        python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(f'| $1 | b$3 | {max(j[\"prefill_tokens_per_s\"]):,.0f} | {max(j[\"decode_tokens_per_s\"]):.1f} |')" "$out/ab_$1.json"
    }
    variants="${AB_VARIANTS:-b1::1 b8::8 b64::64}"
    echo "| variant | batch | prefill tok/s | decode tok/s |"
    for v in $variants; do
        IFS=: read -r label envs batch <<< "$v"
        ab "$label" "$envs" "$batch" ./build-gpu/lamina
        if [ -n "$base" ]; then ab "$label@base" "$envs" "$batch" "$base"; fi
    done
    if [ -n "${AB_TRACE:-}" ]; then  # in-pipeline kernel timelines of the variants named (kernel_trace.cuh)
        cmake -S . -B build-trace -DCMAKE_BUILD_TYPE=Release -DLAMINA_CUDA=ON -DLAMINA_KERNEL_TRACE=ON \
            -DLAMINA_TESTS=OFF > "$out/cmake_trace.log" 2>&1 &&
            cmake --build build-trace -j"$jobs" --target lamina > "$out/build_trace.log" 2>&1 ||
            { echo "the trace build failed (build_trace.log)"; exit 1; }
        for v in $variants; do
            IFS=: read -r label envs batch <<< "$v"
            case " $AB_TRACE " in *" $label "*) ;; *) continue ;; esac
            env ${envs//+/ } LAMINA_KERNEL_TRACE="$out/trace_$label.csv" ./build-trace/lamina bench --device cuda \
                --engine_dir "$eng" --batch_size "$batch" --input_len 512 --output_len 128 --repeats 1 \
                > "$out/trace_$label.log" 2>&1 || { echo "trace $label failed: $(tail -1 "$out/trace_$label.log")"; continue; }
            python3 bench/trace_summary.py "$out/trace_$label.csv" --launches "$out/trace_${label}_launches.csv" \
                --blocks "${AB_TRACE_BLOCKS:-8-15}" "$out/trace_${label}_blocks.csv" > "$out/trace_$label.md" 2>&1 &&
                gzip -f "$out/trace_${label}_blocks.csv" && cat "$out/trace_$label.md"
            rm -f "$out/trace_$label.csv"  # per block, tens of MB; the launches file keeps the timeline
        done
    fi
    exit 0
fi

python3 -c "import random; random.seed(7); print(' '.join(str(random.randrange(3, 32000)) for _ in range(512)))" > /tmp/prompt_ids.txt
./build-gpu/lamina logits --engine_dir /tmp/llama7b-fp16-on --input_ids /tmp/prompt_ids.txt --greedy 128 --output "$out/lamina_logits.json"
for b in 1 8 32 64; do
    ./build-gpu/lamina bench --device cuda --engine_dir /tmp/llama7b-fp16-on --batch_size $b --input_len 512 \
        --output_len 128 --repeats 3 --json "$out/bench_b$b.json" > "$out/bench_b$b.md"
done
./build-gpu/lamina bench --device cuda --engine_dir /tmp/llama7b-fp16-off --batch_size 1 --input_len 512 \
    --output_len 128 --repeats 3 --json "$out/bench_b1_plugin_off.json" > "$out/bench_b1_plugin_off.md"
# Where a prefill step's time goes (op groups synchronized one by one: the plain, unfused ops, no graphs).
./build-gpu/lamina bench --device cuda --engine_dir /tmp/llama7b-fp16-on --batch_size 1 --input_len 512 \
    --output_len 16 --repeats 1 --profile > "$out/profile_b1.md"
python3 tools/hf_baseline_7b.py --model "$ckpt" --prompt_ids /tmp/prompt_ids.txt --lamina "$out/lamina_logits.json" \
    --json "$out/hf.json" > "$out/hf.log" 2>&1 || tail -5 "$out/hf.log"
grep -A14 "^profile" "$out/profile_b1.md" | grep -v "^| blk" | head -20 || true
python3 bench/summarize_gpu.py "$out" | tee "$out/summary.md"
