/** Cache keys from file metadata: what make would look at to decide a file changed. */
import { statSync } from 'node:fs';

/** PATH's size, mtime and inode as one string; a missing file gives its own key when MISSING_OK, else throws. */
export function statKey(path: string, missingOk = false): string {
  try {
    const s = statSync(path);
    return `${path}:${s.size}:${s.mtimeMs}:${s.ino}`;
  } catch (err) {
    if (missingOk) return `${path}:-`;
    throw err;
  }
}
