#!/usr/bin/python3
"""The Compose stack as processes on loopback, observed through a real Prometheus.

Reads deploy/docker-compose.yml as Compose resolves it (`docker-compose config`), starts
spar-judge and `spar serve --role=X` for sampler, oracle, trainer and orchestrator with exactly
the commands and environment written there -- only the container-specific values are mapped:
--host=0.0.0.0 -> 127.0.0.1, the fixed ports -> 0 (each process prints the port it got),
service names -> the loopback addresses of the started processes, the /data volume -> a temp
data root, /etc/spar/spar.json and /run/secrets/* -> the files Compose would mount there. Runs
each service's Compose healthcheck command, then starts Prometheus (Debian's `prometheus`) with
deploy/prometheus/prometheus.yml's job names and alert rules but static loopback targets and a
1s scrape interval, runs the documented example job deploy/examples/dno-arith-smoke.json as
written (`spar submit ... --watch`), and asserts through Prometheus's HTTP API that the key
series exist and moved, that every alert rule loaded and evaluates, that no alert fires, and that
every Grafana dashboard query evaluates (and the core ones return data).

usage: compose_e2e_test.py BIN_DIR REPO_DIR WORK_DIR CACHE_DIR
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_common  # noqa: E402
from deploy_common import (Procs, data_root_with_model, fail, fresh_dir, start_judge,  # noqa: E402
                           start_prometheus, start_spar)

bin_dir, repo, work, cache = sys.argv[1:5]
spar_bin = os.path.join(bin_dir, "spar")
health_bin = os.path.join(bin_dir, "spar-health")
judge_bin = os.path.join(bin_dir, "spar-judge")
deploy = os.path.join(os.path.abspath(repo), "deploy")
work = fresh_dir(work)
t0 = time.monotonic()


def compose_config(path):
    env = dict(os.environ, COMPOSE_PROFILES="local-judge")
    out = subprocess.run(["docker-compose", "-f", path, "config"], env=env, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return yaml.safe_load(out)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


cfg = compose_config(os.path.join(deploy, "docker-compose.yml"))
services = cfg["services"]
for role in ("sampler", "oracle", "trainer", "orchestrator", "spar-judge"):
    if role not in services:
        fail("compose file has no service %s" % role)
deps = services["orchestrator"].get("depends_on", {})
for role in ("sampler", "oracle", "trainer"):
    if deps.get(role, {}).get("condition") != "service_healthy":
        fail("orchestrator must depend on %s with condition service_healthy: %s" % (role, deps))

data = data_root_with_model(spar_bin, cache, work)
runs = os.path.join(work, "runs")
secrets_dir = fresh_dir(os.path.join(work, "secrets"))
# Files Compose mounts into the containers: bind mounts (host path -> container path) and secrets.
mounts = {}
for svc in services.values():
    for v in svc.get("volumes", []):
        if isinstance(v, dict) and v.get("type") == "bind":
            mounts[v["target"]] = v["source"]
        elif isinstance(v, str) and v.count(":") >= 1 and v.startswith("/"):
            src, dst = v.split(":")[:2]
            mounts[dst] = src
secret_files = {}
for name in cfg.get("secrets", {}):
    path = os.path.join(secrets_dir, name)
    with open(path, "w") as f:
        f.write("sk-test-%s\n" % name)
    secret_files["/run/secrets/" + name] = path

addresses = {}  # compose service name -> (grpc address, metrics port)


def map_arg(arg):
    """A container command-line flag -> the same flag for a loopback process."""
    name, _, value = arg.partition("=")
    if name == "--host":
        return "--host=127.0.0.1"
    if name in ("--port", "--metrics_port"):
        return name + "=0"
    if name == "--runs_dir":
        if not value.startswith("/data/"):
            fail("--runs_dir %s is not on the /data volume" % value)
        return "--runs_dir=" + runs
    if name == "--data_root":
        if value != "/data":
            fail("--data_root %s is not the /data volume" % value)
        return "--data_root=" + data
    if name == "--judge_cache":
        if not value.startswith("/data/"):
            fail("--judge_cache %s is not on the /data volume" % value)
        return "--judge_cache=" + os.path.join(data, value[len("/data/"):])
    if name == "--config":
        if value not in mounts:
            fail("--config %s is not a file the compose file mounts" % value)
        return "--config=" + mounts[value]
    if name.endswith("_address"):
        m = re.fullmatch(r"dns:///([a-z-]+):50051", value)
        if not m or m.group(1) not in addresses:
            fail("%s: %s is not dns:///<started service>:50051" % (name, value))
        return "%s=dns:///%s" % (name, addresses[m.group(1)][0])
    if name == "--judge_url":
        m = re.fullmatch(r"http://spar-judge:8081(/v1)", value)
        if not m:
            fail("--judge_url %s does not name the spar-judge service" % value)
        return "--judge_url=" + judge_url
    return arg


def service_env(svc):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPAR_API_TOKEN")}
    for k, v in (svc.get("environment") or {}).items():
        env[k] = secret_files.get(v, v)
    return env


procs = Procs(work)
try:
    judge = services["spar-judge"]
    if judge.get("entrypoint") != ["spar-judge"]:
        fail("spar-judge entrypoint: %s" % judge.get("entrypoint"))
    _, judge_url = start_judge(procs, judge_bin, [map_arg(a) for a in judge["command"]])

    for role in ("sampler", "oracle", "trainer", "orchestrator"):
        svc = services[role]
        cmd = svc["command"]
        if cmd[:2] != ["serve", "--role=" + role]:
            fail("%s command does not start with serve --role=%s: %s" % (role, role, cmd))
        argv = [map_arg(a) for a in cmd]
        p = procs.start(role, [spar_bin] + argv, env=service_env(svc))
        m = procs.wait_line(p, r"spar listening on (\S+) \(metrics on :(\d+)\)")
        addresses[role] = (m.group(1), int(m.group(2)))
        # The service's own healthcheck (the light spar-health probe), pointed at the port it got,
        # with the container's environment (the token file included).
        test = svc["healthcheck"]["test"]
        if test[0] != "CMD" or test[1] != "spar-health":
            fail("%s healthcheck is not `spar-health`: %s" % (role, test))
        hc = [health_bin] + [("--addr=" + addresses[role][0]) if a.startswith("--addr=") else a
                             for a in test[2:]]
        r = subprocess.run(hc, capture_output=True, text=True, timeout=10, env=service_env(svc))
        if r.returncode != 0 or "SERVING" not in r.stdout:
            fail("%s healthcheck %s: rc %d %s %s" % (role, hc, r.returncode, r.stdout, r.stderr))
    oracle_log = procs.log(procs.procs[2])
    for p in procs.procs:
        if "sk-test-api_token" in procs.log(p):
            fail("%s logged the service token" % p.name)
    if "sk-test" in oracle_log or '"api_key":"<redacted>"' not in oracle_log:
        fail("oracle did not read the key file from SPAR_JUDGE_API_KEY_FILE (or logged it):\n" + oracle_log)
    orch_addr = addresses["orchestrator"][0]
    # Every service requires the token from the api_token secret: without it the orchestrator
    # refuses; the client commands below read it as the containers do (SPAR_API_TOKEN_FILE).
    if "/run/secrets/api_token" not in secret_files:
        fail("the compose file declares no api_token secret")
    client_env = {k: v for k, v in os.environ.items() if not k.startswith("SPAR_API_TOKEN")}
    r = subprocess.run([spar_bin, "list", "--addr=" + orch_addr], capture_output=True, text=True,
                       timeout=30, env=client_env)
    if r.returncode == 0 or "authorization" not in r.stderr:
        fail("the orchestrator answered without the token: rc %d %s" % (r.returncode, r.stderr))
    client_env["SPAR_API_TOKEN_FILE"] = secret_files["/run/secrets/api_token"]

    # Prometheus: the deploy config's jobs and rules, loopback targets, 1s scrapes.
    with open(os.path.join(deploy, "prometheus", "prometheus.yml")) as f:
        prom = yaml.safe_load(f)
    jobs = {"spar-orchestrator": "orchestrator", "spar-sampler": "sampler",
            "spar-oracle": "oracle", "spar-trainer": "trainer"}
    names = [sc["job_name"] for sc in prom["scrape_configs"]]
    for job in jobs:
        if job not in names:
            fail("prometheus.yml has no job %s (has %s)" % (job, names))
    prom_port = free_port()
    prom["global"]["scrape_interval"] = "1s"
    prom["global"]["evaluation_interval"] = "1s"
    prom["rule_files"] = [os.path.join(deploy, "prometheus", f) for f in prom["rule_files"]]
    for sc in prom["scrape_configs"]:
        if sc["job_name"] in jobs:
            sc.pop("dns_sd_configs")
            sc["static_configs"] = [{"targets": ["127.0.0.1:%d" % addresses[jobs[sc["job_name"]]][1]]}]
        elif sc["job_name"] == "prometheus":
            sc["static_configs"] = [{"targets": ["127.0.0.1:%d" % prom_port]}]
    prom_cfg = os.path.join(work, "prometheus.yml")
    with open(prom_cfg, "w") as f:
        yaml.safe_dump(prom, f)
    _, api = start_prometheus(procs, prom_cfg, work, prom_port)

    def query(expr):
        return api("/api/v1/query", query=expr)["result"]

    def wait_for(what, pred, timeout=60.0):
        return deploy_common.wait_for(
            what, pred, timeout, 0.25,
            lambda: (", rules: %s" % rule_state.get("bad")) if "rule" in what else "")

    # All four targets up (and scraped at least once) before the job, so counters start at 0.
    wait_for("4 spar targets up", lambda: len([r for r in query('up{job=~"spar-.*"} == 1')]) == 4)

    # The documented example job, as written.
    spec = os.path.join(deploy, "examples", "dno-arith-smoke.json")
    r = subprocess.run([spar_bin, "submit", spec, "--addr=" + orch_addr, "--watch"],
                       capture_output=True, text=True, timeout=300, env=client_env)
    print(r.stdout)
    if r.returncode != 0:
        fail("spar submit --watch exited %d: %s" % (r.returncode, r.stderr))
    job = r.stdout.splitlines()[0].strip()
    st = subprocess.run([spar_bin, "status", job, "--addr=" + orch_addr], capture_output=True,
                        text=True, timeout=30, env=client_env)
    if st.returncode != 0 or "succeeded" not in st.stdout:
        fail("job %s: %s %s" % (job, st.stdout, st.stderr))
    for f in ("samples.jsonl", "judgments.jsonl", "pairs.jsonl", "eval.json", "checkpoint/model.safetensors"):
        if not os.path.getsize(os.path.join(runs, job, "iter_001", f)):
            fail("empty %s" % f)
    if not os.path.getsize(os.path.join(data, "judge-cache.sqlite")):
        fail("the oracle wrote no judgment cache on the /data volume")

    # Key series exist and moved (first scrape before the job saw them at 0).
    moved = {
        "spar_orchestrator_rounds_completed_total": None,
        "spar_orchestrator_pairs_kept_total": None,
        "spar_orchestrator_stage_duration_seconds_count": 'stage="train"',
        "spar_sampler_samples_total": None,
        "spar_sampler_generated_tokens_total": None,
        "spar_oracle_http_requests_total": 'code="200"',
        "spar_oracle_judgments_total": 'result="ok"',
        "spar_trainer_steps_total": None,
    }
    for metric, sel in moved.items():
        s = "%s{%s}" % (metric, sel) if sel else metric
        expr = "max_over_time(%s[10m]) - min_over_time(%s[10m]) > 0" % (s, s)
        res = wait_for("%s to move" % s, lambda: query(expr))
        print("moved: %-52s +%s" % (s, res[0]["value"][1]))
    gauges = {
        'spar_orchestrator_jobs{state="succeeded"} >= 1': "a succeeded job",
        'spar_orchestrator_jobs{state="running"} == 0': "no running job",
        "spar_orchestrator_win_rate_vs_base_ratio > 0": "win rate vs pi_0",
        "spar_orchestrator_greedy_accuracy_ratio > 0": "greedy accuracy",
        "spar_trainer_loss > 0": "train loss",
        "spar_trainer_reward_accuracy_ratio >= 0": "reward accuracy",
        'spar_oracle_http_latency_seconds_count > 0': "judge latency histogram",
    }
    for expr, what in gauges.items():
        wait_for(what + ": " + expr, lambda: query(expr))

    # Alert rules: loaded, evaluated without error, none firing or pending on a healthy stack.
    rule_state = {}

    def rules_ok():
        groups = api("/api/v1/rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        rule_state["bad"] = [(r["name"], r.get("health"), r.get("lastError")) for r in rules
                             if r.get("health") != "ok"]
        return rules if rules and not rule_state["bad"] else None
    rules = wait_for("every alert rule evaluated ok", rules_ok, timeout=30)
    if rule_state["bad"]:
        fail("rules not ok: %s" % rule_state["bad"])
    with open(os.path.join(deploy, "prometheus", "alerts.yml")) as f:
        want = {r["alert"] for g in yaml.safe_load(f)["groups"] for r in g["rules"]}
    got = {r["name"] for r in rules}
    if got != want:
        fail("rules loaded %s, want %s" % (sorted(got), sorted(want)))
    active = [a for a in api("/api/v1/alerts")["alerts"]]
    if active:
        fail("alerts active on a healthy stack: %s" % active)

    # Every Grafana dashboard query evaluates; the ones on series this job produces have data.
    with open(os.path.join(deploy, "grafana", "dashboards", "spar.json")) as f:
        dash = json.load(f)
    exprs = [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]
    # Panels allowed to be empty here: oracle series that exist only once the oracle exports its
    # judgment cache and budget/cost accounting (docs/operations.md lists the expected names).
    allowed_empty = {"Judge cache hit ratio", "Judge cost", "Judge budget remaining"}
    empty = []
    deadline = time.monotonic() + 30  # series born during the job need a few scrapes for rate()
    for title, expr in exprs:
        e = expr.replace("$__rate_interval", "1m").replace("$__range", "10m")
        while not query(e):  # query() fails the test on a query error
            if title in allowed_empty:
                empty.append(title)
                break
            if time.monotonic() > deadline:
                fail("dashboard panel %r has no data after a job: %s" % (title, e))
            time.sleep(0.25)
    print("dashboard: %d queries evaluate, empty (allowed): %s" % (len(exprs), sorted(set(empty))))
    print("compose e2e: ok in %.1fs" % (time.monotonic() - t0))
except SystemExit:
    procs.dump_logs()
    raise
finally:
    procs.stop_all()
