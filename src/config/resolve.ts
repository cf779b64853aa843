/** Merge defaults < config file < environment < flags into one validated ResolvedRun. */
import { accessSync, constants, existsSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { ToolError, UsageError } from '../errors.js';
import { findExecutable, type HostFacts } from '../host/facts.js';
import { defaultKernel, locateKernel, withoutPvh } from '../kernel/locate.js';
import { renderCmdline } from '../qemu/cmdline.js';
import type { AccelChoice, ExportedDir, FsChoice, ResolvedRun } from '../run/types.js';
import type { ConfigFile, ConfigSection } from './file.js';

/** The loose input: what commander parsed. */
export interface RunFlags {
  readonly kernel?: string;
  readonly dir: readonly string[];
  readonly home: boolean;
  readonly exec?: string;
  readonly timeout?: string;
  readonly accel?: string;
  readonly fs?: string;
  readonly memory?: string;
  readonly cpus?: string;
  readonly append: readonly string[];
  readonly qemu?: string;
  readonly qemuArg: readonly string[];
  readonly dryRun: boolean;
  readonly verbose: boolean;
  readonly bootTrace?: boolean;
  /** false with --no-pvh: boot the bzImage even where the tree's vmlinux can be started directly. */
  readonly pvh?: boolean;
  readonly names: readonly string[];
}

/** The merged config sections, later files and named sections winning. */
function mergeSections(configs: readonly ConfigFile[], names: readonly string[]): { section: ConfigSection; origin: Record<string, string> } {
  const origin: Record<string, string> = {};
  let kernel: string | undefined;
  let memory: string | undefined;
  let cpus: string | undefined;
  let append: string | undefined;
  let accel: string | undefined;
  let fs: string | undefined;
  const dir: string[] = [];
  const apply = (s: ConfigSection): void => {
    Object.assign(origin, s.origin ?? {});
    kernel = s.kernel ?? kernel;
    memory = s.memory ?? memory;
    cpus = s.cpus ?? cpus;
    append = s.append ?? append;
    accel = s.accel ?? accel;
    fs = s.fs ?? fs;
    dir.push(...s.dir);
  };
  for (const c of configs) apply(c.defaults);
  for (const name of names) {
    const found = configs.filter((c) => c.sections.has(name));
    if (!found.length) {
      if (name.includes('/') || existsSync(name)) {
        throw new UsageError(`'${name}' is not a config section; to boot it, pass --kernel ${name}`);
      }
      const known = configs.flatMap((c) => [...c.sections.keys()]);
      throw new UsageError(
        `'${name}' is not a config section` +
          (known.length ? ` (sections: ${known.join(', ')})` : configs.length ? '' : ' and no config file exists') +
          '; OS images are not supported yet: without an os argument mkt boots the host\'s own root',
      );
    }
    for (const c of found) apply(c.sections.get(name)!);
  }
  return { section: { kernel, memory, cpus, append, accel, fs, dir }, origin };
}

function checkMemory(v: string, source: string, hostMiB: number): string {
  const m = /^([1-9][0-9]*)([KMGT]?)$/i.exec(v);
  if (!m) throw new UsageError(`${source} ${v}: expected a size such as 1G or 2048M`);
  // qemu reads a bare number as MiB
  const mib = Number(m[1]) * ({ K: 1 / 1024, '': 1, M: 1, G: 1024, T: 1024 * 1024 } as Record<string, number>)[m[2]!.toUpperCase()]!;
  if (mib < 128) throw new UsageError(`${source} ${v}: at least 128M is needed to boot (qemu reads a bare number as MiB)`);
  if (mib > hostMiB) throw new UsageError(`${source} ${v}: more than this host's ${Math.floor(hostMiB)}M of memory`);
  // with the unit spelled out: the shared-memory backend virtiofs needs reads a bare number as bytes
  return `${m[1]}${m[2]!.toUpperCase() || 'M'}`;
}

/** The most CPUs qemu's pc machine takes. */
const MAX_CPUS = 255;

function checkCpus(v: string, source: string): number {
  if (!/^[1-9][0-9]*$/.test(v)) throw new UsageError(`${source} ${v}: expected a positive number of CPUs`);
  if (Number(v) > MAX_CPUS) throw new UsageError(`${source} ${v}: the pc machine takes at most ${MAX_CPUS} CPUs`);
  return Number(v);
}

function checkFs(v: string, source: string): FsChoice {
  if (v !== 'auto' && v !== '9p' && v !== 'virtiofs') throw new UsageError(`${source} ${v}: expected auto, 9p or virtiofs`);
  return v;
}

function checkAccel(v: string, source: string): AccelChoice {
  if (v !== 'auto' && v !== 'kvm' && v !== 'tcg') throw new UsageError(`${source} ${v}: expected auto, kvm or tcg`);
  return v;
}

/** An exported directory: it must exist; the guest sees it at the path given, qemu serves its real path. */
function exportDir(value: string, cwd: string, source: string): ExportedDir {
  if (value === '') throw new UsageError(`${source} needs a directory`);
  const path = resolve(cwd, value);
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES') throw new UsageError(`${source} ${value}: permission denied: you cannot reach it, so qemu cannot export it`);
    throw new UsageError(`${source} ${value}: no such directory: create it or fix the path`);
  }
  if (!st.isDirectory()) throw new UsageError(`${source} ${value}: not a directory: --dir exports directories`);
  const real = realpathSync(path);
  if (real === '/') {
    throw new UsageError(`${source} ${value}: exporting / writable would let the guest change the host's root; export the directories you need`);
  }
  // the guest has its own of these; the host's, mounted over them writable, would be the host's kernel interfaces
  const system = ['/proc', '/sys', '/dev'].find((s) => real === s || real.startsWith(`${s}/`));
  if (system) throw new UsageError(`${source} ${value}: ${system} is the guest's own; the host's cannot be exported`);
  try {
    accessSync(path, constants.R_OK | constants.X_OK);
  } catch {
    throw new UsageError(`${source} ${value}: permission denied: you cannot read it, so qemu cannot export it`);
  }
  return { path, real };
}

