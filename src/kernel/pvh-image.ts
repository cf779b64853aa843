/**
 * A bzImage's kernel, uncompressed once on the host, to be started at its
 * PVH entry point. A bzImage carries the kernel as a compressed ELF file
 * (vmlinux with its symbols stripped, the PVH note kept) behind its
 * decompressor; under TCG the decompressor is most of a small kernel's
 * boot and some 3 s of Debian's. The header's payload_offset and
 * payload_length (boot protocol 2.08 on) say where it lies; the kernel's
 * build appends the uncompressed length as 4 little-endian bytes
 * (Documentation/x86/boot.rst; arch/x86/boot/compressed/Makefile).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { elfKernelFile } from './elf.js';

/** Where the payload lies in the file, and what it is compressed with. */
export interface Payload {
  readonly offset: number;
  /** Without the 4 bytes of uncompressed length the build appends to it (gzip: its own trailer, kept). */
  readonly length: number;
  /** The uncompressed length the build recorded. */
  readonly size: number;
  readonly format: Compression;
}

export type Compression = 'xz' | 'gzip' | 'zstd' | 'lz4' | 'bzip2' | 'lzma' | 'lzo';

/** The decompressor's argv for each format: the payload on stdin, the kernel on stdout. */
export const DECOMPRESS: Readonly<Record<Compression, readonly string[]>> = {
  xz: ['xz', '-dc'],
  gzip: ['gzip', '-dc'],
  zstd: ['zstd', '-dcq'],
  lz4: ['lz4', '-dc'],
  bzip2: ['bzip2', '-dc'],
  lzma: ['xz', '--format=lzma', '-dc'],
  lzo: ['lzop', '-dc'],
};

const MAGIC: readonly [Compression, number[]][] = [
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['gzip', [0x1f, 0x8b]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
  ['lz4', [0x02, 0x21, 0x4c, 0x18]],
  ['bzip2', [0x42, 0x5a, 0x68]],
  ['lzo', [0x89, 0x4c, 0x5a, 0x4f]],
  ['lzma', [0x5d, 0x00, 0x00]],
];

/** Find the payload of a bzImage (its whole bytes); a reason when there is none mkt can take out. */
export function findPayload(b: Buffer): Payload | { reason: string } {
  if (b.length < 0x260 || b.toString('latin1', 0x202, 0x206) !== 'HdrS') return { reason: 'not a bzImage' };
  if (b.readUInt16LE(0x206) < 0x0208) return { reason: 'boot protocol older than 2.08: no payload fields' };
  const offset = ((b.readUInt8(0x1f1) || 4) + 1) * 512 + b.readUInt32LE(0x248);
  const whole = b.readUInt32LE(0x24c);
  if (whole < 8 || offset + whole > b.length) return { reason: 'its payload fields point outside the file' };
  const format = MAGIC.find(([, m]) => m.every((x, i) => b[offset + i] === x))?.[0];
  if (!format) return { reason: 'its payload is in no compression format mkt knows' };
  // gzip's own trailer ends with the length (mod 2^32); the other formats get it appended
  return { offset, length: format === 'gzip' ? whole : whole - 4, size: b.readUInt32LE(offset + whole - 4), format };
}

/** What became of the attempt: the ELF file to boot, or why the bzImage is booted as it is. */
export type PvhImage = { readonly path: string; readonly fresh: boolean } | { readonly reason: string };

/** How many uncompressed kernels the cache keeps (some 10 to 70 MB each), the most recently used. */
const KEEP = 4;

/**
 * The bzImage IMAGE's kernel as an ELF file with a PVH entry, from the
 * cache under CACHE_DIR or made now with the decompressor FIND locates; a
 * kernel that has none, or cannot be taken out, is remembered as such so
 * it costs nothing the next time. The key covers the image's path, size,
 * mtime and inode.
 */
export function pvhImage(image: string, cacheDir: string, find: (tool: string) => string | undefined): PvhImage {
  const st = statSync(image);
  const key = createHash('sha256').update(['pvh v1', image, st.size, st.mtimeMs, st.ino].join('\n')).digest('hex').slice(0, 24);
  const dir = join(cacheDir, 'pvh');
  const out = join(dir, `${key}.elf`);
  const no = join(dir, `${key}.no`);
  const touch = (p: string): void => {
    const now = new Date();
    utimesSync(p, now, now);
  };
  try {
    if (statSync(out).size > 0 && elfKernelFile(out)?.pvh) {
      touch(out);
      return { path: out, fresh: false };
    }
  } catch {
    // not made yet
  }
  if (existsSync(no)) {
    touch(no);
    return { reason: readFileSync(no, 'utf8').trim() };
  }
  const refuse = (reason: string, remember = true): PvhImage => {
    if (remember) {
      mkdirSync(dir, { recursive: true });
      writeFileSync(no, `${reason}\n`);
      prune(dir);
    }
    return { reason };
  };
  const bytes = readFileSync(image);
  const p = findPayload(bytes);
  if ('reason' in p) return refuse(p.reason);
  const [tool, ...args] = DECOMPRESS[p.format];
  const exe = find(tool!);
  // not remembered: installing the tool helps
  if (!exe) return refuse(`its kernel is ${p.format}-compressed and ${tool} is not installed`, false);
  mkdirSync(dir, { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o644);
  let r;
  try {
    r = spawnSync(exe, args, { input: bytes.subarray(p.offset, p.offset + p.length), stdio: ['pipe', fd, 'pipe'] });
  } finally {
    closeSync(fd);
  }
  const size = statSync(tmp).size;
  if (r.error || r.status !== 0 || size !== p.size) {
    rmSync(tmp, { force: true });
    const why = r.error?.message ?? (r.status !== 0 ? String(r.stderr).trim().split('\n')[0] : `${size} bytes, not the ${p.size} its build recorded`);
    return refuse(`${tool} could not uncompress its kernel: ${why}`);
  }
  const elf = elfKernelFile(tmp);
  if (!elf?.pvh) {
    rmSync(tmp, { force: true });
    return refuse(`its kernel ${elf ? elf.reason : 'cannot be read'}`);
  }
  renameSync(tmp, out);
  prune(dir);
  return { path: out, fresh: true };
}

/** Keep the KEEP most recently used kernels (and as many notes of kernels without one); drop leftovers of runs that died. */
export function prune(dir: string, keep = KEEP, now = Date.now()): void {
  const kinds: Record<string, { path: string; used: number }[]> = { elf: [], no: [] };
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    let used: number;
    try {
      used = statSync(path).mtimeMs;
    } catch {
      continue; // removed by a run beside this one
    }
    const m = /\.(elf|no)$/.exec(name);
    if (m) kinds[m[1]!]!.push({ path, used });
    else if (/\.tmp-\d+$/.test(name) && now - used > 3600_000) rmSync(path, { force: true });
  }
  for (const list of Object.values(kinds)) {
    list.sort((a, b) => b.used - a.used);
    for (const old of list.slice(keep)) rmSync(old.path, { force: true });
  }
}

/** Whether a file starts as a bzImage does (its boot header), read from its first bytes only. */
export function looksLikeBzImage(path: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const b = Buffer.alloc(0x210);
    const n = readSync(fd, b, 0, b.length, 0);
    return n === b.length && fstatSync(fd).isFile() && b.toString('latin1', 0x202, 0x206) === 'HdrS';
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
