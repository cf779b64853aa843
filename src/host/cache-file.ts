/**
 * mkt's own small cache files (the TSC rate, the KVM verdict, the notes of
 * bzImages without a PVH kernel), and files that must be regular: anything
 * at such a path that is not a regular file (a FIFO, a device, a link to
 * one) is no entry, rather than a read that blocks forever or never ends,
 * and a write replaces it whole.
 */
import { closeSync, constants, fstatSync, mkdirSync, openSync, readSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Open PATH for reading only if it is a regular file: a descriptor and the
 * file's size, or undefined (missing, unreadable, a FIFO, a device, a
 * directory). O_NONBLOCK: a FIFO with no writer opens at once instead of
 * waiting for one. The caller closes the descriptor.
 */
export function openRegular(path: string): { fd: number; size: number } | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (st.isFile()) return { fd, size: st.size };
  } catch {
    /* no answer: no file */
  }
  closeSync(fd);
  return undefined;
}

/** The text of the regular file at PATH (at most MAX bytes), or undefined: missing, unreadable, or not a regular file. */
export function readCacheText(path: string, max = 64 * 1024): string | undefined {
  const f = openRegular(path);
  if (!f) return undefined;
  try {
    const buf = Buffer.alloc(max);
    let n = 0;
    for (;;) {
      const got = readSync(f.fd, buf, n, max - n, null);
      if (got <= 0) break;
      n += got;
      if (n === max) break;
    }
    return buf.subarray(0, n).toString('utf8');
  } catch {
    return undefined;
  } finally {
    closeSync(f.fd);
  }
}

/**
 * Put TEXT at PATH (its directory made if need be) through a temporary file
 * renamed over it: a reader never sees half of it, and whatever stood there
 * (a FIFO a plain write would block on) is replaced. The temporary file is
 * named PATH.tmp-PID, as the sweeps of dead runs' files expect, and is gone
 * again when the write fails, which throws.
 */
export function writeCacheText(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } finally {
    rmSync(tmp, { force: true });
  }
}
