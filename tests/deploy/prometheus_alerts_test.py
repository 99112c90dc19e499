#!/usr/bin/python3
"""Spar's service alerts on a real Prometheus (Debian's `prometheus`) with targets that go away.

Issue 24 item A5: `docker compose stop trainer` takes the container's name out of Compose's
DNS, so the DNS discovery in deploy/prometheus/prometheus.yml drops the target instead of
marking it down; its `up` series ends and SparServiceDown (`up == 0`) never fires.
SparServiceAbsent covers that. This test runs both rules where they matter, on the real binary:

  * Prometheus gets deploy/prometheus/prometheus.yml with every spar-* job's dns_sd_configs
    replaced by a file_sd_configs of its own (a file this test rewrites: emptying it is what a
    DNS lookup of a stopped service does), 1s scrape and rule intervals, and loads a temp copy
    of deploy/prometheus/alerts.yml in which only the `for:` durations are shortened (to 4s,
    so the test takes about a minute instead of many); every other line, each `expr:` included,
    is the shipped file's byte for byte (checked).
  * The targets are small HTTP servers (this file with --serve) answering /metrics in the
    Prometheus text format: the test is about Prometheus and the rules, not Spar's exporters.

Steps, each asserted through /api/v1/alerts (the exact set of active alerts, and the alert in
question seen `pending` before `firing`):
  1. every target up, every rule healthy, no alert active;
  2. `compose stop trainer`: its server killed and its target removed from discovery ->
     SparServiceAbsent{job="spar-trainer"} fires, SparServiceDown never shows for it;
  3. the sampler's server killed, its target still discovered -> SparServiceDown for it, and
     no SparServiceAbsent for the sampler;
  4. the trainer started again on a new port and discovered -> its SparServiceAbsent resolves;
  5. every spar-* target removed from discovery -> SparServiceAbsent for each spar-* job in
     prometheus.yml (none left uncovered), and the sampler's SparServiceDown resolves.

usage: prometheus_alerts_test.py REPO_DIR WORK_DIR
"""

import http.server
import json
import os
import re
import shutil
import socket
import sys
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_common  # noqa: E402
from deploy_common import Procs, fail, fresh_dir, http_get, start_prometheus  # noqa: E402

TEST_FOR = "4s"


