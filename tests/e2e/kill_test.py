#!/usr/bin/python3
"""Crash test: the four services and the judge run as separate processes (as in Compose); a job
runs once uninterrupted, then again while services are SIGKILLed and restarted at stage
boundaries and mid-stage. The resumed job must finish with the same round outputs (samples,
judgments, pairs, train and eval results, checkpoint bytes), and the judge must see no
(prompt, a, b, order) twice.

The one exception is killing the oracle itself mid-judge: the HTTP requests it had in flight die
with it (their answers never reach its cache), so the restarted oracle asks them again -- at most
max_concurrency (MAX_IN_FLIGHT) repeats, and only in the window between that kill and the end of
the judge stage. Killing the orchestrator mid-judge repeats nothing: the oracle's abandoned call
finishes and caches its in-flight requests, and the restarted orchestrator's identical requests
wait for them (single-flight) instead of asking again. The judge logs each request as it is
judged, so the test splits the log into windows at the kills.

usage: kill_test.py BIN_DIR WORK_DIR BASE_MODEL_CACHE_DIR
"""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

bin_dir, work, cache = sys.argv[1:4]
spar = os.path.join(bin_dir, "spar")
judge_bin = os.path.join(bin_dir, "spar-judge")
MAX_IN_FLIGHT = 8  # oracle max_concurrency: requests that may be in flight when it dies
# Judge latency: a judge stage then lasts seconds (8 requests in flight at a time), so the
# mid-judge kills below land while requests are at the judge.
JUDGE_LATENCY_MS = 40
STAGES = ["sample", "judge", "pairs", "train", "eval"]


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_for(what, pred, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    fail("timed out waiting for " + what)


def ensure_base():
    base = os.path.join(cache, "arith-base-v1-seed1")
    if not os.path.exists(os.path.join(base, "config.json")):
        subprocess.run([spar, "demo", "--rounds=1", "--cache_dir=" + cache,
                        "--runs_dir=" + os.path.join(work, "demo-runs")], check=True,
                       stdout=subprocess.DEVNULL)
    return base


SPEC = {
    "name": "kill", "algorithm": "dno", "base_model": "models/base", "rounds": 2,
    "prompts_per_round": 96, "sampling": {"num_samples": 4, "max_new_tokens": 6},
    "training": {"beta": 0.5, "learning_rate": 2e-4, "nll_weight": 1.0, "batch_size": 16},
    "eval": {"num_prompts": 60, "max_new_tokens": 6}, "seed": 3,
}


class Cluster:
    def __init__(self, tag):
        self.dir = os.path.join(work, tag)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.data = os.path.join(self.dir, "data")
        os.makedirs(os.path.join(self.data, "models"))
        shutil.copytree(ensure_base(), os.path.join(self.data, "models", "base"))
        self.runs = os.path.join(self.data, "runs")
        self.ports = {r: free_port() for r in ("sampler", "oracle", "trainer", "orchestrator")}
        self.procs = {}
        self.judge_log = os.path.join(self.dir, "judge-requests.jsonl")
        jport = free_port()
        self.judge = subprocess.Popen([judge_bin, "--port=%d" % jport,
                                       "--latency_ms=%d" % JUDGE_LATENCY_MS,
                                       "--log_requests=" + self.judge_log],
                                      stdout=open(os.path.join(self.dir, "judge.out"), "w"),
                                      stderr=subprocess.STDOUT)
        self.judge_url = "http://127.0.0.1:%d/v1" % jport
        for role in ("sampler", "oracle", "trainer", "orchestrator"):
            self.start(role)

    def addr(self, role):
        return "127.0.0.1:%d" % self.ports[role]

    def start(self, role):
        args = [spar, "serve", "--role=" + role, "--port=%d" % self.ports[role],
                "--metrics_port=0"]
        if role == "oracle":
            args += ["--judge_url=" + self.judge_url,
                     "--judge_cache=" + os.path.join(self.data, "judge-cache.sqlite")]
        if role == "orchestrator":
            args += ["--runs_dir=" + self.runs, "--data_root=" + self.data,
                     "--sampler_address=" + self.addr("sampler"),
                     "--oracle_address=" + self.addr("oracle"),
                     "--trainer_address=" + self.addr("trainer")]
        log = open(os.path.join(self.dir, role + ".out"), "a")
        for _ in range(100):  # the port may linger for a moment after a kill
            p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
            ok = False
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and p.poll() is None:
                r = subprocess.run([spar, "health", "--addr=" + self.addr(role)],
                                   capture_output=True, text=True)
                if r.returncode == 0:
                    ok = True
                    break
                time.sleep(0.1)
            if ok:
                self.procs[role] = p
                return
            p.kill()
            p.wait()
            time.sleep(0.2)
        fail("cannot start " + role)

    def kill(self, role):
        p = self.procs.pop(role)
        p.send_signal(signal.SIGKILL)
        p.wait()
        print("  killed %s (SIGKILL)" % role, flush=True)

    def submit(self):
        path = os.path.join(self.dir, "job.json")
        with open(path, "w") as f:
            json.dump(SPEC, f)
        r = subprocess.run([spar, "submit", path, "--addr=" + self.addr("orchestrator"),
                            "--request_id=kill-test"], capture_output=True, text=True)
        if r.returncode != 0:
            fail("submit: " + r.stderr)
        self.job = r.stdout.strip()
        self.job_dir = os.path.join(self.runs, self.job)

    def wait_done(self):
        r = subprocess.run([spar, "watch", self.job, "--addr=" + self.addr("orchestrator")],
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            st = subprocess.run([spar, "status", self.job, "--addr=" + self.addr("orchestrator")],
                                capture_output=True, text=True)
            fail("job did not succeed: %s %s %s" % (r.stdout[-2000:], r.stderr, st.stdout))

    def stage_done(self, rnd, stage):
        try:
            with open(os.path.join(self.job_dir, "iter_%03d" % rnd, "STAGE")) as f:
                done = f.read().strip()
        except OSError:
            return False
        return STAGES.index(done) >= STAGES.index(stage)

    def progress(self):
        """(round, index in STAGES) of the last completed stage; (0, 4) before round 1."""
        last = (0, len(STAGES) - 1)
        for rnd in (1, 2):
            for i, stage in enumerate(STAGES):
                if self.stage_done(rnd, stage):
                    last = (rnd, i)
        return last

    def stage_started(self, rnd, stage):
        try:
            with open(os.path.join(self.job_dir, "events.jsonl")) as f:
                for line in f:
                    e = json.loads(line)
                    if e.get("round") == rnd and e.get("stage") == stage and e.get("kind") == "stage_started":
                        return True
        except OSError:
            pass
        return False

    def stop(self):
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            p.wait()
        self.judge.terminate()
        self.judge.wait()


def outputs(job_dir):
    out = {}
    for rnd in (1, 2):
        d = os.path.join(job_dir, "iter_%03d" % rnd)
        for f in ("samples.jsonl", "judgments.jsonl", "pairs.jsonl", "train.json", "eval.json",
                  "eval_answers.jsonl", "checkpoint/model.safetensors", "STAGE"):
            with open(os.path.join(d, f), "rb") as fh:
                out["iter_%03d/%s" % (rnd, f)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def judged(log):
    seen = {}
    with open(log) as f:
        for line in f:
            r = json.loads(line)
            k = (r["instruction"], r["output_a"], r["output_b"])
            seen[k] = seen.get(k, 0) + 1
    return seen


def log_lines(log):
    """Requests the judge has logged so far (whole lines only)."""
    try:
        with open(log, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def repeat_positions(log):
    """Line indexes of requests whose (prompt, a, b, order) the judge had already seen."""
    seen, out = set(), []
    with open(log) as f:
        for i, line in enumerate(f):
            r = json.loads(line)
            k = (r["instruction"], r["output_a"], r["output_b"])
            if k in seen:
                out.append(i)
            seen.add(k)
    return out


print("reference run (uninterrupted)", flush=True)
ref = Cluster("ref")
ref.submit()
ref.wait_done()
ref.stop()
ref_out = outputs(ref.job_dir)
ref_seen = judged(ref.judge_log)
if any(n > 1 for n in ref_seen.values()):
    fail("the uninterrupted run sent a comparison twice")

print("crash run", flush=True)
c = Cluster("crash")
c.submit()
# Boundary: the orchestrator dies right after round 1's samples are written (its judge call may
# already be at the oracle: that call is abandoned, not repeated).
wait_for("iter_001 sample", lambda: c.stage_done(1, "sample"))
c.kill("orchestrator")
print("  orchestrator died after judge request %d" % log_lines(c.judge_log), flush=True)
c.start("orchestrator")
# Mid-stage: the oracle dies while round 1 judges (once the restarted orchestrator's requests
# are reaching the judge). Its window of allowed repeats runs from the kill until the stage that
# was running then has completed (judging stages are followed by pairs/train or sampling, which
# send nothing to the judge).
n0 = log_lines(c.judge_log)
wait_for("iter_001 judging", lambda: log_lines(c.judge_log) > n0 + 20 or c.stage_done(1, "judge"))
running = c.progress()
c.kill("oracle")
oracle_killed_at = log_lines(c.judge_log)
c.start("oracle")
wait_for("the stage the oracle died in", lambda: c.progress() > running)
oracle_window_end = log_lines(c.judge_log)
print("  oracle died after judge request %d; its stage ended at request %d" % (
    oracle_killed_at, oracle_window_end), flush=True)
# Mid-stage: the trainer dies while round 1 trains.
wait_for("iter_001 train started", lambda: c.stage_started(1, "train"))
c.kill("trainer")
c.start("trainer")
# Boundary: the oracle dies after round 1 is complete (no judge call in flight).
wait_for("iter_001 eval", lambda: c.stage_done(1, "eval"))
c.kill("oracle")
c.start("oracle")
# Mid-stage: the sampler dies while round 2 samples, the orchestrator while round 2 judges.
wait_for("iter_002 sample started", lambda: c.stage_started(2, "sample"))
c.kill("sampler")
c.start("sampler")
wait_for("iter_002 judge started", lambda: c.stage_started(2, "judge"))
c.kill("orchestrator")
print("  orchestrator died after judge request %d (round 2 judge done: %s)" % (
    log_lines(c.judge_log), c.stage_done(2, "judge")), flush=True)
c.start("orchestrator")
c.wait_done()
c.stop()
crash_out = outputs(c.job_dir)
diff = [k for k in ref_out if ref_out[k] != crash_out.get(k)]
if diff:
    fail("resumed job's outputs differ from the uninterrupted run: %s" % diff)
seen = judged(c.judge_log)
positions = repeat_positions(c.judge_log)
repeats = len(positions)
in_oracle_window = [i for i in positions if oracle_killed_at <= i < oracle_window_end]
elsewhere = [i for i in positions if not oracle_killed_at <= i < oracle_window_end]
# Only the oracle's own death mid-judge may repeat requests: those it had in flight.
if elsewhere:
    fail("the judge saw %d repeated (prompt, a, b, order) requests outside the killed oracle's "
         "window (log lines %s)" % (len(elsewhere), elsewhere[:10]))
if len(in_oracle_window) > MAX_IN_FLIGHT:
    fail("the judge saw %d repeated requests after the oracle died mid-judge (at most %d were in "
         "flight)" % (len(in_oracle_window), MAX_IN_FLIGHT))
if set(seen) != set(ref_seen):
    fail("the crash run judged a different set of comparisons than the reference run")
print("kill test: ok (%d round outputs equal, %d judge requests, %d repeated: %d after the oracle "
      "died mid-judge, 0 elsewhere)" % (len(ref_out), sum(seen.values()), repeats,
                                        len(in_oracle_window)))
