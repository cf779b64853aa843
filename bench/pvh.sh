#!/usr/bin/env bash
# What starting a kernel at its PVH entry saves, for any kernel mkt boots:
# `mkt run --exec true` and the same with --no-pvh (the bzImage and its
# decompressor), interleaved over N rounds after a warm-up (which also
# fills the cache of uncompressed kernels). Prints medians and the ratio.
#
# usage: bench/pvh.sh [--runs N] KERNEL     (a tree, a bzImage or an installed release)
# env: MKT_ACCEL (default tcg), MEM (1G), CPUS (2)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
runs=7
if [[ ${1:-} == --runs ]]; then runs=$2; shift 2; fi
kernel=${1:?usage: bench/pvh.sh [--runs N] KERNEL}
args=(run --kernel "$kernel" --accel "${MKT_ACCEL:-tcg}" --memory "${MEM:-1G}" --cpus "${CPUS:-2}" --exec true)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ms() { local t0 t1; t0=$(date +%s%N); "$here/bin/mkt" "$@" >/dev/null 2>"$work/err" </dev/null || { echo "bench: failed: mkt $*" >&2; cat "$work/err" >&2; exit 1; }; t1=$(date +%s%N); echo $(((t1 - t0) / 1000000)); }
median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2] + a[NR/2+1]) / 2)}'; }
ms "${args[@]}" >/dev/null
ms "${args[@]}" --no-pvh >/dev/null
for _ in $(seq 1 "$runs"); do
  ms "${args[@]}" >>"$work/pvh.t"
  ms "${args[@]}" --no-pvh >>"$work/bz.t"
done
"$here/bin/mkt" "${args[@]}" --dry-run --verbose 2>&1 >/dev/null | grep '^mkt: kernel:' || true
for c in pvh bz; do printf '%-4s median %6s ms   [%s]\n' "$c" "$(median "$work/$c.t")" "$(tr '\n' ' ' <"$work/$c.t")"; done
awk -v p="$(median "$work/pvh.t")" -v b="$(median "$work/bz.t")" 'BEGIN { printf "pvh/bzImage: %.3f (%d ms sooner)\n", p / b, b - p }'