/** Drop directories already visible through another export (fewer mounts, same view). */
export function dedupeDirs(dirs: readonly ExportedDir[]): ExportedDir[] {
  const sorted = [...dirs].sort((a, b) => a.real.length - b.real.length);
  const kept: ExportedDir[] = [];
  for (const d of sorted) {
    const inside = kept.some((k) => d.real === k.real || d.real.startsWith(k.real === '/' ? '/' : `${k.real}/`));
    if (!inside) kept.push(d);
  }
  return kept;
}

/** What callerCwd gives for a current directory that no longer exists: never a real path. */
const GONE_CWD = '/nonexistent/mkt: the current directory was removed';

/** The caller's working directory as they see it ($PWD when it names the same place). */
export function callerCwd(env: NodeJS.ProcessEnv): string {
  let cwd: string;
  try {
    cwd = process.cwd();
  } catch (err) {
    // removed from under the shell (rmdir of the directory one stands in): the guest starts in home, as for any invisible cwd
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return GONE_CWD;
  }
  const pwd = env.PWD;
  try {
    if (pwd && isAbsolute(pwd) && realpathSync(pwd) === cwd) return pwd;
  } catch {
    /* $PWD is stale */
  }
  return cwd;
}

/** Merge and validate. */
export function resolveRun(flags: RunFlags, configs: readonly ConfigFile[], host: HostFacts): ResolvedRun {
  const env = host.env;
  const cwd = callerCwd(env as NodeJS.ProcessEnv);
  const { section, origin } = mergeSections(configs, flags.names);
  if (cwd === GONE_CWD) {
    // a release name (6.1.0-57-amd64) is no path
    const relative = [flags.kernel, ...flags.dir, section.kernel, ...section.dir].find((v) => v !== undefined && v !== '' && !isAbsolute(v) && !/^[0-9]/.test(v));
    if (relative !== undefined) throw new UsageError(`the current directory no longer exists, so '${relative}' means nothing: cd to a directory that exists, or give an absolute path`);
  }
  const from = (key: string): string => origin[key] ?? `config ${key}`;
  for (const [name, v] of [['--kernel', flags.kernel], ['--cpus', flags.cpus], ['--accel', flags.accel], ['--fs', flags.fs], ['--qemu', flags.qemu], ['--memory', flags.memory]] as const) {
    if (v === '') throw new UsageError(`${name} needs a value`);
  }
  if (flags.qemuArg.includes('')) throw new UsageError('--qemu-arg needs a value');
  const located = flags.kernel !== undefined ? locateKernel(flags.kernel, 'flag', cwd) : defaultKernel(section.kernel, cwd, from('kernel'));
  const kernel = flags.pvh === false ? withoutPvh(located, flags.kernel !== undefined ? `--kernel ${flags.kernel}` : `the kernel ${located.tree ?? located.image}`) : located;
  if (kernel.pvhProblem) throw new UsageError(kernel.pvhProblem, 125);

  let accel: AccelChoice = 'auto';
  let accelSource = 'default';
  if (section.accel) [accel, accelSource] = [checkAccel(section.accel, from('accel')), 'config file'];
  if (env.MKT_ACCEL) [accel, accelSource] = [checkAccel(env.MKT_ACCEL, 'MKT_ACCEL'), 'MKT_ACCEL'];
  if (flags.accel !== undefined) [accel, accelSource] = [checkAccel(flags.accel, '--accel'), '--accel'];

  const fs = checkFs(flags.fs ?? env.MKT_FS ?? section.fs ?? 'auto', flags.fs ? '--fs' : env.MKT_FS ? 'MKT_FS' : section.fs ? from('fs') : 'fs');
  const memory = checkMemory(flags.memory ?? section.memory ?? '1G', flags.memory !== undefined ? '--memory' : from('memory'), host.memoryMiB);
  const cpus = flags.cpus !== undefined ? checkCpus(flags.cpus, '--cpus') : section.cpus ? checkCpus(section.cpus, from('cpus')) : host.cpus;

  let timeout: number | undefined;
  if (flags.timeout !== undefined) {
    timeout = Number(flags.timeout);
    if (!/^([0-9]+(\.[0-9]*)?|\.[0-9]+)$/.test(flags.timeout) || timeout <= 0) {
      throw new UsageError(`--timeout ${flags.timeout}: expected a positive number of seconds`);
    }
    // Node's timers hold at most 2^31-1 ms (about 24 days)
    if (timeout > 2_147_483) throw new UsageError(`--timeout ${flags.timeout}: at most 2147483 seconds (24 days)`);
  }
  if (flags.exec !== undefined && flags.exec.trim() === '') throw new UsageError('--exec needs a command');
  if (flags.exec === undefined && !flags.dryRun && !host.stdinTerminal) {
    // qemu's console would wait for keys that never come: the shell never sees the end of a pipe
    throw new UsageError("mkt run without --exec starts an interactive shell, which needs a terminal on stdin: use --exec CMD (--exec sh reads the commands from stdin)");
  }
  // a bare name is looked up on PATH, as MKT_QEMU's; only a run that may use virtiofs needs it
  if (env.MKT_VIRTIOFSD && fs !== '9p' && !findExecutable(env.MKT_VIRTIOFSD, env.PATH)) {
    throw new UsageError(`MKT_VIRTIOFSD=${env.MKT_VIRTIOFSD}: not an executable file${env.MKT_VIRTIOFSD.includes('/') ? '' : ' on PATH'}: fix or unset it (--fs 9p needs none)`);
  }

  const qemuName = flags.qemu ?? env.MKT_QEMU ?? 'qemu-system-x86_64';
  const qemu = findExecutable(qemuName, env.PATH);
  if (!qemu) {
    throw new ToolError(
      flags.qemu || env.MKT_QEMU
        ? `${qemuName} is not an executable: fix --qemu (or MKT_QEMU)`
        : 'qemu-system-x86_64 not found: install the qemu-system-x86 package (apt-get install qemu-system-x86)',
    );
  }

  // the config file's append, checked on its own so that a fault in it names the file and line, not --append
  if (section.append) {
    try {
      renderCmdline([], [section.append]);
    } catch (err) {
      if (err instanceof UsageError) throw new UsageError(err.message.replace(/^--append\b/, from('append')));
      throw err;
    }
  }

  const dirs: ExportedDir[] = [];
  // a home of / (some containers) is not exported: that would make the whole host root writable
  const home = flags.home && existsSync(host.user.home) ? realpathSync(host.user.home) : undefined;
  if (home && home !== '/') dirs.push({ path: host.user.home, real: home });
  for (const d of section.dir) dirs.push(exportDir(d, cwd, from('dir')));
  for (const d of flags.dir) dirs.push(exportDir(d, cwd, '--dir'));

  return Object.freeze({
    kernel,
    dirs: dedupeDirs(dirs),
    aliases: dirs.filter((d) => d.path !== d.real),
    exec: flags.exec,
    timeout,
    accel,
    accelSource,
    fs,
    memory,
    cpus,
    append: [...(section.append ? [section.append] : []), ...flags.append],
    qemu,
    qemuArgs: [...flags.qemuArg],
    dryRun: flags.dryRun,
    verbose: flags.verbose,
    bootTrace: flags.bootTrace ?? false,
    pvh: flags.pvh !== false,
    cwd,
    cwdReal: cwd === GONE_CWD ? cwd : process.cwd(),
  });
}
