"""Helpers shared by the deploy tests: processes that print their listening line, bounded waits,
loopback HTTP without proxies, and the base model the e2e tests train from."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def http_get(url, timeout=5.0):
    with _OPENER.open(url, timeout=timeout) as resp:
        return resp.read().decode()


class Procs:
    """Starts processes with stdout+stderr in a log file; stops them all (SIGTERM, then SIGKILL)."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.procs = []

    def start(self, name, argv, env=None):
        log = open(os.path.join(self.workdir, name + ".log"), "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
        p.name, p.logpath = name, log.name
        self.procs.append(p)
        return p

    def log(self, p):
        with open(p.logpath) as f:
            return f.read()

    def wait_line(self, p, pattern, timeout=60.0):
        """Waits (bounded) until the process's log matches `pattern`; returns the match."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            m = rx.search(self.log(p))
            if m:
                return m
            if p.poll() is not None:
                fail("%s exited with %s before printing /%s/:\n%s" % (p.name, p.returncode, pattern, self.log(p)))
            time.sleep(0.05)
        fail("%s printed no /%s/ within %.0fs:\n%s" % (p.name, pattern, timeout, self.log(p)))

    def stop_all(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in reversed(self.procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def dump_logs(self):
        for p in self.procs:
            print("----- %s (%s)" % (p.name, p.logpath), file=sys.stderr)
            print(self.log(p)[-4000:], file=sys.stderr)


def start_spar(procs, name, spar_bin, args):
    """Starts `spar ARGS` and returns (process, grpc address, metrics port)."""
    p = procs.start(name, [spar_bin] + args)
    m = procs.wait_line(p, r"spar listening on (\S+) \(metrics on :(\d+)\)")
    return p, m.group(1), int(m.group(2))


def start_judge(procs, judge_bin, args=("--port=0",)):
    p = procs.start("spar-judge", [judge_bin] + list(args))
    m = procs.wait_line(p, r"spar-judge listening on (http://\S+)")
    return p, m.group(1)


def base_model(spar_bin, cache_dir, workdir):
    """The demo's tiny base model: reuses CACHE_DIR/arith-base-v3-seed1 (the e2e tests' cache),
    else builds it with `spar demo --rounds=1` (a few minutes, once)."""
    path = os.path.join(cache_dir, "arith-base-v3-seed1")
    if not os.path.isfile(os.path.join(path, "config.json")):
        os.makedirs(cache_dir, exist_ok=True)
        runs = os.path.join(workdir, "demo-runs")
        with open(os.path.join(workdir, "demo.log"), "w") as log:
            rc = subprocess.call([spar_bin, "demo", "--rounds=1", "--cache_dir=" + cache_dir,
                                  "--runs_dir=" + runs], stdout=log, stderr=subprocess.STDOUT,
                                 timeout=900)
        if rc != 0 or not os.path.isfile(os.path.join(path, "config.json")):
            fail("spar demo did not build the base model (rc %s), see %s/demo.log" % (rc, workdir))
    return path


def data_root_with_model(spar_bin, cache_dir, workdir):
    """A fresh data root holding models/arith-base, as the example job specs expect."""
    data = os.path.join(workdir, "data")
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(os.path.join(data, "models"))
    shutil.copytree(base_model(spar_bin, cache_dir, workdir), os.path.join(data, "models", "arith-base"))
    return data


def fresh_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path
