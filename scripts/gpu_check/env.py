"""Prints the GPU host's facts as JSON for gpu-check: card, torch, CUDA, tools.

Exit 2 (with the reason on stderr) when torch is missing, is 1.x, or has no CUDA build, or
when no GPU is visible, unless --allow-no-gpu (the dry run).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys


def first_line(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [l for l in out.splitlines() if l.strip()]
    if cmd[0].endswith("nvcc"):  # "Cuda compilation tools, release 13.0, V13.0.88"
        lines = [l for l in lines if "release" in l] or lines
    return lines[0] if lines else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--allow-no-gpu", action="store_true")
    args = ap.parse_args()
    try:
        import torch
        import torch.utils
    except ImportError as e:
        sys.exit(f"gpu-check: python3 cannot import torch ({e})")
    if int(torch.__version__.split(".")[0]) < 2:
        sys.exit(f"gpu-check: torch {torch.__version__} is too old (2.x needed)")
    env = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "torch_cmake_prefix": torch.utils.cmake_prefix_path,
        "cuda_available": torch.cuda.is_available(),
        "nvcc": first_line([shutil.which("nvcc") or "nvcc", "--version"]),
        "cmake": first_line(["cmake", "--version"]),
        "ninja": first_line(["ninja", "--version"]),
        "cores": os.cpu_count(),
        "card": None,
    }
    if env["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        env.update(card=props.name, capability=f"{props.major}.{props.minor}",
                   memory_gib=round(props.total_memory / 2**30, 1),
                   cudnn=torch.backends.cudnn.version(),
                   nccl=".".join(map(str, torch.cuda.nccl.version())))
    missing = [t for t in ("nvcc", "cmake", "ninja") if env[t] is None]
    if missing:
        sys.exit(f"gpu-check: not found on PATH: {', '.join(missing)}")
    if not env["torch_cuda"]:
        sys.exit(f"gpu-check: torch {torch.__version__} is a CPU-only build")
    if not env["cuda_available"] and not args.allow_no_gpu:
        sys.exit("gpu-check: torch.cuda.is_available() is False (no GPU visible)")
    print(json.dumps(env))


if __name__ == "__main__":
    main()
