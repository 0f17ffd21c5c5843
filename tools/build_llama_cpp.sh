#!/usr/bin/env bash
# Builds llama.cpp (CPU only) as the reference for lamina's GGML block formats and CPU speed:
#   .cache/llama.cpp/build/bin/libggml-base.so   ggml's reference quantizers and dequantizers (ctypes:
#                                                quantize_row_q4_K_ref, dequantize_row_q4_K, …), used by
#                                                tools/make_quant_vectors.py
#   .cache/llama.cpp/build/bin/llama-bench       the same-run speed baseline on a GGUF file
#
# The source is the llama.cpp that the PyPI sdist of llama-cpp-python vendors (vendor/llama.cpp), fetched
# with pip, so the exact version is pinned here and needs no git access. Idempotent: an existing sdist,
# source tree or build is reused; rerunning only rebuilds what changed.
#
#   tools/build_llama_cpp.sh            # JOBS=2 by default; PYTHON picks the pip (default python3)
set -euo pipefail

VERSION=0.3.36  # llama-cpp-python; its vendor/llama.cpp is the reference
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="$ROOT/.cache/llama.cpp"
SRC="$CACHE/llama_cpp_python-$VERSION/vendor/llama.cpp"
BUILD="$CACHE/build"
JOBS="${JOBS:-2}"
PYTHON="${PYTHON:-python3}"

mkdir -p "$CACHE"
SDIST="$CACHE/llama_cpp_python-$VERSION.tar.gz"
if [[ ! -f "$SDIST" ]]; then
    "$PYTHON" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$CACHE"
fi
if [[ ! -f "$SRC/ggml/src/ggml-quants.c" ]]; then
    tar -xzf "$SDIST" -C "$CACHE"
fi

if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
    cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_OPENMP=ON \
        -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
        -DLLAMA_BUILD_TOOLS=ON
fi
cmake --build "$BUILD" -j "$JOBS" --target ggml llama-bench

echo "llama.cpp $VERSION (vendored by llama-cpp-python) built in $BUILD"
ls -l "$BUILD"/bin/libggml-base.so "$BUILD"/bin/llama-bench
