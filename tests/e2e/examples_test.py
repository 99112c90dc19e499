#!/usr/bin/python3
"""Every job spec shipped in deploy/examples/ runs, as written, and does what it promises.

The stack is `spar up` and `spar-judge` as processes on loopback with the service token (auth on,
as deployed); the base model the examples name, models/arith-base, is the demo's pi_0 (seed 1).
Each example is submitted with `spar submit FILE --watch` for seeds 1-3 (the file's own seed
replaced, nothing else), and its rounds' greedy accuracy on the held-out problems is read from
the run directory, each with its 95% interval:

  dno-arith.json        every seed ends above pi_0 (round 3's interval lies above pi_0's point
                        estimate), and so does the mean over seeds.
  dno-arith-smoke.json  a one-round smoke test: it must not make the model worse beyond its
                        interval (the final interval reaches pi_0's point estimate) for any seed.
  any other example     fails the test until its promise is written here.

usage: examples_test.py BIN_DIR REPO WORK_DIR CACHE_DIR [--seeds=1,2,3] [--only=NAME.json]
Writes WORK_DIR/examples.json with the per-example, per-seed table (docs/benchmarks.md).
"""
import glob
import json
import os
import shutil
import subprocess
import sys

import e2e_lib
from e2e_lib import ensure_base, fail, free_port, start_service

PROMISES = {"dno-arith.json": "above_pi0", "dno-arith-smoke.json": "not_worse"}


def run_example(spar, addr, path, seed, work, runs):
    spec = json.load(open(path))
    spec["seed"] = seed
    spec_path = os.path.join(work, "%s-s%d.json" % (os.path.basename(path)[:-5], seed))
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    r = subprocess.run([spar, "submit", spec_path, "--addr=" + addr, "--watch"],
                       capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        fail("%s seed %d: spar submit --watch exited %d: %s" % (path, seed, r.returncode,
                                                               r.stderr[-2000:]))
    job = r.stdout.splitlines()[0].strip()
    job_dir = os.path.join(runs, job)
    job_json = json.load(open(os.path.join(job_dir, "job.json")))
    base = job_json["base_greedy_accuracy"]
    evals = [json.load(open(os.path.join(job_dir, "iter_%03d" % t, "eval.json")))
             for t in range(1, spec["rounds"] + 1)]
    return {"seed": seed, "job": job, "base": base,
            "base_ci95": [job_json["base_greedy_accuracy_ci95"]["lo"],
                          job_json["base_greedy_accuracy_ci95"]["hi"]],
            "acc": [e["greedy_accuracy"] for e in evals],
            "acc_ci95": [e["greedy_accuracy_ci95"] for e in evals],
            "win_vs_base": [e["win_rate_vs_base"] for e in evals],
            "best_round": job_json.get("best_round", 0)}


def check(name, promise, results):
    print("\n%s: greedy accuracy, pi_0 then each round [95%% interval]" % name)
    for r in results:
        cells = " ".join("%.3f [%.3f,%.3f]" % (a, lo, hi)
                         for a, (lo, hi) in zip(r["acc"], r["acc_ci95"]))
        print("  seed %d: %.3f [%.3f,%.3f] -> %s  (best round %d)" % (
            r["seed"], r["base"], r["base_ci95"][0], r["base_ci95"][1], cells, r["best_round"]))
    mean_base = sum(r["base"] for r in results) / len(results)
    mean_final = sum(r["acc"][-1] for r in results) / len(results)
    print("  mean: %.3f -> %.3f (%+.1f points)" % (mean_base, mean_final,
                                                   100 * (mean_final - mean_base)))
    for r in results:
        lo, hi = r["acc_ci95"][-1]
        if promise == "above_pi0" and not lo > r["base"]:
            fail("%s seed %d: final interval [%.3f,%.3f] not above pi_0 %.3f" %
                 (name, r["seed"], lo, hi, r["base"]))
        if promise == "not_worse" and not hi >= r["base"]:
            fail("%s seed %d: final interval [%.3f,%.3f] below pi_0 %.3f: the example made the "
                 "model worse" % (name, r["seed"], lo, hi, r["base"]))
    if promise == "above_pi0" and not mean_final > mean_base:
        fail("%s: mean %.3f -> %.3f" % (name, mean_base, mean_final))


def main():
    bin_dir, repo, work, cache = (os.path.abspath(p) for p in sys.argv[1:5])
    opts = dict(a[2:].split("=", 1) for a in sys.argv[5:])
    seeds = [int(s) for s in opts.get("seeds", "1,2,3").split(",")]
    spar = os.path.join(bin_dir, "spar")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    data, runs = os.path.join(work, "data"), os.path.join(work, "runs")
    os.makedirs(os.path.join(data, "models"))
    shutil.copytree(ensure_base(spar, cache, work), os.path.join(data, "models", "arith-base"))
    examples = sorted(glob.glob(os.path.join(repo, "deploy", "examples", "*.json")))
    if "only" in opts:
        examples = [p for p in examples if os.path.basename(p) == opts["only"]]
    unknown = [os.path.basename(p) for p in examples if os.path.basename(p) not in PROMISES]
    if unknown:
        fail("examples without a promise in examples_test.py: %s" % unknown)
    judge_port, port = free_port(), free_port()
    log = open(os.path.join(work, "services.log"), "w")
    judge = subprocess.Popen([os.path.join(bin_dir, "spar-judge"), "--port=%d" % judge_port],
                             stdout=log, stderr=subprocess.STDOUT)
    up = start_service(spar, [spar, "up", "--port=%d" % port, "--metrics_port=0",
                              "--judge_url=http://127.0.0.1:%d/v1" % judge_port,
                              "--runs_dir=" + runs, "--data_root=" + data], port, log,
                       also_open=[judge_port])
    table = {}
    try:
        for path in examples:
            name = os.path.basename(path)
            results = [run_example(spar, "127.0.0.1:%d" % port, path, s, work, runs)
                       for s in seeds]
            table[name] = results
            with open(os.path.join(work, "examples.json"), "w") as f:
                json.dump(table, f, indent=1)
            check(name, PROMISES[name], results)
    finally:
        e2e_lib.stop_all([up], judge)
    print("examples: ok (%s)" % ", ".join(table))


if __name__ == "__main__":
    main()
