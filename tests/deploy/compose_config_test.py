#!/usr/bin/python3
"""Static checks of deploy/: both Compose files validate with `docker-compose config -q` and have
what the issue asks for (GPU reservations, service_healthy ordering, healthchecks through the
light `spar-health` probe, the judge key and the service token as secrets, the oracle's plain-http
opt-in for the local judge, build args for the base images, a shared data volume); the CPU file
equals the GPU file minus the GPU parts; a copied .env.example builds spar:cpu/runtime-cpu with the
CPU file and spar:cuda/runtime-cuda with the GPU file; the Dockerfile has its stages, no
`# syntax=` line, a non-root user, a `spar-health` HEALTHCHECK and the runtime binaries; the root
.dockerignore keeps the build context to the sources; Grafana provisioning and the dashboard are
well-formed and use the provisioned datasource uid.

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
    env = dict(os.environ, COMPOSE_PROFILES="local-judge,engine-sglang")
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
# A copied .env.example leaves image and target to each file (issue 12 item 14).
for name, tag, target in (("docker-compose.yml", "cuda", "runtime-cuda"),
                          ("docker-compose.cpu.yml", "cpu", "runtime-cpu")):
    r = subprocess.run(["docker-compose", "-f", os.path.join(deploy, name), "--env-file",
                        os.path.join(deploy, ".env.example"), "config"],
                       capture_output=True, text=True, timeout=60)
    if r.returncode == 0:
        for svc_name, svc in yaml.safe_load(r.stdout)["services"].items():
            if "build" in svc:
                check(svc.get("image") == "spar:" + tag and svc["build"].get("target") == target,
                      "%s with .env.example: %s builds %s/%s, want spar:%s/%s" % (
                          name, svc_name, svc.get("image"), svc["build"].get("target"), tag, target))

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
    # The engine-sglang profile: a GPU engine on the shared volume, chosen by the orchestrator.
    check("sglang" in s, "no sglang service (profile engine-sglang)")
    if "sglang" in s:
        devs = (s["sglang"].get("deploy", {}).get("resources", {}).get("reservations", {})
                .get("devices", []))
        check(any(d.get("driver") == "nvidia" for d in devs), "sglang has no GPU reservation")
        check(s["sglang"].get("profiles") == ["engine-sglang"], "sglang is not behind its profile")
        check(any((v.get("target") if isinstance(v, dict) else v.split(":")[1]) == "/data"
                  for v in s["sglang"].get("volumes", [])),
              "sglang does not mount the data volume at /data")
    orch_cmd = " ".join(s["orchestrator"]["command"])
    check("--sampler_engine=native" in orch_cmd and "--sampler_engine_url=http://sglang:30000"
          in orch_cmd, "orchestrator does not pass the sampler engine: %s" % orch_cmd)
    for svc in ("sampler", "oracle", "trainer"):
        check(s["orchestrator"]["depends_on"].get(svc, {}).get("condition") == "service_healthy",
              "orchestrator does not wait for %s to be healthy" % svc)
    check(s["grafana"]["depends_on"].get("prometheus", {}).get("condition") == "service_healthy",
          "grafana does not wait for prometheus")
    for name, svc in s.items():
        check("healthcheck" in svc and svc["healthcheck"].get("test"), "%s has no healthcheck" % name)
    for svc in ("sampler", "oracle", "trainer", "orchestrator"):
        test = s[svc]["healthcheck"]["test"]
        check(test[:2] == ["CMD", "spar-health"] and "--addr=127.0.0.1:50051" in test,
              "%s healthcheck is not spar-health on :50051: %s" % (svc, test))
        check(s[svc]["command"][:2] == ["serve", "--role=" + svc], "%s does not run serve --role" % svc)
        # The service token: a Compose secret read through SPAR_API_TOKEN_FILE, never a variable.
        env = s[svc].get("environment") or {}
        check(env.get("SPAR_API_TOKEN_FILE") == "/run/secrets/api_token",
              "%s has no SPAR_API_TOKEN_FILE=/run/secrets/api_token" % svc)
        check("SPAR_API_TOKEN" not in env, "%s passes the token in env" % svc)
        check("api_token" in [x if isinstance(x, str) else x.get("source")
                              for x in s[svc].get("secrets", [])],
              "%s does not get the api_token secret" % svc)
    check("api_token" in gpu.get("secrets", {}), "no top-level api_token secret")
    # The local judge is plain http on the Compose network: the oracle opts in for it by name.
    check("--judge_allow_http_host=spar-judge" in s["oracle"]["command"],
          "oracle command lacks --judge_allow_http_host=spar-judge")
    # Base images and jobs can be set through Compose (offline hosts make their own bases).
    for name, svc in s.items():
        if "build" in svc:
            args = svc["build"].get("args") or {}
            for arg, default in (("DEBIAN_IMAGE", "debian:12"), ("DEBIAN_SLIM_IMAGE", "debian:12-slim"),
                                 ("CUDA_DEVEL_IMAGE", None), ("CUDA_RUNTIME_IMAGE", None),
                                 ("BUILD_JOBS", "4")):
                check(arg in args, "%s build passes no %s arg" % (name, arg))
                if default is not None:
                    check(str(args.get(arg)) == default, "%s build arg %s defaults to %s, want %s"
                          % (name, arg, args.get(arg), default))
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
        cfg["services"].pop("sglang", None)  # a GPU engine only (profile engine-sglang)
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
with open(os.path.join(deploy, ".env.example")) as f:
    env_example = f.read()
check(not re.search(r"^#\s*syntax\s*=", df, re.M | re.I),
      "Dockerfile has a `# syntax=` line (BuildKit would pull a frontend image)")
stages = re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)", df, re.M | re.I)
for arg in ("DEBIAN_IMAGE", "DEBIAN_SLIM_IMAGE", "CUDA_DEVEL_IMAGE", "CUDA_RUNTIME_IMAGE", "BUILD_JOBS"):
    check(re.search(r"^ARG %s=" % arg, df, re.M), "Dockerfile has no ARG %s" % arg)
    check(re.search(r"^#\s*%s=" % arg, env_example, re.M), ".env.example does not document %s" % arg)
names = [n for _, n in stages]
for st in ("build-cpu", "runtime-cpu", "build-cuda", "runtime-cuda"):
    check(st in names, "Dockerfile has no stage %s (has %s)" % (st, names))
check(re.search(r"^ARG CUDA_DEVEL_IMAGE=nvidia/cuda:\S+-devel-", df, re.M), "no CUDA devel base ARG")
# The CUDA image builds against the LibTorch CI compiles: the torch wheel pinned in
# scripts/requirements-ref.txt, a CUDA 13 build (+cu130), so a CUDA 13 base image.
build_cuda = df[df.index("AS build-cuda"):df.index("AS runtime-cuda")]
check("COPY scripts/requirements-ref.txt" in build_cuda and "-DSPAR_LIBTORCH=pypi" in build_cuda,
      "build-cuda does not build against the pinned PyPI torch (scripts/requirements-ref.txt)")
with open(os.path.join(repo, "scripts", "requirements-ref.txt")) as f:
    check(re.search(r"^torch==2\.\d+\.\d+$", f.read(), re.M), "requirements-ref.txt pins no torch")
check(re.search(r"^ARG CUDA_DEVEL_IMAGE=nvidia/cuda:13\.", df, re.M), "CUDA base is not CUDA 13")
check("-DSPAR_LIBTORCH=debian" in df[df.index("AS build-cpu"):df.index("AS runtime-cpu")],
      "build-cpu does not build against Debian's LibTorch")
# Every package scripts/dev installs for the build (not test-only ones) is in build-cpu.
with open(os.path.join(repo, "scripts", "dev")) as f:
    dev = f.read()
pkgs = re.search(r"PACKAGES=\((.*?)\)", dev, re.S).group(1).split()
build_cpu = df[df.index("AS build-cpu"):df.index("AS runtime-cpu")]
test_only = {"ccache", "libgtest-dev", "libgmock-dev", "libbenchmark-dev", "prometheus", "docker-compose",
             "python3-grpcio", "python3-protobuf", "python3-yaml",
             "python3-venv",  # the reference libraries (.venv) are for tests only
             "clang-format"}  # the style.clang_format test
for p in pkgs:
    if p not in test_only:
        check(re.search(r"\b%s\b" % re.escape(p), build_cpu), "build-cpu lacks scripts/dev package %s" % p)
for runtime in ("runtime-cpu", "runtime-cuda"):
    start = df.index("AS " + runtime)
    nxt = df.find("\nFROM ", start)
    body = df[start: nxt if nxt >= 0 else len(df)]
    users = re.findall(r"^USER\s+(\S+)", body, re.M)
    check(users and not users[-1].startswith(("root", "0")), "%s does not run as a non-root user" % runtime)
    check(re.search(r'^HEALTHCHECK .*\n?.*CMD \["spar-health", "--addr=127\.0\.0\.1:50051"\]', body, re.M),
          "%s has no `spar-health` HEALTHCHECK" % runtime)
    check(re.search(r"COPY --from=build-\w+ /out/bin/spar /out/bin/spar-judge /out/bin/spar-health /usr/local/bin/", body),
          "%s does not copy spar, spar-judge and spar-health" % runtime)
    check('ENTRYPOINT ["spar"]' in body, "%s has no spar entrypoint" % runtime)
    check("build-essential" not in body and "-dev " not in body, "%s installs build tools" % runtime)
# The classic builder reads only the context root's .dockerignore: it must exclude everything but
# what the Dockerfile copies (build/ is gigabytes).
check(not os.path.exists(os.path.join(deploy, "Dockerfile.dockerignore")),
      "deploy/Dockerfile.dockerignore is ignored by the classic builder: use the root .dockerignore")
ignore_path = os.path.join(repo, ".dockerignore")
ignore = []
if os.path.isfile(ignore_path):
    with open(ignore_path) as f:
        ignore = [l.strip() for l in f if l.strip() and not l.startswith("#")]
check(ignore[:1] == ["**"], "root .dockerignore does not start by excluding everything (**): %s" % ignore[:1])
included = {l[1:].rstrip("/") for l in ignore if l.startswith("!")}
check(not any(i == "build" or i.startswith("build/") for i in included), ".dockerignore sends build/")
for src in re.findall(r"^COPY (?!--from)(\S+) ", df, re.M):
    check(os.path.exists(os.path.join(repo, src)), "Dockerfile copies missing %s" % src)
    src = src.rstrip("/")
    check(src == "." or any(src == i or src.startswith(i + "/") for i in included),
          "Dockerfile copies %s, which .dockerignore excludes" % src)

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
