#!/usr/bin/env python3
"""`spar version --json` and the start-up BLAS kernel choice, with the real binary.

usage: version_test.py SPAR_BINARY

- the report names Spar's and LibTorch's versions, the BLAS kernel, the CPU class;
- a kernel the user sets (OPENBLAS_CORETYPE) is kept ("user");
- a generic fallback the library chose (stood in for by SPAR_BLAS_TEST_DETECTED=1 with
  OPENBLAS_CORETYPE=Prescott) is replaced by the CPU's best kernel ("upgraded"), once;
- a better kernel that fails its sgemm self-check (SPAR_BLAS_TEST_FAIL_CHECK=1) is refused and the
  library's own choice kept ("upgrade-refused").
With the PyPI LibTorch (MKL inside) the OpenBLAS steps do not apply: the kernel reads "MKL/auto",
a user's MKL_ENABLE_INSTRUCTIONS is reported ("user"), OPENBLAS_CORETYPE changes nothing, and the
report carries the CUDA, cuDNN and NCCL versions compiled in.
"""
import json
import re
import os
import subprocess
import sys

BEST = {"avx512": "SkylakeX", "avx2": "Haswell", "avx": "Sandybridge", "sse": "Prescott"}


def version(binary, **env_overrides):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENBLAS_", "SPAR_BLAS", "MKL_", "ATEN_CPU"))}
    env.update(env_overrides)
    out = subprocess.run([binary, "version", "--json"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def main():
    binary = sys.argv[1]
    base = version(binary)
    for key in ("spar_version", "libtorch_version", "blas_kernel", "cpu_capability",
                "cuda_compiled", "gpus_visible", "blas_config"):
        assert key in base, (key, base)
    assert base["blas_kernel"] != "unknown", base
    print("default:", base["blas_kernel"], base["blas_kernel_how"], base["cpu_capability"])
    if base["blas_kernel"].startswith("MKL/"):
        check_mkl(binary, base)
    else:
        check_openblas(binary, base)
    print("1 passed, 0 failed")


def check_mkl(binary, base):
    assert base["blas_kernel"] == "MKL/auto" and base["blas_kernel_how"] == "library", base
    assert "Math Kernel Library" in base["blas_config"], base
    assert base["aten_cpu_capability"] in ("DEFAULT", "AVX2", "AVX512"), base
    if base["cuda_compiled"]:
        for key in ("cuda_version", "cudnn_version", "nccl_version"):
            assert re.fullmatch(r"\d+\.\d+(\.\d+)?", base[key]), (key, base)
    user = version(binary, MKL_ENABLE_INSTRUCTIONS="SSE4_2", ATEN_CPU_CAPABILITY="default")
    assert user["blas_kernel"] == "MKL/SSE4_2" and user["blas_kernel_how"] == "user", user
    assert user["aten_cpu_capability"] == "DEFAULT", user
    ignored = version(binary, OPENBLAS_CORETYPE="Prescott", SPAR_BLAS_TEST_DETECTED="1")
    assert ignored["blas_kernel"] == "MKL/auto", ignored
    print("MKL capped:", user["blas_kernel"], user["aten_cpu_capability"])


def check_openblas(binary, base):

    user = version(binary, OPENBLAS_CORETYPE="Prescott")
    assert user["blas_kernel"].lower() == "prescott" and user["blas_kernel_how"] == "user", user

    best = BEST[base["cpu_capability"]]
    up = version(binary, OPENBLAS_CORETYPE="Prescott", SPAR_BLAS_TEST_DETECTED="1")
    if best == "Prescott":
        assert up["blas_kernel"].lower() == "prescott", up
    else:
        assert up["blas_kernel"].lower() == best.lower(), (best, up)
        assert up["blas_kernel_how"] == "upgraded", up
    print("fallback replaced by:", up["blas_kernel"], up["blas_kernel_how"])

    refused = version(binary, OPENBLAS_CORETYPE="Prescott", SPAR_BLAS_TEST_DETECTED="1",
                      SPAR_BLAS_TEST_FAIL_CHECK="1")
    if best != "Prescott":
        assert refused["blas_kernel_how"] == "upgrade-refused", refused
        assert refused["blas_kernel"] == base["blas_kernel"], (refused, base)
    print("self-check failure:", refused["blas_kernel"], refused["blas_kernel_how"])


if __name__ == "__main__":
    main()
