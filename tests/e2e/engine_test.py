#!/usr/bin/python3
"""The engine backend end to end: the services and the judge run as separate processes, and the
sampler also serves its OpenAI-compatible HTTP API (`spar serve --role=sampler --http_port=N`).
A 2-round DNO job runs three times:
  native  the orchestrator samples through the sampler's gRPC service (the reference);
  engine  the orchestrator samples through the HTTP API as an engine (sampler_engine "spar"):
          hand-off of each round's checkpoint by /update_weights_from_disk, streamed
          /v1/completions;
  killed  as engine, but the engine process is SIGKILLed while round 1 samples and restarted
          with no policy loaded: the orchestrator hands the checkpoint off again and asks again;
  supervised  the orchestrator supervises the engine (sampler_engine.command, handoff
          "restart": how vLLM is handed each round's checkpoint): it starts `spar serve
          --role=sampler --http_policy={model_path}` on each round's checkpoint, and starts it
          again after the test SIGKILLs it while round 1 samples.
Every run must write the reference's round outputs byte for byte (samples with their token ids
and per-token log-probs, judgments, pairs, train results, eval, checkpoint), so the engine path
is on-policy and loses nothing. The kill lands after the sample stage started and before its
marker (checked from the STAGE file right after the kill: "landed" is printed, a late kill is
reported and the run still checked).

usage: engine_test.py BIN_DIR WORK_DIR BASE_MODEL_CACHE_DIR
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import e2e_lib
from e2e_lib import ensure_base, fail, free_port, start_service

bin_dir, work, cache = (os.path.abspath(a) for a in sys.argv[1:4])
spar = os.path.join(bin_dir, "spar")
judge_bin = os.path.join(bin_dir, "spar-judge")
SERVICES = ["sampler", "oracle", "trainer", "orchestrator"]
SPEC = e2e_lib.two_round_spec("engine")


def pid_with_arg(arg):
    """The pid of the process whose command line has `arg`, or None."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if arg.encode() in f.read().split(b"\0"):
                    return int(pid)
        except OSError:
            pass
    return None


class Cluster:
    def __init__(self, tag, engine):
        self.dir = os.path.join(work, tag)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.data = os.path.join(self.dir, "data")
        os.makedirs(os.path.join(self.data, "models"))
        shutil.copytree(ensure_base(spar, cache, work), os.path.join(self.data, "models", "base"))
        self.runs = os.path.join(self.data, "runs")
        self.engine = engine  # False, "http" (the cluster's sampler) or "supervised"
        self.ports = {r: free_port() for r in SERVICES}
        self.http_port = free_port()
        self.procs = {}
        self.config = os.path.join(self.dir, "orchestrator.json")
        with open(self.config, "w") as f:
            json.dump({"sampler_engine": {
                "engine": "spar", "url": "http://127.0.0.1:%d/v1" % self.http_port,
                "handoff": "restart", "start_timeout_seconds": 120,
                "command": [spar, "serve", "--role=sampler", "--port=0", "--metrics_port=0",
                            "--http_port=%d" % self.http_port, "--http_policy={model_path}",
                            "--runs_dir=" + self.runs, "--data_root=" + self.data]}}, f)
        jport = free_port()
        self.judge = subprocess.Popen([judge_bin, "--port=%d" % jport],
                                      stdout=open(os.path.join(self.dir, "judge.out"), "w"),
                                      stderr=subprocess.STDOUT)
        self.judge_url = "http://127.0.0.1:%d/v1" % jport
        for role in SERVICES:
            if not (role == "sampler" and engine == "supervised"):
                self.start(role)

    def addr(self, role):
        return "127.0.0.1:%d" % self.ports[role]

    def args(self, role):
        args = e2e_lib.serve_args(spar, role, self.ports, self.data, self.runs, self.judge_url)
        if role == "sampler":
            args.append("--http_port=%d" % self.http_port)
        if role == "orchestrator":
            if self.engine == "http":
                args += ["--sampler_engine=spar",
                         "--sampler_engine_url=http://127.0.0.1:%d/v1" % self.http_port]
            elif self.engine == "supervised":
                args.append("--config=" + self.config)
        return args

    def start(self, role):
        log = open(os.path.join(self.dir, role + ".out"), "a")
        self.procs[role] = start_service(spar, self.args(role), self.ports[role], log,
                                         also_open=[self.http_port] if role == "sampler" else [])

    def kill(self, role):
        e2e_lib.sigkill(self.procs.pop(role))

    def submit(self):
        self.job = e2e_lib.submit(spar, self.addr("orchestrator"), SPEC, self.dir, "engine-test")
        self.job_dir = os.path.join(self.runs, self.job)

    def wait_done(self):
        # The job file's state, rewritten atomically on every change (docs/architecture.md).
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            try:
                with open(os.path.join(self.job_dir, "job.json")) as f:
                    state = json.load(f).get("state", "")
            except (OSError, ValueError):
                state = ""
            if state == "JOB_STATE_SUCCEEDED":
                return
            if state in ("JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_PAUSED"):
                st = subprocess.run(
                    [spar, "status", self.job, "--addr=" + self.addr("orchestrator")],
                    capture_output=True, text=True)
                fail("job ended %s: %s" % (state, st.stdout))
            time.sleep(0.05)
        fail("job did not finish in 900 s")

    def stage_done(self, rnd):
        try:
            with open(os.path.join(self.job_dir, "iter_%03d" % rnd, "STAGE")) as f:
                return f.read().strip() != ""
        except OSError:
            return False

    def sample_started(self, rnd):
        return e2e_lib.stage_started(self.job_dir, rnd, "sample")

    def stop(self):
        e2e_lib.stop_all(list(self.procs.values()), self.judge)


def run(tag, engine, kill_mid_sample=False):
    t0 = time.monotonic()
    c = Cluster(tag, engine)
    try:
        c.submit()
        if kill_mid_sample:
            deadline = time.monotonic() + 300
            while not c.sample_started(1):
                if time.monotonic() > deadline:
                    fail("round 1 sampling never started")
                time.sleep(0.005)
            if engine == "supervised":  # the orchestrator's child; it starts it again itself
                pid = None
                while pid is None and time.monotonic() < deadline:
                    pid = pid_with_arg("--http_port=%d" % c.http_port)
                if pid is None:
                    fail("the supervised engine is not running")
                os.kill(pid, signal.SIGKILL)
            else:
                c.kill("sampler")
            landed = "mid-sample" if not c.stage_done(1) else "after sample (late)"
            print("  engine killed: %s" % landed, flush=True)
            if engine != "supervised":
                c.start("sampler")
        c.wait_done()
        out = e2e_lib.outputs(c.job_dir)
        samples = [json.loads(l) for l in open(os.path.join(c.job_dir, "iter_001",
                                                            "samples.jsonl"))]
    finally:
        c.stop()
    print("%-8s %.1f s" % (tag, time.monotonic() - t0), flush=True)
    return out, samples


ref, ref_samples = run("native", engine=False)
s0 = ref_samples[0]["samples"][0]
if not s0.get("token_ids") or len(s0["token_logprobs"]) != len(s0["token_ids"]):
    fail("samples.jsonl rows lack token_ids / token_logprobs: %s" % s0)
for tag, engine, kill in (("engine", "http", False), ("killed", "http", True),
                          ("supervised", "supervised", True)):
    got, _ = run(tag, engine=engine, kill_mid_sample=kill)
    diff = [k for k in ref if got.get(k) != ref[k]]
    if diff:
        fail("%s run differs from the native run in %s" % (tag, diff))
print("engine runs equal the native run: %d files x 3 runs" % len(ref))
