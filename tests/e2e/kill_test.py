#!/usr/bin/python3
"""Crash matrix: the four services and the judge run as separate processes (as in Compose). A
2-round job runs once uninterrupted (the reference); then, for each service S in (orchestrator,
sampler, oracle, trainer), one crash run SIGKILLs and restarts S at every stage of round 1 --
mid-stage and at the boundary (right after the stage's STAGE marker is written) of sample, judge,
pairs, train and eval, ten kills per run -- and round 2 runs on the restarted cluster. Each crash
run must finish with the reference's round outputs (samples, judgments, pairs, train and eval
results, eval answers, checkpoint bytes, STAGE markers) and its judge must see no (prompt, a, b,
order) twice.

Landing mid-stage is made deterministic, never guessed with sleeps:
- sample: the kill follows the stage_started event (the sampler's policy load and generation take
  hundreds of ms; sample is the round's first stage, so no restart delays the test's look);
- judge, pairs, train, eval: the orchestrator's test-only hold hook
  (SPAR_ORCHESTRATOR_FAULT_HOLD_DIR) parks the stage mid-way -- judge: some comparisons judged
  after sampling ended; pairs: built, not written; train: after a trainer step arrived; eval:
  answers written, not judged -- until the test has killed and restarted the service (pairs and
  eval otherwise take milliseconds, and judge or train may end while a restarted service starts);
- the trainer mid-train: SPAR_TRAINER_FAULT_KILL_AFTER_STEP makes the trainer SIGKILL itself after
  an optimizer step (it is restarted without it; no train hold in that run).
Whether each kill landed where it was aimed is read from the STAGE markers right after the kill
and printed as a table (service, stage, boundary/mid, landed). A mid-stage kill whose stage had
already ended reads "after" -- reported, not failed (the run is still checked).

The one exception to "no repeats" is killing the oracle while a judge call is in flight: the HTTP
requests it had in flight die with it (their answers never reach its cache), so the restarted
oracle asks them again -- at most max_concurrency (MAX_IN_FLIGHT) repeats per such kill, and only
between that kill and the end of the judging stage it hit. Killing the orchestrator mid-judge
repeats nothing: the oracle's abandoned call finishes and caches its in-flight requests, and the
restarted orchestrator's identical requests wait for them (single-flight). The judge logs each
request as it is judged; a monitor thread notes the log length whenever a STAGE marker appears,
which splits the log into windows.

usage: kill_test.py BIN_DIR WORK_DIR BASE_MODEL_CACHE_DIR
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import e2e_lib
from e2e_lib import ensure_base, fail, free_port, start_service

bin_dir, work, cache = sys.argv[1:4]
spar = os.path.join(bin_dir, "spar")
judge_bin = os.path.join(bin_dir, "spar-judge")
MAX_IN_FLIGHT = 8  # oracle max_concurrency: requests that may be in flight when it dies
# Judge latency: a judge stage then lasts seconds (8 requests in flight at a time), so the
# mid-judge kills land while requests are at the judge.
JUDGE_LATENCY_MS = 40
TRAINER_FAULT_STEP = 2  # the trainer kills itself after this optimizer step (of ~5 in round 1)
STAGES = ["sample", "judge", "pairs", "train", "eval"]
SERVICES = ["orchestrator", "sampler", "oracle", "trainer"]
T0 = time.monotonic()


def wait_for(what, pred, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.01)
    fail("timed out waiting for " + what)


SPEC = e2e_lib.two_round_spec("kill")


def log_lines(log):
    """Requests the judge has logged so far (whole lines only)."""
    try:
        with open(log, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


class Cluster:
    def __init__(self, tag, hold=()):
        self.dir = os.path.join(work, tag)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.data = os.path.join(self.dir, "data")
        os.makedirs(os.path.join(self.data, "models"))
        shutil.copytree(ensure_base(spar, cache, work), os.path.join(self.data, "models", "base"))
        self.runs = os.path.join(self.data, "runs")
        self.hold_dir = os.path.join(self.dir, "hold")
        os.makedirs(self.hold_dir)
        for rnd, stage in hold:  # the orchestrator parks these stages mid-way until released
            open(self.hold_path(rnd, stage), "w").close()
        self.ports = {r: free_port() for r in SERVICES}
        self.procs = {}
        self.job_dir = None
        self.marker_lines = {}  # (round, stage) -> judge log length when its marker appeared
        self.judge_log = os.path.join(self.dir, "judge-requests.jsonl")
        jport = free_port()
        self.judge = subprocess.Popen([judge_bin, "--port=%d" % jport,
                                       "--latency_ms=%d" % JUDGE_LATENCY_MS,
                                       "--log_requests=" + self.judge_log],
                                      stdout=open(os.path.join(self.dir, "judge.out"), "w"),
                                      stderr=subprocess.STDOUT)
        self.judge_url = "http://127.0.0.1:%d/v1" % jport
        for role in SERVICES:
            self.start(role)

    def hold_path(self, rnd, stage):
        return os.path.join(self.hold_dir, "hold-%d-%s" % (rnd, stage))

    def held_path(self, rnd, stage):
        return os.path.join(self.hold_dir, "held-%d-%s" % (rnd, stage))

    def addr(self, role):
        return "127.0.0.1:%d" % self.ports[role]

    def start(self, role, env_extra=None):
        args = e2e_lib.serve_args(spar, role, self.ports, self.data, self.runs, self.judge_url)
        env = dict(os.environ, SPAR_ORCHESTRATOR_FAULT_HOLD_DIR=self.hold_dir)
        env.update(env_extra or {})
        log = open(os.path.join(self.dir, role + ".out"), "a")
        self.procs[role] = start_service(spar, args, self.ports[role], log, env=env)

    def kill(self, role):
        e2e_lib.sigkill(self.procs.pop(role))

    def submit(self):
        self.job = e2e_lib.submit(spar, self.addr("orchestrator"), SPEC, self.dir, "kill-test")
        self.job_dir = os.path.join(self.runs, self.job)
        self.monitoring = True
        self.monitor = threading.Thread(target=self.watch_markers, daemon=True)
        self.monitor.start()

    def watch_markers(self):
        while self.monitoring:
            for rnd in (1, 2):
                for stage in STAGES:
                    if (rnd, stage) not in self.marker_lines and self.stage_done(rnd, stage):
                        self.marker_lines[(rnd, stage)] = log_lines(self.judge_log)
            time.sleep(0.005)

    def wait_done(self):
        r = subprocess.run([spar, "watch", self.job, "--addr=" + self.addr("orchestrator")],
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            st = subprocess.run([spar, "status", self.job, "--addr=" + self.addr("orchestrator")],
                                capture_output=True, text=True)
            fail("job did not succeed: %s %s %s" % (r.stdout[-2000:], r.stderr, st.stdout))
        self.monitoring = False
        self.monitor.join()
        for rnd in (1, 2):  # markers written after the monitor's last look: the job is over
            for stage in STAGES:
                if (rnd, stage) not in self.marker_lines and self.stage_done(rnd, stage):
                    self.marker_lines[(rnd, stage)] = log_lines(self.judge_log)

    def stage_done(self, rnd, stage):
        try:
            with open(os.path.join(self.job_dir, "iter_%03d" % rnd, "STAGE")) as f:
                done = f.read().strip()
        except OSError:
            return False
        return done in STAGES and STAGES.index(done) >= STAGES.index(stage)

    def progress(self):
        """(round, index in STAGES) of the last completed stage; (0, 4) before round 1."""
        last = (0, len(STAGES) - 1)
        for rnd in (1, 2):
            for i, stage in enumerate(STAGES):
                if self.stage_done(rnd, stage):
                    last = (rnd, i)
        return last

    def stage_started(self, rnd, stage):
        return e2e_lib.stage_started(self.job_dir, rnd, stage)

    def stop(self):
        e2e_lib.stop_all(list(self.procs.values()), self.judge)


def outputs(job_dir):
    return e2e_lib.outputs(job_dir, extra=("STAGE",))


def judged(log):
    seen = {}
    with open(log) as f:
        for line in f:
            r = json.loads(line)
            k = (r["instruction"], r["output_a"], r["output_b"])
            seen[k] = seen.get(k, 0) + 1
    return seen


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


ROW = "%-13s %-7s %-9s %-46s %s"


def record(table, row):
    row = row + ("%.1f" % (time.monotonic() - T0),)
    table.append(row)
    print("  " + ROW % row, flush=True)


def crash_run(service, table):
    """One job; `service` is SIGKILLed and restarted mid-stage and at the boundary of every stage
    of round 1. Returns the judge log windows in which a killed oracle may repeat requests."""
    held = ["judge", "pairs", "train", "eval"] if service != "trainer" else [
        "judge", "pairs", "eval"]  # the trainer is killed mid-train by its own fault hook
    c = Cluster("crash-" + service, hold=[(1, stage) for stage in held])
    c.submit()
    windows = []  # (first log line, (round, stage) whose marker closes the window)

    def kill_and_restart(stage, point, landed_fn, env_extra=None, before_start=None):
        lines = log_lines(c.judge_log)
        rnd, idx = c.progress()
        c.kill(service)
        landed = landed_fn()
        if service == "oracle":
            # The oracle had a judge call in flight only while round 1 judged (sample+judge are
            # one pipelined stage; eval is parked by the hold hook before it judges). Its window
            # closes when the judging stage it hit has ended.
            nxt = STAGES[(idx + 1) % len(STAGES)]
            if nxt in ("sample", "judge"):
                windows.append((lines, (rnd + 1 if nxt == "sample" and idx == 4 else rnd,
                                        "judge")))
            elif nxt == "eval":
                windows.append((lines, (rnd, "eval")))
        if service == "orchestrator":  # held-* files now describe a dead process
            for f in os.listdir(c.hold_dir):
                if f.startswith("held-"):
                    os.remove(os.path.join(c.hold_dir, f))
        if before_start:
            before_start()
        c.start(service, env_extra)
        record(table, (service, stage, point, landed))

    def mid_landed(stage):
        return lambda: "mid" if not c.stage_done(1, stage) else "after (stage had ended)"

    def boundary_landed(stage):
        nxt = STAGES.index(stage) + 1
        if nxt == len(STAGES):
            return lambda: ("boundary (round 1 done, round 2 not sampled)"
                            if not c.stage_done(2, "sample") else "after (round 2 sampled)")
        return lambda: ("boundary (%s marker, %s not done)" % (stage, STAGES[nxt])
                        if not c.stage_done(1, STAGES[nxt]) else
                        "after (%s already done)" % STAGES[nxt])

    def boundary(stage, env_extra=None):
        wait_for("iter_001 %s marker" % stage, lambda: c.stage_done(1, stage))
        kill_and_restart(stage, "boundary", boundary_landed(stage), env_extra)

    def held_mid(stage):
        """Mid-stage via the orchestrator's hold hook: the stage is parked mid-way (judge: some
        comparisons judged; pairs: built, not written; train: after a trainer step; eval: answers
        written, not judged) until the test releases it."""
        wait_for("iter_001 %s held" % stage, lambda: os.path.exists(c.held_path(1, stage)))

        def release():  # a restarted orchestrator passes the hold point once the file is gone
            os.remove(c.hold_path(1, stage))
        if service == "orchestrator":
            kill_and_restart(stage, "mid", lambda: "mid (held by the hook)"
                             if not c.stage_done(1, stage) else "after", before_start=release)
        else:
            kill_and_restart(stage, "mid", lambda: "mid (held by the hook)"
                             if not c.stage_done(1, stage) else "after")
            release()

    # sample (pipelined with judging): once round 1's sample stage has started.
    wait_for("iter_001 sample started", lambda: c.stage_started(1, "sample"))
    kill_and_restart("sample", "mid", mid_landed("sample"))
    boundary("sample")
    held_mid("judge")
    boundary("judge")
    held_mid("pairs")
    if service == "trainer":
        # Restarted with the fault hook: it kills itself after step TRAINER_FAULT_STEP of
        # round 1's training, mid-train by construction.
        boundary("pairs", {"SPAR_TRAINER_FAULT_KILL_AFTER_STEP": str(TRAINER_FAULT_STEP)})
        p = c.procs["trainer"]
        wait_for("the trainer's fault hook or iter_001 train marker",
                 lambda: p.poll() is not None or c.stage_done(1, "train"))
        if p.poll() is not None:
            c.procs.pop("trainer")
            landed = ("mid (killed itself after step %d)" % TRAINER_FAULT_STEP
                      if not c.stage_done(1, "train") else "after (stage had ended)")
            c.start("trainer")
            record(table, ("trainer", "train", "mid", landed))
        else:
            record(table, ("trainer", "train", "mid", "after (hook never fired)"))
    else:
        boundary("pairs")
        held_mid("train")
    boundary("train")  # the trainer restarts without the fault hook here
    held_mid("eval")
    boundary("eval")
    c.wait_done()
    c.stop()
    return c, windows


print("reference run (uninterrupted)", flush=True)
ref = Cluster("ref")
ref.submit()
ref.wait_done()
ref.stop()
ref_out = outputs(ref.job_dir)
ref_seen = judged(ref.judge_log)
if any(n > 1 for n in ref_seen.values()):
    fail("the uninterrupted run sent a comparison twice")
print("  %.1fs, %d judge requests" % (time.monotonic() - T0, sum(ref_seen.values())), flush=True)

table = []
summary = []
for service in SERVICES:
    t_run = time.monotonic()
    print("crash run: %s killed at every stage of round 1" % service, flush=True)
    c, windows = crash_run(service, table)
    crash_out = outputs(c.job_dir)
    diff = [k for k in ref_out if ref_out[k] != crash_out.get(k)]
    if diff:
        fail("%s crash run: resumed job's outputs differ from the uninterrupted run: %s" % (
            service, diff))
    seen = judged(c.judge_log)
    if set(seen) != set(ref_seen):
        fail("%s crash run judged a different set of comparisons than the reference run" % service)
    # Only a killed oracle's in-flight requests may be asked again, within its window: from the
    # kill to the end of the judging stage it hit. Kills that hit the same stage share one window
    # (a request may be asked again after the next kill), allowed MAX_IN_FLIGHT per kill.
    groups = {}
    for first, closer in windows:
        if closer not in c.marker_lines:
            fail("%s crash run: no judge log length noted for the %s marker" % (service, closer))
        g = groups.setdefault(closer, [first, 0])
        g[0] = min(g[0], first)
        g[1] += 1
    spans = [(first, c.marker_lines[closer], kills) for closer, (first, kills) in groups.items()]
    positions = repeat_positions(c.judge_log)
    elsewhere = [i for i in positions if not any(a <= i < b for a, b, _ in spans)]
    if elsewhere:
        fail("%s crash run: the judge saw %d repeated (prompt, a, b, order) requests outside a "
             "killed oracle's window (log lines %s; windows %s)" % (
                 service, len(elsewhere), elsewhere[:10], spans))
    for a, b, kills in spans:
        n = len([i for i in positions if a <= i < b])
        if n > MAX_IN_FLIGHT * kills:
            fail("%s crash run: %d repeated requests in judge log lines [%d, %d) after %d oracle "
                 "kills (at most %d each were in flight)" % (service, n, a, b, kills,
                                                             MAX_IN_FLIGHT))
    summary.append("%s: %d round outputs equal, %d judge requests, %d repeated" % (
        service, len(ref_out), sum(seen.values()), len(positions)))
    print("  %s: ok in %.1fs (%d judge requests, %d repeated%s)" % (
        service, time.monotonic() - t_run, sum(seen.values()), len(positions),
        ", all within the killed oracle's windows" if positions else ""), flush=True)

print("\n" + ROW % ("service", "stage", "point", "landed", "t(s)"))
for row in table:
    print(ROW % row)
missed = [r for r in table if not r[3].startswith(r[2])]
print("\n%d kills, %d landed where aimed%s" % (
    len(table), len(table) - len(missed),
    "" if not missed else "; NOT where aimed: " + ", ".join("%s %s %s" % r[:3] for r in missed)))
print("kill test: ok in %.1fs (%s)" % (time.monotonic() - T0, "; ".join(summary)))
