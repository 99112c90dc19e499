#!/usr/bin/env bash
# Builds (once) the clean root that stands in for a bare GPU host in `scripts/gpu-check --dry-run`:
# Debian 12 minbase + a compiler, cmake, ninja and python3 from apt, and a venv with the torch
# wheel (--no-deps, plus the few packages torch imports). Nothing of Spar's Debian dependencies.
#   scripts/gpu_check/rootfs.sh ROOT TORCH_WHEEL
# Needs root and debootstrap. ROOT/.spar-rootfs-ready marks a finished root; rerunning is a no-op.
set -euo pipefail
root="$1" wheel="$2"
[ -f "$root/.spar-rootfs-ready" ] && exit 0
[ "$(id -u)" -eq 0 ] || { echo "rootfs.sh: needs root (debootstrap, chroot)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "rootfs.sh: debootstrap is not installed" >&2; exit 2; }
[ -f "$wheel" ] || { echo "rootfs.sh: torch wheel not found: $wheel" >&2; exit 2; }
mirror="${SPAR_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ ! -x "$root/usr/bin/python3" ]; then
  rm -rf "$root"
  mkdir -p "$root"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 \
    || { echo "rootfs.sh: debootstrap failed, see $root.debootstrap.log" >&2; exit 1; }
  cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  chroot "$root" apt-get update -qq
  # What the brief's bare host has: a compiler, cmake, ninja, python3 (+ venv for the wheel).
  DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends \
    build-essential cmake ninja-build python3 python3-venv >/dev/null
  chroot "$root" apt-get clean
fi
# The wheels are fetched here (the chroot has no CA certificates or pip settings) and installed
# there offline.
mkdir -p "$root/opt/wheels"
cp "$wheel" "$root/opt/wheels/"
"${SPAR_HOST_PYTHON:-/usr/bin/python3}" -m pip download -q --no-deps -d "$root/opt/wheels" \
  --python-version 3.11 --only-binary=:all: --platform manylinux_2_28_x86_64 \
  --platform manylinux2014_x86_64 --platform any \
  typing_extensions==4.16.0 sympy==1.14.0 mpmath==1.3.0 filelock==4.3.1 networkx==3.6.1 \
  Jinja2==3.1.6 MarkupSafe==3.0.4 fsspec==2026.9.0 nvidia-cusparselt-cu13==0.8.0 \
  nvidia-nvshmem-cu13==3.4.5 nvidia-cufile==1.15.1.6
chroot "$root" python3 -m venv /opt/torch-venv
# torch's own imports (scripts/requirements-ref.txt pins); its CUDA libraries come from the toolkit.
chroot "$root" sh -c '/opt/torch-venv/bin/pip install -q --disable-pip-version-check --no-index \
  --no-deps /opt/wheels/*.whl'
rm -rf "$root/opt/wheels"
touch "$root/.spar-rootfs-ready"
