/** The guest kernel command line: a list of documented entries. */
import { UsageError } from '../errors.js';
import type { Accel } from '../run/types.js';

/** One kernel argument and why mkt passes it. */
export interface CmdlineEntry {
  readonly arg: string;
  readonly why: string;
  /** mkt's run depends on it: --append=-ARG may not leave it out. */
  readonly needed?: true;
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

/**
 * Under TCG, which has no TSC-deadline timer, the kernel calibrates each
 * local APIC timer against the PIT at every boot, two tenths of a second of
 * emulated ticks, and then runs its ticks through the emulated APIC timer.
 * Without it the PIT (or HPET) ticks for all CPUs, broadcast to the others:
 * measured with a reboot-only init, the test kernel reaches init 0.3 s
 * sooner (0.75 s instead of 1.05 s after it starts), Debian's SMP kernel
 * about 0.25 s; `sleep 2` still takes 2 s. `--append=-nolapic_timer` keeps
 * the APIC timers (for work on the timer code, say).
 */
export const TCG_TIMER_ENTRY: CmdlineEntry = {
  arg: 'nolapic_timer',
  why: 'TCG: no calibration of the emulated local APIC timer (about 0.2 s) and its ticks; the PIT/HPET ticks, broadcast to other CPUs (--append=-nolapic_timer keeps it)',
};

/**
 * Under TCG the guest's TSC is the host's counter, ticking at the host's
 * rate. Told that rate (measured on the host once per boot: host/tsc.ts),
 * the kernel skips calibrating its TSC against the emulated PIT: on a busy
 * host (four runs at once on two cores, say) that calibration fails in most
 * guests, which then mark the TSC unstable, fall back to a 4 ms jiffies
 * clock and calibrate their delay loop the slow way. Kernels before 5.6
 * know no tsc_early_khz and pass it on to init, which ignores it.
 */
export function tscEntry(khz: number | 'KHZ'): CmdlineEntry {
  return {
    arg: `tsc_early_khz=${khz}`,
    why: "TCG: the guest's TSC is the host's; its rate, measured on the host, spares the kernel a calibration against the emulated PIT that fails on a busy host and leaves it a 4 ms clock",
  };
}

/** mkt's own kernel arguments for a run. */
export function baseCmdline(opts: { readonly quiet: boolean; readonly accel?: Accel; readonly tscKhz?: number }): CmdlineEntry[] {
  const out: CmdlineEntry[] = [
    { arg: 'console=ttyS0', why: 'boot messages (and any panic) go to the serial port', needed: true },
    { arg: 'panic=-1', why: 'reboot at once on a panic; with -no-reboot qemu then exits, so a panic never hangs mkt', needed: true },
    { arg: 'rdinit=/init', why: "mkt-init from mkt's initramfs is PID 1", needed: true },
    ...LEAN_BOOT,
  ];
  if (opts.accel === 'tcg') out.push(TCG_ENTRY, TCG_TIMER_ENTRY);
  if (opts.accel === 'tcg' && opts.tscKhz !== undefined) out.push(tscEntry(opts.tscKhz));
  if (opts.quiet) out.push({ arg: 'quiet', why: '--exec without --verbose shows no boot log, and printing it costs boot time' });
  return out;
}

/** Check one user-supplied argument (from --append) can be passed. */
function checkUserArg(arg: string): void {
  if (/[\0\n\r]/.test(arg)) throw new UsageError(`--append ${JSON.stringify(arg)}: kernel arguments cannot contain newlines or NUL`);
}

/** The kernel's own word splitting: spaces separate words except inside double quotes. */
export function cmdlineWords(text: string): string[] {
  const out: string[] = [];
  let word = '';
  let quoted = false;
  for (const c of text) {
    if (c === '"') quoted = !quoted;
    if (!quoted && /\s/.test(c)) {
      if (word) out.push(word);
      word = '';
    } else word += c;
  }
  if (word) out.push(word);
  return out;
}

/** Every argument mkt may pass, whatever the accelerator and mode: what --append=-ARG may name. */
const ANY_ENTRY = (): CmdlineEntry[] => [...baseCmdline({ quiet: true, accel: 'tcg' }), tscEntry('KHZ')];

/**
 * Join entries and user arguments (last, so they win) into the command line,
 * within the size limit. A user word -ARG (a dash, then a letter; before any
 * `--`, after which the words are init's) is no argument but leaves out
 * mkt's own ARG (by its whole text or its name before '='), where this run
 * has it: the way to boot without one that no kernel argument undoes.
 */
export function renderCmdline(entries: readonly CmdlineEntry[], user: readonly string[]): string {
  user.forEach(checkUserArg);
  const words = user.flatMap(cmdlineWords);
  const dashes = words.indexOf('--');
  const isRemoval = (w: string, i: number): boolean => (dashes < 0 || i < dashes) && /^-[A-Za-z]/.test(w);
  const removals = words.filter(isRemoval).map((w) => w.slice(1));
  const name = (arg: string): string => arg.split('=')[0]!;
  const matches = (e: CmdlineEntry, r: string): boolean => e.arg === r || name(e.arg) === r;
  const any = removals.length ? ANY_ENTRY() : [];
  for (const r of removals) {
    // one of this run's by its whole text or its name; else one mkt may pass in other runs, by its name
    const here = entries.find((e) => matches(e, r));
    const known = here ?? any.find((e) => name(e.arg) === name(r));
    if (!known) {
      throw new UsageError(`--append -${r}: mkt passes no ${r} to leave out (its own arguments: ${any.map((e) => e.arg).join(' ')}); to pass -${r} to init, put it after --append=--`);
    }
    if (known.needed) throw new UsageError(`--append -${r}: mkt needs ${known.arg} (${known.why}); it cannot be left out`);
    const other = here ? undefined : entries.find((e) => name(e.arg) === name(r));
    if (other) throw new UsageError(`--append -${r}: this run passes ${other.arg}, not ${r}; --append=-${name(r)} leaves it out`);
  }
  const kept = entries.filter((e) => !removals.some((r) => matches(e, r)));
  const line = [...kept.map((e) => e.arg), ...words.filter((w, i) => !isRemoval(w, i))].join(' ');
  if (Buffer.byteLength(line) >= COMMAND_LINE_SIZE) {
    throw new UsageError(`the kernel command line is ${Buffer.byteLength(line)} bytes; x86 allows ${COMMAND_LINE_SIZE - 1}: shorten --append`);
  }
  return line;
}
