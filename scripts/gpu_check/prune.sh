#!/usr/bin/env bash
# Prunes an unpacked Debian prefix (scripts/gpu_check/prepare.sh) to what a build uses: no docs,
# man pages, binaries or static libraries that have a shared twin; ICU's data library stays (all
# of it is loaded). Absolute symlinks become relative, .pc files get a relocatable prefix.
#   scripts/gpu_check/prune.sh ROOT
set -euo pipefail
root="$1"
rm -rf "$root"/usr/share/{doc,man,lintian,info,bug} "$root"/usr/bin "$root"/usr/sbin
rm -rf "$root"/usr/src  # googletest sources (libgtest-dev ships the built libraries too)
find "$root" -name '*.a' | while read -r a; do
  [ -e "${a%.a}.so" ] && rm -f "$a"
done
# Absolute links (/usr/lib/...) would point at the host's files once moved.
find "$root" -type l | while read -r l; do
  t=$(readlink "$l")
  case "$t" in
    /*) ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" "$root$t")" "$l" ;;
  esac
done
# pkg-config files: prefix relative to the file's folder (${pcfiledir}), so the prefix can move.
find "$root" -name '*.pc' | while read -r pc; do
  up=$(realpath -m --relative-to="$(dirname "$pc")" "$root/usr")
  sed -i "s#\(=[ ]*\)/usr\(/\|\$\)#\1\${pcfiledir}/$up\2#" "$pc"
done
