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
import { readCacheText, writeCacheText } from '../host/cache-file.js';
import { closeSync, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
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

/**
 * What became of the attempt: the ELF file to boot; or why the bzImage is
 * booted as it is; or, damaged, why it must not be booted at all (its
 * compressed kernel is corrupt: the decompressor in the guest would halt
 * with nothing on the console).
 */
export type PvhImage = { readonly path: string; readonly fresh: boolean } | { readonly reason: string } | { readonly damaged: string };

/** How many uncompressed kernels the cache keeps (some 10 to 70 MB each), the most recently used. */
const KEEP = 4;
/** A bzImage bigger than this is no kernel to read whole (Debian's is 8 MB). */
const MAX_IMAGE = 512 << 20;
/** A decompressor's complaint about the machine rather than the data: worth another try next time. */
const TRANSIENT = /no space left|quota|input\/output error|cannot allocate|out of memory|read-only file system|killed/i;

/**
 * The bzImage IMAGE's kernel as an ELF file with a PVH entry, from the
 * cache under CACHE_DIR or made now with the decompressor FIND locates. A
 * lasting answer (the kernel has no PVH entry, the file is no bzImage) is
 * remembered, so it costs nothing the next time; one that may change (no
 * decompressor, a full disk, a signal) is not. The key covers the image's
 * path, size, mtime and inode.
 */
export function pvhImage(image: string, cacheDir: string, find: (tool: string) => string | undefined): PvhImage {
  const st = statSync(image);
  const key = createHash('sha256').update(['pvh v1', image, st.size, st.mtimeMs, st.ino].join('\n')).digest('hex').slice(0, 24);
  const dir = join(cacheDir, 'pvh');
  const out = join(dir, `${key}.elf`);
  const no = join(dir, `${key}.no`);
  const touch = (p: string): void => {
    try {
      const now = new Date();
      utimesSync(p, now, now);
    } catch {
      // the use is not recorded: pruning may take it sooner
    }
  };
  sweep(dir);
  if (existsSync(out)) {
    if (elfKernelFile(out)?.pvh) {
      touch(out);
      return { path: out, fresh: false };
    }
    rmSync(out, { force: true }); // damaged since (cut short): made again below
  }
  const noted = readCacheText(no);
  if (noted !== undefined) {
    touch(no);
    return { reason: noted.trim() };
  }
  // not asked before (or something that is no note stands there: replaced below)
  const remember = (reason: string): PvhImage => {
    try {
      // whatever stood at the note's name (a FIFO would block a write) is replaced
      writeCacheText(no, `${reason}\n`);
      prune(dir);
    } catch {
      // asked again next time
    }
    return { reason };
  };
  if (st.size > MAX_IMAGE) return remember(`it is ${st.size} bytes, too big for a kernel image`);
  const bytes = readFileSync(image);
  const p = findPayload(bytes);
  if ('reason' in p) {
    // every format Linux compresses its x86 kernel with is known: another start is damage
    return /no compression format/.test(p.reason) ? { damaged: 'its compressed kernel starts as no format Linux uses' } : remember(p.reason);
  }
  const [tool, ...args] = DECOMPRESS[p.format];
  const exe = find(tool!);
  if (!exe) return { reason: `its kernel is ${p.format}-compressed and ${tool} is not installed` };
  const tmp = `${out}.tmp-${process.pid}`;
  let fd: number;
  try {
    mkdirSync(dir, { recursive: true });
    fd = openSync(tmp, 'w', 0o644);
  } catch (err) {
    return { reason: `cannot write to ${dir}: ${(err as Error).message}` };
  }
  let r;
  try {
    r = spawnSync(exe, args, { input: bytes.subarray(p.offset, p.offset + p.length), stdio: ['pipe', fd, 'pipe'] });
    if (r.status === 0) fsyncSync(fd); // whole on disk before it is renamed into place
  } catch (err) {
    r = { status: null, signal: null, error: err as Error, stderr: '' };
  } finally {
    closeSync(fd);
  }
  const size = statSync(tmp).size;
  const said = String(r.stderr ?? '').trim().split('\n')[0] ?? '';
  const failed = (why: string): PvhImage => {
    rmSync(tmp, { force: true });
    return { reason: `${tool} could not uncompress its kernel: ${why}` };
  };
  if (r.signal) return failed(`${tool} was killed (${r.signal})`);
  if (r.status === null) return failed(r.error?.message ?? 'it did not run');
  if (r.status !== 0) {
    if (TRANSIENT.test(said) || !said) return failed(said || `${tool} exited with status ${r.status}`);
    rmSync(tmp, { force: true });
    return { damaged: `its compressed kernel is damaged (${tool}: ${said.replace(/^[^:]*: \(stdin\): /, '')})` };
  }
  if (size !== p.size) {
    rmSync(tmp, { force: true });
    return remember(`it uncompresses to ${size} bytes, not the ${p.size} its build recorded`);
  }
  const elf = elfKernelFile(tmp);
  if (!elf?.pvh) {
    rmSync(tmp, { force: true });
    return elf && !elf.cut ? remember(`its kernel ${elf.reason}`) : failed(`the result ${elf ? elf.reason : 'cannot be read'}`);
  }
  try {
    renameSync(tmp, out);
  } catch (err) {
    return failed((err as Error).message);
  }
  prune(dir);
  return { path: out, fresh: true };
}

/** The names in DIR; none when it cannot be read (not made yet, say). */
function names(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Remove what runs that died left: temporary files of processes that are gone, or over an hour old. */
function sweep(dir: string, now = Date.now()): void {
  for (const name of names(dir)) {
    const m = /\.tmp-(\d+)$/.exec(name);
    if (!m) continue;
    const path = join(dir, name);
    let gone = false;
    try {
      process.kill(Number(m[1]), 0);
    } catch (err) {
      gone = (err as NodeJS.ErrnoException).code === 'ESRCH';
    }
    try {
      if (gone || now - statSync(path).mtimeMs > 3600_000) rmSync(path, { force: true });
    } catch {
      // removed by a run beside this one
    }
  }
}

/** Keep the KEEP most recently used kernels (and as many notes of kernels without one). */
export function prune(dir: string, keep = KEEP): void {
  const kinds: Record<string, { path: string; used: number }[]> = { elf: [], no: [] };
  for (const name of names(dir)) {
    const path = join(dir, name);
    let used: number;
    try {
      used = statSync(path).mtimeMs;
    } catch {
      continue; // removed by a run beside this one
    }
    const m = /\.(elf|no)$/.exec(name);
    if (m) kinds[m[1]!]!.push({ path, used });
  }
  for (const list of Object.values(kinds)) {
    list.sort((a, b) => b.used - a.used);
    for (const old of list.slice(keep)) {
      try {
        rmSync(old.path, { force: true });
      } catch {
        // not ours to remove
      }
    }
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
