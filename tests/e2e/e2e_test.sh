#!/usr/bin/env bash
# End-to-end tests with the real binaries as separate processes on loopback.
#   submit: spar-judge + `spar up` as processes, auth on; the smoke example
#           (deploy/examples/dno-arith-smoke.json) through `spar submit`, watch, status, list and an
#           idempotent resubmit; bad input gets exit code 2. (The full example, as the README
#           runs it, is readme_test.py's.)
# (The recipes' learning checks are recipes_test.py.)
# usage: e2e_test.sh BIN_DIR JUDGE_BIN REPO_DIR WORK_DIR submit
set -euo pipefail
bin="$1"; judge_bin="$2"; repo="$3"; work="$4"; which="$5"
mkdir -p "$work"
# Auth on, as deployed: `spar up` and every client command below share the service token.
export SPAR_API_TOKEN=spar-e2e-service-token
unset SPAR_API_TOKEN_FILE
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
  [ -f "$cache/arith-base-v3-seed1/config.json" ] || "$bin/spar" demo --cache_dir="$cache" --runs_dir="$work/demo-runs" >"$work/demo.out" 2>&1
}

case "$which" in
  submit)
    base_model
    data="$work/data"
    rm -rf "$data" && mkdir -p "$data/models"
    cp -r "$cache/arith-base-v3-seed1" "$data/models/arith-base"
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
    job=$("$bin/spar" submit "$repo/deploy/examples/dno-arith-smoke.json" --addr="$addr" --request_id=e2e-1)
    "$bin/spar" watch "$job" --addr="$addr" >"$work/watch.out" || fail "job $job did not succeed: $(cat "$work/watch.out")"
    "$bin/spar" status "$job" --addr="$addr" | tee "$work/status.out"
    grep -q "succeeded" "$work/status.out" || fail "status is not succeeded"
    "$bin/spar" list --addr="$addr" --state=succeeded | grep -q "$job" || fail "job not listed"
    # Same request id: same job.
    again=$("$bin/spar" submit "$repo/deploy/examples/dno-arith-smoke.json" --addr="$addr" --request_id=e2e-1)
    [ "$again" = "$job" ] || fail "request_id not idempotent: $again vs $job"
    echo "e2e submit: ok"
    ;;
  *) fail "unknown test $which" ;;
esac
