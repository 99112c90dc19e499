#!/usr/bin/python3
"""The CPU Compose stack built and run by a real Docker engine (issue 12 item 17, issue 24 A2).

Runs in every CI run (`scripts/dev test`; label docker); it fails, never skips, when Docker cannot
run. Needs root and Debian's docker.io, containerd, runc, docker-compose (v1) and debootstrap
(scripts/dev installs them); it installs nothing and fails naming what is missing. Compiling Spar
inside the image takes ~22 min on 2 cores, so the runtime image is made from the binaries the
host's Debian build already made (build-debian/: Debian 12, Debian's LibTorch 1.13, the same
packages as the image's build-cpu stage), and the image's own source build is checked up to its
configure step. Each phase is timed:

  engine   starts its own dockerd (own data root, socket and pidfile under WORK_DIR, kept between
           runs as the image cache) and stops it by pid at the end
  base     makes local/debian:12 with `debootstrap --variant=minbase` from the host's apt mirror
           and `docker import`, unless the engine already has it (no registry is needed)
  sources  builds the Dockerfile's `sources` stage from the repository root (the real build
           context, through the root .dockerignore), copies its /src out and configures it on the
           host with the build-cpu stage's own `cmake -C deploy/cmake/image-cpu.cmake -S . -B ...
           -G Ninja` (read from the Dockerfile): a directory the build needs that the context
           lacks fails here, as it would fail the image build
  image    `docker build --target runtime-cpu-prebuilt -t spar:cpu` from a context of
           IMAGE_BIN_DIR's spar, spar-judge and spar-health (stripped) and deploy/config/spar.json;
           prints its size; checks in the image: --help of each binary exits 0, spar-health links
           no LibTorch, `spar version --json` says LibTorch 1.13 (Debian's)
  up       secrets in a temp dir (the API token, an empty judge key), the base model in a
           bind-mounted data dir owned by uid 10001; `docker-compose -f
           deploy/docker-compose.cpu.yml up -d --no-build` sampler, oracle, trainer, orchestrator
           and spar-judge (profile local-judge; Prometheus and Grafana images cannot be pulled
           offline) and waits until all five are healthy; then prints the CPU time of one
           healthcheck, `spar-health` against `spar health`, run in the orchestrator container
           (and fails unless the probe is the cheaper)
  job      a call through the published port without the token must be refused; then the
           compose file's documented command, `docker-compose exec -T orchestrator spar submit
           /dev/stdin --watch < deploy/examples/dno-arith-smoke.json`; the job must SUCCEED (asked
           from the host through the published port, token from SPAR_API_TOKEN_FILE) and leave
           its checkpoint on the bind-mounted data dir
  down     `docker-compose down -v`; dangling images are pruned (the engine keeps the cache)

The engine runs under `nice -n 19` (so do the image build and the containers: a shared host).

usage: docker_stack_test.py BIN_DIR REPO_DIR WORK_DIR CACHE_DIR IMAGE_BIN_DIR
  BIN_DIR        the host `spar` (client, and the base model's builder)
  IMAGE_BIN_DIR  Debian-LibTorch spar, spar-judge, spar-health for the image (build-debian/bin)
"""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploy_common import base_model, fresh_dir  # noqa: E402

SERVICES = ["sampler", "oracle", "trainer", "orchestrator", "spar-judge"]
BASE_IMAGE = "local/debian:12"
IMAGE = "spar:cpu"  # what docker-compose.cpu.yml runs by default
SOURCES_IMAGE = "spar-sources:test"
SPAR_UID = 10001

IMAGE_BINARIES = ["spar", "spar-judge", "spar-health"]

if len(sys.argv) != 6:
    print(__doc__, file=sys.stderr)
    sys.exit(2)
bin_dir, repo, work, cache, image_bin_dir = sys.argv[1:6]
repo = os.path.abspath(repo)
work = os.path.abspath(work)
spar_bin = os.path.join(os.path.abspath(bin_dir), "spar")
image_bin_dir = os.path.abspath(image_bin_dir)
compose_file = os.path.join(repo, "deploy", "docker-compose.cpu.yml")
timings = []  # (phase, seconds)
t_start = time.monotonic()


def report():
    print("docker stack test phases:")
    for phase, secs in timings:
        print("  %-8s %7.1f s" % (phase, secs))
    print("  %-8s %7.1f s" % ("total", time.monotonic() - t_start))
    sys.stdout.flush()


class Failed(Exception):
    pass


def fail(msg):
    raise Failed(msg)


