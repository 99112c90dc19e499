"""Shared by the e2e scripts that run Spar's services as separate processes (kill_test.py,
engine_test.py): ports, the cached pi_0, and starting a service until `spar health` answers."""
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

# Auth on is the tested configuration, as in every deployment: the services these scripts start
# and the `spar` client commands they run inherit the service token.
SERVICE_TOKEN = "spar-e2e-service-token"
os.environ["SPAR_API_TOKEN"] = SERVICE_TOKEN
# Spar's own sampler as an engine checks the same token: the orchestrator sends it as the engine key.
os.environ["SPAR_SAMPLER_ENGINE_API_KEY"] = SERVICE_TOKEN
os.environ.pop("SPAR_API_TOKEN_FILE", None)


def two_round_spec(name):
    """The 2-round DNO job of the crash and engine tests: small enough for seconds per round."""
    return {
        "name": name, "algorithm": "dno", "base_model": "models/base", "rounds": 2,
        "prompts_per_round": 96, "sampling": {"num_samples": 4, "max_new_tokens": 6},
        "training": {"beta": 0.5, "learning_rate": 2e-4, "nll_weight": 1.0, "batch_size": 16},
        "eval": {"num_prompts": 60, "max_new_tokens": 6}, "seed": 3,
    }


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr, flush=True)
    sys.exit(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def port_open(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def ensure_base(spar, cache, work):
    """The demo's pi_0 for seed 1, built once into `cache` by `spar demo`."""
    base = os.path.join(cache, "arith-base-v3-seed1")
    if not os.path.exists(os.path.join(base, "config.json")):
        subprocess.run([spar, "demo", "--rounds=1", "--cache_dir=" + cache,
                        "--runs_dir=" + os.path.join(work, "demo-runs")], check=True,
                       stdout=subprocess.DEVNULL)
    return base


def start_service(spar, args, port, log, env=None, also_open=()):
    """Starts `args` (a `spar serve`) until its gRPC port answers `spar health` (and the ports in
    `also_open` accept connections); retries when a killed predecessor's port lingers. Returns
    the process."""
    for _ in range(100):
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and p.poll() is None:
            # port_open is cheap; `spar health` on a closed port waits out gRPC's connect backoff.
            if not port_open(port) or not all(port_open(q) for q in also_open):
                time.sleep(0.02)
                continue
            r = subprocess.run([spar, "health", "--addr=127.0.0.1:%d" % port],
                               capture_output=True, text=True)
            if r.returncode == 0:
                return p
            time.sleep(0.05)
        p.kill()
        p.wait()
        time.sleep(0.2)
    fail("cannot start " + " ".join(args[:3]))


def stage_started(job_dir, rnd, stage):
    """Whether the job's events.jsonl has `stage` of round `rnd` started."""
    try:
        with open(os.path.join(job_dir, "events.jsonl")) as f:
            for line in f:
                e = json.loads(line)
                if (e.get("round") == rnd and e.get("stage") == stage and
                        e.get("kind") == "stage_started"):
                    return True
    except (OSError, ValueError):
        pass
    return False


def stop_all(procs, judge):
    """SIGTERM every service, wait for them, then the judge."""
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()
    judge.terminate()
    judge.wait()


ROUND_FILES = ("samples.jsonl", "judgments.jsonl", "pairs.jsonl", "train.json", "eval.json",
               "eval_answers.jsonl", "checkpoint/model.safetensors")


def outputs(job_dir, rounds=(1, 2), extra=()):
    """sha256 of each round's output files (ROUND_FILES + `extra`), by "iter_NNN/file"."""
    out = {}
    for rnd in rounds:
        d = os.path.join(job_dir, "iter_%03d" % rnd)
        for f in ROUND_FILES + tuple(extra):
            with open(os.path.join(d, f), "rb") as fh:
                out["iter_%03d/%s" % (rnd, f)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def sigkill(p):
    p.send_signal(signal.SIGKILL)
    p.wait()


def submit(spar, addr, spec, directory, request_id):
    """`spar submit` of `spec` (written to directory/job.json); returns the job id."""
    path = os.path.join(directory, "job.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    r = subprocess.run([spar, "submit", path, "--addr=" + addr, "--request_id=" + request_id],
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail("submit: " + r.stderr)
    return r.stdout.strip()


def serve_args(spar, role, ports, data, runs, judge_url):
    """`spar serve --role=ROLE` as the e2e clusters run it: every service confines the paths it
    accepts to the data root and the runs dir; the orchestrator reaches the others at `ports`."""
    addr = lambda r: "127.0.0.1:%d" % ports[r]  # noqa: E731
    args = [spar, "serve", "--role=" + role, "--port=%d" % ports[role], "--metrics_port=0",
            "--runs_dir=" + runs, "--data_root=" + data]
    if role == "oracle":
        args += ["--judge_url=" + judge_url,
                 "--judge_cache=" + os.path.join(data, "judge-cache.sqlite")]
    if role == "orchestrator":
        args += ["--sampler_address=" + addr("sampler"), "--oracle_address=" + addr("oracle"),
                 "--trainer_address=" + addr("trainer")]
    return args
