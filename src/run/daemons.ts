/** The helper daemons a run needs before qemu starts (virtiofsd), and their end. */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { shellQuote } from '../qemu/escape.js';
import type { RunPlan } from './types.js';

/** Started daemons; stop() ends them and removes the run directory. */
export interface Daemons {
  /** Send each one SIGKILL now, not waiting: qemu is being ended too. */
  kill(): void;
  stop(): Promise<void>;
  /** The stderr tails of daemons that exited early, for reports. */
  failures(): string;
}

const READY_BOUND_MS = 5000;

/** Start PLAN's daemons in its private run directory and wait until each one's socket exists. */
export async function startDaemons(plan: RunPlan, setpriv: string | undefined): Promise<Daemons> {
  const procs: { child: ChildProcess; argv: readonly string[]; stderr: string; exited: boolean }[] = [];
  const runDir = plan.runDir;
  // the daemons keep no state: once the guest has synced, or qemu is gone, nothing of theirs is needed
  const kill = (): void => {
    for (const p of procs) if (!p.exited) p.child.kill('SIGKILL');
  };
  const stop = async (): Promise<void> => {
    kill();
    await Promise.all(
      procs.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exited) return resolve();
            p.child.once('exit', () => resolve());
            // a daemon stuck in the kernel need not hold mkt up
            setTimeout(resolve, 2000).unref();
          }),
      ),
    );
    if (runDir) rmSync(runDir, { recursive: true, force: true });
    // virtiofsd's lock file for each socket path, left behind by a killed daemon
    for (const d of plan.daemons) rmSync(virtiofsdPidFile(d.socket), { force: true });
  };
  const failures = (): string =>
    procs
      .filter((p) => p.exited)
      .map((p) => `${p.argv.map(shellQuote).join(' ')}:\n${p.stderr.trim()}`)
      .join('\n');
  const daemons: Daemons = { kill, stop, failures };
  if (!plan.daemons.length || !runDir) return daemons;

  // a signal while they start (before execute() takes over): end them, then report it;
  // listening first, as a signal nobody listens for ends mkt at once
  let signalled: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals): void => void (signalled ??= sig);
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const sig of signals) process.on(sig, onSignal);
  // private: only this user may reach the sockets (whoever connects gets the shared tree)
  mkdirSync(runDir, { mode: 0o700 });
  for (const d of plan.daemons) {
    if (d.dir) mkdirSync(d.dir);
    // the parent-death signal ends the daemon even when mkt is SIGKILLed; SIGKILL, as
    // virtiofsd takes SIGTERM for a request to end its session and, before qemu
    // connects, stays blocked waiting for it
    const argv = setpriv ? [setpriv, '--pdeathsig', 'SIGKILL', '--', ...d.argv] : [...d.argv];
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    const p = { child, argv: d.argv, stderr: '', exited: false };
    child.stderr?.on('data', (b: Buffer) => {
      p.stderr = (p.stderr + b.toString('utf8')).slice(-4000);
    });
    child.on('error', (err) => {
      p.stderr += err.message;
      p.exited = true;
    });
    child.on('exit', () => {
      p.exited = true;
    });
    procs.push(p);
  }
  try {
    const t0 = Date.now();
    for (;;) {
      if (signalled) {
        await stop();
        throw new DaemonSignal(signalled);
      }
      if (plan.daemons.every((d) => existsSync(d.socket))) return daemons;
      if (procs.some((p) => p.exited) || Date.now() - t0 > READY_BOUND_MS) {
        const why = failures() || `no socket after ${READY_BOUND_MS / 1000} s: ${plan.daemons.map((d) => d.argv[0]).join(', ')}`;
        await stop();
        throw new DaemonError(why);
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  } finally {
    for (const sig of signals) process.off(sig, onSignal);
  }
}

/** Where virtiofsd (QEMU's C one, as root) locks SOCKET: /run/virtiofsd/ and the path with '/' as '.'. */
export function virtiofsdPidFile(socket: string): string {
  return `/run/virtiofsd/${socket.replaceAll('/', '.')}.pid`;
}

/** mkt got SIGNAL while the daemons started; they are gone again. */
export class DaemonSignal extends Error {
  override readonly name = 'DaemonSignal';
  constructor(readonly signal: NodeJS.Signals) {
    super(`stopped by ${signal}`);
  }
}

/** A daemon failed to start; the message carries its argv and stderr. */
export class DaemonError extends Error {
  override readonly name = 'DaemonError';
}
