#!/usr/bin/python3
"""Static checks of deploy/: both Compose files validate with `docker-compose config -q` and have
what the issue asks for (GPU reservations, service_healthy ordering, healthchecks through the
light `spar-health` probe, the judge key and the service token as secrets, the oracle's plain-http
opt-in for the local judge, build args for the base images, a shared data volume); the CPU file
equals the GPU file minus the GPU parts; a copied .env.example builds spar:cpu/runtime-cpu with the
CPU file and spar:cuda/runtime-cuda with the GPU file; the Dockerfile has its stages (the prebuilt
CPU image before any build stage, both CPU runtimes on one base), no `# syntax=` line, a non-root
user, a `spar-health` HEALTHCHECK, the runtime binaries, the build context entering only through
its `sources` stage and the CMake options only through deploy/cmake/image-*.cmake; the root
.dockerignore (evaluated like Docker does) leaves out build trees, VCS and secrets and keeps in
CMakeLists.txt, cmake/ and every directory the top-level CMakeLists.txt adds (unless an option
the image builds set OFF guards it); Grafana provisioning and the dashboard are well-formed and
use the provisioned datasource uid.

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

# Dockerfile structure (no hadolint on Debian 12; the image itself is built by deploy.docker_stack).
with open(os.path.join(deploy, "Dockerfile")) as f:
    df = f.read()
with open(os.path.join(deploy, ".env.example")) as f:
    env_example = f.read()
check(not re.search(r"^#\s*syntax\s*=", df, re.M | re.I),
      "Dockerfile has a `# syntax=` line (BuildKit would pull a frontend image)")
stages = re.findall(r"^FROM\s+(\S+)\s+AS\s+(\S+)", df, re.M | re.I)
names = [n for _, n in stages]
parent = {n: base for base, n in stages}
# Each stage's text, from its FROM line to the next one.
froms = [m.start() for m in re.finditer(r"^FROM\s", df, re.M)] + [len(df)]
body = {names[i]: df[froms[i]:froms[i + 1]] for i in range(min(len(names), len(froms) - 1))}


def chain(name):
    """The stage's text after that of the stages it is built FROM (what it inherits)."""
    return (chain(parent[name]) if parent.get(name) in body else "") + body.get(name, "")


for arg in ("DEBIAN_IMAGE", "DEBIAN_SLIM_IMAGE", "CUDA_DEVEL_IMAGE", "CUDA_RUNTIME_IMAGE", "BUILD_JOBS"):
    check(re.search(r"^ARG %s=" % arg, df, re.M), "Dockerfile has no ARG %s" % arg)
    check(re.search(r"^#\s*%s=" % arg, env_example, re.M), ".env.example does not document %s" % arg)
for st in ("sources", "runtime-cpu-base", "runtime-cpu-prebuilt", "build-cpu", "runtime-cpu",
           "build-cuda", "runtime-cuda"):
    check(st in names, "Dockerfile has no stage %s (has %s)" % (st, names))
if all(st in names for st in ("runtime-cpu-prebuilt", "build-cpu", "build-cuda")):
    # The classic builder runs every stage before --target: the prebuilt image must compile nothing.
    check(names.index("runtime-cpu-prebuilt") < min(names.index("build-cpu"), names.index("build-cuda")),
          "runtime-cpu-prebuilt comes after a build stage: %s" % names)
    check(parent.get("runtime-cpu") == "runtime-cpu-base" and
          parent.get("runtime-cpu-prebuilt") == "runtime-cpu-base",
          "runtime-cpu and runtime-cpu-prebuilt are not both FROM runtime-cpu-base")
check(re.search(r"^ARG CUDA_DEVEL_IMAGE=nvidia/cuda:\S+-devel-", df, re.M), "no CUDA devel base ARG")
check(re.search(r"^ARG CUDA_DEVEL_IMAGE=nvidia/cuda:13\.", df, re.M), "CUDA base is not CUDA 13")
# The build context enters in one place: the `sources` stage copies all of it; every other stage
# copies from that stage (so no stage lists source directories that could fall behind CMakeLists).
context_copies = [(n, l) for n in names for l in re.findall(r"^(?:COPY|ADD)\s+(?!--from).*$", body.get(n, ""), re.M)]
check(context_copies == [("sources", "COPY . /src/")],
      "only the sources stage may copy from the build context (`COPY . /src/`): %s" % context_copies)
