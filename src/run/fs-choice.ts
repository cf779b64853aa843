/** Which filesystem carries the root and the exported directories: virtiofs where it can serve, else 9p. */
import { ToolError } from '../errors.js';
import type { Fs, FsChoice } from './types.js';

/** The decision and, for auto, why (shown with --verbose). */
export interface FsDecision {
  readonly fs: Fs;
  readonly why: string;
}

/**
 * Pure. virtiofs needs a virtiofsd, the privileges it needs (Debian's C
 * daemon runs as root only: it must chroot into the shared directory), and
 * a kernel with CONFIG_VIRTIO_FS. auto falls back to 9p and says why; an
 * explicit virtiofs fails with that reason.
 */
export function chooseFs(
  choice: FsChoice,
  host: { readonly virtiofsd: string | undefined; readonly uid: number },
  kernel: 'yes' | 'no' | 'unknown',
): FsDecision {
  if (choice === '9p') return { fs: '9p', why: '--fs 9p' };
  let reason: string | undefined;
  if (!host.virtiofsd) reason = 'no virtiofsd found (Debian ships it in qemu-system-x86 as /usr/lib/qemu/virtiofsd)';
  else if (host.uid !== 0) reason = `${host.virtiofsd} needs root (it chroots into the shared directory); run mkt as root for virtiofs`;
  else if (kernel === 'no') reason = 'the kernel lacks CONFIG_VIRTIO_FS or CONFIG_FUSE_FS (mkt kconfig adds them)';
  else if (kernel === 'unknown') reason = 'without its .config (a bzImage on its own), whether the kernel has CONFIG_VIRTIO_FS is unknown: pass its tree';
  if (!reason) return { fs: 'virtiofs', why: `virtiofs through ${host.virtiofsd}` };
  if (choice === 'virtiofs') throw new ToolError(`--fs virtiofs: ${reason}; or use --fs 9p`);
  return { fs: '9p', why: `9p: ${reason}` };
}
