/**
 * qemu argv fragments, one pure function per concern, composed in one order
 * by qemuArgv (device order decides PCI slots, so it is fixed).
 */
import type { Accel, ExportedDir } from '../run/types.js';
import { FD } from '../run/types.js';
import { qemuOpts } from './escape.js';

/** No default devices, no display, and a guest reset ends qemu (how mkt-init powers off). */
export function baseArgs(): readonly string[] {
  return ['-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot', '-name', 'mkt'];
}

/** The accelerator and the CPU model that goes with it. */
export function accelArgs(accel: Accel): readonly string[] {
  return accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg', '-cpu', 'max'];
}

export function machineArgs(memory: string, cpus: number): readonly string[] {
  return ['-machine', 'pc', '-m', memory, '-smp', String(cpus)];
}

export function kernelArgs(image: string, initrd: string, cmdline: string): readonly string[] {
  return ['-kernel', image, '-initrd', initrd, '-append', cmdline];
}

/**
 * Consoles. exec: the serial port and the mkt.* ports are socketpairs mkt holds
 * (inherited descriptors). shell: the serial port and hvc0 share the terminal
 * through qemu's mux (Ctrl-A x quits); hvc0, attached last, takes the input.
 */
export function consoleArgs(mode: 'exec' | 'shell'): readonly string[] {
  const port = (id: string, fd: number, name: string): string[] => [
    '-chardev',
    qemuOpts('socket', { id, fd }),
    '-device',
    qemuOpts('virtserialport', { bus: 'mktvs.0', chardev: id, name }),
  ];
  const out: string[] = [];
  if (mode === 'exec') {
    out.push('-chardev', qemuOpts('socket', { id: 'mktser', fd: FD.serial }), '-serial', 'chardev:mktser');
    out.push('-device', qemuOpts('virtio-serial-pci', { id: 'mktvs' }));
  } else {
    out.push('-chardev', qemuOpts('stdio', { id: 'mktcon', mux: true, signal: false }), '-serial', 'chardev:mktcon');
    out.push('-device', qemuOpts('virtio-serial-pci', { id: 'mktvs' }));
    out.push('-device', qemuOpts('virtconsole', { bus: 'mktvs.0', chardev: 'mktcon' }));
  }
  out.push(...port('mktctl', FD.ctl, 'mkt.ctl'));
  if (mode === 'exec') {
    out.push(...port('mktin', FD.stdin, 'mkt.stdin'));
    out.push(...port('mktout', FD.stdout, 'mkt.stdout'));
    out.push(...port('mkterr', FD.stderr, 'mkt.stderr'));
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
export function fsArgs(dirs: readonly ExportedDir[], asRoot: boolean): readonly string[] {
  const out: string[] = [];
  const share = (id: string, path: string, readonly: boolean, model: string): void => {
    out.push('-fsdev', qemuOpts('local', { id, path, security_model: model, readonly: readonly || undefined, multidevs: 'remap' }));
    out.push('-device', qemuOpts('virtio-9p-pci', { fsdev: id, mount_tag: id }));
  };
  share('mktroot', '/', true, 'none');
  dirs.forEach((d, i) => share(dirTag(i), d.real, false, asRoot ? 'passthrough' : 'none'));
  return out;
}