check(parent.get("sources") == "scratch", "the sources stage is not FROM scratch")
# The image builds' CMake options live in deploy/cmake/image-*.cmake (docker_stack_test configures
# the sources stage's tree with image-cpu.cmake, the file build-cpu uses).
image_cmake = {}
for stage, name, libtorch in (("build-cpu", "image-cpu.cmake", "debian"),
                              ("build-cuda", "image-cuda.cmake", "pypi")):
    text = body.get(stage, "")
    check(re.search(r"^COPY --from=sources /src /src$", text, re.M),
          "%s does not copy the source tree from the sources stage" % stage)
    check(re.search(r"\bcmake -C deploy/cmake/%s -S \. -B /build -G Ninja" % re.escape(name), text),
          "%s does not configure with `cmake -C deploy/cmake/%s -S . -B /build -G Ninja`" % (stage, name))
    check(not re.search(r"cmake\b.*-DSPAR_", text), "%s sets SPAR_ options outside %s" % (stage, name))
    path = os.path.join(deploy, "cmake", name)
    image_cmake[name] = open(path).read() if os.path.isfile(path) else ""
    check(re.search(r"^set\(SPAR_LIBTORCH %s CACHE STRING" % libtorch, image_cmake[name], re.M),
          "deploy/cmake/%s does not set SPAR_LIBTORCH %s" % (name, libtorch))
    for opt, val in (("SPAR_WITH_TORCH", "ON"), ("SPAR_BUILD_TESTS", "OFF"), ("SPAR_BUILD_BENCH", "OFF")):
        check(re.search(r"^set\(%s %s CACHE BOOL" % (opt, val), image_cmake[name], re.M),
              "deploy/cmake/%s does not set %s %s" % (name, opt, val))
    # BUILD_JOBS after the package layer: changing it must not reinstall the toolchain.
    apt = text.find("apt-get install")
    jobs = text.find("ARG BUILD_JOBS")
    check(0 <= apt < jobs, "%s declares ARG BUILD_JOBS before its apt layer" % stage)
# The CUDA image builds against the LibTorch CI compiles: the torch wheel pinned in
# scripts/requirements-ref.txt, a CUDA 13 build (+cu130), so a CUDA 13 base image.
check("COPY --from=sources /src/scripts/requirements-ref.txt" in body.get("build-cuda", ""),
      "build-cuda does not install the pinned PyPI torch (scripts/requirements-ref.txt)")
with open(os.path.join(repo, "scripts", "requirements-ref.txt")) as f:
    check(re.search(r"^torch==2\.\d+\.\d+$", f.read(), re.M), "requirements-ref.txt pins no torch")
# Every package scripts/dev installs for the build (not test-only ones) is in build-cpu.
with open(os.path.join(repo, "scripts", "dev")) as f:
    dev = f.read()
pkgs = re.search(r"PACKAGES=\((.*?)\)", dev, re.S).group(1).split()
test_only = {"ccache", "libgtest-dev", "libgmock-dev", "libbenchmark-dev", "prometheus", "docker-compose",
             "python3-grpcio", "python3-protobuf", "python3-yaml",
             "python3-venv",  # the reference libraries (.venv) are for tests only
             "clang-format",  # the style.clang_format test
             "docker.io", "containerd", "runc", "debootstrap"}  # deploy.docker_stack
for p in pkgs:
    if p not in test_only:
        check(re.search(r"\b%s\b" % re.escape(p), body.get("build-cpu", "")),
              "build-cpu lacks scripts/dev package %s" % p)
for runtime in ("runtime-cpu", "runtime-cpu-prebuilt", "runtime-cuda"):
    text = chain(runtime)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    check(users and not users[-1].startswith(("root", "0")), "%s does not run as a non-root user" % runtime)
    check(re.search(r'^HEALTHCHECK .*\n?.*CMD \["spar-health", "--addr=127\.0\.0\.1:50051"\]', text, re.M),
          "%s has no `spar-health` HEALTHCHECK" % runtime)
    check('ENTRYPOINT ["spar"]' in text, "%s has no spar entrypoint" % runtime)
    check("COPY --from=sources /src/deploy/config/spar.json /etc/spar/spar.json" in text,
          "%s has no /etc/spar/spar.json" % runtime)
    check("build-essential" not in text and "-dev " not in text, "%s installs build tools" % runtime)
for runtime in ("runtime-cpu", "runtime-cuda"):
    check(re.search(r"COPY --from=build-\w+ /out/bin/spar /out/bin/spar-judge /out/bin/spar-health /usr/local/bin/",
                    body.get(runtime, "")), "%s does not copy spar, spar-judge and spar-health" % runtime)
check("COPY --from=sources /src/bin/ /usr/local/bin/" in body.get("runtime-cpu-prebuilt", ""),
      "runtime-cpu-prebuilt does not copy the context's bin/")
check(re.search(r"^WORKDIR /src/bin$", body.get("sources", ""), re.M),
      "the sources stage does not make /src/bin (runtime-cpu-prebuilt would fail in a source build)")


