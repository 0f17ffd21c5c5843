#!/usr/bin/env bash
# Puts the source of a git revision in .ab-base/ (ignored by git), so that `bash bench/gpu_bench.sh ab` on a
# device machine builds it too and runs every A/B variant with both binaries, in one call on one card:
#   bash bench/ab_base.sh c0857eb      # here, then carry ".ab-base" (and ".deps") with the device call
#   bash bench/ab_base.sh --clear      # back to A/B of the working tree alone
set -euo pipefail
cd "$(dirname "$0")/.."
rev="${1:?usage: bench/ab_base.sh REVISION | --clear}"
rm -rf .ab-base
[ "$rev" = "--clear" ] && exit 0
commit=$(git rev-parse --verify --quiet "$rev^{commit}") || { echo "ab_base: no such revision: $rev" >&2; exit 1; }
mkdir .ab-base
git archive "$commit" | tar -x -C .ab-base
echo "$commit" > .ab-base/REVISION
echo "ab_base: $(git log -1 --format='%h %s' "$commit" | cut -c1-100) in .ab-base ($(du -sh .ab-base | cut -f1))"
