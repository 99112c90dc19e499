"""Builds gpu-check's report from what run.sh left in OUT_DIR and prints it.

Reads env.json (env.py), steps.jsonl (one line per step: name, status, seconds, note),
ctest-junit.xml (ctest -L '^gpu$' --output-junit) and bench.jsonl (spar_gpu_bench); writes
gpu-check.md (one markdown table per section) and gpu-check.json (the same, as data).
  MFU            achieved model FLOP/s / the card's bf16 dense peak (cards.py)
  decode bound   HBM bandwidth / bytes read per decode step * batch (tokens/s)
Exit 0 when every step and test passed (skips count as passed), 1 otherwise.
"""
import json
import os
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cards  # noqa: E402


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip().startswith("{")]


def read_tests(path):
    """[{name, status}] from ctest's JUnit file; a gtest skip reads as "skipped"."""
    if not os.path.exists(path):
        return []
    tests = []
    for case in ET.parse(path).getroot().iter("testcase"):
        out = "".join(e.text or "" for e in case.iter("system-out"))
        status = case.get("status", "run")
        if case.find("failure") is not None or status == "fail":
            status = "fail"
        elif case.find("skipped") is not None or "[  SKIPPED ]" in out or status == "notrun":
            status = "skipped"
        else:
            status = "pass"
        tests.append({"name": case.get("name"), "status": status,
                      "seconds": float(case.get("time", 0))})
    return tests


def fmt(x, spec, none="unknown"):
    return none if x is None else format(x, spec)


def bench_rows(bench, peak):
    """Table rows for the training and decode lines, with MFU and the HBM bound."""
    train, decode = [], []
    for b in bench:
        if b.get("kind") == "train":
            mfu = None
            if "error" not in b and peak["bf16_tflops"]:
                mfu = b["achieved_flops"] / (peak["bf16_tflops"] * 1e12)
            b["mfu"] = mfu
            train.append(b)
        elif b.get("kind") == "decode":
            bound = None
            if "error" not in b and peak["hbm_tbps"]:
                bound = peak["hbm_tbps"] * 1e12 / b["bytes_per_step"] * b["batch"]
            b["hbm_bound_tokens_per_s"] = bound
            b["fraction_of_bound"] = bound and b["tokens_per_s"] / bound
            decode.append(b)
    return train, decode


def markdown(env, peak, steps, tests, train, decode):
    md = [f"# gpu-check: {env.get('card') or 'no GPU (dry run)'}", "",
          f"torch {env.get('torch')} (CUDA {env.get('torch_cuda')}), {env.get('nvcc')}, "
          f"cuDNN {fmt(env.get('cudnn'), '', '-')}, NCCL {fmt(env.get('nccl'), '', '-')}, "
          f"{env.get('cores')} cores. "
          f"Peaks ({peak['label']}): bf16 dense {fmt(peak['bf16_tflops'], '.0f')} TFLOP/s, "
          f"HBM {fmt(peak['hbm_tbps'], '.2f')} TB/s.", "",
          "| step | result | seconds | note |", "|---|---|---:|---|"]
    md += [f"| {s['name']} | {s['status']} | {s['seconds']:.1f} | {s.get('note', '')} |"
           for s in steps]
    md += ["", "| gpu test | result | seconds |", "|---|---|---:|"]
    md += [f"| {t['name']} | {t['status']} | {t['seconds']:.1f} |" for t in tests]
    md += ["", "| training (bf16 autocast) | batch x seq | tokens/s | model TFLOP/s | MFU |",
           "|---|---|---:|---:|---:|"]
    for t in train:
        if "error" in t:
            md.append(f"| {t['mode']} | | error: {t['error'][:80]} | | |")
            continue
        mfu = "unknown" if t["mfu"] is None else f"{100 * t['mfu']:.1f}%"
        md.append(f"| {t['mode']} ({t['precision']}) | {t['batch']} x {t['seq']} | "
                  f"{t['tokens_per_s']:.0f} | {t['achieved_flops'] / 1e12:.4g} | {mfu} |")
    md += ["", "| decode (KV cache) | batch | tokens/s | GB read/step | HBM bound tok/s | "
           "of bound |", "|---|---:|---:|---:|---:|---:|"]
    for d in decode:
        if "error" in d:
            md.append(f"| {d.get('precision', '')} | {d['batch']} | error: {d['error'][:80]} "
                      "| | | |")
            continue
        frac = d["fraction_of_bound"]
        md.append(f"| {d['precision']} | {d['batch']} | {d['tokens_per_s']:.0f} | "
                  f"{d['bytes_per_step'] / 1e9:.4g} | {fmt(d['hbm_bound_tokens_per_s'], '.0f')} "
                  f"| {'unknown' if frac is None else f'{100 * frac:.1f}%'} |")
    return "\n".join(md) + "\n"


def main():
    out = sys.argv[1]
    with open(os.path.join(out, "env.json")) as f:
        env = json.load(f)
    peak = cards.lookup(env.get("card"))
    steps = read_jsonl(os.path.join(out, "steps.jsonl"))
    tests = read_tests(os.path.join(out, "ctest-junit.xml"))
    train, decode = bench_rows(read_jsonl(os.path.join(out, "bench.jsonl")), peak)
    text = markdown(env, peak, steps, tests, train, decode)
    with open(os.path.join(out, "gpu-check.md"), "w") as f:
        f.write(text)
    ok = (all(s["status"] in ("pass", "skipped", "not present") for s in steps)
          and all(t["status"] != "fail" for t in tests)
          and not any("error" in b for b in train + decode))
    with open(os.path.join(out, "gpu-check.json"), "w") as f:
        json.dump({"ok": ok, "env": env, "peak": peak, "steps": steps, "tests": tests,
                   "train": train, "decode": decode}, f, indent=1)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