def serve(name):
    """A scrape target: /metrics in the text exposition format; prints its port."""
    body = ("# HELP spar_test_target_info A stand-in Spar service.\n"
            "# TYPE spar_test_target_info gauge\n"
            'spar_test_target_info{service="%s"} 1\n' % name).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("target %s listening on %d" % (name, srv.server_address[1]), flush=True)
    srv.serve_forever()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_atomic(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def short_for_rules(src, dst):
    """Copies the rules file with every `for:` set to TEST_FOR; checks nothing else changed."""
    with open(src) as f:
        lines = f.read().splitlines(keepends=True)
    rx = re.compile(r"^(\s+)for: \S+(\s*)$")
    out = [rx.sub(r"\1for: %s\2" % TEST_FOR, line) for line in lines]
    changed = [(a, b) for a, b in zip(lines, out) if a != b]
    if not changed or any(not rx.match(a) for a, _ in changed):
        fail("rewriting `for:` in %s changed %s" % (src, changed))
    with open(dst, "w") as f:
        f.write("".join(out))
    shipped, copy = (yaml.safe_load("".join(x))["groups"] for x in (lines, out))
    for g0, g1 in zip(shipped, copy):
        for r0, r1 in zip(g0["rules"], g1["rules"]):
            r0.pop("for", None), r1.pop("for", None)
            if r0 != r1:
                fail("rule %s differs beyond `for:`" % r0.get("alert"))
    return len(changed)


def main(repo, work):
    if not shutil.which("prometheus"):
        fail("prometheus not found (Debian package `prometheus`, installed by scripts/dev)")
    t0 = time.monotonic()
    deploy = os.path.join(os.path.abspath(repo), "deploy", "prometheus")
    work = fresh_dir(work)
    sd_dir = fresh_dir(os.path.join(work, "sd"))

    with open(os.path.join(deploy, "prometheus.yml")) as f:
        prom = yaml.safe_load(f)
    spar_jobs = sorted(sc["job_name"] for sc in prom["scrape_configs"]
                       if sc["job_name"].startswith("spar-"))
    for job in ("spar-orchestrator", "spar-sampler", "spar-oracle", "spar-trainer"):
        if job not in spar_jobs:
            fail("prometheus.yml has no job %s (has %s)" % (job, spar_jobs))
    n_for = short_for_rules(os.path.join(deploy, "alerts.yml"), os.path.join(work, "alerts.yml"))
    print("rules: %d `for:` durations set to %s, exprs as shipped" % (n_for, TEST_FOR))

    prom_port = free_port()
    prom["global"]["scrape_interval"] = "1s"
    prom["global"]["evaluation_interval"] = "1s"
    prom["rule_files"] = [os.path.join(work, "alerts.yml")]
    sd_file = {job: os.path.join(sd_dir, job + ".json") for job in spar_jobs}
    for sc in prom["scrape_configs"]:
        if sc["job_name"] in sd_file:
            if "dns_sd_configs" not in sc:
                fail("job %s has no dns_sd_configs to stand in for" % sc["job_name"])
            sc.pop("dns_sd_configs")
            sc["file_sd_configs"] = [{"files": [sd_file[sc["job_name"]]], "refresh_interval": "1s"}]
        elif sc["job_name"] == "prometheus":
            sc["static_configs"] = [{"targets": ["127.0.0.1:%d" % prom_port]}]
    prom_cfg = os.path.join(work, "prometheus.yml")
    with open(prom_cfg, "w") as f:
        yaml.safe_dump(prom, f)

    procs = Procs(work)
    try:
        targets = {}  # job -> (process, port)

        def start_target(job):
            p = procs.start(job + "-%d" % len(procs.procs),
                            [sys.executable, os.path.abspath(__file__), "--serve", job])
            port = int(procs.wait_line(p, r"listening on (\d+)", timeout=30).group(1))
            targets[job] = (p, port)

        def discover(job, present):
            tgs = [{"targets": ["127.0.0.1:%d" % targets[job][1]], "labels": {}}] if present else []
            write_atomic(sd_file[job], json.dumps(tgs))

        for job in spar_jobs:
            start_target(job)
            discover(job, True)
        prom_url, api = start_prometheus(procs, prom_cfg, work, prom_port)

        def wait_for(what, pred, timeout=45.0):
            return deploy_common.wait_for(what, pred, timeout)

        def active():
            """{(alertname, job, instance or None): state} of every pending or firing alert."""
            return {(a["labels"]["alertname"], a["labels"].get("job"), a["labels"].get("instance")):
                    a["state"] for a in api("/api/v1/alerts")["alerts"]}

        def expect(step, want, fires, never=()):
            """Waits until the active alerts are exactly `want` (all firing), having seen the alert
            `fires` pending first (None: nothing new fires); fails if an alert in `never` shows."""
            seen, t = set(), time.monotonic()
            while True:
                now = active()
                seen.update(now.items())
                bad = [k for k in now if k in never]
                if bad:
                    fail("%s: %s active: %s" % (step, bad, now))
                if now == {k: "firing" for k in want}:
                    break
                if time.monotonic() - t > 45:
                    fail("%s: after 45s the active alerts are %s, want %s firing" % (
                        step, now, sorted(want)))
                time.sleep(0.2)
            if fires is not None and (fires, "pending") not in seen:
                fail("%s: %s fired without being seen pending (seen %s)" % (step, fires, seen))
            print("%-58s ok in %4.1fs: %s" % (step, time.monotonic() - t,
                                              sorted(k for k in want) or "no alert"))

        # 1. Healthy: every target up, every rule evaluated, nothing active (at start-up the
        # absence alert may be pending until the first scrapes land).
        wait_for("/-/ready", lambda: http_get(prom_url + "/-/ready") is not None)
        wait_for("%d spar targets up" % len(spar_jobs), lambda: len(
            api("/api/v1/query", query='up{job=~"spar-.*"} == 1')["result"]) == len(spar_jobs))
        with open(os.path.join(deploy, "alerts.yml")) as f:
            rule_names = {r["alert"] for g in yaml.safe_load(f)["groups"] for r in g["rules"]}

        def rules_ok():
            rules = [r for g in api("/api/v1/rules")["groups"] for r in g["rules"]]
            return ({r["name"] for r in rules} == rule_names
                    and all(r.get("health") == "ok" for r in rules))
        wait_for("every rule of alerts.yml loaded and evaluated ok", rules_ok)
        for name in ("SparServiceDown", "SparServiceAbsent"):
            if name not in rule_names:
                fail("alerts.yml has no %s" % name)
        expect("1. all up", set(), None)

        def drop(*jobs):
            """What `docker compose stop` does to services: DNS stops naming them (discovery drops
            their targets) and the processes end. Dropped first, so that no failed scrape in
            between (Prometheus applies discovery changes every 5s) raises SparServiceDown."""
            for job in jobs:
                discover(job, False)
            wait_for("%s's targets dropped" % (jobs,), lambda: not any(
                t["labels"]["job"] in jobs for t in api("/api/v1/targets")["activeTargets"]))
            for job in jobs:
                targets[job][0].kill()

        # 2. `docker compose stop trainer`.
        trainer_inst = "127.0.0.1:%d" % targets["spar-trainer"][1]
        drop("spar-trainer")
        absent_trainer = ("SparServiceAbsent", "spar-trainer", None)
        expect("2. trainer stopped, dropped by discovery", {absent_trainer}, absent_trainer,
               never={("SparServiceDown", "spar-trainer", trainer_inst)})

        # 3. The sampler's process dies but its target stays discovered: down, not absent.
        sampler_inst = "127.0.0.1:%d" % targets["spar-sampler"][1]
        targets["spar-sampler"][0].kill()
        down_sampler = ("SparServiceDown", "spar-sampler", sampler_inst)
        expect("3. sampler killed, still discovered", {absent_trainer, down_sampler}, down_sampler,
               never={("SparServiceAbsent", "spar-sampler", None)})

        # 4. `docker compose start trainer`: back (on a new address), the absence resolves.
        start_target("spar-trainer")
        discover("spar-trainer", True)
        expect("4. trainer back", {down_sampler}, None)

        # 5. Every Spar target gone from discovery: one absence alert per spar-* job.
        drop(*spar_jobs)
        expect("5. every spar target dropped", {("SparServiceAbsent", j, None) for j in spar_jobs},
               ("SparServiceAbsent", "spar-orchestrator", None))
        print("prometheus alerts: ok in %.1fs" % (time.monotonic() - t0))
    except SystemExit:
        procs.dump_logs()
        raise
    finally:
        procs.stop_all()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    elif len(sys.argv) == 3:
        main(sys.argv[1], sys.argv[2])
    else:
        sys.exit(__doc__)
