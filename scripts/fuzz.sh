#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/, clang + ASan + UBSan) and runs each for SECONDS, FUZZ_JOBS at a
# time, under libFuzzer's 2 GB memory limit and a 20 s per-input timeout. The corpus grows in
# $FUZZ_OUT/<harness>/corpus (kept between runs; it starts from the checked-in seeds in fuzz/corpus/);
# a crash, leak, sanitizer report, timeout or out-of-memory leaves its input in $FUZZ_OUT/<harness>/ and
# fails the run. Prints one line per harness: executions, coverage (edges, features), corpus size.
#
#   bash scripts/fuzz.sh 600          # make fuzz: 10 minutes each, 1 hour in all
#   bash scripts/fuzz.sh 30           # make fuzz-smoke (in make test): 30 s each
#   bash scripts/fuzz.sh 60 fuzz_gguf # one harness
# Reproduce a finding (with full allocation stacks): build-fuzz/fuzz_gguf fuzz-out/fuzz_gguf/crash-<sha1>
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
shift || true
build=${FUZZ_BUILD:-build-fuzz}
out=${FUZZ_OUT:-fuzz-out}
jobs=${FUZZ_JOBS:-$(nproc)}

if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
        -DLAMINA_FUZZ=ON -DLAMINA_CUDA=OFF -DLAMINA_TESTS=OFF >/dev/null
fi
cmake --build "$build" -j"$(nproc)" 2>&1 | grep -E "error|warning: unused" || true
harnesses=("$@")
if ((${#harnesses[@]} == 0)); then
    for src in fuzz/fuzz_*.cpp; do harnesses+=("$(basename "$src" .cpp)"); done
fi
for h in "${harnesses[@]}"; do
    [ -x "$build/$h" ] || { echo "fuzz: $build/$h was not built" >&2; exit 1; }
done

# The harnesses' scratch files go to a private mkdtemp directory (fuzz/fuzz_util.h) in memory when /dev/shm
# is there, else inside $out.
scratch="$out/tmp"
[ -d /dev/shm ] && [ -w /dev/shm ] && scratch=/dev/shm
mkdir -p "$scratch"
run_one() {
    local h=$1 dir="$out/$1"
    mkdir -p "$dir/corpus"
    # Text inputs stay small (a long ROUGE line or template costs quadratic time, not coverage); model files
    # need room for a micro model's tensors.
    local max_len=65536
    case $h in fuzz_eval_readers | fuzz_chat_template | fuzz_tokenizer) max_len=16384 ;; esac
    local dict=()
    [ -f "fuzz/dicts/$h.dict" ] && dict=(-dict="fuzz/dicts/$h.dict")
    # Allocation and free stacks of 5 frames, not 30: unwinding at every malloc cost 6-10% of each input's time.
    # A finding replayed (the harness run on its file, default options) prints the full stacks.
    TMPDIR="$scratch" ASAN_OPTIONS=detect_leaks=1:malloc_context_size=5 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$build/$h" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=20 \
        -max_len="$max_len" -print_final_stats=1 -artifact_prefix="$dir/" "${dict[@]}" \
        "$dir/corpus" "fuzz/corpus/$h" >"$dir/log.txt" 2>&1
    echo $? >"$dir/rc"
}
export -f run_one
export out build seconds scratch
rm -f "$out"/*/rc
printf '%s\n' "${harnesses[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'

status=0
printf '%-20s %12s %10s %8s %8s %8s  %s\n' harness executions exec/s edges features corpus result
for h in "${harnesses[@]}"; do
    dir="$out/$h" log="$out/$h/log.txt"
    execs=$(grep -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$log" | tail -1 || true)
    rate=$(grep -oP 'stat::average_exec_per_sec:\s*\K[0-9]+' "$log" | tail -1 || true)
    cov=$(grep -oP '^#[0-9]+.*\bcov: \K[0-9]+' "$log" | tail -1 || true)
    ft=$(grep -oP '^#[0-9]+.*\bft: \K[0-9]+' "$log" | tail -1 || true)
    files=$(find "$dir/corpus" -type f | wc -l)
    findings=$(find "$dir" -maxdepth 1 -name 'crash-*' -o -maxdepth 1 -name 'leak-*' -o -maxdepth 1 -name 'timeout-*' \
        -o -maxdepth 1 -name 'oom-*' | wc -l)
    result=ok
    if [ "$(cat "$dir/rc")" != 0 ] || [ "$findings" != 0 ]; then
        result="FAILED (rc $(cat "$dir/rc"), $findings findings: see $log)"
        status=1
    fi
    printf '%-20s %12s %10s %8s %8s %8s  %s\n' "$h" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$files" "$result"
done
exit $status