class Phase:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        print("== %s" % self.name, flush=True)
        self.t0 = time.monotonic()

    def __exit__(self, *exc):
        timings.append((self.name, time.monotonic() - self.t0))
        print("== %s: %.1f s%s" % (self.name, timings[-1][1], " (failed)" if exc[0] else ""),
              flush=True)


def run(argv, env=None, timeout=600, check=True, log=None, cwd=None, stdin=None):
    """Runs a command; its output goes to `log` (a path) when given, else is captured."""
    if log:
        with open(log, "a") as f:
            r = subprocess.run(argv, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout,
                               cwd=cwd, stdin=stdin)
        if check and r.returncode != 0:
            fail("%s exited %d; last lines of %s:\n%s" % (" ".join(argv[:4]), r.returncode, log,
                                                        tail(log)))
        return r
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                       stdin=stdin)
    if check and r.returncode != 0:
        fail("%s exited %d:\n%s%s" % (" ".join(argv), r.returncode, r.stdout[-3000:],
                                      r.stderr[-3000:]))
    return r


def tail(path, n=40):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-n:])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_mirror():
    """The host's Debian mirror (deb822 .sources or one-line .list), for debootstrap."""
    for d, names in (("/etc/apt/sources.list.d", None), ("/etc/apt", ["sources.list"])):
        if not os.path.isdir(d):
            continue
        for name in sorted(names or os.listdir(d)):
            path = os.path.join(d, name)
            if not os.path.isfile(path) or not name.endswith((".sources", ".list")):
                continue
            with open(path) as f:
                text = f.read()
            for para in text.split("\n\n"):
                fields = dict(l.split(":", 1) for l in para.splitlines()
                              if ":" in l and not l.startswith("#") and not l.startswith(" "))
                suites = fields.get("Suites", "").split()
                if "bookworm" in suites and "security" not in fields.get("URIs", ""):
                    return fields["URIs"].split()[0].strip()
            for line in text.splitlines():
                parts = line.split()
                if parts[:1] == ["deb"] and "bookworm" in parts and "security" not in line:
                    return [p for p in parts if "://" in p][0]
    fail("no bookworm mirror in /etc/apt/sources.list(.d)")


# ---------------------------------------------------------------------------------- preflight
if os.geteuid() != 0:
    fail_msg = "the docker stack test runs dockerd and debootstrap: run it as root"
    print("FAIL: " + fail_msg, file=sys.stderr)
    sys.exit(1)
tools = {"dockerd": "docker.io", "containerd": "containerd", "runc": "runc",
         "docker-compose": "docker-compose", "debootstrap": "debootstrap"}
missing = sorted({pkg for tool, pkg in tools.items() if shutil.which(tool) is None})
if missing:
    print("FAIL: missing tools; install them first: apt-get install -y %s" % " ".join(missing),
          file=sys.stderr)
    sys.exit(1)
missing = [p for p in [spar_bin] + [os.path.join(image_bin_dir, b) for b in IMAGE_BINARIES]
           if not os.access(p, os.X_OK)]
if missing:
    print("FAIL: missing binaries %s (the image's come from scripts/dev's Debian-LibTorch build: "
          "build-debian, targets spar_main spar_judge_main spar_health_main)" % missing,
          file=sys.stderr)
    sys.exit(1)
dockerd_bin = shutil.which("dockerd")
# The CLI that ships with that engine (docker.io: /usr/bin/docker; another `docker` may come
# first on PATH).
docker_bin = next((p for p in (os.path.join(os.path.dirname(dockerd_bin), "docker"),
                               "/usr/bin/docker") if os.path.exists(p)), shutil.which("docker"))

os.makedirs(work, exist_ok=True)
state = os.path.join(work, "engine")  # kept between runs: the image cache
os.makedirs(state, exist_ok=True)
sock = os.path.join(state, "docker.sock")
run_dir = fresh_dir(os.path.join(work, "run"))  # this run: logs, secrets, data
env = dict(os.environ, DOCKER_HOST="unix://" + sock, COMPOSE_PROJECT_NAME="spar-docker-test",
           COMPOSE_PROFILES="local-judge")
