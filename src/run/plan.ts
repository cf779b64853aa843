/** planRun: the pure step that turns a resolved run and host facts into qemu's argv, cmdline and spec. */
import type { HostFacts } from '../host/facts.js';
import { bootImage } from '../kernel/locate.js';
import {
  accelArgs,
  baseArgs,
  consoleArgs,
  dirTag,
  firmwareArgs,
  fs9pArgs,
  kernelArgs,
  machineArgs,
  virtiofsArgs,
  virtiofsdArgv,
  virtiofsShares,
} from '../qemu/args.js';
import { baseCmdline, renderCmdline } from '../qemu/cmdline.js';
import { encodeSpec, type SpecRecord } from './spec.js';
import type { Accel, ExportedDir, Fs, ResolvedRun, RunPlan } from './types.js';
import { simpleArgv } from './simple-command.js';

/** What the prepare step staged on disk (caches, not per-run files). */
export interface Staged {
  readonly initramfs: string;
  /** The file for qemu -kernel where it is not bootImage(run.kernel): a bzImage's kernel, uncompressed once for its PVH entry (pvhImage). */
  readonly kernel?: string | undefined;
  /** The staged lib/modules/RELEASE of a tree, to appear at /lib/modules/RELEASE in the guest. */
  readonly modules: string | undefined;
  /** The firmware to boot with (qboot where qemu ships it), else qemu's default. */
  readonly firmware?: string | undefined;
  /** The --exec command's program as the guest's PATH search would find it, looked up on the host (guestProgram). */
  readonly program?: string | undefined;
  /**
   * A file qemu reads at its start (the initramfs, the uncompressed kernel)
   * was made, or made again, by this run: a qemu the launcher started from
   * the last plan, whose paths are the same, read what stood there before.
   */
  readonly remade?: boolean;
}

/** Environment variables of the caller that the guest command gets too (others describe the host session). */
export const CARRIED_ENV = /^(LANG|LANGUAGE|LC_[A-Z]+|TZ|EDITOR|VISUAL|PAGER)$/;

/** Whether the guest mounts a fresh filesystem over PATH (mount_system in mkt-init), hiding the host's. */
export function hiddenInGuest(path: string): boolean {
  return /^\/(tmp|run|dev|proc|sys)(\/|$)/.test(path);
}

/**
 * Whether the root share is the host's tree through mkt-ro's throw-away
 * overlays (virtiofs, as root, with mkt-ro built): the guest mounts it as
 * its root as it is, with no overlay of its own. Else (9p) the guest
 * overlays a read-only share.
 */
export function rootServedWritable(fs: Fs, host: Pick<HostFacts, 'roHelper'>): boolean {
  return fs === 'virtiofs' && host.roHelper !== undefined;
}

/** The guest's host name. */
const GUEST_HOSTNAME = 'mkt';

/**
 * The guest's own files in its root (mkt-init's kernel_files and
 * identity_files write the same), as mkt-ro entries that put them into the
 * root's view on the host before the guest boots: each is a round trip or
 * more to the daemon when the guest writes it. Only where the root is
 * served writable, and not with a locked shadow file (made from the
 * host's passwd, which mkt-init reads). Undefined where the guest writes
 * them itself.
 */
export function rootSeed(run: ResolvedRun, host: HostFacts, staged: Staged, fs: Fs): string[] | undefined {
  if (!rootServedWritable(fs, host) || host.root.shadowLocked) return undefined;
  const etc = host.root.etc;
  const w: string[] = [];
  w.push('--file', `${etc}/hosts`, '644', `${host.root.hosts}\n127.0.1.1\t${GUEST_HOSTNAME}\n`);
  w.push('--file', `${etc}/hostname`, '644', `${GUEST_HOSTNAME}\n`);
  if (host.root.sudo && host.user.name !== 'root') w.push('--file', `${etc}/sudoers`, '440', sudoers(host.user.name));
  const release = run.kernel.release;
  // the staged modules at /lib/modules/RELEASE, as the view shows them: what the guest writes there is thrown away too
  if (staged.modules) w.push('--bind', staged.modules, `${host.root.modules}/${release}`);
  if (run.kernel.tree) {
    for (const [target, name] of [[run.kernel.sysmap, 'System.map'], [run.kernel.dotconfig, 'config']] as const) {
      if (target && target !== `/boot/${name}-${release}`) w.push('--link', `${host.root.boot}/${name}-${release}`, target);
    }
  }
  // a word cannot hold a NUL: such a hosts file is left to mkt-init
  return w.some((x) => x.includes('\0')) ? undefined : w;
}

/** The guest's sudoers: a fresh one, as the host's is unreadable to a regular user's qemu (0440). */
export function sudoers(user: string): string {
  return (
    '# written by mkt for this VM only\n' +
    'Defaults env_reset\n' +
    'Defaults secure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n' +
    'root ALL=(ALL:ALL) ALL\n' +
    `${user} ALL=(ALL:ALL) NOPASSWD: ALL\n`
  );
}

/** The command's PATH in the guest: the caller's. */
export function guestPath(host: HostFacts): string {
  return host.env.PATH || '/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin';
}

/** Whether the guest sees the host's files at PATH: not where it mounts a fresh filesystem, unless exported. */
export function shownInGuest(path: string, dirs: readonly ExportedDir[]): boolean {
  const inside = (p: string, dir: string): boolean => p === dir || p.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
  return !hiddenInGuest(path) || dirs.some((d) => inside(path, d.path) || inside(path, d.real));
}

