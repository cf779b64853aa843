/**
 * Reading mkt's own small cache files (the TSC rate, the KVM verdict, the
 * notes of bzImages without a PVH kernel): anything at such a path that is
 * not a regular file (a FIFO, a device, a link to one) is no entry, rather
 * than a read that blocks forever or never ends.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

/** The text of the regular file at PATH (at most MAX bytes), or undefined: missing, unreadable, or not a regular file. */
export function readCacheText(path: string, max = 64 * 1024): string | undefined {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    if (!fstatSync(fd).isFile()) return undefined;
    const buf = Buffer.alloc(max);
    let n = 0;
    for (;;) {
      const got = readSync(fd, buf, n, max - n, null);
      if (got <= 0) break;
      n += got;
      if (n === max) break;
    }
    return buf.subarray(0, n).toString('utf8');
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}
