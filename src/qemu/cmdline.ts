/** The guest kernel command line: a list of documented entries. */
import { UsageError } from '../errors.js';
import type { Accel } from '../run/types.js';

/** One kernel argument and why mkt passes it. */
export interface CmdlineEntry {
  readonly arg: string;
  readonly why: string;
}

/** x86's COMMAND_LINE_SIZE (arch/x86/include/asm/setup.h), including the terminating NUL. */
export const COMMAND_LINE_SIZE = 2048;

/**
 * Arguments that take time off every boot in a VM; measured under TCG on the
 * test kernel with a reboot-only init (1.9 s → 1.4 s). --append can undo
 * any of them (e.g. pci=lastbus=255).
 */
export const LEAN_BOOT: readonly CmdlineEntry[] = [
  { arg: 'i8042.noaux', why: 'no PS/2 mouse to probe: its probe waits out timeouts (about 0.45 s under TCG)' },
  { arg: 'pci=lastbus=0', why: "mkt's devices all sit on bus 0 of the pc machine: scan no further" },
  { arg: 'tsc=reliable', why: "qemu's TSC is stable: skip the clocksource watchdog and its checks" },
  { arg: 'no_timer_check', why: 'skip the IO-APIC timer check, which waits on emulated ticks' },
  { arg: 'rcupdate.rcu_expedited=1', why: 'expedited RCU grace periods while booting ...' },
  { arg: 'rcupdate.rcu_normal_after_boot=1', why: '... and normal ones once init runs, so the kernel under test behaves as usual' },
];

/**
 * Under TCG, qemu keeps the code it translated per guest virtual address:
 * with user-space address randomization off, every process reuses the
 * translations of the shell and libraries that ran before it (a warm
 * `sh -c true` takes 10 ms instead of 25 ms). A guest that needs ASLR can
 * turn it back on with `sysctl kernel.randomize_va_space=2`.
 */
export const TCG_ENTRY: CmdlineEntry = {
  arg: 'norandmaps',
  why: "TCG: programs map at the same addresses in every process, so qemu's translated code is reused (sysctl kernel.randomize_va_space=2 undoes it)",
};

/** mkt's own kernel arguments for a run. */
export function baseCmdline(opts: { readonly quiet: boolean; readonly accel?: Accel }): CmdlineEntry[] {
  const out: CmdlineEntry[] = [
    { arg: 'console=ttyS0', why: 'boot messages (and any panic) go to the serial port' },
    { arg: 'panic=-1', why: 'reboot at once on a panic; with -no-reboot qemu then exits, so a panic never hangs mkt' },
    { arg: 'rdinit=/init', why: "mkt-init from mkt's initramfs is PID 1" },
    ...LEAN_BOOT,
  ];
  if (opts.accel === 'tcg') out.push(TCG_ENTRY);
  if (opts.quiet) out.push({ arg: 'quiet', why: '--exec without --verbose shows no boot log, and printing it costs boot time' });
  return out;
}

/** Check one user-supplied argument (from --append) can be passed. */
function checkUserArg(arg: string): void {
  if (/[\0\n\r]/.test(arg)) throw new UsageError(`--append ${JSON.stringify(arg)}: kernel arguments cannot contain newlines or NUL`);
}

/** Join entries and user arguments (last, so they win) into the command line, within the size limit. */
export function renderCmdline(entries: readonly CmdlineEntry[], user: readonly string[]): string {
  user.forEach(checkUserArg);
  const line = [...entries.map((e) => e.arg), ...user].join(' ');
  if (Buffer.byteLength(line) >= COMMAND_LINE_SIZE) {
    throw new UsageError(`the kernel command line is ${Buffer.byteLength(line)} bytes; x86 allows ${COMMAND_LINE_SIZE - 1}: shorten --append`);
  }
  return line;
}
