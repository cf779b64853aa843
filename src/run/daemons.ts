/** The helper daemons a run needs (virtiofsd): their sockets, their start alongside qemu, and their end. */
import { type ChildProcess, spawn } from 'node:child_process';
import { fstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { InternalError } from '../errors.js';
import { createServer, type Server } from 'node:net';
import { constants } from 'node:os';
import { DAEMON_SOCKET_FD } from '../qemu/args.js';
import { shellQuote } from '../qemu/escape.js';
import type { AdoptedProcess } from './fast-start.js';
import type { RunPlan } from './types.js';

/** A run's daemons: sockets bound by prepareDaemons, processes started by start(). */
export interface Daemons {
  /**
   * Start each daemon on its socket (qemu may be connecting already: its
   * connection waits in the socket's backlog). ONFAIL hears, once, of a
   * daemon that failed before kill() or stop(): it could not start, it
   * ended with an error, or it ended at all while VM_RUNNING() still said
   * yes (virtiofsd ends with status 0 once qemu, its client, has gone).
   */
  start(onFail: (why: string) => void, vmRunning: () => boolean): void;
  /** Send each one SIGKILL now, not waiting: qemu is being ended too. */
  kill(): void;
  /** Kill them, wait for their end, and remove the run directory. */
  stop(): Promise<void>;
  /** The failures, waiting up to MS for daemons still running to show one (qemu failing first, say). */
  settle(ms: number): Promise<string>;
  /** Daemons running but still not serving (they have not accepted qemu's connection), for a report; '' when none. */
  unserved(): string;
  /** The report of the daemon whose socket is SOCKET (qemu found it closed: the daemon had ended), as it stands; '' when none is. */
  blame(socket: string): string;
}

/** The daemons' sockets could not be made; the message says why. */
export class DaemonError extends Error {
  override readonly name = 'DaemonError';
}

/** How long after a daemon exits its stderr may stay open (its last words) before its exit counts alone. */
const EXIT_GRACE_MS = 50;

/** The longest path a Unix socket address holds (sun_path, with its NUL). */
const SOCKET_PATH_MAX = 107;

/**
 * Make the run directory and bind each daemon's socket in it, listening:
 * done before qemu starts, which connects at once, while the daemons start
 * after it, on these sockets (virtiofsd's --fd), so neither waits for the
 * other. mkt never accepts on them: start() hands them over and closes its
 * own descriptors within the same turn of the event loop. HELPER is mkt-exec
 * (the parent-death signal, and blocking mode for the socket). ADOPTED:
 * the daemons bin/mkt's launcher started from this very plan, on sockets it
 * bound (see fast-start.ts), which start() takes over instead.
 */
export function prepareDaemons(plan: RunPlan, helper: string, adopted?: { readonly daemons: readonly AdoptedProcess[]; readonly inodes: readonly number[] }): Daemons {
  const runDir = plan.runDir;
  const procs: { child: ChildProcess; argv: readonly string[]; stderr: string; closed: boolean; failed: boolean; status: string }[] = [];
  let ended = false;
  let servers: Server[] = [];
  const closeServers = (): void => {
    for (const s of servers) s.close();
    servers = [];
  };
  const kill = (): void => {
    ended = true;
    closeServers();
    for (const p of procs) {
      if (p.closed || !p.child?.pid) continue;
      // the daemon's whole process group (its own): a wrapper's children go with it
      try {
        process.kill(-p.child.pid, 'SIGKILL');
      } catch {
        p.child.kill('SIGKILL');
      }
    }
  };
  /** A daemon for a report: its argv, how it stands (its exit status, say), its stderr. */
  const report = (p: (typeof procs)[number], status?: string): string =>
    `${p.argv.map(shellQuote).join(' ')}${status ? ` (${status})` : ''}:\n${p.stderr.trim() || '(nothing on stderr)'}`;
  const failures = (): string =>
    procs
      .filter((p) => p.failed)
      .map((p) => report(p, p.status))
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
  // A daemon serves once it has accepted qemu's connection: a socket among its descriptors past
  // stdio (Node's stdio pipes are sockets too) besides the listening one, as /proc shows; in it or
  // in a process of its group (a wrapper that runs the daemon without exec). One whose group has
  // ended (zombies, their descriptors gone) is left to its 'close', which reports its status.
  const inodes: number[] = [];
  const sockets = (pid: number): string[] => {
    try {
      return readdirSync(`/proc/${pid}/fd`)
        .filter((f) => Number(f) > 2)
        .map((f) => {
          try {
            return readlinkSync(`/proc/${pid}/fd/${f}`);
          } catch {
            return '';
          }
        })
        .filter((l) => l.startsWith('socket:'));
    } catch {
      return [];
    }
  };
  /** The live processes of a daemon's process group (its own, led by it): a wrapper's children too. */
  const group = (pgid: number): number[] => {
    const out: number[] = [];
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      try {
        // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after the last ')'
        const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
        const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        if (Number(pgrp) === pgid && state !== 'Z') out.push(Number(e));
      } catch {
        // gone meanwhile
      }
    }
    return out;
  };
  const unserved = (): string =>
    procs
      .filter((p, i) => {
        if (p.closed || !p.child.pid) return false;
        const pids = group(p.child.pid);
        return pids.length > 0 && !pids.some((pid) => sockets(pid).some((l) => l !== `socket:[${inodes[i]}]`));
      })
      .map((p) => report(p))
      .join('\n');
  const blame = (socket: string): string => {
    const i = plan.daemons.findIndex((d) => d.socket === socket);
    const p = procs[i];
    return p ? report(p, p.status) : '';
  };
  const daemons: Daemons = { start: () => {}, kill, stop, settle, unserved, blame };
  if (!plan.daemons.length || !runDir) return daemons;

  // private: only this user may reach the sockets (whoever connects gets the shared tree)
  // a longer path would be cut short (libuv truncates it), and the socket made elsewhere
  const long = plan.daemons.find((d) => Buffer.byteLength(d.socket) > SOCKET_PATH_MAX);
  if (long) {
    throw new DaemonError(`virtiofsd's socket ${long.socket} would be longer than the ${SOCKET_PATH_MAX} bytes a Unix socket path may have: set TMPDIR to a shorter directory`);
  }
  const fds: number[] = [];
  // the launcher bound them already
  if (adopted) inodes.push(...adopted.inodes);
  else {
    try {
      mkdirSync(runDir, { mode: 0o700 });
      plan.daemons.forEach((d, i) => {
        if (d.dir) mkdirSync(d.dir);
        // Node's listen() on a path binds and listens before it returns; its close() unlinks the
        // path it bound, so bind under a scratch name (no longer than the socket's) and rename:
        // the socket stays where qemu looks
        const scratch = join(runDir, `${i}.b`);
        const server = createServer();
        let failed: Error | undefined;
        server.on('error', (err) => (failed ??= err));
        server.listen(scratch);
        // the listening descriptor, for the daemon's DAEMON_SOCKET_FD (Node has no public accessor)
        const fd = (server as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
        if (failed || typeof fd !== 'number' || fd < 0) throw failed ?? new InternalError(`no descriptor for the listening socket ${scratch}`);
        renameSync(scratch, d.socket);
        servers.push(server);
        fds.push(fd);
        inodes.push(fstatSync(fd).ino);
      });
    } catch (err) {
      closeServers();
      rmSync(runDir, { recursive: true, force: true });
      if (err instanceof InternalError) throw err;
      throw new DaemonError(`cannot make virtiofsd's socket in ${runDir}: ${(err as Error).message}`);
    }
  }

  // No turn of the event loop may come between here and start(): libuv would accept qemu's
  // connection on the listening sockets itself (run.ts calls execute() at once, which spawns
  // qemu and calls start() in the same turn).
  daemons.start = (onFail, vmRunning) => {
    let told = false;
    const fail = (p: (typeof procs)[number]): void => {
      p.failed = true;
      if (!told) onFail(failures());
      told = true;
    };
    plan.daemons.forEach((d, i) => {
      const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', 'ignore', 'pipe'];
      while (stdio.length < DAEMON_SOCKET_FD) stdio.push('ignore');
      stdio[DAEMON_SOCKET_FD] = fds[i]!;
      // SIGKILL when mkt dies, as virtiofsd takes SIGTERM for a request to end its session and,
      // before qemu connects, stays blocked waiting for it
      const argv = [helper, String(process.pid), String(constants.signals.SIGKILL), String(DAEMON_SOCKET_FD), ...d.argv];
      const p = { child: undefined as unknown as ChildProcess, argv: d.argv, stderr: '', closed: false, failed: false, status: 'did not start' };
      procs.push(p);
      try {
        // its own process group, so that mkt can end whatever it started too (as the launcher does)
        p.child = adopted ? (adopted.daemons[i] as unknown as ChildProcess) : spawn(argv[0]!, argv.slice(1), { stdio, detached: true });
      } catch (err) {
        p.stderr = (err as Error).message;
        p.closed = true;
        fail(p);
        return;
      }
      p.child.stderr?.on('data', (b: Buffer) => {
        p.stderr = (p.stderr + b.toString('utf8')).slice(-4000);
      });
      p.child.on('error', (err) => {
        // could not start (mkt-exec missing, say): 'close' may never come
        p.stderr += err.message;
        p.closed = true;
        if (!ended) fail(p);
      });
      // close: after its stderr is all read, so the report has its last words; but a process it
      // left behind (a wrapper's child in the background) may hold stderr open for good, so its
      // exit decides too, a moment later
      // (whether qemu still ran is judged when the daemon exited: qemu may end right after it,
      // its socket gone, before the report)
      let qemuRan: boolean | undefined;
      const closed = (code: number | null, signal: NodeJS.Signals | null): void => {
        const wasClosed = p.closed;
        p.closed = true;
        p.status = signal ? `killed by ${signal}` : `exited with status ${code}`;
        if (!ended && !wasClosed && (code !== 0 || signal || (qemuRan ?? vmRunning()))) fail(p);
      };
      p.child.on('close', closed);
      // (unless processes of its group live on: a wrapper that left the daemon running, which
      // unserved() judges, and whose end closes stderr)
      p.child.on('exit', (code, signal) => {
        qemuRan = vmRunning();
        // one mkt ended itself needs no judging (nor a scan of /proc)
        if (ended) return;
        setTimeout(() => !group(p.child.pid!).length && closed(code, signal), EXIT_GRACE_MS).unref();
      });
    });
    // the daemons hold the sockets now
    closeServers();
  };
  return daemons;
}
