/** One `mkt run`: choose the accelerator, stage caches, plan, execute, and turn the outcome into an exit code. */
import { randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { constants } from 'node:os';
import { ToolError, UsageError } from '../errors.js';
import { findExecutable, findQboot, type HostFacts, SYSTEM_DIRS, xdgBase } from '../host/facts.js';
import { readVerdict, verdictPath, writeVerdict } from '../host/kvm-verdict.js';
import { checkBootNeeds, virtiofsSupport } from '../kernel/features.js';
import { bootImage } from '../kernel/locate.js';
import { pvhImage } from '../kernel/pvh-image.js';
import { chooseFs, type FsDecision } from './fs-choice.js';
import { parseDotConfig } from '../kernel/kconfig.js';
import { loadOrder, readModuleIndex, stageTreeModules } from '../kernel/modules.js';
import { shellQuote } from '../qemu/escape.js';
import { cachedInitramfs } from '../rootfs/initramfs.js';
import { DaemonError, prepareDaemons, type Daemons } from './daemons.js';
import { type BootTrace, execute, type Outcome } from './execute.js';
import { type FastStart, planProcesses, recordable, recordFastStart, ttyWord } from './fast-start.js';
import { guestPath, planRun, rootServedWritable, shownInGuest, type Staged } from './plan.js';
import { guestProgram, simpleArgv } from './simple-command.js';
import type { Accel, ResolvedRun, RunPlan } from './types.js';

/** Where core code reports what the user should hear; the CLI decides how it looks. */
export interface Reporter {
  /** Something worth one line even in --exec mode (e.g. which kernel mkt picked, a TCG fallback). */
  warn(message: string): void;
  /** Details shown with --verbose only. */
  info(message: string): void;
  /** Why the run failed. */
  error(message: string): void;
}

/** Exit statuses of `mkt run` besides the command's own. */
export const EXIT = { usage: 2, timeout: 124, failed: 125 } as const;

/** How long a KVM guest may take to reach mkt-init before mkt calls KVM broken (MKT_KVM_PROBE_SECONDS overrides). */
export const KVM_LIFE_BOUND_MS = 10_000;

/** Under TCG, after this long without a word from mkt-init, say that the boot is slow rather than stay silent. */
export const SLOW_BOOT_NOTICE_MS = 60_000;

/** Make sure the cache directory can be used, with a message that says what to do when not. */
function checkCacheDir(dir: string, home: string, xdgSet: boolean): void {
  const fix = 'set XDG_CACHE_HOME to a writable directory';
  if (!xdgSet && !existsSync(home)) throw new ToolError(`cannot keep mkt's cache in ${dir}: your home ${home} does not exist: ${fix}`);
  // what mkdir would write into: the nearest existing ancestor, symlinks resolved
  let probe = dir;
  while (!existsSync(probe) && dirname(probe) !== probe) probe = dirname(probe);
  const real = realpathSync(probe);
  if (/^\/(proc|sys)(\/|$)/.test(real) || /^\/dev(\/(?!shm(\/|$))|$)/.test(real)) {
    throw new ToolError(`cannot use ${dir} as mkt's cache: ${real} is a kernel filesystem: ${fix}`);
  }
  if (!statSync(real).isDirectory()) throw new ToolError(`cannot use ${dir} as mkt's cache: ${probe} is not a directory: ${fix}`);
  try {
    accessSync(real, fsConstants.W_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'EROFS' ? 'is on a read-only filesystem' : code === 'EACCES' ? 'is not writable by you' : `cannot be written (${code})`;
    throw new ToolError(`cannot use ${dir} as mkt's cache: ${probe} ${why}: ${fix}`);
  }
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new ToolError(`cannot use ${dir} as mkt's cache: ${(err as Error).message}: ${fix}`);
  }
}

/** Stage the tree's modules and the initramfs (content-keyed caches, nothing per run), and choose the filesystem. */
export function stage(run: ResolvedRun, host: HostFacts): Staged & { readonly fs: FsDecision; readonly kernelWhy: string } {
  const k = run.kernel;
  checkCacheDir(host.cacheDir, host.user.home, xdgBase(host.env.XDG_CACHE_HOME) !== undefined);
  let modules: string | undefined;
  let moduleDir = k.installedModules;
  if (k.tree) {
    if (existsSync(join(k.tree, 'modules.order'))) {
      if (!host.depmod) throw new ToolError('depmod not found: install the kmod package (apt-get install kmod)');
      modules = stageTreeModules(k.tree, k.release, host.cacheDir, host.depmod);
      moduleDir = modules;
    }
  }
  const index = moduleDir ? readModuleIndex(moduleDir) : undefined;
  const config = k.dotconfig ? parseDotConfig(readFileSync(k.dotconfig, 'utf8')) : undefined;
  const fs = chooseFs(run.fs, { virtiofsd: host.virtiofsd, uid: host.user.uid }, virtiofsSupport(config, index));
  const needs = checkBootNeeds(k.tree ?? k.image, config, index, fs.fs, !rootServedWritable(fs.fs, host));
  const paths = needs.modules.length && index && moduleDir ? loadOrder(index, needs.modules).map((p) => join(moduleDir!, p)) : [];
  for (const built of [host.initBinary, host.execHelper]) {
    if (!existsSync(built)) throw new ToolError(`${built} is missing: build mkt first (npm run build)`);
  }
  const { remade: kernelRemade, ...kernel } = kernelFile(run, host);
  const initramfs = cachedInitramfs(host.cacheDir, host.initBinary, paths);
  return { initramfs: initramfs.path, modules, firmware: findQboot(run.qemu), program: findProgram(run, host), fs, remade: initramfs.fresh || kernelRemade, ...kernel };
}

/**
 * What qemu -kernel gets, and why (for --verbose): a tree's vmlinux with a
 * PVH entry (locateKernel found it); else a bzImage's kernel, uncompressed
 * once into the cache, where it has a PVH entry; else the bzImage.
 */
function kernelFile(run: ResolvedRun, host: HostFacts): { kernel?: string; kernelWhy: string; remade?: boolean } {
  const k = run.kernel;
  const skip = ': qemu starts it at its PVH entry, no decompressor runs in the guest (--no-pvh boots the bzImage)';
  if (k.pvh) return { kernelWhy: `kernel: ${k.pvh}${skip}` };
  if (!run.pvh) return { kernelWhy: `kernel: ${k.image} (--no-pvh)` };
  // a tree's own vmlinux has no PVH entry (locateKernel looked): its bzImage's kernel has none either
  if (k.vmlinuxWithoutPvh) return { kernelWhy: `kernel: ${k.image} (the tree's vmlinux has no PVH entry: CONFIG_PVH=y, which 'mkt kconfig' adds, boots faster)` };
  const r = pvhImage(k.image, host.cacheDir, (tool) => findExecutable(tool, host.env.PATH, SYSTEM_DIRS));
  if ('damaged' in r) {
    throw new UsageError(`kernel ${k.image}: ${r.damaged}: copy or build it again (the guest's decompressor would halt; --no-pvh boots it anyway)`, 125);
  }
  if ('reason' in r) return { kernelWhy: `kernel: ${k.image}, with its own decompressor: ${r.reason}` };
  return { kernel: r.path, kernelWhy: `kernel: ${k.image}, uncompressed ${r.fresh ? 'now' : 'earlier'} into ${r.path}${skip}`, remade: r.fresh };
}

/** Where the guest's PATH search for the --exec command's program ends (guestProgram), when it is a plain command. */
function findProgram(run: ResolvedRun, host: HostFacts): string | undefined {
  const word = run.exec === undefined ? undefined : simpleArgv(run.exec)?.[0];
  if (word === undefined) return undefined;
  const probe = (file: string): string | undefined => {
    try {
      if (!statSync(file).isFile()) return undefined;
      accessSync(file, fsConstants.X_OK);
      return realpathSync(file);
    } catch {
      return undefined;
    }
  };
  return guestProgram(word, guestPath(host), (p) => shownInGuest(p, run.dirs), probe);
}

/** The accelerator to try first, and whether a dead KVM may fall back to TCG. */
export function chooseAccel(run: ResolvedRun, host: HostFacts, reporter: Reporter): { accel: Accel; watch: boolean } {
  if (run.accel === 'tcg') return { accel: 'tcg', watch: false };
  if (run.accel === 'kvm') {
    if (!host.kvmAccess.ok) throw new ToolError(`${run.accelSource} kvm: ${host.kvmAccess.reason}`);
    return { accel: 'kvm', watch: true };
  }
  // a standing condition, not news: with --exec into a file or pipe, whose stderr is the command's, only --verbose tells it
  const note = (m: string): void => (run.exec === undefined || host.stderrTerminal ? reporter.warn(m) : reporter.info(m));
  if (!host.kvmAccess.ok) {
    note(`using TCG, which is slow: ${host.kvmAccess.reason}`);
    return { accel: 'tcg', watch: false };
  }
  const verdict = readVerdict(host.cacheDir, host.bootId);
  if (verdict && !verdict.works) {
    note(`using TCG, which is slow: KVM did not work earlier in this boot (${verdict.reason}); delete ${verdictPath(host.cacheDir)} to try again`);
    return { accel: 'tcg', watch: false };
  }
  return { accel: 'kvm', watch: true };
}

const KVM_HINT =
  'likely cause: nested virtualization is off or broken on this host (a VM inside a VM), or the CPU lacks VT-x/AMD-V';

function lastLines(text: string, n: number): string {
  const lines = text.replace(/\r/g, '').trimEnd().split('\n');
  return lines.slice(-n).join('\n');
}

/**
 * The console lines worth showing after a failure: from the first oops or
 * panic line (its reason and trace), else the last lines.
 */
export function consoleExcerpt(text: string): string {
  const lines = text.replace(/\r/g, '').trimEnd().split('\n');
  const first = lines.findIndex((l) => /Kernel panic - not syncing|BUG: |Oops|general protection fault|Call Trace:/.test(l));
  if (first < 0) return lines.slice(-20).join('\n');
  const from = Math.max(0, first - 3);
  const excerpt = lines.slice(from, from + 40);
  return excerpt.join('\n') + (from + 40 < lines.length ? `\n[... ${lines.length - from - 40} more lines]\n${lines.slice(-3).join('\n')}` : '');
}

/** Remove the private directories of dead mkt processes (SIGKILLed: their daemons died with them, by the parent-death signal). */
function sweepRunDirs(): void {
  const base = tmpdir();
  let names: string[] = [];
  try {
    names = readdirSync(base);
  } catch {
    return; // a TMPDIR that cannot be read holds none of ours (newRunDir says what is wrong with it)
  }
  const uid = process.getuid?.();
  for (const name of names) {
    const m = /^mkt-run-(\d+)-/.exec(name);
    if (!m || processAlive(Number(m[1]))) continue;
    const dir = join(base, name);
    try {
      // only the caller's own: another user's (root's, in a shared /tmp) is theirs to sweep, and not ours to remove
      if (lstatSync(dir).uid !== uid) continue;
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // gone meanwhile, or not removable: a stale directory is no reason to fail this run
    }
  }
}

/** A fresh name for this run's private directory, in a TMPDIR that can hold it. */
function newRunDir(): string {
  const base = tmpdir();
  const fix = 'set TMPDIR to a writable directory, or unset it';
  if (!base.startsWith('/')) throw new DaemonError(`TMPDIR=${base} is not an absolute path: ${fix}`);
  try {
    if (!statSync(base).isDirectory()) throw new DaemonError(`TMPDIR=${base} is not a directory: ${fix}`);
    accessSync(base, fsConstants.W_OK);
  } catch (err) {
    if (err instanceof DaemonError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const what = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not writable by you' : `cannot be used (${(err as Error).message})`;
    throw new DaemonError(`TMPDIR=${base} ${what}: ${fix}`);
  }
  return join(base, `mkt-run-${process.pid}-${randomBytes(4).toString('hex')}`);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The --boot-trace table: when each phase ended, in ms since mkt started, with the step from the one before. */
export function renderTrace(t: BootTrace, plan: RunPlan): string {
  const g = (x: number | undefined): number | undefined => (x === undefined || t.offset === undefined ? undefined : t.offset + x);
  const rows: [string, number | undefined][] = [
    ['mkt started', 0],
    ['qemu started', t.qemuStarted],
    ...(plan.daemons.length ? ([['virtiofsd started', t.daemonsStarted]] as [string, number | undefined][]) : []),
    ['kernel started', g(0)],
    ['init started', g(t.guestInit)],
    ['root mounted', g(t.guestRoot)],
    [plan.mode === 'exec' ? 'command started' : 'shell started', g(t.guestCommand)],
    [plan.mode === 'exec' ? 'command ended' : 'shell ended', g(t.guestCommandEnd)],
    ['VM gone', t.vmGone],
  ];
  let prev = 0;
  const lines = rows.map(([name, ms]) => {
    if (ms === undefined) return `  ${'-'.padStart(8)}    ${''.padStart(8)}  ${name}`;
    const line = `  ${ms.toFixed(0).padStart(8)} ms ${`(+${(ms - prev).toFixed(0)})`.padStart(8)}  ${name}`;
    prev = ms;
    return line;
  });
  return `boot trace (${plan.accel}, ${plan.fs}; guest times mapped through its messages to mkt):\n${lines.join('\n')}`;
}

/** mkt's status when SIGNAL stopped it: 128+N, as a shell reports a process killed by signal N. */
function signalStatus(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 1);
}

/** Keep this run's plan for the next start of the same command line (see fast-start.ts); FAST: what this one started from. */
function recordPlan(host: HostFacts, run: ResolvedRun, staged: Staged, plan: RunPlan, fast: FastStart | undefined): void {
  let cwd: string;
  try {
    cwd = process.cwd();
  } catch {
    return; // removed: no launcher finds it either
  }
  const tmp = tmpdir();
  if (!tmp.startsWith('/')) return;
  recordFastStart(
    host.cacheDir,
    {
      cwd,
      args: process.argv.slice(2),
      tty: ttyWord(),
      env: Object.entries(process.env)
        .filter(([k, v]) => k.startsWith('MKT_') && v !== undefined)
        .map(([k, v]) => `${k}=${v}`),
      needs: [staged.kernel ?? bootImage(run.kernel), staged.initramfs, ...(staged.firmware ? [staged.firmware] : []), plan.argv[0]!, ...plan.daemons.map((d) => d.argv[0]!)],
      tmp,
      ...planProcesses(plan),
    },
    fast?.recordBytes,
  );
}

/** Run it; returns the exit status for the CLI. FAST: what bin/mkt's launcher started from the last run's plan. */
export async function runMkt(run: ResolvedRun, host: HostFacts, reporter: Reporter, fast?: FastStart): Promise<number> {
  if (run.kernel.how === 'newest-installed' || run.kernel.how === 'cwd') {
    reporter.warn(`booting ${run.kernel.how === 'cwd' ? 'the kernel tree you are in' : 'the newest installed kernel'}, ${run.kernel.release} (${run.kernel.tree ?? run.kernel.image}); pass --kernel to choose another`);
  }
  let staged = stage(run, host);
  reporter.info(staged.kernelWhy);
  reporter.info(`filesystem: ${staged.fs.why}`);
  let runDir: string | undefined;
  // the launcher's processes fit the first plan or none (see fast-start.ts)
  let fastOpen = fast !== undefined && !run.dryRun;
  if (fast && !fastOpen) await fast.abandon();
  // a run directory of mkt's own naming, TMPDIR checked: the launcher's stands in for it while its processes may fit
  let ownRunDir: string | undefined;
  const fallBack = (why: string): boolean => {
    if (run.fs !== 'auto') return false;
    // auto means "virtiofs where it serves": here it did not, so 9p (with 9p's boot modules)
    reporter.info(`filesystem: 9p, as virtiofsd did not start:\n${why}`);
    staged = stage({ ...run, fs: '9p' }, host);
    runDir = undefined;
    return true;
  };
  sweepRunDirs();
  if (staged.fs.fs === 'virtiofs') {
    try {
      ownRunDir = newRunDir();
      runDir = fastOpen ? fast!.runDir : ownRunDir;
    } catch (err) {
      if (!(err instanceof DaemonError)) throw err;
      if (!fallBack(err.message)) {
        reporter.error(`virtiofsd cannot start (--fs 9p avoids it): ${err.message}`);
        return EXIT.failed;
      }
    }
  }
  let { accel, watch } = chooseAccel(run, host, reporter);
  for (;;) {
    let plan = planRun(run, host, staged, accel, staged.fs.fs, runDir);
    // a qemu started before this run made its kernel or initramfs (again) read the file that stood there: never adopted
    const adopted = fastOpen && !staged.remade ? fast!.adopt(plan) : undefined;
    if (fastOpen) {
      fastOpen = false;
      reporter.info(
        adopted
          ? 'qemu and its daemons were started by the launcher, from the plan the same command line left last time'
          : staged.remade
            ? "the launcher's start from the last run's plan read a kernel or initramfs this run has made again: starting anew"
            : "the launcher's start from the last run's plan does not fit this run's: starting anew",
      );
      if (!adopted) {
        await fast!.abandon();
        if (runDir === fast!.runDir) {
          runDir = ownRunDir;
          plan = planRun(run, host, staged, accel, staged.fs.fs, runDir);
        }
      }
    }
    // performance.now() counts from the start of this process; the launcher's start is mkt's
    const origin = fast?.launchedBefore ?? 0;
    reporter.info(`qemu starts ${Math.round(adopted ? fast!.qemuSpawnedAt : origin + performance.now())} ms after mkt started`);
    if (run.dryRun) {
      process.stdout.write(`${plan.argv.map(shellQuote).join(' ')}\n`);
      return 0;
    }
    reporter.info(`qemu: ${plan.argv.map(shellQuote).join(' ')}`);
    const firstKvm = watch && run.accel === 'auto';
    const probe = Number(host.env.MKT_KVM_PROBE_SECONDS);
    const bound = probe > 0 ? probe * 1000 : KVM_LIFE_BOUND_MS;
    const trace: BootTrace = {};
    let daemons: Daemons;
    try {
      daemons = prepareDaemons(plan, host.execHelper, adopted);
    } catch (err) {
      if (!(err instanceof DaemonError)) throw err;
      if (fallBack(err.message)) continue;
      reporter.error(`virtiofsd cannot start (--fs 9p avoids it): ${err.message}`);
      return EXIT.failed;
    }
    // no await from here until execute() has spawned qemu and handed the sockets to the daemons
    // (see prepareDaemons)
    const outcome: Outcome = await execute(plan, {
      trace,
      timeout: run.timeout,
      verbose: run.verbose,
      kvmLifeBoundMs: watch ? bound : undefined,
      slowNoticeMs: SLOW_BOOT_NOTICE_MS,
      onSlow: (ms) =>
        reporter.warn(`the guest has not reached mkt-init after ${ms / 1000} s (${accel}); still waiting: --verbose shows the console, Ctrl-C stops`),
      helper: host.execHelper,
      daemons,
      adopted: adopted && { qemu: adopted.qemu, spawnedAt: fast!.qemuSpawnedAt, daemonsAt: fast!.daemonsSpawnedAt },
      originMs: origin,
      onAlive: firstKvm ? () => writeVerdict(host.cacheDir, { bootId: host.bootId, works: true, reason: 'booted' }) : undefined,
    }).finally(() => daemons.stop());
    if (outcome.kind === 'daemon-failed') {
      if (fallBack(outcome.reason)) continue;
      reporter.error(`virtiofsd failed to start (--fs 9p avoids it):\n${outcome.reason}`);
      return EXIT.failed;
    }
    if (run.bootTrace) reporter.warn(renderTrace(trace, plan));
    switch (outcome.kind) {
      case 'exit':
        // it booted: the next start of this command line can start from this plan
        if (plan.mode === 'exec' && recordable(plan)) recordPlan(host, run, staged, plan, adopted ? fast : undefined);
        return outcome.code;
      case 'timeout':
        reporter.error(`--timeout ${outcome.seconds} s expired before the ${plan.mode === 'exec' ? 'command' : 'shell'} ended; the VM was stopped`);
        return EXIT.timeout;
      case 'signal':
        return signalStatus(outcome.signal);
      case 'kvm-dead':
        if (run.accel === 'kvm') {
          reporter.error(`${outcome.reason}; ${KVM_HINT}. --accel kvm never falls back: use --accel tcg or auto`);
          return EXIT.failed;
        }
        writeVerdict(host.cacheDir, { bootId: host.bootId, works: false, reason: outcome.reason });
        reporter.warn(`${outcome.reason}; ${KVM_HINT}. Falling back to TCG (slow) for this and later runs until the host reboots`);
        accel = 'tcg';
        watch = false;
        continue;
      case 'quit':
        return 0;
      case 'failed': {
        reporter.error(outcome.reason);
        // qemu's note that mkt stopped it is no news
        const said = outcome.qemuStderr.split('\n').filter((l) => !/terminating on signal \d+/.test(l)).join('\n');
        if (said.trim()) reporter.error(`qemu said:\n${lastLines(said, 10)}`);
        if (outcome.console.trim()) reporter.error(`console:\n${consoleExcerpt(outcome.console)}`);
        return EXIT.failed;
      }
    }
  }
}
