/** Fakes and process checks for the unit tests of process handling (no VM boots). */
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** bin/mkt, as the real-boot tests run it. */
export { MKT } from '../vm/helpers.js';

/** Write at PATH a file with a valid bzImage header, enough for mkt to accept it as a kernel. */
export function fakeBzImage(path: string): string {
  const b = Buffer.alloc(0x1000);
  b.writeUInt16LE(0xaa55, 0x1fe);
  b.write('HdrS', 0x202, 'latin1');
  b.writeUInt16LE(0x020f, 0x206);
  b.writeUInt8(1, 0x211);
  b.writeUInt16LE(0x400, 0x20e);
  b.write('6.6.6-fake (x@y) #1\0', 0x600, 'latin1');
  writeFileSync(path, b);
  return path;
}

/** An executable shell script at DIR/NAME with BODY. */
export function fakeScript(dir: string, name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Whether PID is gone within 5 s. */
export async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  return !alive(pid);
}
