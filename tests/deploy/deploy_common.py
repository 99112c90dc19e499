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


def start_prometheus(procs, config_path, work, port):
    """The real Prometheus (Debian's package) on 127.0.0.1:`port` with `config_path`, its TSDB
    fresh under `work`; returns its URL and api(path, **params), the `data` of a successful HTTP
    API answer (fails on any other)."""
    procs.start("prometheus", ["prometheus", "--config.file=" + config_path,
                               "--storage.tsdb.path=" + fresh_dir(os.path.join(work, "tsdb")),
                               "--web.listen-address=127.0.0.1:%d" % port])
    prom_url = "http://127.0.0.1:%d" % port

    def api(path, **params):
        url = prom_url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        body = json.loads(http_get(url))
        if body.get("status") != "success":
            fail("%s: %s" % (url, body))
        return body["data"]
    return prom_url, api


def wait_for(what, pred, timeout=60.0, interval=0.2, detail=lambda: ""):
    """pred()'s first truthy value, polled until `timeout`; an OSError (a server not listening
    yet) counts as not yet. Fails naming `what`, the last value and detail()."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except OSError as e:
            last = e
        time.sleep(interval)
    fail("timed out after %.0fs waiting for %s (last: %s%s)" % (timeout, what, last, detail()))
