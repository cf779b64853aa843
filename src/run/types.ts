/** The resolved, validated description of one `mkt run`, and the plan made from it. */
import type { KernelInfo } from '../kernel/locate.js';

export type Accel = 'kvm' | 'tcg';
export type Fs = '9p' | 'virtiofs';
export type FsChoice = 'auto' | Fs;
export type AccelChoice = 'auto' | Accel;

/** A host directory exported to the guest. */
export interface ExportedDir {
  /** Where it appears in the guest: the absolute path the user gave. */
  readonly path: string;
  /** The host directory qemu serves (symlinks resolved). */
  readonly real: string;
}

/** One run, after defaults, config files, environment and flags were merged and checked. */
export interface ResolvedRun {
  readonly kernel: KernelInfo;
  readonly dirs: readonly ExportedDir[];
  /** Exported directories the user named through a symlink: the guest gets PATH → REAL too. */
  readonly aliases: readonly ExportedDir[];
  readonly exec: string | undefined;
  readonly timeout: number | undefined;
  readonly accel: AccelChoice;
  readonly fs: FsChoice;
  /** Where the accel choice came from, for messages. */
  readonly accelSource: string;
  readonly memory: string;
  readonly cpus: number;
  readonly append: readonly string[];
  readonly qemu: string;
  readonly qemuArgs: readonly string[];
  readonly dryRun: boolean;
  readonly verbose: boolean;
  /** Print when each boot phase finished (--boot-trace). */
  readonly bootTrace: boolean;
  /** Start the kernel at its PVH entry where it has one (false with --no-pvh: the bzImage, decompressor and all). */
  readonly pvh: boolean;
  /** The caller's directory as their shell names it ($PWD, symlinks kept), and as it really is. */
  readonly cwd: string;
  readonly cwdReal?: string;
}

/** File descriptors qemu inherits (the socketpairs mkt talks to the guest through). */
export const FD = { ctl: 3, serial: 4, stdin: 5, stdout: 6, stderr: 7 } as const;

/** Everything `execute` needs, computed without side effects. */
export interface RunPlan {
  readonly mode: 'exec' | 'shell';
  readonly accel: Accel;
  readonly fs: Fs;
  /** Daemons to start before qemu (virtiofsd), each serving a socket in runDir. */
  /** Each daemon: its argv, the socket it listens on, and an empty directory to make for it first (mkt-ro's view). */
  readonly daemons: readonly { readonly argv: readonly string[]; readonly socket: string; readonly dir?: string | undefined }[];
  /** The private directory (mode 0700) for the daemons' sockets; none with 9p. */
  readonly runDir: string | undefined;
  readonly argv: readonly string[];
  readonly cmdline: string;
  readonly spec: Buffer;
}
