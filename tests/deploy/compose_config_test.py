#!/usr/bin/python3
"""Static checks of deploy/: both Compose files validate with `docker-compose config -q` and have
what the issue asks for (GPU reservations, service_healthy ordering, healthchecks, the judge key
as a secret, a shared data volume); the CPU file equals the GPU file minus the GPU parts; the
Dockerfile has its stages, a non-root user, a `spar health` HEALTHCHECK and the runtime
binaries; Grafana provisioning and the dashboard are well-formed and use the provisioned
datasource uid.

usage: compose_config_test.py REPO_DIR
"""

import copy
import json
import os
import re
import subprocess
import sys

import yaml

repo = os.path.abspath(sys.argv[1])
deploy = os.path.join(repo, "deploy")
errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)


def compose(path, *args):
    env = dict(os.environ, COMPOSE_PROFILES="local-judge")
    return subprocess.run(["docker-compose", "-f", path] + list(args), env=env,
                          capture_output=True, text=True, timeout=60)


resolved = {}
for name in ("docker-compose.yml", "docker-compose.cpu.yml"):
    path = os.path.join(deploy, name)
    r = compose(path, "config", "-q")
    check(r.returncode == 0, "%s: docker-compose config -q: %s" % (name, r.stderr))
    r = compose(path, "config")
    if r.returncode == 0:
        resolved[name] = yaml.safe_load(r.stdout)
# .env.example must be a working env file.
r = subprocess.run(["docker-compose", "-f", os.path.join(deploy, "docker-compose.yml"), "--env-file",
                    os.path.join(deploy, ".env.example"), "config", "-q"],
                   capture_output=True, text=True, timeout=60)
check(r.returncode == 0, ".env.example does not validate: %s" % r.stderr)

gpu = resolved.get("docker-compose.yml")
cpu = resolved.get("docker-compose.cpu.yml")
if gpu and cpu:
    s = gpu["services"]
    for svc in ("orchestrator", "sampler", "oracle", "trainer", "spar-judge", "prometheus", "grafana"):
        check(svc in s, "no service %s" % svc)
    for svc in ("sampler", "trainer"):
        devs = (s[svc].get("deploy", {}).get("resources", {}).get("reservations", {})
                .get("devices", []))
        check(any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) and
                  "count" in d for d in devs), "%s has no nvidia GPU reservation: %s" % (svc, devs))
    check("replicas" in s["sampler"].get("deploy", {}), "sampler has no deploy.replicas")
    for svc in ("sampler", "oracle", "trainer"):
        check(s["orchestrator"]["depends_on"].get(svc, {}).get("condition") == "service_healthy",
              "orchestrator does not wait for %s to be healthy" % svc)
    check(s["grafana"]["depends_on"].get("prometheus", {}).get("condition") == "service_healthy",
          "grafana does not wait for prometheus")
    for name, svc in s.items():
        check("healthcheck" in svc and svc["healthcheck"].get("test"), "%s has no healthcheck" % name)
    for svc in ("sampler", "oracle", "trainer", "orchestrator"):
        test = s[svc]["healthcheck"]["test"]
        check(test[:3] == ["CMD", "spar", "health"] and "--addr=127.0.0.1:50051" in test,
              "%s healthcheck is not spar health on :50051: %s" % (svc, test))
        check(s[svc]["command"][:2] == ["serve", "--role=" + svc], "%s does not run serve --role" % svc)
    # The judge key: a Compose secret, handed to spar as a file, never as a plain variable.
    check("judge_api_key" in [x if isinstance(x, str) else x.get("source") for x in s["oracle"].get("secrets", [])],
          "oracle does not get the judge_api_key secret")
    check(s["oracle"].get("environment", {}).get("SPAR_JUDGE_API_KEY_FILE") == "/run/secrets/judge_api_key",
          "oracle has no SPAR_JUDGE_API_KEY_FILE=/run/secrets/judge_api_key")
    for name, svc in s.items():
        check("SPAR_JUDGE_API_KEY" not in (svc.get("environment") or {}), "%s passes the key in env" % name)
    check("judge_api_key" in gpu.get("secrets", {}), "no top-level judge_api_key secret")
    # One data volume for runs/ and models, shared by the services that read and write it.
    def data_source(svc):
        for v in s[svc].get("volumes", []):
            if isinstance(v, dict) and v.get("target") == "/data":
                return v.get("source")
            if isinstance(v, str) and v.split(":")[1:2] == ["/data"]:
                return v.split(":")[0]
        return None
    srcs = {svc: data_source(svc) for svc in ("orchestrator", "sampler", "trainer")}
    check(len(set(srcs.values())) == 1 and None not in srcs.values(), "no shared /data volume: %s" % srcs)
    orch = " ".join(s["orchestrator"]["command"])
    for flag in ("--runs_dir=/data/runs", "--data_root=/data", "--sampler_address=dns:///sampler:50051",
                 "--oracle_address=dns:///oracle:50051", "--trainer_address=dns:///trainer:50051"):
        check(flag in orch, "orchestrator command lacks %s" % flag)

    # The CPU file is the GPU file without GPU reservations, on the CPU image.
    def strip_gpu(cfg):
        cfg = copy.deepcopy(cfg)
        for svc in cfg["services"].values():
            svc.pop("image", None)
            if isinstance(svc.get("build"), dict):
                svc["build"].pop("target", None)
            res = svc.get("deploy", {}).get("resources", {})
            res.get("reservations", {}).pop("devices", None)
            if res.get("reservations") == {}:
                res.pop("reservations")
            if svc.get("deploy", {}).get("resources") == {}:
                svc["deploy"].pop("resources")
            if svc.get("deploy") == {}:
                svc.pop("deploy")
            svc.get("healthcheck", {}).pop("start_period", None)
        return cfg
    check(strip_gpu(gpu) == strip_gpu(cpu), "docker-compose.cpu.yml differs from docker-compose.yml "
          "beyond GPU reservations, image and start periods")
    cs = cpu["services"]
    for name, svc in cs.items():
        check(not svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices"),
              "cpu file: %s still reserves devices" % name)
    check(cs["sampler"]["build"]["target"] == "runtime-cpu", "cpu file does not build runtime-cpu")
    check(s["sampler"]["build"]["target"] == "runtime-cuda", "gpu file does not build runtime-cuda")

