/** Helpers for the real-boot tests: run bin/mkt and look at what it left behind. */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..', '..');
export const MKT = join(ROOT, 'bin', 'mkt');

/** The compiled test kernel tree (test/setup/test-kernel.sh prints it; test/run-all.sh exports it). */
export function ktree(): string {
  const t = process.env.MKT_KTREE;
  if (!t) throw new Error('MKT_KTREE is not set: run the suite with npm test (test/run-all.sh)');
  return t;
}

/** The newest installed distro kernel image. */
export function distroKernel(): string {
  const r = spawnSync('sh', ['-c', 'ls -1 /boot/vmlinuz-* | sort -V | tail -n 1'], { encoding: 'utf8' });
  const k = r.stdout.trim();
  if (!k) throw new Error('no /boot/vmlinuz-* installed: apt-get install linux-image-amd64');
  return k;
}

export interface Result {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: Buffer;
  readonly stderr: string;
  readonly ms: number;
}

/** Run mkt with ARGS; stdin from INPUT (or /dev/null). */
export function mkt(args: readonly string[], opts: SpawnSyncOptions & { input?: string | Buffer } = {}): Result {
  const t0 = Date.now();
  const r = spawnSync(MKT, args, {
    timeout: 400_000,
    maxBuffer: 64 << 20,
    ...opts,
    env: { ...process.env, ...(opts.env ?? {}) },
  });
  return {
    code: r.status,
    signal: r.signal,
    stdout: r.stdout as Buffer,
    stderr: String(r.stderr ?? ''),
    ms: Date.now() - t0,
  };
}

/** Pids of qemu/virtiofsd processes whose command line contains NEEDLE. */
export function vmProcesses(needle = ''): number[] {
  const r = spawnSync('pgrep', ['-f', `^[^ ]*(qemu-system-x86_64|virtiofsd)${needle ? `.*${needle}` : ''}`], { encoding: 'utf8' });
  return r.stdout.split('\n').filter(Boolean).map(Number);
}

export function tempDir(prefix = 'mkt-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
