"""gpucheck.dry_run: `scripts/gpu-check --dry-run OUT` passes and its report has every part.

Opt-in (SPAR_GPUCHECK_TEST=1, as root); exit 77 (skipped) otherwise.
  dry_run_test.py REPO OUT_DIR
"""
import json
import os
import subprocess
import sys
import time


def check_report(out):
    with open(os.path.join(out, "gpu-check.json")) as f:
        report = json.load(f)
    errors = []
    steps = {s["name"]: s["status"] for s in report["steps"]}
    for name in ("configure", "build", "gpu-tests", "bench"):
        if steps.get(name) != "pass":
            errors.append(f"step {name}: {steps.get(name)}")
    if steps.get("logits-parity") not in ("pass", "not present"):
        errors.append(f"step logits-parity: {steps.get('logits-parity')}")
    if not report["tests"] or any(t["status"] != "skipped" for t in report["tests"]):
        errors.append(f"gpu tests should all skip without a GPU: {report['tests']}")
    modes = sorted(t.get("mode") for t in report["train"] if t.get("tokens_per_s", 0) > 0)
    if modes != ["full", "lora"]:
        errors.append(f"training rows: {report['train']}")
    batches = [d["batch"] for d in report["decode"] if d.get("tokens_per_s", 0) > 0]
    if batches != [1, 4]:
        errors.append(f"decode rows: {report['decode']}")
    if report["peak"]["label"] != "unknown":
        errors.append(f"no card, yet peak {report['peak']}")
    with open(os.path.join(out, "gpu-check.md")) as f:
        md = f.read()
    for heading in ("| gpu test |", "| training (bf16 autocast) |", "| decode (KV cache) |"):
        if heading not in md:
            errors.append(f"gpu-check.md lacks {heading!r}")
    return errors


def main():
    repo, out = sys.argv[1], sys.argv[2]
    if os.environ.get("SPAR_GPUCHECK_TEST") != "1":
        print("skipped: set SPAR_GPUCHECK_TEST=1 (root, debootstrap; see tests/gpucheck)")
        return 77
    t0 = time.time()
    rc = subprocess.run([os.path.join(repo, "scripts", "gpu-check"), "--dry-run", out]).returncode
    print(f"gpu-check --dry-run: exit {rc} after {time.time() - t0:.0f} s")
    errors = [f"exit {rc}"] if rc != 0 else []
    if os.path.exists(os.path.join(out, "gpu-check.json")):
        errors += check_report(out)
    else:
        errors.append("no gpu-check.json")
    for e in errors:
        print("FAIL:", e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
