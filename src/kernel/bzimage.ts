/** Reading the x86 boot protocol header of a bzImage (Documentation/x86/boot.rst). */

/** What the header says about a kernel image. */
export interface BzImageInfo {
  /** Boot protocol version, e.g. 0x020f. */
  readonly protocol: number;
  /** The kernel release (first word of the kernel_version string), when the image has one. */
  readonly release: string | undefined;
  /** The whole kernel_version string ("6.1.0 (user@host) #1 SMP ..."). */
  readonly versionString: string | undefined;
}

/** Why a file is not a bzImage, in words a user can act on; undefined when it is one. */
export type NotBzImage = { readonly reason: string };

/**
 * Parse the first bytes of a file (at least 1 KiB, more to read the version
 * string) as a bzImage; with FILE_SIZE, also check the file is as long as
 * its header says.
 */
export function parseBzImage(head: Uint8Array, fileSize?: number): BzImageInfo | NotBzImage {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (b.length >= 4 && b.readUInt32BE(0) === 0x7f454c46) {
    return { reason: 'is an ELF file (vmlinux?), not a bootable bzImage' };
  }
  if (b.length < 0x270) return { reason: 'is too small to be a kernel image' };
  // 0x1fe: boot_flag 0xAA55; 0x202: header magic "HdrS"
  if (b.readUInt16LE(0x1fe) !== 0xaa55 || b.toString('latin1', 0x202, 0x206) !== 'HdrS') {
    return { reason: 'has no x86 boot header (not a bzImage)' };
  }
  const protocol = b.readUInt16LE(0x206);
  if (protocol < 0x0200) return { reason: `uses boot protocol ${protocol.toString(16)}, older than 2.00` };
  // 0x211: loadflags; bit 0 (LOADED_HIGH) marks a bzImage rather than a zImage
  if ((b.readUInt8(0x211) & 1) === 0) return { reason: 'is a zImage, not a bzImage' };
  // 0x1f1: setup_sects (0 means 4), 0x1f4: syssize in 16-byte units (protocol 2.04 on): the image's length
  if (fileSize !== undefined && protocol >= 0x0204) {
    const want = ((b.readUInt8(0x1f1) || 4) + 1) * 512 + b.readUInt32LE(0x1f4) * 16;
    if (fileSize < want) return { reason: `is cut short: its header says ${want} bytes, the file has ${fileSize} (an interrupted copy or build?)` };
  }
  // 0x20e: kernel_version, an offset from 0x200 to a NUL-terminated string
  const ptr = b.readUInt16LE(0x20e);
  let versionString: string | undefined;
  if (ptr !== 0 && 0x200 + ptr < b.length) {
    const start = 0x200 + ptr;
    const end = b.indexOf(0, start);
    if (end > start) versionString = b.toString('latin1', start, end);
  }
  const release = versionString?.split(' ')[0] || undefined;
  return { protocol, release, versionString };
}

/** Type guard for the failure case of parseBzImage. */
export function isNotBzImage(x: BzImageInfo | NotBzImage): x is NotBzImage {
  return 'reason' in x;
}