/** The records of the run spec for mkt-init. */
export function specRecords(run: ResolvedRun, host: HostFacts, staged: Staged, mode: RunPlan['mode'], fs: Fs = '9p'): SpecRecord[] {
  const u = host.user;
  const r: SpecRecord[] = [
    ['mode', mode],
    ['fs', fs],
    // the root share is the host's tree through mkt-ro's throw-away overlays: the guest's root as it is
    ...(rootServedWritable(fs, host) ? [['root', 'writable'] as const] : []),
    // its own files are in it already (rootSeed): mkt-init writes none
    ...(rootSeed(run, host, staged, fs) ? [['seeded', '1'] as const] : []),
    ['hostname', GUEST_HOSTNAME],
    ['etc', host.root.etc],
    ['hosts', host.root.hosts],
    ['user', u.name],
    ['uid', String(u.uid)],
    ['gid', String(u.gid)],
    ['groups', u.groups.join(',')],
    ['home', u.home],
    ['shell', u.shell],
    ['path', guestPath(host)],
    ['term', host.env.TERM || 'linux'],
  ];
  // where the guest mounts fresh filesystems, the host's directory is not what the guest shows, unless
  // exported: start in the caller's directory as they name it where the guest shows it, else as it
  // really is (a symlink in /tmp to an export, say), else in home
  const cwd = [run.cwd, run.cwdReal ?? run.cwd].find((p) => shownInGuest(p, run.dirs));
  if (cwd) r.push(['cwd', cwd]);
  if (mode === 'exec') {
    const cmd = run.exec ?? 'true';
    r.push(['cmd', cmd]);
    // plain words: mkt-init execs them as sh would, with sh -c CMD as the fallback when that fails
    for (const a of simpleArgv(cmd) ?? []) r.push(['arg', a]);
    // where the guest's PATH search for it ends, found on the host (stage)
    if (staged.program) r.push(['exe', staged.program]);
  }
  // the shell's hvc0 takes the terminal's size; --exec has no terminal in the guest
  if (mode === 'shell' && host.terminal) r.push(['rows', String(host.terminal.rows)], ['cols', String(host.terminal.cols)]);
  run.dirs.forEach((d, i) => r.push(['dir', `${dirTag(i)}:${d.real}`]));
  for (const d of run.aliases) r.push(['alias', d.path], ['to', d.real]);
  if (host.root.sudo) r.push(['sudo', '1']);
  if (host.root.shadowLocked) r.push(['shadow', 'locked']);
  if (staged.modules) r.push(['modules', staged.modules], ['moddir', host.root.modules]);
  // a tree's files; an installed kernel's are in /boot already
  if (run.kernel.tree) {
    // the tree, where the guest mounts fresh filesystems over the host's (mount_system in
    // mkt-init): bound back there, as its modules link into it; elsewhere the guest sees it
    // already, and asking costs mkt-init a lookup per path component
    if (hiddenInGuest(run.kernel.tree)) r.push(['show', run.kernel.tree]);
    r.push(['boot', host.root.boot]);
    if (run.kernel.sysmap) r.push(['sysmap', run.kernel.sysmap]);
    if (run.kernel.dotconfig) r.push(['kconfig', run.kernel.dotconfig]);
  }
  for (const [k, v] of Object.entries(host.env)) if (v !== undefined && CARRIED_ENV.test(k)) r.push(['env', `${k}=${v}`]);
  return r;
}

/**
 * The whole plan. argv order: binary, base, accelerator, machine, kernel,
 * consoles, filesystems, then the user's --qemu-arg values last so they can
 * override anything.
 */
export function planRun(run: ResolvedRun, host: HostFacts, staged: Staged, accel: Accel, fs: Fs = '9p', runDir?: string): RunPlan {
  const mode = run.exec === undefined ? 'shell' : 'exec';
  if (fs === 'virtiofs' && (!runDir || !host.virtiofsd)) throw new Error('virtiofs needs a run directory and virtiofsd');
  const shares = fs === 'virtiofs' ? virtiofsShares(run.dirs, runDir!, rootServedWritable(fs, host), run.memory, rootSeed(run, host, staged, fs)) : [];
  const cmdline = renderCmdline(baseCmdline({ quiet: mode === 'exec' && !run.verbose, accel, tscKhz: accel === 'tcg' ? host.tscKhz : undefined }), run.append);
  const argv = [
    run.qemu,
    ...baseArgs(),
    ...accelArgs(accel),
    ...machineArgs(run.memory, run.cpus, fs === 'virtiofs'),
    ...firmwareArgs(staged.firmware),
    ...kernelArgs(staged.kernel ?? bootImage(run.kernel), staged.initramfs, cmdline),
    ...consoleArgs(mode),
    ...(fs === 'virtiofs' ? virtiofsArgs(shares) : fs9pArgs(run.dirs, host.user.uid === 0)),
    ...run.qemuArgs,
  ];
  return {
    mode,
    accel,
    fs,
    daemons: shares.map((s) => ({ argv: virtiofsdArgv(host.virtiofsd!, s, host.roHelper), socket: s.socket, dir: s.view })),
    runDir: fs === 'virtiofs' ? runDir : undefined,
    argv,
    cmdline,
    spec: encodeSpec(specRecords(run, host, staged, mode, fs)),
  };
}