# Dockerfile structure (no hadolint on Debian 12; docker cannot build here).
with open(os.path.join(deploy, "Dockerfile")) as f:
    df = f.read()
stages = re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)", df, re.M | re.I)
names = [n for _, n in stages]
for st in ("build-cpu", "runtime-cpu", "build-cuda", "runtime-cuda"):
    check(st in names, "Dockerfile has no stage %s (has %s)" % (st, names))
check(re.search(r"^ARG CUDA_DEVEL_IMAGE=nvidia/cuda:\S+-devel-", df, re.M), "no CUDA devel base ARG")
check(re.search(r"^ARG LIBTORCH_URL=https://download\.pytorch\.org/libtorch/cu\d+/libtorch-cxx11-abi-shared-with-deps-", df, re.M),
      "no official LibTorch CUDA (cxx11 ABI) URL ARG")
# Every package scripts/dev installs for the build (not test-only ones) is in build-cpu.
with open(os.path.join(repo, "scripts", "dev")) as f:
    dev = f.read()
pkgs = re.search(r"PACKAGES=\((.*?)\)", dev, re.S).group(1).split()
build_cpu = df[df.index("AS build-cpu"):df.index("AS runtime-cpu")]
test_only = {"ccache", "libgtest-dev", "libgmock-dev", "libbenchmark-dev", "prometheus", "docker-compose",
             "python3-grpcio", "python3-protobuf", "python3-yaml"}
for p in pkgs:
    if p not in test_only:
        check(re.search(r"\b%s\b" % re.escape(p), build_cpu), "build-cpu lacks scripts/dev package %s" % p)
for runtime in ("runtime-cpu", "runtime-cuda"):
    start = df.index("AS " + runtime)
    nxt = df.find("\nFROM ", start)
    body = df[start: nxt if nxt >= 0 else len(df)]
    users = re.findall(r"^USER\s+(\S+)", body, re.M)
    check(users and not users[-1].startswith(("root", "0")), "%s does not run as a non-root user" % runtime)
    check(re.search(r'^HEALTHCHECK .*\n?.*CMD \["spar", "health", "--addr=127\.0\.0\.1:50051"\]', body, re.M),
          "%s has no `spar health` HEALTHCHECK" % runtime)
    check(re.search(r"COPY --from=build-\w+ /out/bin/spar /out/bin/spar-judge /usr/local/bin/", body),
          "%s does not copy spar and spar-judge" % runtime)
    check('ENTRYPOINT ["spar"]' in body, "%s has no spar entrypoint" % runtime)
    check("build-essential" not in body and "-dev " not in body, "%s installs build tools" % runtime)
check(os.path.isfile(os.path.join(deploy, "Dockerfile.dockerignore")), "no Dockerfile.dockerignore")
for src in re.findall(r"^COPY (?!--from)(\S+) ", df, re.M):
    check(os.path.exists(os.path.join(repo, src)), "Dockerfile copies missing %s" % src)

# Grafana provisioning and dashboard.
with open(os.path.join(deploy, "grafana", "provisioning", "datasources", "prometheus.yml")) as f:
    ds = yaml.safe_load(f)["datasources"]
uid = ds[0]["uid"]
check(ds[0]["type"] == "prometheus" and ds[0]["url"] == "http://prometheus:9090", "datasource: %s" % ds)
with open(os.path.join(deploy, "grafana", "provisioning", "dashboards", "spar.yml")) as f:
    prov = yaml.safe_load(f)["providers"]
mounted = [v.split(":")[1] for v in yaml.safe_load(open(os.path.join(deploy, "docker-compose.yml")))["services"]["grafana"]["volumes"]]
check(prov[0]["options"]["path"] in mounted, "dashboard provider path %s is not mounted" % prov[0]["options"]["path"])
with open(os.path.join(deploy, "grafana", "dashboards", "spar.json")) as f:
    dash = json.load(f)
check(dash.get("uid") == "spar-overview", "dashboard uid")
ids = [p["id"] for p in dash["panels"]]
check(len(ids) == len(set(ids)), "duplicate panel ids")
titles = " | ".join(p["title"] for p in dash["panels"]).lower()
for want in ("round progress", "stage duration", "sampler tokens/s", "judge calls/s", "judge latency",
             "judge error ratio", "retries", "cache hit", "cost", "train loss", "reward margin",
             "reward accuracy", "win rate"):
    check(want in titles, "dashboard has no %r panel" % want)
for p in dash["panels"]:
    if p["type"] == "row":
        continue
    check(p.get("datasource", {}).get("uid") == uid, "panel %r not on datasource uid %s" % (p["title"], uid))
    for t in p.get("targets", []):
        check(t.get("datasource", {}).get("uid") == uid and t.get("expr"), "panel %r target" % p["title"])

if errors:
    for e in errors:
        print("FAIL: " + e, file=sys.stderr)
    sys.exit(1)
print("deploy config: ok (%d stages, %d dashboard panels)" % (len(stages), len(dash["panels"])))
