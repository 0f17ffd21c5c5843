# Lamina's front door. `make demo` and `make test` work on a fresh Debian machine as root: they install
# what is missing (scripts/setup.sh), fetch the default model (scripts/fetch_model.sh), build and run.
BUILD       ?= build
ASAN_BUILD  ?= build-asan
JOBS        ?= $(shell nproc)
MODEL       := models/SmolLM2-135M-Instruct.Q4_1.gguf
DEMO_ENGINE := engines/smollm2-q4_1
PROMPT      ?= Born in north-east France, Soyer trained as a
CMAKE_FLAGS ?=

.PHONY: all setup model build demo test test-release test-asan fuzz fuzz-smoke gpu-test gpu-bench gpu-tp bench clean format

all: build

setup:
	@bash scripts/setup.sh

model: setup
	@bash scripts/fetch_model.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: setup $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

demo: model build
	@if [ ! -f $(DEMO_ENGINE)/config.json ]; then \
	  $(BUILD)/lamina build --model_dir $(MODEL) --output_dir $(DEMO_ENGINE) \
	    --max_batch_size 1 --max_input_len 1024 --max_output_len 256; fi
	$(BUILD)/lamina run --engine_dir $(DEMO_ENGINE) --input_text "$(PROMPT)" --max_output_len 48 --temperature 0

# Every test, in the release build and again under AddressSanitizer + UBSan, then each fuzzer briefly.
test: model build test-release test-asan fuzz-smoke

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

test-asan: setup
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLAMINA_SANITIZE=ON -DLAMINA_CUDA=OFF $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j$(JOBS)

# libFuzzer harnesses (fuzz/, clang + ASan + UBSan, 2 GB memory limit): FUZZ_SECONDS each, FUZZ_JOBS at
# a time; findings fail the run and stay in fuzz-out/<harness>/ (docs/fuzzing.md).
FUZZ_SECONDS ?= 600
fuzz: setup
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

fuzz-smoke: setup
	bash scripts/fuzz.sh 30

bench: build model
	bash bench/cpu_bench.sh

# On a GPU machine (the device tool: see docs/developing.md): build with CUDA and run the
# CUDA tests; the full benchmark (ceilings, random LLaMA-7B, HF baseline) in two steps of < 10 minutes.
gpu-test:
	bash bench/gpu_bench.sh test

gpu-bench:
	bash bench/gpu_bench.sh prepare
	bash bench/gpu_bench.sh bench

# On a machine with several GPUs: tensor parallelism through NCCL (tests, all-reduce latency, tp 1/2/4/8).
gpu-tp:
	bash bench/gpu_bench.sh tp

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz fuzz-out

format:
	clang-format -i $$(git ls-files 'src/*.cpp' 'src/*.h' 'src/*.cu' 'src/*.cuh' 'tests/*.cpp' 'tests/*.h')
