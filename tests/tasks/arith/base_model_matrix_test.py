#!/usr/bin/env python3
"""pi_0 converges on every floating-point path: the demo's base-model recipe reaches its target
greedy accuracy within ArithBaseOptions.max_steps for seeds 1-5, under the library's own choice
of CPU kernels for this CPU and under forced lower and higher ones -- each with 1 and 2 intra-op
threads. Which kernels depends on the BLAS inside the LibTorch built against:
  - Debian's LibTorch 1.13 (OpenBLAS): OPENBLAS_CORETYPE=Prescott (SSE3) and Haswell (AVX2);
  - the PyPI LibTorch 2.x (MKL inside): MKL-SSE4_2 and MKL-AVX2, which cap MKL's code path
    (MKL_ENABLE_INSTRUCTIONS) and ATen's vectorised kernels (ATEN_CPU_CAPABILITY) together.
All of them exist on every x86-64 CPU that runs Spar.

usage: base_model_matrix_test.py RUN_BINARY WORK_DIR [--seeds=1,2,3,4,5] [--kernels=default,Prescott,Haswell]
       [--threads=1,2]

SPAR_MATRIX_SEEDS (e.g. "1,2,3,4,5") overrides --seeds. CI's ctest cells each run one seed (six
cells, six runs, seeds 1-5 all covered) to keep `.ci/run` well inside its time limit; the full
5-seed matrix is `SPAR_MATRIX_SEEDS=1,2,3,4,5 ctest -L matrix` (numbers in docs/benchmarks.md).

Each (kernel, threads) cell is one process (OpenBLAS reads OPENBLAS_CORETYPE when it loads) that
builds pi_0 for every seed and stops at the target. Prints one row per run and a summary table.
"""
import json
import os
import subprocess
import sys
import time


# MKL's instruction cap -> ATen's CPU capability of the same vector class.
MKL_KERNELS = {"MKL-SSE4_2": ("SSE4_2", "default"), "MKL-AVX2": ("AVX2", "avx2")}


def kernel_env(kernel):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_CORETYPE", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")}
    if kernel in MKL_KERNELS:
        env["MKL_ENABLE_INSTRUCTIONS"], env["ATEN_CPU_CAPABILITY"] = MKL_KERNELS[kernel]
    elif kernel != "default":
        env["OPENBLAS_CORETYPE"] = kernel
    return env


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    binary, work = sys.argv[1], sys.argv[2]
    opts = dict(a[2:].split("=", 1) for a in sys.argv[3:])
    seeds = os.environ.get("SPAR_MATRIX_SEEDS") or opts.get("seeds", "1,2,3,4,5")
    kernels = opts.get("kernels", "default,Prescott,Haswell").split(",")
    threads = [int(t) for t in opts.get("threads", "1,2").split(",")]
    rows, failures = [], []
    for kernel in kernels:
        for nt in threads:
            env = kernel_env(kernel)
            out = os.path.join(work, f"{kernel}-t{nt}")
            t0 = time.time()
            proc = subprocess.run([binary, f"--out={out}", f"--seeds={seeds}", f"--threads={nt}"],
                                  env=env, capture_output=True, text=True)
            lines = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
            for r in lines:
                row = (kernel, r["kernel"], nt, r["seed"], r["steps"], r["accuracy"], r["seconds"])
                rows.append(row)
                print("%-9s %-10s threads %d seed %d: %4d steps, accuracy %.3f, %.1fs" % row,
                      flush=True)
                if not r["reached"]:
                    failures.append(f"{kernel}/t{nt}/seed {r['seed']}: accuracy {r['accuracy']:.3f}"
                                    f" after {r['steps']} steps; curve {r['curve']}")
            if proc.returncode not in (0, 1) or len(lines) != len(seeds.split(",")):
                failures.append(f"{kernel}/t{nt}: exit {proc.returncode}: {proc.stderr[-2000:]}")
            print(f"  cell {kernel}/t{nt}: {time.time() - t0:.1f}s", flush=True)
    if rows:
        steps = sorted(r[4] for r in rows)
        print(f"steps to target over {len(rows)} runs: min {steps[0]}, median "
              f"{steps[len(steps) // 2]}, max {steps[-1]}")
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
