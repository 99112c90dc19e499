#!/usr/bin/env bash
# `scripts/gpu-check OUT_DIR` on a GPU host (and, with --dry-run, its CPU half): checks the tools,
# builds the LibTorch parts against this host's torch and the prepared prefix (.gpu-deps/root),
# runs the `gpu` tests, the GPU logits parity (when the parity script is there) and the
# benchmarks, and writes OUT_DIR/gpu-check.{md,json} (report.py). Each step has a time budget
# (the whole run is meant to fit 8 minutes on an H100 host with 16 cores) and a log in
# OUT_DIR/logs/. Exit 0 when everything passed, 1 when a step or test failed, 2 when the host
# lacks something (named on stderr).
#   scripts/gpu_check/run.sh [--dry-run] OUT_DIR
# Environment: PYTHON (python3: the one with torch), SPAR_GPU_DEPS (.gpu-deps/root),
# SPAR_GPU_BUILD (build-gpucheck), SPAR_JOBS (all cores), SPAR_BUILD_BUDGET (seconds).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
[ $# -eq 1 ] || { echo "usage: scripts/gpu-check [--dry-run] OUT_DIR" >&2; exit 2; }
mkdir -p "$1/logs" && out="$(cd "$1" && pwd)"
py="${PYTHON:-python3}"
deps="${SPAR_GPU_DEPS:-$repo/.gpu-deps/root}"
build="${SPAR_GPU_BUILD:-$repo/build-gpucheck}"
jobs="${SPAR_JOBS:-$(nproc)}"
: >"$out/steps.jsonl"
rm -f "$out/bench.jsonl" "$out/ctest-junit.xml"
t_start=$(date +%s)

# step NAME BUDGET_S NOTE CMD...: runs CMD under `timeout`, output in logs/NAME.log, one line in
# steps.jsonl. Returns CMD's status.
step() {
  local name="$1" budget="$2" note="$3" t0 rc status
  shift 3
  t0=$(date +%s.%N)
  timeout "$budget" "$@" >"$out/logs/$name.log" 2>&1
  rc=$?
  local secs
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  case $rc in
    0) status=pass ;;
    124) status=timeout; note="over its ${budget} s budget" ;;
    *) status=fail; note="exit $rc, see logs/$name.log" ;;
  esac
  printf '{"name":"%s","status":"%s","seconds":%.1f,"budget":%d,"note":"%s"}\n' \
    "$name" "$status" "$secs" "$budget" "$note" >>"$out/steps.jsonl"
  printf '[gpu-check] %-10s %-8s %6.1f s (budget %d s)\n' "$name" "$status" "$secs" "$budget"
  [ $rc -ne 0 ] && tail -5 "$out/logs/$name.log" | sed 's/^/    /'
  return $rc
}

skip_step() {  # NAME STATUS NOTE: a step that did not run
  printf '{"name":"%s","status":"%s","seconds":0,"budget":0,"note":"%s"}\n' "$1" "$2" "$3" \
    >>"$out/steps.jsonl"
  echo "[gpu-check] $1: $2 ($3)"
}

source "$here/run_steps.sh"

check_host || exit 2
# The prefix's libraries pull in others of the prefix (libicuuc -> libicudata, absl's among
# themselves); a binary's RUNPATH does not reach those, so the loader gets the folder here (for
# gtest discovery during the build, the tests and the benchmark).
export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
configure && build_parts && {
  gpu_tests
  logits_parity
  benchmarks
}
# The step budgets are caps (their sum is above 8 minutes); the total is what counts.
total=$(( $(date +%s) - t_start ))
note=""
[ $dry -eq 0 ] && [ $total -gt 480 ] && note=" - over the 8-minute target"
echo "[gpu-check] total ${total} s (target 480 s on an H100 host)$note"
"$py" "$here/report.py" "$out"
