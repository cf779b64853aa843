/** The helper daemons a run needs (virtiofsd): their sockets, their start alongside qemu, and their end. */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, renameSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { constants } from 'node:os';
import { DAEMON_SOCKET_FD } from '../qemu/args.js';
import { shellQuote } from '../qemu/escape.js';
import type { RunPlan } from './types.js';

/** A run's daemons: sockets bound by prepareDaemons, processes started by start(). */
export interface Daemons {
  /**
   * Start each daemon on its socket (qemu may be connecting already: its
   * connection waits in the socket's backlog). ONFAIL hears, once, of a
   * daemon that failed: it could not start, or ended by itself with an
   * error, before kill() or stop().
   */
  start(onFail: (why: string) => void): void;
  /** Send each one SIGKILL now, not waiting: qemu is being ended too. */
  kill(): void;
  /** Kill them, wait for their end, and remove the run directory. */
  stop(): Promise<void>;
  /** Whether a daemon failed, waiting up to MS for those still running to show it (qemu failing first, say). */
  settle(ms: number): Promise<string>;
}

/** A daemon failed to start; the message carries its argv and stderr. */
export class DaemonError extends Error {
  override readonly name = 'DaemonError';
}

/**
 * Make the run directory and bind each daemon's socket in it, listening:
 * done before qemu starts, which connects at once, while the daemons start
 * after it, on these sockets (virtiofsd's --fd), so neither waits for the
 * other. mkt never accepts on them: start() hands them over and closes its
 * own descriptors within the same turn of the event loop. HELPER is mkt-exec
 * (the parent-death signal, and blocking mode for the socket).
 */
export function prepareDaemons(plan: RunPlan, helper: string): Daemons {
  const runDir = plan.runDir;
  const procs: { child: ChildProcess; argv: readonly string[]; stderr: string; closed: boolean; failed: boolean }[] = [];
  let ended = false;
  let servers: Server[] = [];
  const closeServers = (): void => {
    for (const s of servers) s.close();
    servers = [];
  };
  const kill = (): void => {
    ended = true;
    closeServers();
    for (const p of procs) if (!p.closed) p.child.kill('SIGKILL');
  };
  const failures = (): string =>
    procs
      .filter((p) => p.failed)
      .map((p) => `${p.argv.map(shellQuote).join(' ')}:\n${p.stderr.trim()}`)
      .join('\n');
  const settle = async (ms: number): Promise<string> => {
    const t0 = Date.now();
    while (!failures() && procs.some((p) => !p.closed) && Date.now() - t0 < ms) await new Promise((r) => setTimeout(r, 5));
    return failures();
  };
  const stop = async (): Promise<void> => {
    kill();
    // reaped before mkt ends: an orphan's zombie would wait on whatever reaps for PID 1
    await Promise.all(
      procs.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.closed) return resolve();
            p.child.once('close', () => resolve());
            // a daemon stuck in the kernel need not hold mkt up
            setTimeout(resolve, 2000).unref();
          }),
      ),
    );
    if (runDir) rmSync(runDir, { recursive: true, force: true });
  };
  const daemons: Daemons = { start: () => {}, kill, stop, settle };
  if (!plan.daemons.length || !runDir) return daemons;

  // private: only this user may reach the sockets (whoever connects gets the shared tree)
  mkdirSync(runDir, { mode: 0o700 });
  try {
    for (const d of plan.daemons) {
      if (d.dir) mkdirSync(d.dir);
      // Node's listen() on a path binds and listens before it returns; its close() unlinks the
      // path it bound, so bind under another name and rename: the socket stays where qemu looks
      const server = createServer();
      server.on('error', () => {});
      server.listen(`${d.socket}.bind`);
      renameSync(`${d.socket}.bind`, d.socket);
      servers.push(server);
    }
  } catch (err) {
    closeServers();
    rmSync(runDir, { recursive: true, force: true });
    throw new DaemonError(`cannot make virtiofsd's socket in ${runDir}: ${(err as Error).message}`);
  }

  daemons.start = (onFail) => {
    let told = false;
    const fail = (p: (typeof procs)[number]): void => {
      p.failed = true;
      if (!told) onFail(failures());
      told = true;
    };
    plan.daemons.forEach((d, i) => {
      // the listening socket's descriptor (Node has no public accessor), as the daemon's DAEMON_SOCKET_FD
      const fd = (servers[i] as unknown as { _handle?: { fd?: number } })._handle?.fd;
      const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', 'ignore', 'pipe'];
      while (stdio.length < DAEMON_SOCKET_FD) stdio.push('ignore');
      stdio[DAEMON_SOCKET_FD] = typeof fd === 'number' && fd >= 0 ? fd : 'ignore';
      // SIGKILL when mkt dies, as virtiofsd takes SIGTERM for a request to end its session and,
      // before qemu connects, stays blocked waiting for it
      const argv = [helper, String(process.pid), String(constants.signals.SIGKILL), String(DAEMON_SOCKET_FD), ...d.argv];
      const child = spawn(argv[0]!, argv.slice(1), { stdio });
      const p = { child, argv: d.argv, stderr: '', closed: false, failed: false };
      procs.push(p);
      child.stderr?.on('data', (b: Buffer) => {
        p.stderr = (p.stderr + b.toString('utf8')).slice(-4000);
      });
      child.on('error', (err) => {
        // could not start (mkt-exec missing, say): 'close' may never come
        p.stderr += err.message;
        p.closed = true;
        if (!ended) fail(p);
      });
      // close: after its stderr is all read, so the report has its last words
      child.on('close', (code, signal) => {
        const wasClosed = p.closed;
        p.closed = true;
        if (!ended && !wasClosed && (code !== 0 || signal)) fail(p);
      });
    });
    // the daemons hold the sockets now
    closeServers();
  };
  return daemons;
}