env.pop("SPAR_API_TOKEN", None)
dockerd = None
up = False
ok = False
try:
    with Phase("engine"):
        pidfile = os.path.join(state, "dockerd.pid")
        if os.path.exists(pidfile):
            with open(pidfile) as f:
                stale = f.read().strip()
            if stale.isdigit() and os.path.exists("/proc/%s" % stale):
                fail("%s: dockerd %s of another run is still running" % (pidfile, stale))
            os.remove(pidfile)  # left by a killed run
        dockerd = subprocess.Popen(
            ["nice", "-n", "19", dockerd_bin, "--data-root", os.path.join(state, "root"),
             "--exec-root", os.path.join(state, "exec"), "--pidfile", pidfile,
             "--host", "unix://" + sock, "--storage-driver=overlay2"],
            stdout=open(os.path.join(run_dir, "dockerd.log"), "w"), stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 60
        while run([docker_bin, "info"], env=env, check=False).returncode != 0:
            if dockerd.poll() is not None or time.monotonic() > deadline:
                fail("dockerd did not come up:\n" + tail(os.path.join(run_dir, "dockerd.log")))
            time.sleep(0.2)
        print(run([docker_bin, "version", "--format", "engine {{.Server.Version}}"], env=env).stdout)

    with Phase("base"):
        if run([docker_bin, "image", "inspect", BASE_IMAGE], env=env, check=False).returncode == 0:
            print("%s already present" % BASE_IMAGE)
        else:
            rootfs = fresh_dir(os.path.join(work, "rootfs"))
            mirror = host_mirror()
            print("debootstrap --variant=minbase bookworm from %s" % mirror, flush=True)
            run(["debootstrap", "--variant=minbase", "bookworm", rootfs, mirror], timeout=1200,
                log=os.path.join(run_dir, "debootstrap.log"))
            # The host's apt sources (same mirror, same keyring), no caches.
            for rel in ("etc/apt/sources.list", "etc/apt/sources.list.d"):
                src = os.path.join("/", rel)
                dst = os.path.join(rootfs, rel)
                if os.path.isfile(src):
                    shutil.copy(src, dst)
                elif os.path.isdir(src):
                    for name in os.listdir(src):
                        if name.endswith((".list", ".sources")):
                            shutil.copy(os.path.join(src, name), dst)
            for rel in ("var/lib/apt/lists", "var/cache/apt/archives"):
                d = os.path.join(rootfs, rel)
                for name in os.listdir(d):
                    p = os.path.join(d, name)
                    if os.path.isfile(p):
                        os.remove(p)
            tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
            imp = subprocess.run([docker_bin, "import", "-", BASE_IMAGE], stdin=tar.stdout,
                                 env=env, capture_output=True, text=True, timeout=600)
            tar.stdout.close()
            if tar.wait() != 0 or imp.returncode != 0:
                fail("docker import: %s" % imp.stderr)
            shutil.rmtree(rootfs)

    # Everything the compose file reads from the environment.
    secrets_dir = fresh_dir(os.path.join(run_dir, "secrets"))
    token_path = os.path.join(secrets_dir, "api_token")
    for name, text in (("api_token", secrets.token_hex(32) + "\n"), ("judge_api_key", ""),
                       ("grafana_admin_password", secrets.token_hex(8))):
        with open(os.path.join(secrets_dir, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(secrets_dir, name), 0o444)
    port = free_port()
    env.update(DEBIAN_IMAGE=BASE_IMAGE, DEBIAN_SLIM_IMAGE=BASE_IMAGE,
               SPAR_API_TOKEN_PATH=token_path,
               SPAR_JUDGE_API_KEY_PATH=os.path.join(secrets_dir, "judge_api_key"),
               GRAFANA_ADMIN_PASSWORD_PATH=os.path.join(secrets_dir, "grafana_admin_password"),
               SPAR_BIND="127.0.0.1", SPAR_GRPC_PORT=str(port))
    compose = ["docker-compose", "-f", compose_file]

    dockerfile = os.path.join(repo, "deploy", "Dockerfile")
    build_args = ["--build-arg", "DEBIAN_IMAGE=" + BASE_IMAGE,
                  "--build-arg", "DEBIAN_SLIM_IMAGE=" + BASE_IMAGE]

    with Phase("sources"):
        # The image's source build, up to its configure step: the real build context (the
        # repository root through .dockerignore) as the `sources` stage holds it, configured
        # with exactly the command of the build-cpu stage.
        with open(dockerfile) as f:
            df = f.read()
        m = re.search(r"^FROM \S+ AS build-cpu$(.*?)^FROM ", df, re.M | re.S)
        configure = m and re.search(r"\bcmake (-C \S+) -S \. -B /build -G Ninja", m.group(1))
        if not configure:
            fail("no `cmake -C FILE -S . -B /build -G Ninja` in the Dockerfile's build-cpu stage")
        run([docker_bin, "build", "-f", dockerfile, "--target", "sources", "-t", SOURCES_IMAGE,
             repo], env=env, timeout=600, log=os.path.join(run_dir, "sources.log"))
        tree = fresh_dir(os.path.join(run_dir, "sources"))
        cid = run([docker_bin, "create", SOURCES_IMAGE, "none"], env=env).stdout.strip()
        try:
            exp = subprocess.Popen([docker_bin, "export", cid], env=env, stdout=subprocess.PIPE)
            untar = subprocess.run(["tar", "-x", "-C", tree, "src"], stdin=exp.stdout,
                                   capture_output=True, text=True, timeout=300)
            exp.stdout.close()
            if exp.wait() != 0 or untar.returncode != 0:
                fail("docker export of the sources stage: %s" % untar.stderr)
        finally:
            run([docker_bin, "rm", cid], env=env, check=False)
        src = os.path.join(tree, "src")
        nfiles = sum(len(files) for _, _, files in os.walk(src))
        print("sources stage: %d files; cmake %s -S . -B ... -G Ninja" % (nfiles, configure.group(1)))
        cmake_log = os.path.join(run_dir, "sources-cmake.log")
        r = run(["cmake"] + configure.group(1).split() + ["-S", ".", "-B",
                os.path.join(tree, "build"), "-G", "Ninja"], timeout=600, check=False,
                log=cmake_log, cwd=src)
        if r.returncode != 0:
            with open(cmake_log, errors="replace") as f:
                text = f.read()
            fail("the image's source tree does not configure (cmake %s, as deploy/Dockerfile's "
                 "build-cpu stage runs it); a directory CMakeLists.txt needs is missing from the "
                 "build context? Check .dockerignore. From %s:\n%s"
                 % (configure.group(1), cmake_log,
                    text[text.find("CMake Error"):][:3000] if "CMake Error" in text else tail(cmake_log)))
        shutil.rmtree(tree)

    with Phase("image"):
        # runtime-cpu-prebuilt from the host's Debian-LibTorch binaries, stripped like build-cpu's.
        ctx = fresh_dir(os.path.join(run_dir, "image-context"))
        os.makedirs(os.path.join(ctx, "bin"))
        os.makedirs(os.path.join(ctx, "deploy", "config"))
        for b in IMAGE_BINARIES:
            shutil.copy(os.path.join(image_bin_dir, b), os.path.join(ctx, "bin", b))
        run(["strip", "--strip-unneeded"] + [os.path.join(ctx, "bin", b) for b in IMAGE_BINARIES])
        shutil.copy(os.path.join(repo, "deploy", "config", "spar.json"),
                    os.path.join(ctx, "deploy", "config", "spar.json"))
        run([docker_bin, "build", "-f", dockerfile, "--target", "runtime-cpu-prebuilt",
             "-t", IMAGE] + build_args + [ctx], env=env, timeout=1200,
            log=os.path.join(run_dir, "image.log"))
        shutil.rmtree(ctx)
        size = run([docker_bin, "image", "inspect", "-f", "{{.Size}}", IMAGE], env=env).stdout
        print("%s is %.2f GB" % (IMAGE, int(size) / 1e9))
        # The binaries inside the image: --help exits 0, the probe links no LibTorch, and spar is
        # a Debian-LibTorch build (the image's packages carry LibTorch 1.13, nothing else).
        r = run([docker_bin, "run", "--rm", "--entrypoint", "sh", IMAGE, "-c",
                 "spar --help >/dev/null && spar-judge --help >/dev/null && "
                 "spar-health --help >/dev/null && ! ldd /usr/local/bin/spar-health | grep -q torch"
                 " && spar version --json"], env=env, check=False)
        if r.returncode != 0:
            fail("image self-check (--help exit codes, spar-health without LibTorch): %s%s"
                 % (r.stdout[-2000:], r.stderr[-2000:]))
        try:
            version = json.loads(r.stdout)
        except ValueError:
            fail("`spar version --json` in the image printed no JSON: %r" % r.stdout[-2000:])
        if not str(version.get("libtorch_version", "")).startswith("1.13"):
            fail("the image's spar is not a Debian-LibTorch (1.13) build: %s" % version)

    with Phase("up"):
        data = fresh_dir(os.path.join(run_dir, "data"))
        os.makedirs(os.path.join(data, "models"))
        shutil.copytree(base_model(spar_bin, cache, run_dir),
                        os.path.join(data, "models", "arith-base"))
        for root, dirs, files in os.walk(data):
            for n in [root] + [os.path.join(root, x) for x in dirs + files]:
                os.chown(n, SPAR_UID, SPAR_UID)
        env["SPAR_DATA"] = data
        up = True
        run(compose + ["up", "-d", "--no-build"] + SERVICES, env=env, timeout=900,
            log=os.path.join(run_dir, "up.log"))
        deadline = time.monotonic() + 600
        while True:
            health = {}
            for svc in SERVICES:
                cid = run(compose + ["ps", "-q", svc], env=env).stdout.strip()
                health[svc] = run([docker_bin, "inspect", "-f", "{{.State.Health.Status}}", cid],
                                  env=env, check=False).stdout.strip() if cid else "absent"
            if all(h == "healthy" for h in health.values()):
                print("healthy: %s" % ", ".join(SERVICES))
                break
            if time.monotonic() > deadline:
                fail("not all healthy after 600 s: %s" % health)
            time.sleep(1)

        # What a healthcheck costs, measured where it runs (bash's `time`: user+sys CPU seconds).
        cid = run(compose + ["ps", "-q", "orchestrator"], env=env).stdout.strip()
        cpu = {}
        for probe in ("spar-health", "spar health"):
            r = run([docker_bin, "exec", cid, "bash", "-c",
                     "TIMEFORMAT='%%3U %%3S'; for i in 1 2 3 4 5; do time %s --addr=127.0.0.1:50051 "
                     ">/dev/null; done" % probe], env=env)
            samples = [float(m.group(1)) + float(m.group(2)) for m in
                       re.finditer(r"^(\d+\.\d+) (\d+\.\d+)$", r.stderr, re.M)]
            if len(samples) != 5:
                fail("%s: no timings in %r" % (probe, r.stderr[-2000:]))
            cpu[probe] = sum(samples) / len(samples)
            print("healthcheck %-12s CPU user+sys per check: %.3f s (%s)" % (
                probe, cpu[probe], " ".join("%.3f" % x for x in samples)))
        if cpu["spar-health"] >= cpu["spar health"]:
            fail("spar-health is not cheaper than spar health: %s" % cpu)

    with Phase("job"):
        addr = "--addr=127.0.0.1:%d" % port
        client_env = {k: v for k, v in os.environ.items() if not k.startswith("SPAR_API_TOKEN")}
        r = run([spar_bin, "list", addr], env=client_env, check=False, timeout=60)
        if r.returncode == 0:
            fail("the orchestrator answered `spar list` without the token:\n" + r.stdout)
        client_env["SPAR_API_TOKEN_FILE"] = token_path
        # As docker-compose.yml's header documents it: the spec on stdin, inside the orchestrator
        # container (its SPAR_API_TOKEN_FILE, its loopback port).
        spec = os.path.join(repo, "deploy", "examples", "dno-arith-smoke.json")
        with open(spec) as f:
            r = run(compose + ["exec", "-T", "orchestrator", "spar", "submit", "/dev/stdin",
                               "--watch"], env=env, timeout=1800, check=False, stdin=f)
        print(r.stdout[-3000:])
        if r.returncode != 0:
            fail("spar submit --watch exited %d: %s" % (r.returncode, r.stderr[-3000:]))
        job_id = r.stdout.splitlines()[0].strip()
        r = run([spar_bin, "status", job_id, addr, "--json"], env=client_env, timeout=60)
        job = json.loads(r.stdout)
        if job.get("state") != "JOB_STATE_SUCCEEDED":
            fail("job %s ended %s: %s" % (job_id, job.get("state"), job.get("error")))
        print("job %s SUCCEEDED" % job_id)
        ckpt = os.path.join(data, "runs", job_id, "iter_001", "checkpoint", "model.safetensors")
        if not os.path.getsize(ckpt):
            fail("no checkpoint on the bind-mounted data dir: %s" % ckpt)

    with Phase("down"):
        run(compose + ["down", "-v"], env=env, timeout=300, log=os.path.join(run_dir, "down.log"))
        up = False
        # The images this run replaced (spar:cpu, the sources stage): the cache must not grow.
        run([docker_bin, "image", "prune", "-f"], env=env, timeout=300)
    ok = True
except (Failed, subprocess.TimeoutExpired) as e:
    print("FAIL: %s" % e, file=sys.stderr)
    if up:
        r = run(compose + ["ps"], env=env, check=False)
        print(r.stdout, file=sys.stderr)
        r = run(compose + ["logs", "--no-color", "--tail=60"], env=env, check=False)
        print(r.stdout[-12000:], file=sys.stderr)
        run(compose + ["down", "-v"], env=env, check=False, timeout=300)
finally:
    if dockerd is not None and dockerd.poll() is None:
        os.kill(dockerd.pid, signal.SIGTERM)  # by pid: nice execs dockerd in place
        try:
            dockerd.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(dockerd.pid, signal.SIGKILL)
            dockerd.wait()
    report()
print("docker stack test: %s" % ("ok" if ok else "FAILED"))
sys.exit(0 if ok else 1)
