#!/usr/bin/env bash
# End-to-end tests with the real binaries as separate processes on loopback.
#   demo:   `spar demo` finishes 3 DNO rounds and greedy accuracy rises >= 10 points with a
#           win rate vs pi_0 above 0.5 (seed 1).
#   submit: spar-judge + `spar up` as processes; the example job spec deploy/examples/dno-arith.json
#           runs as written through `spar submit --watch`; bad input gets exit code 2.
#   demo_spin, demo_dpo, demo_sppo, demo_mpo: the same for `spar demo --algo=...`, and greedy accuracy must rise
#           every round (monotone).
# usage: e2e_test.sh BIN_DIR JUDGE_BIN REPO_DIR WORK_DIR (demo|demo_spin|demo_dpo|demo_sppo|demo_mpo|submit)
set -euo pipefail
bin="$1"; judge_bin="$2"; repo="$3"; work="$4"; which="$5"
mkdir -p "$work"
cache="$work/cache"   # shared by both tests: the base model is built once
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Waits for a process to print its listening line and echoes the line.
wait_line() {
  local file="$1" pattern="$2"
  for _ in $(seq 1 300); do
    if grep -q "$pattern" "$file" 2>/dev/null; then grep -m1 "$pattern" "$file"; return 0; fi
    sleep 0.1
  done
  cat "$file" >&2
  fail "no \"$pattern\" in $file"
}

base_model() {
  # The demo builds and caches the base model; reuse it when present.
  [ -f "$cache/arith-base-v1-seed1/config.json" ] || "$bin/spar" demo --cache_dir="$cache" --runs_dir="$work/demo-runs" >"$work/demo.out" 2>&1
}

case "$which" in
  demo|demo_spin|demo_dpo|demo_sppo|demo_mpo)
    algo=dno
    [ "$which" != demo ] && algo=${which#demo_}
    out="$work/$which.out"
    rm -rf "$work/$which-runs"
    "$bin/spar" demo --algo=$algo --cache_dir="$cache" --runs_dir="$work/$which-runs" | tee "$out"
    line=$(grep -m1 '^greedy accuracy' "$out") || fail "demo printed no result line"
    python3 - "$line" <<'PY'
import re, sys
m = re.match(r"greedy accuracy ([0-9.]+) -> ([0-9.]+) .*win rate vs pi_0 ([0-9.]+)", sys.argv[1])
assert m, sys.argv[1]
base, last, win = map(float, m.groups())
print(f"base {base:.3f} last {last:.3f} win {win:.3f}")
assert last - base >= 0.10, f"greedy accuracy rose {100*(last-base):.1f} points (< 10)"
assert win > 0.5, f"win rate vs pi_0 {win:.3f} <= 0.5"
PY
    n=$(grep -cE '^ +[123] +[0-9]+ ' "$out") || true
    [ "$n" -eq 3 ] || fail "expected 3 round rows in the table, got $n"
    if [ "$algo" != dno ]; then
      # Monotone: each round's greedy accuracy (6th column) above the previous one's.
      grep -E '^ +[0123] +' "$out" | awk '{print $6}' | python3 -c "
import sys
acc = [float(x) for x in sys.stdin.read().split()]
assert len(acc) == 4, acc
assert all(b > a for a, b in zip(acc, acc[1:])), f'not monotone: {acc}'
print('monotone:', acc)"
    fi
    job=$(ls "$work/$which-runs")
    for r in 001 002 003; do
      for f in samples.jsonl judgments.jsonl pairs.jsonl eval.json checkpoint/model.safetensors checkpoint/config.json; do
        [ -e "$work/$which-runs/$job/iter_$r/$f" ] || fail "missing iter_$r/$f"
      done
    done
    echo "e2e $which: ok"
    ;;
  submit)
    base_model
    data="$work/data"
    rm -rf "$data" && mkdir -p "$data/models"
    cp -r "$cache/arith-base-v1-seed1" "$data/models/arith-base"
    "$judge_bin" --port=0 >"$work/judge.out" 2>&1 & pids+=($!)
    judge_url=$(wait_line "$work/judge.out" "listening on" | grep -oE 'http://[^ ]+')
    "$bin/spar" up --port=0 --metrics_port=0 --judge_url="$judge_url" --runs_dir="$work/runs" \
      --data_root="$data" >"$work/up.out" 2>&1 & pids+=($!)
    addr=$(wait_line "$work/up.out" "spar listening on" | grep -oE '127\.0\.0\.1:[0-9]+' | head -1)
    "$bin/spar" health --addr="$addr" | grep -q SERVING || fail "health not SERVING"
    # Bad input: exit code 2 and the field named.
    echo '{"base_model": "models/arith-base", "sampling": {"num_samples": 1}}' > "$work/bad.json"
    set +e
    "$bin/spar" submit "$work/bad.json" --addr="$addr" 2>"$work/bad.err"; rc=$?
    set -e
    [ "$rc" -eq 2 ] || fail "bad spec: exit $rc, want 2"
    grep -q "sampling.num_samples" "$work/bad.err" || fail "bad spec error does not name the field: $(cat "$work/bad.err")"
    # The documented example, as written.
    job=$("$bin/spar" submit "$repo/deploy/examples/dno-arith.json" --addr="$addr" --request_id=e2e-1)
    "$bin/spar" watch "$job" --addr="$addr" >"$work/watch.out" || fail "job $job did not succeed: $(cat "$work/watch.out")"
    "$bin/spar" status "$job" --addr="$addr" | tee "$work/status.out"
    grep -q "succeeded" "$work/status.out" || fail "status is not succeeded"
    "$bin/spar" list --addr="$addr" --state=succeeded | grep -q "$job" || fail "job not listed"
    # Same request id: same job.
    again=$("$bin/spar" submit "$repo/deploy/examples/dno-arith.json" --addr="$addr" --request_id=e2e-1)
    [ "$again" = "$job" ] || fail "request_id not idempotent: $again vs $job"
    echo "e2e submit: ok"
    ;;
  *) fail "unknown test $which" ;;
esac
