/** Remembering, for the current host boot, that KVM does not work here. */
import { join } from 'node:path';
import { readCacheText, writeCacheText } from './cache-file.js';

/** What an earlier run found out about KVM during this boot. */
export interface KvmVerdict {
  readonly bootId: string;
  readonly works: boolean;
  readonly reason: string;
}

export const verdictPath = (cacheDir: string): string => join(cacheDir, 'kvm-verdict.json');

/** The verdict recorded during this boot, if any (a verdict from an earlier boot is ignored). */
export function readVerdict(cacheDir: string, bootId: string): KvmVerdict | undefined {
  try {
    const v = JSON.parse(readCacheText(verdictPath(cacheDir)) ?? '') as KvmVerdict;
    return v.bootId === bootId ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Record a verdict atomically. */
export function writeVerdict(cacheDir: string, v: KvmVerdict): void {
  writeCacheText(verdictPath(cacheDir), JSON.stringify(v));
}
