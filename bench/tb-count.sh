#!/usr/bin/env bash
# How much code the guest runs for the first time after the kernel starts
# mkt-init: the translation blocks qemu's TCG translates from mkt-init's
# first instruction to the VM's end, counted from qemu's `-d in_asm` log.
# Under TCG most of a boot's time after init goes to running code for the
# first time (translating it, the first page walks and faults), and this
# count, unlike a time, is the same from run to run within a few percent,
# whatever else the machine does: a way to compare two versions of the
# boot path without a hundred timed runs.
#
# usage: bench/tb-count.sh TREE [mkt run options...]   (default: --exec true)
#   prints: post-init blocks N (kernel K, user U)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tree=${1:?usage: bench/tb-count.sh TREE [mkt run options...]}
shift
(($#)) || set -- --exec true
init=$here/dist/guest/mkt-init
entry=$(readelf -h "$init" | awk '/Entry point/ { print $4 }')
log=$(mktemp)
trap 'rm -f "$log"' EXIT
MKT_ACCEL=tcg "$here/bin/mkt" run --kernel "$tree" "$@" --qemu-arg=-d --qemu-arg=in_asm --qemu-arg=-D --qemu-arg="$log" >/dev/null </dev/null
node - "$log" "$entry" <<'EOF'
const [log, entry] = process.argv.slice(2);
const lines = require('fs').readFileSync(log, 'latin1').split('\n');
const start = BigInt(entry);
let seen = false, kernel = 0, user = 0;
for (let i = 0; i < lines.length; i++) {
  if (!lines[i].startsWith('IN:')) continue;
  const first = lines[i + 1] ?? '';
  if (!first.startsWith('0x')) continue;
  const at = BigInt(first.slice(0, first.indexOf(':')));
  if (!seen && at === start) seen = true;
  if (!seen) continue;
  if (at >= 0xffffffff00000000n) kernel++;
  else user++;
}
if (!seen) throw new Error(`mkt-init's entry ${entry} never ran: is ${log} a log of this build?`);
console.log(`post-init blocks ${kernel + user} (kernel ${kernel}, user ${user})`);
EOF
