/** A writer for the cpio "newc" format, the format the kernel unpacks as an initramfs. */

/** One archive member. Directories and device nodes have no data. */
export type CpioEntry =
  | { readonly kind: 'file'; readonly name: string; readonly data: Uint8Array; readonly mode?: number }
  | { readonly kind: 'dir'; readonly name: string; readonly mode?: number }
  | { readonly kind: 'chardev'; readonly name: string; readonly major: number; readonly minor: number; readonly mode?: number };

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFCHR = 0o020000;

const hex8 = (n: number): string => n.toString(16).padStart(8, '0');
const pad4 = (n: number): number => (4 - (n % 4)) % 4;

function header(ino: number, mode: number, nlink: number, size: number, rmaj: number, rmin: number, nameLen: number): string {
  // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
  return (
    '070701' +
    [ino, mode, 0, 0, nlink, 0, size, 0, 0, rmaj, rmin, nameLen, 0].map(hex8).join('')
  );
}

/** Serialize ENTRIES (names relative, without a leading slash) into one newc archive with its trailer. */
export function writeCpio(entries: readonly CpioEntry[]): Buffer {
  const chunks: Buffer[] = [];
  let offset = 0;
  const push = (b: Buffer): void => {
    chunks.push(b);
    offset += b.length;
  };
  const member = (ino: number, mode: number, nlink: number, name: string, data: Uint8Array, rmaj = 0, rmin = 0): void => {
    const nameBuf = Buffer.from(`${name}\0`, 'utf8');
    push(Buffer.from(header(ino, mode, nlink, data.length, rmaj, rmin, nameBuf.length), 'ascii'));
    push(nameBuf);
    push(Buffer.alloc(pad4(offset)));
    push(Buffer.from(data));
    push(Buffer.alloc(pad4(offset)));
  };
  entries.forEach((e, i) => {
    if (e.name === '' || e.name.startsWith('/') || e.name.includes('\0')) {
      throw new Error(`invalid cpio member name '${e.name}'`);
    }
    const ino = i + 1;
    if (e.kind === 'file') member(ino, S_IFREG | (e.mode ?? 0o644), 1, e.name, e.data);
    else if (e.kind === 'dir') member(ino, S_IFDIR | (e.mode ?? 0o755), 2, e.name, new Uint8Array());
    else member(ino, S_IFCHR | (e.mode ?? 0o600), 1, e.name, new Uint8Array(), e.major, e.minor);
  });
  member(0, 0, 1, 'TRAILER!!!', new Uint8Array());
  return Buffer.concat(chunks);
}
