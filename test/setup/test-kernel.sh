#!/usr/bin/env bash
# Builds (once per machine) the small test kernel the VM tests boot, and prints
# the path of its compiled tree on stdout.
#
# The kernel is Debian's linux-source-6.1, started from tinyconfig, configured
# with `mkt kconfig` plus CONFIG_DUMMY=m (a module for the module-loading
# tests). The tree is cached under ~/.cache/mkt-test keyed by the source
# version, the mkt kconfig fragment and this recipe, so a machine that built
# it once never rebuilds it, and a changed fragment builds a new one.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
mkt=${MKT:-$here/bin/mkt}
cache=${MKT_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mkt-test}
tarball=/usr/src/linux-source-6.1.tar.xz
recipe=1
# options only the tests need, applied before mkt kconfig
extras=$'CONFIG_64BIT=y\nCONFIG_NETDEVICES=y\nCONFIG_NET_CORE=y\nCONFIG_DUMMY=m'

[[ -f $tarball ]] || { echo "test-kernel: $tarball missing: apt-get install linux-source-6.1" >&2; exit 1; }
version=$(dpkg-query -W -f '${Version}' linux-source-6.1)
fragment=$("$mkt" kconfig --print)
key=$(printf '%s\n%s\n%s\n%s\n' "$recipe" "$version" "$extras" "$fragment" | sha256sum | cut -c1-16)
tree=$cache/linux-$key
if [[ -f $tree/.mkt-test-complete ]]; then
  echo "$tree"
  exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "test-kernel: building the test kernel in $tree (5-10 minutes, once per machine)" >&2
tar -C "$work" -xf "$tarball"
src=$work/linux-source-6.1
make -s -C "$src" tinyconfig >&2
printf '%s\n' "$extras" >>"$src/.config"
"$mkt" kconfig "$src" >&2
grep -q '^CONFIG_DUMMY=m$' "$src/.config" || { echo "test-kernel: CONFIG_DUMMY=m did not stick" >&2; exit 1; }
make -s -C "$src" -j"$(nproc)" bzImage modules >&2
touch "$src/.mkt-test-complete"
rm -rf "$tree"
mv "$src" "$tree"
# keep only the newest test kernel
for old in "$cache"/linux-*; do
  [[ $old == "$tree" ]] || rm -rf "$old"
done
echo "$tree"
