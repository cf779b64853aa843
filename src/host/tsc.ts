/**
 * The host's TSC frequency, for TCG guests: under TCG the guest's TSC is the
 * host's own counter, and a guest that is told its frequency
 * (tsc_early_khz) does not calibrate it against the emulated PIT, which on
 * a busy host fails and leaves the guest on a 4 ms jiffies clock.
 * Measured by mkt-tsc (20 ms) once per host boot, remembered in the cache.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readCacheText, writeCacheText } from './cache-file.js';

/** A frequency a TSC can have, in kHz (100 MHz to 20 GHz): anything else is a failed measurement. */
export function plausibleTscKhz(khz: number): boolean {
  return Number.isInteger(khz) && khz >= 100_000 && khz <= 20_000_000;
}

/** The remembered measurement in TEXT ("BOOTID KHZ"), if it was made in this host boot. */
export function parseTscCache(text: string, bootId: string): number | undefined {
  const [id, value] = text.trim().split(/\s+/);
  const khz = Number(value);
  return id === bootId && plausibleTscKhz(khz) ? khz : undefined;
}

/** The CPU flags say the TSC ticks at one rate whatever the CPU's clock and sleep states. */
export function constantTsc(cpuinfo: string): boolean {
  const flags = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1]?.split(/\s+/) ?? [];
  return flags.includes('constant_tsc') && flags.includes('nonstop_tsc');
}

/**
 * The host TSC's frequency in kHz, or undefined where it cannot be known
 * (not x86-64, a TSC whose rate varies, mkt-tsc missing or failing): the
 * guest kernel then calibrates it itself, as it would anyway.
 */
export function hostTscKhz(cacheDir: string, bootId: string, helper: string, cpuinfoFile = '/proc/cpuinfo'): number | undefined {
  const file = join(cacheDir, 'tsc');
  if (bootId !== 'unknown') {
    const known = parseTscCache(readCacheText(file) ?? '', bootId);
    if (known !== undefined) return known;
  }
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync(cpuinfoFile, 'utf8');
  } catch {
    return undefined;
  }
  if (!constantTsc(cpuinfo)) return undefined;
  const r = spawnSync(helper, [], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] });
  const khz = Number(r.stdout?.trim());
  if (r.status !== 0 || !plausibleTscKhz(khz)) return undefined;
  if (bootId !== 'unknown') {
    try {
      writeCacheText(file, `${bootId} ${khz}\n`);
    } catch {
      /* an unwritable cache (or a full disk): measured again next time */
    }
  }
  return khz;
}
