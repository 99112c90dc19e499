#!/usr/bin/env bash
# `scripts/gpu-check --dry-run OUT_DIR`: the CPU half of the GPU check, on this machine. In a clean
# Debian 12 root that holds only what the bare GPU host has (rootfs.sh: compiler, cmake, ninja,
# python3 + the torch wheel; the CUDA toolkit bind-mounted read-only and on LD_LIBRARY_PATH, where
# a real host has the nvidia-* wheels torch depends on) plus a copy of the checkout
# and the prepared prefix (.gpu-deps/root), it runs run.sh --dry-run: the build from the prefix
# alone, the `gpu` tests (which skip without a GPU), and the benchmark on a tiny model on CPU,
# to exercise the report. Needs root (debootstrap, chroot, mount).
# Environment: SPAR_GPUCHECK_ROOTFS (~/.cache/spar-gpucheck/rootfs, built once and kept),
# SPAR_TORCH_WHEEL (the torch 2.11 cp311 wheel), SPAR_CUDA_HOME (/usr/local/cuda), SPAR_JOBS (2),
# SPAR_DRY_RUN_BUILD (the build folder inside the root, /work/build-gpucheck: kept between runs,
# so a rerun is incremental; remove ROOTFS/work/build-gpucheck for a clean build).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
[ $# -eq 1 ] || { echo "usage: scripts/gpu-check --dry-run OUT_DIR" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "gpu-check --dry-run: needs root (chroot, mount)" >&2; exit 2; }
mkdir -p "$1" && out="$(cd "$1" && pwd)"
rootfs="${SPAR_GPUCHECK_ROOTFS:-$HOME/.cache/spar-gpucheck/rootfs}"
wheel="${SPAR_TORCH_WHEEL:-/tmp/torchwhl/torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl}"
cuda="$(readlink -f "${SPAR_CUDA_HOME:-/usr/local/cuda}")"
[ -x "$cuda/bin/nvcc" ] || { echo "gpu-check --dry-run: no nvcc under $cuda" >&2; exit 2; }
t0=$(date +%s)

"$here/rootfs.sh" "$rootfs" "$wheel"
[ -f "$repo/.gpu-deps/root/MANIFEST" ] || "$here/prepare.sh" "$repo/.gpu-deps"
echo "[dry-run] root ready after $(( $(date +%s) - t0 )) s"

# DST becomes a copy of SRC; a file whose bytes changed gets the current time (so the build kept
# in the root rebuilds what changed, whatever the source's mtime), the others keep theirs.
sync_tree() {
  local src="$1" dst="$2" f
  (cd "$src" && find . ! -type d -print0) | while IFS= read -r -d '' f; do
    if ! cmp -s "$src/$f" "$dst/$f" 2>/dev/null; then
      mkdir -p "$(dirname "$dst/$f")" && rm -f "$dst/$f" && cp -P "$src/$f" "$dst/$f"
    fi
  done
  (cd "$dst" && find . ! -type d -print0) | while IFS= read -r -d '' f; do
    [ -e "$src/$f" ] || [ -L "$src/$f" ] || rm -f "$dst/$f"
  done
}

# The checkout as git sees it (tracked + untracked, not ignored), plus the prefix; nothing else.
work="$rootfs/work/spar" incoming="$rootfs/work/incoming"
rm -rf "$incoming" "$rootfs/work/out"
mkdir -p "$work" "$incoming" "$rootfs/work/out" "$rootfs/usr/local/cuda"
(cd "$repo" && git ls-files -co --exclude-standard -z | tar --null -T - -c) | tar -x -C "$incoming"
cp -a "$repo/.gpu-deps/root" "$incoming/.gpu-deps-root"
mkdir -p "$incoming/.gpu-deps" && mv "$incoming/.gpu-deps-root" "$incoming/.gpu-deps/root"
sync_tree "$incoming" "$work"
rm -rf "$incoming"

mounts=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount "${mounts[$i]}" 2>/dev/null || umount -l "${mounts[$i]}" || true
  done
}
trap cleanup EXIT
mount --bind "$cuda" "$rootfs/usr/local/cuda" && mounts+=("$rootfs/usr/local/cuda")
mount -o remount,ro,bind "$rootfs/usr/local/cuda"
mount -t proc proc "$rootfs/proc" && mounts+=("$rootfs/proc")
mount --bind /dev "$rootfs/dev" && mounts+=("$rootfs/dev")

rc=0
chroot "$rootfs" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
  PATH=/opt/torch-venv/bin:/usr/local/cuda/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  LD_LIBRARY_PATH=/usr/local/cuda/lib64 \
  PYTHON=/opt/torch-venv/bin/python3 SPAR_JOBS="${SPAR_JOBS:-2}" SPAR_BUILD_BUDGET=5400 \
  SPAR_GPU_BUILD="${SPAR_DRY_RUN_BUILD:-/work/build-gpucheck}" \
  nice -n "${SPAR_NICE:-15}" /work/spar/scripts/gpu_check/run.sh --dry-run /work/out || rc=$?
cp -a "$rootfs/work/out/." "$out/"
echo "[dry-run] finished in $(( $(date +%s) - t0 )) s, exit $rc; report in $out/gpu-check.md"
exit $rc
