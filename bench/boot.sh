#!/usr/bin/env bash
# Boot-time benchmark: `mkt run --exec true` against the floor (the same qemu
# booting the same bzImage with an initramfs whose init reboots at once),
# interleaved over N repetitions after a warm-up, so both see the same
# machine noise. Prints each case's median and the ratio, and the time mkt
# spends before qemu starts, with warm caches (from process start to the
# moment it would spawn qemu, as `mkt run --dry-run --verbose` reports it).
#
# usage: bench/boot.sh TREE [N]      (TREE: a compiled kernel tree)
# env:   MKT_ACCEL (default tcg), MEM (1G), CPUS (2)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
tree=${1:?usage: bench/boot.sh TREE [N]}
n=${2:-7}
accel=${MKT_ACCEL:-tcg}
mem=${MEM:-1G}
cpus=${CPUS:-2}
mkt=$here/bin/mkt
image=$tree/arch/x86/boot/bzImage
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# the floor's init: one line of C that reboots (qemu -no-reboot then exits)
printf '#include <sys/reboot.h>\nint main(void) { return reboot(RB_AUTOBOOT); }\n' >"$work/init.c"
gcc -static -Os -s -o "$work/init" "$work/init.c"
(cd "$work" && echo init | cpio -o -H newc --quiet >floor.cpio)
cpu=$([[ $accel == kvm ]] && echo host || echo max)
floor=(qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot -accel "$accel" -cpu "$cpu"
  -machine pc -m "$mem" -smp "$cpus" -kernel "$image" -initrd "$work/floor.cpio"
  -append 'console=ttyS0 panic=-1 quiet' -serial null)
ours=("$mkt" run --kernel "$tree" --accel "$accel" --memory "$mem" --cpus "$cpus" --exec true)

ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>&1 </dev/null || { echo "bench: failed: $*" >&2; exit 1; }; t1=$(date +%s%N); echo $(((t1 - t0) / 1000000)); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2] + a[NR/2+1]) / 2)}'; }

ms "${floor[@]}" >/dev/null
ms "${ours[@]}" >/dev/null
: >"$work/floor" >"$work/mkt" >"$work/pre"
for _ in $(seq 1 "$n"); do
  ms "${floor[@]}" >>"$work/floor"
  ms "${ours[@]}" >>"$work/mkt"
  "${ours[@]}" --dry-run --verbose 2>&1 >/dev/null | sed -n 's/.*qemu starts \([0-9]*\) ms after mkt started.*/\1/p' >>"$work/pre"
done
f=$(median <"$work/floor")
m=$(median <"$work/mkt")
p=$(median <"$work/pre")
echo "accel=$accel memory=$mem cpus=$cpus runs=$n kernel=$tree"
echo "floor (qemu + kernel + reboot-only init): median ${f} ms  [$(tr '\n' ' ' <"$work/floor")]"
echo "mkt run --exec true:                      median ${m} ms  [$(tr '\n' ' ' <"$work/mkt")]"
echo "mkt before qemu starts (warm caches):     median ${p} ms  [$(tr '\n' ' ' <"$work/pre")]"
awk -v m="$m" -v f="$f" 'BEGIN { printf "ratio mkt/floor: %.3f\n", m / f }'
