/**
 * qemu argv fragments, one pure function per concern, composed in one order
 * by qemuArgv (device order decides PCI slots, so it is fixed).
 */
import type { Accel, ExportedDir } from '../run/types.js';
import { FD } from '../run/types.js';
import { fuseOptValue, qemuOpts } from './escape.js';

/** No default devices, no display, and a guest reset ends qemu (how mkt-init powers off). */
export function baseArgs(): readonly string[] {
  return ['-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot', '-name', 'mkt'];
}

/**
 * TCG's CPU: everything qemu can emulate but ERMS and FSRM. With them the
 * kernel (copy_user, clear_page, memcpy) and glibc copy with `rep movsb`,
 * which TCG runs a byte at a time; without them they move 8 bytes or more
 * per step: 50 MB of --exec output streams in 0.35 s instead of 0.95 s.
 */
export const TCG_CPU = 'max,erms=off,fsrm=off';

/** The accelerator and the CPU model that goes with it. */
export function accelArgs(accel: Accel): readonly string[] {
  return accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg', '-cpu', TCG_CPU];
}

/**
 * Machine, memory and CPUs. virtiofs needs guest memory that virtiofsd can
 * map too: a shared memfd backend.
 */
export function machineArgs(memory: string, cpus: number, sharedMemory = false): readonly string[] {
  if (!sharedMemory) return ['-machine', 'pc', '-m', memory, '-smp', String(cpus)];
  return [
    '-object', qemuOpts('memory-backend-memfd', { id: 'mktmem', size: memory, share: true }),
    '-machine', qemuOpts('pc', { 'memory-backend': 'mktmem' }),
    '-m', memory, '-smp', String(cpus),
  ];
}

/**
 * The firmware. qboot (shipped with qemu as qboot.rom) loads -kernel with
 * none of SeaBIOS's device set-up: about 0.15 s less per boot under TCG.
 * Undefined: qemu's default. A later -bios (--qemu-arg) wins.
 */
export function firmwareArgs(firmware: string | undefined): readonly string[] {
  return firmware ? ['-bios', firmware] : [];
}

export function kernelArgs(image: string, initrd: string, cmdline: string): readonly string[] {
  return ['-kernel', image, '-initrd', initrd, '-append', cmdline];
}

/**
 * Where mkt's virtio-serial device sits: the first PCI slot the pc machine
 * leaves free, ahead of every other virtio device (mkt's filesystems and
 * any --qemu-arg device come later), so the guest numbers it virtio device
 * 0 and names its ports /dev/vport0pN.
 */
export const SERIAL_PCI_ADDR = 2;

/**
 * mkt's ports and their fixed numbers (0 is the console's): with the device
 * at SERIAL_PCI_ADDR, mkt-init opens /dev/vport0pN at once, without looking
 * for the port's name in sysfs (first reads of sysfs cost some 8 ms of a
 * TCG boot). mkt-init's PORTS table must say the same.
 */
export const PORTS = { ctl: 1, stdin: 2, stdout: 3, stderr: 4 } as const;

/**
 * Consoles. exec: the serial port and the mkt.* ports are socketpairs mkt holds
 * (inherited descriptors). shell: the serial port and hvc0 share the terminal
 * through qemu's mux (Ctrl-A x quits); hvc0, attached last, takes the input.
 */
export function consoleArgs(mode: 'exec' | 'shell'): readonly string[] {
  const port = (id: string, fd: number, name: keyof typeof PORTS): string[] => [
    '-chardev',
    qemuOpts('socket', { id, fd }),
    '-device',
    qemuOpts('virtserialport', { bus: 'mktvs.0', nr: PORTS[name], chardev: id, name: `mkt.${name}` }),
  ];
  const serialPci = qemuOpts('virtio-serial-pci', { id: 'mktvs', addr: SERIAL_PCI_ADDR, max_ports: mode === 'exec' ? 5 : 2 });
  const out: string[] = [];
  // max_ports: as many ports as mkt attaches (port 0 is the console's): the guest sets up 2 virtqueues per port, 31 by default
  if (mode === 'exec') {
    out.push('-chardev', qemuOpts('socket', { id: 'mktser', fd: FD.serial }), '-serial', 'chardev:mktser');
    out.push('-device', serialPci);
  } else {
    out.push('-chardev', qemuOpts('stdio', { id: 'mktcon', mux: true, signal: false }), '-serial', 'chardev:mktcon');
    out.push('-device', serialPci);
    out.push('-device', qemuOpts('virtconsole', { bus: 'mktvs.0', nr: 0, chardev: 'mktcon' }));
  }
  out.push(...port('mktctl', FD.ctl, 'ctl'));
  if (mode === 'exec') {
    out.push(...port('mktin', FD.stdin, 'stdin'));
    out.push(...port('mktout', FD.stdout, 'stdout'));
    out.push(...port('mkterr', FD.stderr, 'stderr'));
  }
  return out;
}

