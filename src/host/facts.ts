/** Facts about the host, gathered once per run and passed as data to the planner. */
import { accessSync, constants, existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { availableParallelism, hostname, totalmem, userInfo } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hostRoot, type HostRoot } from './root.js';
import { hostTscKhz } from './tsc.js';

/** The invoking user, as the guest will see them. */
export interface UserFacts {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly groups: readonly number[];
  readonly home: string;
  readonly shell: string;
}

/** Everything the planner needs to know about the host. */
export interface HostFacts {
  readonly user: UserFacts;
  readonly cpus: number;
  /** The host's memory, in MiB: the most a guest can have. */
  readonly memoryMiB: number;
  /** /dev/kvm can be opened read-write (not proof that KVM works). */
  readonly kvmAccess: { readonly ok: true } | { readonly ok: false; readonly reason: string };
  readonly bootId: string;
  readonly hostname: string;
  readonly cacheDir: string;
  /** The compiled guest init shipped with mkt. */
  readonly initBinary: string;
  /** mkt-ro, which gives the root's virtiofsd a throw-away view of / (overlays in a namespace of its own), when built and usable (root only). */
  readonly roHelper: string | undefined;
  /** What mkt-init needs of the host's root (it is the guest's lower layer), found here. */
  readonly root: HostRoot;
  /** mkt-exec: starts qemu and the daemons with a parent-death signal (dist/host, built with mkt). */
  readonly execHelper: string;
  readonly depmod: string | undefined;
  /** virtiofsd on PATH or where distributions install it. */
  readonly virtiofsd: string | undefined;
  /** The host TSC's frequency in kHz, where it can be known (host/tsc.ts): a TCG guest's TSC is the host's. */
  readonly tscKhz: number | undefined;
  readonly terminal: { readonly rows: number; readonly cols: number } | undefined;
  /** stdin is a terminal (an interactive shell needs one). */
  readonly stdinTerminal: boolean;
  /** stderr is a terminal: someone reads mkt's notes as they come. */
  readonly stderrTerminal: boolean;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** Find NAME on PATH (plus EXTRA directories, e.g. the sbin ones a regular user's PATH often lacks). */
export function findExecutable(name: string, path = process.env.PATH ?? '', extra: readonly string[] = []): string | undefined {
  if (name.includes('/')) return isExecutable(name) ? name : undefined;
  const dirs = [...path.split(delimiter).filter(Boolean), ...extra];
  for (const d of dirs) {
    const p = join(d, name);
    if (isExecutable(p)) return p;
  }
  return undefined;
}

export const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin', '/bin'];

/** A regular file someone may execute. (access(X_OK) alone says yes to root for directories, and Node 20's to anything.) */
export function isExecutable(p: string): boolean {
  try {
    const st = statSync(p);
    if (!st.isFile() || (st.mode & 0o111) === 0) return false;
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function kvmAccess(user: string): HostFacts['kvmAccess'] {
  if (!existsSync('/dev/kvm')) {
    return { ok: false, reason: '/dev/kvm does not exist (no hardware virtualization, or the kvm module is not loaded)' };
  }
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return { ok: true };
  } catch {
    return {
      ok: false,
      reason: `/dev/kvm is not accessible to ${user}: add the user to the kvm group (sudo adduser ${user} kvm) and log in again`,
    };
  }
}

/**
 * qboot, the minimal firmware qemu ships (share/qemu/qboot.rom beside its
 * bin/), for the qemu binary QEMU; undefined when that qemu has none.
 */
export function findQboot(qemu: string): string | undefined {
  try {
    const rom = join(dirname(realpathSync(qemu)), '..', 'share', 'qemu', 'qboot.rom');
    return existsSync(rom) ? realpathSync(rom) : undefined;
  } catch {
    return undefined;
  }
}

/** An XDG base directory variable's value, when it is usable: the spec says to ignore a relative one. */
export function xdgBase(value: string | undefined): string | undefined {
  return value?.startsWith('/') ? value : undefined;
}

/** The package root (where bin/, dist/ and src/ live). */
export function packageRoot(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

/** Gather the host facts. */
/** The user from the passwd database, or from the process and environment when it has no entry (containers). */
function whoami(env: NodeJS.ProcessEnv): { username: string; uid: number; gid: number; homedir: string; shell: string | null } {
  try {
    return userInfo();
  } catch {
    const uid = process.getuid?.() ?? 0;
    return { username: env.USER || String(uid), uid, gid: process.getgid?.() ?? 0, homedir: env.HOME || '/', shell: env.SHELL || null };
  }
}

export function probeHost(env: NodeJS.ProcessEnv = process.env): HostFacts {
  const info = whoami(env);
  const home = env.HOME || info.homedir;
  let bootId = 'unknown';
  try {
    bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    /* not Linux: mkt will fail later with a clearer message */
  }
  const roHelper = join(packageRoot(), 'dist', 'host', 'mkt-ro');
  const cacheDir = join(xdgBase(env.XDG_CACHE_HOME) ?? join(home, '.cache'), 'mkt');
  let tsc: { khz: number | undefined } | undefined;
  return {
    user: {
      name: info.username,
      uid: info.uid,
      gid: info.gid,
      groups: process.getgroups?.() ?? [info.gid],
      home,
      shell: env.SHELL || info.shell || '/bin/sh',
    },
    cpus: availableParallelism(),
    memoryMiB: totalmem() / 2 ** 20,
    kvmAccess: kvmAccess(info.username),
    bootId,
    hostname: hostname(),
    cacheDir,
    initBinary: join(packageRoot(), 'dist', 'guest', 'mkt-init'),
    // it needs CAP_SYS_ADMIN for its namespace, as Debian's virtiofsd needs root anyway
    roHelper: info.uid === 0 && isExecutable(roHelper) ? roHelper : undefined,
    execHelper: join(packageRoot(), 'dist', 'host', 'mkt-exec'),
    root: hostRoot(),
    depmod: findExecutable('depmod', env.PATH, SYSTEM_DIRS),
    virtiofsd: env.MKT_VIRTIOFSD ? (findExecutable(env.MKT_VIRTIOFSD, env.PATH) ?? env.MKT_VIRTIOFSD) : findExecutable('virtiofsd', env.PATH, ['/usr/libexec', '/usr/lib/qemu']),
    // asked only when a TCG boot needs it: measured once per host boot (20 ms), then read from the cache
    get tscKhz() {
      tsc ??= { khz: hostTscKhz(cacheDir, bootId, join(packageRoot(), 'dist', 'host', 'mkt-tsc')) };
      return tsc.khz;
    },
    // asked only when needed: the first touch of process.stdin, stdout or stderr builds its
    // stream, loading tty or net (some milliseconds) before qemu could have started
    get terminal() {
      return process.stdout.isTTY ? { rows: process.stdout.rows, cols: process.stdout.columns } : undefined;
    },
    get stdinTerminal() {
      return Boolean(process.stdin.isTTY);
    },
    get stderrTerminal() {
      return Boolean(process.stderr.isTTY);
    },
    // an MKT_* variable set to nothing is not set (MKT_QEMU= is no qemu to look for)
    env: Object.fromEntries(Object.entries(env).filter(([k, v]) => !(k.startsWith('MKT_') && v === ''))),
  };
}
