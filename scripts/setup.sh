#!/usr/bin/env bash
# Installs what Lamina's build and tests need, idempotently: Debian packages (only those missing) and
# the Python packages the tests' helper scripts use. Safe to run many times; needs no network once done.
set -euo pipefail

debs=(build-essential cmake pkg-config git python3 python3-pip unzip
      libpcre2-dev nlohmann-json3-dev libcli11-dev libopenblas-openmp-dev libgtest-dev libgmock-dev libbenchmark-dev
      clang libclang-rt-dev libomp-dev)
missing=()
for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi
