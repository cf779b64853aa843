#!/usr/bin/env bash
# mkt's benchmark: every case interleaved over N rounds after a warm-up, with
# the same accelerator, memory and CPU count throughout, so all cases see the
# same machine noise. Prints medians and ratios.
#
# usage: bench/boot.sh [--runs N] [--peer 'TEMPLATE'] TREE
#   TREE      a compiled kernel tree (bzImage, modules)
#   --peer    another launcher timed on the same cases: a command template with
#             {kernel} (the bzImage), {tree} and {cmd} (a shell command), e.g.
#             --peer "vng -r {kernel} -- {cmd}"
# env: MKT_ACCEL (default tcg), MEM (1G), CPUS (2), SKIP_HEAVY=1 (no file-heavy case)
#
# Cases:
#   floor      the same qemu booting the same bzImage with an initramfs whose
#              init (a reboot system call, no C library) reboots at once, with the boot-time kernel
#              arguments, CPU model and firmware (qboot) mkt uses: the
#              fastest invocation found, what qemu and the kernel cost
#   floor-pvh  the same booting the tree's vmlinux at its PVH entry point (CONFIG_PVH),
#              which skips the decompressor: what mkt boots from a tree (--no-pvh: the bzImage)
#   floor-plain  the same bzImage with qemu's defaults (SeaBIOS, -cpu max) and only
#              'console=ttyS0 panic=-1 quiet': its reboot waits for the PS/2
#              mouse probe that the lean arguments skip
#   true       mkt run --exec true (from the second start on, bin/mkt's launcher starts
#              qemu from the plan the first one left: see docs/mkt-run.md); from the
#              tree, its vmlinux when it has the PVH entry
#   true-bz    the same with --no-pvh: through the bzImage, as the floor boots
#   true-cli   the same through bin/mkt.cjs, the CLI without the launcher: qemu
#              starts once Node.js has started and mkt has planned
#   uname      mkt run --exec 'uname -r'
#   pre        ms from mkt's start to spawning qemu, warm caches (--boot-trace of `true`)
#   heavy-9p / heavy-virtiofs
#              ls -lR and cat | md5sum over a copy of the tree's include/,
#              exported with --dir, over each filesystem
#   stdout     50 MB of stdout streamed back (MB/s, after subtracting `true`)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
runs=7 peer=""
while [[ $# -gt 1 ]]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --peer) peer=$2; shift 2 ;;
    *) break ;;
  esac
done
tree=${1:?usage: bench/boot.sh [--runs N] [--peer TEMPLATE] TREE}
tree=$(realpath "$tree")
accel=${MKT_ACCEL:-tcg} mem=${MEM:-1G} cpus=${CPUS:-2}
mkt=$here/bin/mkt
image=$tree/arch/x86/boot/bzImage
# what mkt boots from the tree (its vmlinux where it has the PVH entry note)
pvhimage=$("$mkt" run --kernel "$tree" --exec true --dry-run | sed -n 's/.* -kernel \([^ ]*\) .*/\1/p')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# no C library: a static glibc program costs the boot some 40 ms under TCG
# (unpacking 700 KB, then glibc's start-up), which is not the kernel's
cat >"$work/init.c" <<'EOF2'
void _start(void)
{
	long r; /* reboot(LINUX_REBOOT_MAGIC1, MAGIC2, LINUX_REBOOT_CMD_RESTART) */
	__asm__ volatile("syscall" : "=a"(r) : "a"(169L), "D"(0xfee1deadL), "S"(672274793L), "d"(0x01234567L) : "rcx", "r11", "memory");
	for (;;)
		__asm__ volatile("hlt"); /* not reached; were it, the fault would panic the kernel, and panic=-1 reboots */
}
EOF2
gcc -static -nostdlib -Os -s -o "$work/init" "$work/init.c"
(cd "$work" && echo init | cpio -o -H newc --quiet >floor.cpio)
cp -r "$tree/include" "$work/include"
# the fastest floor: the boot-time arguments mkt passes too (src/qemu/cmdline.ts, LEAN_BOOT),
# but rcu_normal_after_boot, which only slows its reboot
lean=$(cd "$here" && node --input-type=module -e "import('./dist/qemu/cmdline.js').then(m => console.log(m.LEAN_BOOT.map(e => e.arg).join(' ')))")
lean=${lean/rcupdate.rcu_normal_after_boot=1/}
# and under TCG no local APIC timer (TCG_TIMER_ENTRY): no calibrating it at every boot
[[ $accel != tcg ]] || lean+=" $(cd "$here" && node --input-type=module -e "import('./dist/qemu/cmdline.js').then(m => console.log(m.TCG_TIMER_ENTRY.arg))")"
# and the host's TSC rate, which spares the kernel calibrating its TSC (src/host/tsc.ts), as mkt passes it
if [[ $accel == tcg ]] && khz=$("$here/dist/host/mkt-tsc"); then lean+=" tsc_early_khz=$khz"; fi
# floor-plain: qemu's defaults (SeaBIOS, the plain CPU model); floor: mkt's
# CPU model for this accelerator (src/qemu/args.ts, accelArgs) and qboot where
# qemu ships it (firmwareArgs), the fastest invocation found
plaincpu=$([[ $accel == kvm ]] && echo host || echo max)
cpu=$(cd "$here" && node --input-type=module -e "import('./dist/qemu/args.js').then(m => console.log(m.accelArgs('$accel')[3]))")
common=(qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot -accel "$accel"
  -machine pc -m "$mem" -smp "$cpus" -kernel "$image" -initrd "$work/floor.cpio" -serial null)
plainq=("${common[@]}" -cpu "$plaincpu")
fastq=("${common[@]}" -cpu "$cpu")
qboot=$(dirname "$(realpath "$(command -v qemu-system-x86_64)")")/../share/qemu/qboot.rom
[[ ! -e $qboot ]] || fastq+=(-bios "$(realpath "$qboot")")
ours=("$mkt" run --kernel "$tree" --accel "$accel" --memory "$mem" --cpus "$cpus")
heavy="ls -lR '$work/include' >/dev/null && find '$work/include' -type f -exec cat {} + | md5sum"
big='head -c 52428800 /dev/zero'

ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>"$work/err" </dev/null || { echo "bench: failed: $*" >&2; cat "$work/err" >&2; exit 1; }; t1=$(date +%s%N); echo $(((t1 - t0) / 1000000)); }
median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2] + a[NR/2+1]) / 2)}'; }
peer_run() { local c=${peer//\{kernel\}/$image}; c=${c//\{tree\}/$tree}; c=${c//\{cmd\}/$1}; ms sh -c "$c"; }

cases=(floor floor-plain true true-cli uname stdout)
pvh=""
if [[ $pvhimage != "$image" ]]; then pvh=y; cases=(floor floor-pvh floor-plain true true-bz true-cli uname stdout); fi
[[ -n ${SKIP_HEAVY:-} ]] || cases+=(heavy-9p heavy-virtiofs)
[[ -z $peer ]] || cases+=(peer-true peer-uname)
one() {
  case $1 in
    floor) ms "${fastq[@]}" -append "console=ttyS0 panic=-1 quiet $lean" ;;
    floor-pvh) ms "${fastq[@]/#$image/$pvhimage}" -append "console=ttyS0 panic=-1 quiet $lean" ;;
    floor-plain) ms "${plainq[@]}" -append "console=ttyS0 panic=-1 quiet" ;;
    true) ms "${ours[@]}" --boot-trace --exec true
      # mkt's own start-up: the trace's "qemu started" (qemu is the first process mkt starts)
      sed -n 's/^ *\([0-9]*\) ms .*qemu started$/\1/p' "$work/err" >>"$work/pre.t" ;;
    true-bz) ms "${ours[@]}" --no-pvh --exec true ;;
    true-cli) ms "$here/bin/mkt.cjs" "${ours[@]:1}" --exec true ;;
    uname) ms "${ours[@]}" --exec 'uname -r' ;;
    stdout) ms "${ours[@]}" --exec "$big" ;;
    heavy-9p) ms "${ours[@]}" --fs 9p --dir "$work/include" --exec "$heavy" ;;
    heavy-virtiofs) ms "${ours[@]}" --fs virtiofs --dir "$work/include" --exec "$heavy" ;;
    peer-true) peer_run true ;;
    peer-uname) peer_run 'uname -r' ;;
  esac
}
for c in "${cases[@]}"; do one "$c" >/dev/null; done # warm-up
rm -f "$work/pre.t"
for _ in $(seq 1 "$runs"); do
  for c in "${cases[@]}"; do one "$c" >>"$work/$c.t"; done
done
declare -A m
echo "accel=$accel memory=$mem cpus=$cpus runs=$runs kernel=$tree fs(auto)=$("$mkt" run --kernel "$tree" --exec true --dry-run --verbose 2>&1 >/dev/null | sed -n 's/^mkt: filesystem: \([^ :]*\).*/\1/p')"
for c in "${cases[@]}" pre; do
  m[$c]=$(median "$work/$c.t")
  printf '%-16s median %6s ms   [%s]\n' "$c" "${m[$c]}" "$(tr '\n' ' ' <"$work/$c.t")"
done
paired() { # the ratio A/B per round (each round runs the cases back to back), then its median:
  # a slow spell of the machine then moves both sides of one ratio, not the medians of all
  paste "$work/$1.t" "$work/$2.t" | awk '{ print $1 / $2 }' | sort -n |
    awk -v l="$1/$2" '{ a[NR] = $1 } END { printf "paired %s: %.3f   (median of the %d per-round ratios, from %.3f to %.3f)\n", l, (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2, NR, a[1], a[NR] }'
}
awk -v t="${m[true]}" -v c="${m[true-cli]}" -v u="${m[uname]}" -v f="${m[floor]}" -v p="${m[floor-plain]}" -v s="${m[stdout]}" \
  -v pf="${m[floor-pvh]:-}" -v tb="${m[true-bz]:-}" 'BEGIN {
  if (pf != "") {
    printf "same entry, bzImage: true-bz/floor:   %.3f\n", tb / f
    printf "same entry, PVH:     true/floor-pvh:  %.3f   (uname/floor-pvh: %.3f)\n", t / pf, u / pf
    printf "what a user sees:    true/floor:      %.3f   (floor-pvh/floor: %.3f, true/true-bz: %.3f)\n", t / f, pf / f, t / tb
  } else {
    printf "ratio true/floor:   %.3f   (against the plain floor: %.3f)\n", t / f, t / p
    printf "ratio uname/floor:  %.3f\n", u / f
  }
  printf "ratio true-cli/true: %.3f (without the launcher)\n", c / t
  printf "stdout throughput:  %.0f MB/s (50 MB in %d ms beyond `true`)\n", (s > t ? 52.4288 / ((s - t) / 1000) : 0), s - t
}'
if [[ -n $pvh ]]; then paired true-bz floor; paired true floor-pvh; else paired true floor; fi
if [[ -z ${SKIP_HEAVY:-} ]]; then
  awk -v a="${m[heavy-9p]}" -v b="${m[heavy-virtiofs]}" 'BEGIN { printf "file-heavy 9p/virtiofs: %.2f x\n", a / b }'
fi
if [[ -n $peer ]]; then
  awk -v p="${m[peer-true]}" -v f="${m[floor]}" -v t="${m[true]}" 'BEGIN { printf "peer true/floor:    %.3f (mkt %.3f)\n", p / f, t / f }'
fi
