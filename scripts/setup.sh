#!/usr/bin/env bash
# Installs what mkt and its tests need on Debian 12 (only what is missing),
# then installs the npm dependencies and builds mkt. Safe to run again.
#   scripts/setup.sh          everything: run-time and test packages
#   scripts/setup.sh --run    only what `mkt run` needs
set -euo pipefail
cd "$(dirname "$0")/.."
# xz-utils: to uncompress an installed (xz-compressed) kernel once for its PVH entry
runtime=(qemu-system-x86 kmod util-linux gcc make libc6-dev musl-tools xz-utils)
tests=(linux-image-amd64 linux-source-6.1 bc flex bison libelf-dev libssl-dev cpio tmux sudo)
want=("${runtime[@]}")
[[ ${1:-} == --run ]] || want+=("${tests[@]}")
# a machine with no installed kernel gets Debian's, so there is something to boot
ls /boot/vmlinuz-* >/dev/null 2>&1 || want+=(linux-image-amd64)

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=()
  [[ $(id -u) == 0 ]] || sudo=(sudo)
  echo "setup: installing ${missing[*]}" >&2
  "${sudo[@]}" apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
command -v node >/dev/null || { echo "setup: Node.js >= 20 is needed (apt-get install nodejs npm)" >&2; exit 1; }
if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules ]]; then
  npm ci --no-audit --no-fund >&2
fi
npm run -s build >&2
echo "setup: done; mkt is bin/mkt (npm install -g . puts it on PATH)" >&2