/** 9p mount tag of the Nth exported directory. */
export const dirTag = (i: number): string => `mktd${i}`;

/**
 * The host root (read-only) and the exported directories over 9p.
 * passthrough keeps the guest's file ownership when qemu runs as root; a
 * regular user's qemu cannot chown, so it uses none.
 */
export function fs9pArgs(dirs: readonly ExportedDir[], asRoot: boolean): readonly string[] {
  const out: string[] = [];
  const share = (id: string, path: string, readonly: boolean, model: string): void => {
    out.push('-fsdev', qemuOpts('local', { id, path, security_model: model, readonly: readonly || undefined, multidevs: 'remap' }));
    out.push('-device', qemuOpts('virtio-9p-pci', { fsdev: id, mount_tag: id }));
  };
  share('mktroot', '/', true, 'none');
  dirs.forEach((d, i) => share(dirTag(i), d.real, false, asRoot ? 'passthrough' : 'none'));
  return out;
}

/** One virtiofs share: the tag the guest mounts, the directory, and virtiofsd's socket. */
export interface VirtiofsShare {
  readonly tag: string;
  readonly source: string;
  readonly socket: string;
  /** virtiofsd cache mode: always for the root (only the guest changes it), auto for exports the host edits. */
  readonly cache: 'always' | 'auto';
  /**
   * The root only, with mkt-ro: an empty directory in the run directory
   * where the daemon, in a mount namespace of its own, sees the host's /
   * through overlays whose upper layers are a tmpfs there (source is its
   * v): the guest writes to its root freely, and nothing reaches the host.
   */
  readonly view?: string;
  /** The most the guest may write to that view (its tmpfs's size): the guest's memory, as the overlay in guest memory had. */
  readonly viewSize?: string;
  /** mkt-ro's entries putting the guest's own files into the view (rootSeed). */
  readonly seed?: readonly string[];
}

/** The virtiofs shares: the host root (through a throw-away view when mkt-ro is there, else /), then each exported directory. */
export function virtiofsShares(dirs: readonly ExportedDir[], runDir: string, viewRoot = false, viewSize = '1G', seed?: readonly string[]): VirtiofsShare[] {
  // short socket names: a Unix socket's path holds 107 bytes, TMPDIR included
  const share = (tag: string, n: number, source: string, cache: VirtiofsShare['cache']): VirtiofsShare => ({
    tag,
    source,
    socket: `${runDir}/fs${n}`,
    cache,
  });
  const root = viewRoot ? { ...share('mktroot', 0, `${runDir}/root/v`, 'always'), view: `${runDir}/root`, viewSize, ...(seed?.length ? { seed } : {}) } : share('mktroot', 0, '/', 'always');
  return [root, ...dirs.map((d, i) => share(dirTag(i), i + 1, d.real, 'auto'))];
}

/** qemu's side of the virtiofs shares: a vhost-user-fs device per share. */
export function virtiofsArgs(shares: readonly VirtiofsShare[]): readonly string[] {
  return shares.flatMap((s, i) => [
    '-chardev', qemuOpts('socket', { id: `mktfs${i}`, path: s.socket }),
    '-device', qemuOpts('vhost-user-fs-pci', { chardev: `mktfs${i}`, tag: s.tag, 'queue-size': 1024 }),
  ]);
}

/** The descriptor on which virtiofsd finds its socket, bound and listening (mkt binds it: see daemons.ts). */
export const DAEMON_SOCKET_FD = 3;

/**
 * virtiofsd's argv for one share. sandbox=chroot: the namespace sandbox
 * cannot pivot_root into a source of /; the daemon runs as the caller (root).
 * --fd: the socket is mkt's, listening before qemu starts, so qemu need
 * not wait for the daemon to start (and virtiofsd takes no lock file).
 */
export function virtiofsdArgv(virtiofsd: string, s: VirtiofsShare, roHelper?: string): readonly string[] {
  const argv = [virtiofsd, `--fd=${DAEMON_SOCKET_FD}`, '-o', `source=${fuseOptValue(s.source)}`, '-o', 'sandbox=chroot', '-o', `cache=${s.cache}`, '-o', 'no_posix_lock', '-o', 'no_flock'];
  return s.view && roHelper ? [roHelper, ...(s.viewSize ? [`--size=${s.viewSize}`] : []), ...(s.seed ?? []), s.view, ...argv] : argv;
}
