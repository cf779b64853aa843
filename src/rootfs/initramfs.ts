/** The small initramfs mkt boots every kernel with: mkt-init, /dev/console and the boot-driver modules. */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openRegular } from '../host/cache-file.js';
import { statKey } from '../cache-key.js';
import { ToolError } from '../errors.js';
import { type CpioEntry, writeCpio } from './cpio.js';

/** How many cached initramfs images to keep: one per kernel build and mkt build, so the newest few. */
export const INITRAMFS_KEEP = 16;

/**
 * Remove all but the KEEP most recently used images of DIR (each is 1-2 MB,
 * and every kernel rebuild with modular drivers makes a new one), and
 * temporary files an interrupted mkt left more than an hour ago.
 */
export function pruneInitramfsCache(dir: string, keep = INITRAMFS_KEEP, now = Date.now()): void {
  const images: { path: string; used: number }[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    let used: number;
    try {
      used = statSync(path).mtimeMs;
    } catch {
      continue; /* removed by a run beside this one */
    }
    if (/\.cpio$/.test(name)) images.push({ path, used });
    else if (/\.cpio\.tmp-\d+$/.test(name) && now - used > 3600_000) rmSync(path, { force: true });
  }
  images.sort((a, b) => b.used - a.used);
  for (const old of images.slice(keep)) rmSync(old.path, { force: true });
}

/** Members of the initramfs for INIT (the mkt-init binary's bytes) and MODULES (name, uncompressed bytes). */
export function initramfsEntries(init: Uint8Array, modules: readonly { name: string; data: Uint8Array }[]): CpioEntry[] {
  const entries: CpioEntry[] = [
    { kind: 'dir', name: 'dev' },
    // the kernel opens /dev/console for init's stdio before anything is mounted
    { kind: 'chardev', name: 'dev/console', major: 5, minor: 1 },
    { kind: 'dir', name: 'proc' },
    { kind: 'dir', name: 'sys' },
    { kind: 'file', name: 'init', data: init, mode: 0o755 },
  ];
  if (modules.length) {
    entries.push({ kind: 'dir', name: 'mkt' });
    const list = modules.map((m, i) => `/mkt/${String(i).padStart(2, '0')}-${m.name}.ko`);
    modules.forEach((m, i) => entries.push({ kind: 'file', name: list[i]!.slice(1), data: m.data }));
    entries.push({ kind: 'file', name: 'mkt/modules.list', data: Buffer.from(list.map((l) => `${l}\n`).join('')) });
  }
  return entries;
}

/** A module file's bytes, decompressed when it is .ko.xz, .ko.zst or .ko.gz (finit_module wants plain ELF here). */
function moduleBytes(path: string): Buffer {
  const tool = path.endsWith('.xz') ? 'xz' : path.endsWith('.zst') ? 'zstd' : path.endsWith('.gz') ? 'gzip' : undefined;
  if (!tool) return readFileSync(path);
  const argv = [tool, '-dc', path];
  const r = spawnSync(tool, argv.slice(1), { maxBuffer: 256 << 20 });
  if (r.error || r.status !== 0) {
    throw new ToolError(`cannot decompress ${path} with ${tool} (install it)`, argv, r.status, String(r.stderr ?? r.error));
  }
  return r.stdout;
}

/**
 * A cached archive that still starts and ends as mkt wrote it: a newc
 * header first, the trailer record in its last 512 bytes. A damaged file
 * would otherwise fail every boot with the kernel's "invalid magic" panic.
 */
export function wholeCpio(path: string): boolean {
  // only a regular file, opened without blocking: a FIFO standing there is no initramfs (and is replaced)
  const f = openRegular(path);
  if (!f) return false;
  try {
    const head = Buffer.alloc(6);
    const tail = Buffer.alloc(Math.min(512, f.size));
    readSync(f.fd, head, 0, 6, 0);
    readSync(f.fd, tail, 0, tail.length, f.size - tail.length);
    return head.toString('latin1') === '070701' && tail.includes('TRAILER!!!');
  } catch {
    return false;
  } finally {
    closeSync(f.fd);
  }
}

/**
 * The initramfs for this init binary and these module files (absolute host
 * paths, in load order), from the cache when it was built before (fresh:
 * made, or made again, in this call). The cache
 * key covers every input's path, size, mtime and inode.
 */
export function cachedInitramfs(cacheDir: string, initPath: string, modulePaths: readonly string[]): { path: string; fresh: boolean } {
  const key = createHash('sha256')
    .update(['v1', statKey(initPath), ...modulePaths.map((p) => statKey(p))].join('\n'))
    .digest('hex')
    .slice(0, 24);
  const dir = join(cacheDir, 'initramfs');
  const out = join(dir, `${key}.cpio`);
  if (wholeCpio(out)) {
    // the mtime says when it was last used, for pruneInitramfsCache
    const now = new Date();
    utimesSync(out, now, now);
    return { path: out, fresh: false };
  }
  mkdirSync(dir, { recursive: true });
  const modules = modulePaths.map((p) => ({
    name: p.slice(p.lastIndexOf('/') + 1).replace(/\.ko(\.(xz|zst|gz))?$/, ''),
    data: moduleBytes(p),
  }));
  const tmp = `${out}.tmp-${process.pid}`;
  writeFileSync(tmp, writeCpio(initramfsEntries(readFileSync(initPath), modules)));
  renameSync(tmp, out);
  pruneInitramfsCache(dir);
  return { path: out, fresh: true };
}
