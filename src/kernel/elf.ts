/**
 * Whether a vmlinux can be started directly: an x86-64 ELF kernel built
 * with CONFIG_PVH carries a note (owner "Xen", type
 * XEN_ELFNOTE_PHYS32_ENTRY) with its 32-bit entry point, and qemu's
 * -kernel starts such a file through that entry, with no decompressor run
 * (include/xen/interface/elfnote.h, arch/x86/platform/pvh/head.S).
 */
import { closeSync, readSync } from 'node:fs';
import { openRegular } from '../host/cache-file.js';

const PT_NOTE = 4;
const XEN_ELFNOTE_PHYS32_ENTRY = 18;
/** The most program headers and note bytes read: a vmlinux has a handful of each. */
const MAX_PHDRS = 64;
const MAX_NOTES = 64 * 1024;

/** What an ELF file says about booting it; reason when it is not a PVH kernel, and whether that is because it is cut short. */
export type ElfKernel = { readonly pvh: true } | { readonly pvh: false; readonly reason: string; readonly cut?: true };

/** Reads LENGTH bytes at OFFSET (fewer at the file's end). */
export type ReadAt = (offset: number, length: number) => Buffer;

/** Look for the PVH entry note of an ELF file through READ; SIZE, the file's length, where known. */
export function elfKernel(read: ReadAt, size?: number): ElfKernel {
  const h = read(0, 64);
  if (h.length < 64 || h.readUInt32BE(0) !== 0x7f454c46) return { pvh: false, reason: 'is not an ELF file' };
  // e_ident: class 2 (64-bit), data 1 (little-endian); e_machine 62 (x86-64)
  if (h[4] !== 2 || h[5] !== 1 || h.readUInt16LE(18) !== 62) return { pvh: false, reason: 'is not an x86-64 ELF file' };
  const phoff = Number(h.readBigUInt64LE(32));
  const phentsize = h.readUInt16LE(54);
  const phnum = Math.min(h.readUInt16LE(56), MAX_PHDRS);
  if (phentsize < 56 || phnum === 0) return { pvh: false, reason: 'has no program headers' };
  const ph = read(phoff, phentsize * phnum);
  if (ph.length < phentsize * phnum) return { pvh: false, reason: 'is cut short (its program headers are missing)', cut: true };
  // every segment's bytes must be in the file: an interrupted build or copy leaves it shorter
  if (size !== undefined) {
    let end = 0;
    for (let i = 0; i < phnum; i++) {
      const p = ph.subarray(i * phentsize);
      end = Math.max(end, Number(p.readBigUInt64LE(8)) + Number(p.readBigUInt64LE(32)));
    }
    if (size < end) return { pvh: false, reason: `is cut short: its segments end at byte ${end}, the file has ${size} (an interrupted build or copy?)`, cut: true };
  }
  for (let i = 0; (i + 1) * phentsize <= ph.length; i++) {
    const p = ph.subarray(i * phentsize);
    if (p.readUInt32LE(0) !== PT_NOTE) continue;
    const notes = read(Number(p.readBigUInt64LE(8)), Math.min(Number(p.readBigUInt64LE(32)), MAX_NOTES));
    for (let o = 0; o + 12 <= notes.length; ) {
      const namesz = notes.readUInt32LE(o);
      const descsz = notes.readUInt32LE(o + 4);
      const type = notes.readUInt32LE(o + 8);
      if (o + 12 + align4(namesz) + descsz > notes.length) break; // cut short
      const name = notes.toString('latin1', o + 12, o + 12 + Math.max(0, namesz - 1));
      if (name === 'Xen' && type === XEN_ELFNOTE_PHYS32_ENTRY && descsz >= 4) return { pvh: true };
      o += 12 + align4(namesz) + align4(descsz);
    }
  }
  return { pvh: false, reason: 'has no PVH entry point (built without CONFIG_PVH)' };
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

/** elfKernel over a file; undefined when it cannot be read or is no regular file (a FIFO standing there: no kernel, answered at once). */
export function elfKernelFile(path: string): ElfKernel | undefined {
  const f = openRegular(path);
  if (!f) return undefined;
  try {
    return elfKernel((offset, length) => {
      const buf = Buffer.alloc(length);
      const n = readSync(f.fd, buf, 0, length, offset);
      return buf.subarray(0, n);
    }, f.size);
  } catch {
    return undefined; // a read error (EIO)
  } finally {
    closeSync(f.fd);
  }
}
