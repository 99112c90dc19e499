#!/usr/bin/env bash
# `scripts/gpu-check --prepare`: on a Debian 12 machine with network, downloads the packages of
# packages.txt and unpacks them into DEST/root (a prefix for CMAKE_PREFIX_PATH=DEST/root/usr),
# pruned to what the build and the binaries use; fails when the prefix exceeds 64 MiB.
#   scripts/gpu_check/prepare.sh DEST     (DEST: .gpu-deps, git-ignored)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="$1"
limit_mib=64

mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^\s*$/d' "$here/packages.txt" | awk '{print $1}')
mkdir -p "$dest/debs"
rm -rf "$dest/root"
mkdir -p "$dest/root"
(cd "$dest/debs" && rm -f ./*.deb && apt-get download "${pkgs[@]}" >/dev/null 2>&1) || {
  echo "prepare: apt-get download failed (needs Debian 12 apt sources and network)" >&2; exit 1; }
for deb in "$dest"/debs/*.deb; do
  dpkg-deb -x "$deb" "$dest/root"
  dpkg-deb -W --showformat='${Package} ${Version}\n' "$deb" >>"$dest/root/MANIFEST"
done
"$here/prune.sh" "$dest/root"

# The newest glibc symbol version the prefix's libraries need (the host's glibc must be >= it).
glibc=$(find "$dest/root" -name '*.so*' -type f -exec objdump -T {} + 2>/dev/null |
  grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1 | sed 's/GLIBC_//')
echo "glibc $glibc" >>"$dest/root/MANIFEST"
size_mib=$(( $(du -sk "$dest/root" | cut -f1) / 1024 ))
echo "prepare: $dest/root: ${size_mib} MiB (limit $limit_mib), ${#pkgs[@]} packages, needs glibc >= $glibc"
if [ "$size_mib" -gt "$limit_mib" ]; then
  echo "prepare: the prefix is ${size_mib} MiB, over the ${limit_mib} MiB limit" >&2
  du -sk "$dest"/root/usr/*/* | sort -n | tail -5 >&2
  exit 1
fi