# The build context: the repository root minus the root .dockerignore, evaluated like Docker's
# pattern matcher (Go filepath.Match plus `**`; `!` re-includes; the last matching line wins; a
# pattern that matches a parent directory matches everything under it).
def dockerignore_rules(path):
    rules = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            pat = os.path.normpath(line[1:].strip() if exclusion else line).lstrip("/")
            rx, i = "", 0
            while i < len(pat):
                c = pat[i]
                if pat.startswith("**", i):
                    i += 2
                    if pat.startswith("/", i):
                        i += 1
                    rx += ".*" if i == len(pat) else "(.*/)?"
                    continue
                if c == "[" and "]" in pat[i + 1:]:  # a character class, as it is
                    j = pat.index("]", i + 1)
                    rx += "[" + pat[i + 1:j].replace("\\", "\\\\") + "]"
                    i = j + 1
                    continue
                rx += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
                i += 1
            rules.append((re.compile("^" + rx + "$"), pat.count("/") + 1, exclusion))
    return rules


def in_context(rel, rules):
    parts = rel.split("/")
    excluded = False
    for rx, ndirs, exclusion in rules:
        hit = bool(rx.match(rel)) or (len(parts) > ndirs and bool(rx.match("/".join(parts[:ndirs]))))
        if hit:
            excluded = not exclusion
    return not excluded


def repo_files(rel_dir):
    """Tracked files under REPO/rel_dir (all files when REPO is not a git checkout)."""
    r = subprocess.run(["git", "-C", repo, "ls-files", "-z", "--", rel_dir], capture_output=True, text=True)
    if r.returncode == 0 and r.stdout:
        return [p for p in r.stdout.split("\0") if p]
    out = []
    for root, _, files in os.walk(os.path.join(repo, rel_dir)):
        out += [os.path.relpath(os.path.join(root, f), repo) for f in files]
    return out


check(not os.path.exists(os.path.join(deploy, "Dockerfile.dockerignore")),
      "deploy/Dockerfile.dockerignore is ignored by the classic builder: use the root .dockerignore")
ignore_path = os.path.join(repo, ".dockerignore")
check(os.path.isfile(ignore_path), "no root .dockerignore (the whole tree, build/ included, would be sent)")
rules = dockerignore_rules(ignore_path) if os.path.isfile(ignore_path) else []
for secret in (".git/HEAD", "build/bin/spar", "build-debian/CMakeCache.txt", ".venv/bin/python",
               "runs/job/job.json", "deploy/.env", "deploy/secrets/api_token",
               "common/__pycache__/x.pyc"):
    check(not in_context(secret, rules), ".dockerignore sends %s" % secret)
for need in ["CMakeLists.txt"] + repo_files("cmake"):
    check(in_context(need, rules), ".dockerignore leaves %s out of the build context" % need)
# What the stages copy out of the sources stage must be in the context.
for src in re.findall(r"COPY --from=sources /src/(\S+) ", df):
    src = src.rstrip("/")
    if src in ("", "bin"):
        continue  # the whole tree; runtime-cpu-prebuilt's bin/ (from its own context)
    check(os.path.exists(os.path.join(repo, src)), "Dockerfile copies missing %s" % src)
    check(all(in_context(f, rules) for f in repo_files(src)), "Dockerfile copies %s, which .dockerignore "
          "leaves out of the build context" % src)


def add_subdirectories(cmakelists):
    """(directory, [if() conditions around it]) for each add_subdirectory of a CMakeLists.txt."""
    with open(cmakelists) as f:
        text = re.sub(r"#[^\n]*", "", f.read())
    out, stack = [], []
    for cmd, args in re.findall(r"\b(\w+)\s*\(([^()]*(?:\([^()]*\)[^()]*)*)\)", text):
        cmd = cmd.lower()
        if cmd == "if":
            stack.append(args.strip())
        elif cmd in ("elseif", "else"):
            stack[-1:] = ["<else of %s>" % stack[-1]] if stack else []
        elif cmd == "endif" and stack:
            stack.pop()
        elif cmd == "add_subdirectory":
            out.append((args.split()[0], list(stack)))
    return out


# Every directory the top-level CMakeLists.txt adds is in the context, unless an option that both
# image builds set OFF (deploy/cmake/image-*.cmake) guards it. tasks/ was added unconditionally
# while the context left it out (issue 24, A2): the image's configure stopped there.
def off_in_images(cond):
    return re.fullmatch(r"\w+", cond) and image_cmake and all(
        re.search(r"^set\(%s OFF CACHE BOOL" % cond, t, re.M) for t in image_cmake.values())


subdirs = add_subdirectories(os.path.join(repo, "CMakeLists.txt"))
check(len(subdirs) >= 5, "found only %s add_subdirectory calls in CMakeLists.txt" % subdirs)
for sub, conds in subdirs:
    files = repo_files(sub)
    left_out = [f for f in files if not in_context(f, rules)]
    if not files:
        errors.append("CMakeLists.txt adds %s, which is not in the tree" % sub)
    elif left_out and not any(off_in_images(c) for c in conds):
        errors.append("CMakeLists.txt adds %s (%s), but .dockerignore leaves %s out of the image's "
                      "build context" % (sub, "under if(%s)" % ") if(".join(conds) if conds else
                                          "unconditionally", ", ".join(left_out[:3])))

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
