/**
 * execute: start qemu for a plan, talk to mkt-init over the inherited
 * socketpairs, stream the command's stdio, and make sure qemu is gone before
 * returning. No decisions beyond what the plan says.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { constants } from 'node:os';
import type { Daemons } from './daemons.js';
import type { AdoptedProcess } from './fast-start.js';
import { FD, type RunPlan } from './types.js';

/** How a run ended. */
export type Outcome =
  | { readonly kind: 'exit'; readonly code: number }
  | { readonly kind: 'timeout'; readonly seconds: number }
  | { readonly kind: 'signal'; readonly signal: NodeJS.Signals }
  /** Interactive: qemu ended cleanly without a report from mkt-init (Ctrl-A x). */
  | { readonly kind: 'quit' }
  /** KVM gave no sign of life, or qemu failed at KVM setup (only reported when the caller asked to watch). */
  | { readonly kind: 'kvm-dead'; readonly reason: string }
  /** A daemon (virtiofsd) failed before the guest came up; the reason carries its argv and stderr. */
  | { readonly kind: 'daemon-failed'; readonly reason: string }
  | { readonly kind: 'failed'; readonly reason: string; readonly console: string; readonly qemuStderr: string };

/**
 * When each phase of a run ended, in ms since mkt started (performance.now(), plus originMs
 * where bin/mkt's launcher started first).
 * Guest times come in ms since the guest kernel started; offset maps them.
 */
export interface BootTrace {
  qemuStarted?: number;
  /** the daemons (virtiofsd) started, after qemu */
  daemonsStarted?: number;
  /** host ms minus guest ms: the least over mkt-init's timed lines (the error is the quickest one's travel time) */
  offset?: number;
  guestInit?: number;
  guestRoot?: number;
  guestCommand?: number;
  guestCommandEnd?: number;
  vmGone?: number;
}

export interface ExecuteOptions {
  /** Filled in as the run goes. */
  readonly trace?: BootTrace;
  readonly timeout?: number;
  /** Copy the serial console to stderr as it arrives. */
  readonly verbose: boolean;
  /** With KVM: how long to wait for mkt-init's hello before calling KVM dead. */
  readonly kvmLifeBoundMs?: number;
  /** mkt-exec: qemu is started through it, so it dies with mkt even on SIGKILL. */
  readonly helper: string;
  /** The daemons serving the VM, their sockets bound: started right after qemu, killed with it. */
  readonly daemons?: Daemons;
  readonly onAlive?: () => void;
  /** qemu as bin/mkt's launcher started it, from the plan (see fast-start.ts), and when (ms since mkt started). */
  readonly adopted?: { readonly qemu: AdoptedProcess; readonly spawnedAt: number; readonly daemonsAt: number } | undefined;
  /** ms from mkt's start (the launcher's) to this process's performance.now() origin. */
  readonly originMs?: number;
  /** Called once when mkt-init has not said hello after slowNoticeMs. */
  readonly slowNoticeMs?: number;
  readonly onSlow?: (ms: number) => void;
}

/** Keeps the last LIMIT bytes of a stream. */
class Tail {
  private chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly limit: number) {}
  push(b: Buffer): void {
    this.chunks.push(b);
    this.size += b.length;
    while (this.size - (this.chunks[0]?.length ?? 0) >= this.limit) this.size -= this.chunks.shift()!.length;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
  /** About the last N bytes (whole chunks), cheaply. */
  last(n: number): string {
    let i = this.chunks.length;
    for (let got = 0; i > 0 && got < n; ) got += this.chunks[--i]!.length;
    return Buffer.concat(this.chunks.slice(i)).toString('utf8');
  }
}

/** How long a qemu that failed early waits for a daemon's failure to show (see the 'close' handler). */
const DAEMON_SETTLE_MS = 200;

/**
 * How long a daemon may take to accept qemu's connection (virtiofsd takes milliseconds) before
 * the run gives up on it: well within the KVM guest's bound for a sign of life (10 s), so a
 * stuck daemon is never taken for a dead KVM.
 */
const DAEMON_ACCEPT_MS = 5_000;

/** The kernel's last words when it halts (kernel/reboot.c), a power-off without the means included. */
const HALTED = /reboot: (System halted|Power down)/;

/** qemu's words for a vhost-user socket nobody listens on any more (its daemon ended): the socket's path. */
const REFUSED = /Failed to connect to '([^']+)': Connection refused/;

/** qemu's own words when KVM itself fails (not any path that happens to contain "kvm"). */
const KVM_FAILURE = /failed to initialize kvm|Could not access KVM|KVM_[A-Z_]+ failed|kvm_init_vcpu|target\/i386\/kvm\/|failed to set MSR|kvm: (error|failed)/i;

/** Lines of a text that match the signs of a guest kernel panic. */
export function panicked(console: string): boolean {
  return /Kernel panic - not syncing|Attempted to kill init/.test(console);
}

/** Run the plan to its end. */
export function execute(plan: RunPlan, opts: ExecuteOptions): Promise<Outcome> {
  const exec = plan.mode === 'exec';
  const stdio: ('pipe' | 'inherit' | 'ignore')[] = exec
    ? ['ignore', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe', 'pipe']
    : ['inherit', 'inherit', 'pipe', 'pipe'];
  const argv = [opts.helper, String(process.pid), String(constants.signals.SIGTERM), '-1', ...plan.argv];

  const now = (): number => performance.now() + (opts.originMs ?? 0);
  return new Promise<Outcome>((resolve) => {
    let child: ChildProcess;
    try {
      if (opts.adopted) {
        // started as spawn() below would have (its own process group, stdio, parent-death signal), and
        // with what execute uses of a ChildProcess
        child = opts.adopted.qemu as unknown as ChildProcess;
        if (opts.trace) opts.trace.qemuStarted = opts.adopted.spawnedAt;
      } else {
        // exec mode: own process group, so a Ctrl-C reaches mkt (which stops qemu) rather than qemu alone;
        // shell mode: qemu must stay in the terminal's foreground group to read it.
        child = spawn(argv[0]!, argv.slice(1), { stdio, detached: exec });
        if (opts.trace) opts.trace.qemuStarted = now();
      }
    } catch (err) {
      resolve({ kind: 'failed', reason: `cannot start ${argv[0]}: ${(err as Error).message}`, console: '', qemuStderr: '' });
      return;
    }
    const sock = (fd: number): Socket => child.stdio[fd] as Socket;
    const consoleTail = new Tail(64 * 1024);
    const stderrTail = new Tail(16 * 1024);
    let outcome: Outcome | undefined;
    let alive = false;
    let exitReport: { code: number; out: number; err: number } | undefined;
    let outBytes = 0;
    let errBytes = 0;
    let acked = false;
    const timers: NodeJS.Timeout[] = [];
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];

    /** Run FN after MS unless qemu is gone by then; an unref'd timer does not keep mkt up on its own. */
    const later = (ms: number, fn: () => void, unref = true): void => {
      const t = setTimeout(fn, ms);
      if (unref) t.unref();
      timers.push(t);
    };
    const running = (): boolean => child.exitCode === null && child.signalCode === null;
    const end = (signal: NodeJS.Signals): void => {
      // before the guest is up, qemu may be blocked on a daemon's socket, heeding no signal: with
      // the daemons gone (they matter no more) its connection fails and it ends itself
      if (!alive) opts.daemons?.kill();
      if (running()) {
        child.kill(signal);
        later(3000, () => child.kill('SIGKILL'));
      }
    };
    const stop = (o: Outcome, signal: NodeJS.Signals = 'SIGTERM'): void => {
      outcome ??= o;
      end(signal);
    };
    const onSignal = (sig: NodeJS.Signals): void => stop({ kind: 'signal', signal: sig });
    for (const s of signals) process.on(s, onSignal);
    // whatever ends mkt (an uncaught error included), qemu goes with it
    const onExit = (): void => void child.kill('SIGKILL');
    const onResize = (): void => void sock(FD.ctl).write(`winsize ${process.stdout.rows} ${process.stdout.columns}\n`);
    process.on('exit', onExit);

    child.on('error', (err) => {
      outcome ??= { kind: 'failed', reason: `cannot start ${argv[0]}: ${err.message}`, console: '', qemuStderr: '' };
    });

    // The daemons, now that qemu is started and watched. One that fails before the guest is up
    // takes qemu with it (qemu waits on its socket); the outcome is decided once qemu is gone, in
    // ending(), as qemu may have failed first. Interactively, SIGTERM: qemu restores the terminal.
    // One that ends while the guest runs leaves its mount hanging: end the run, once qemu has not
    // ended within a moment (a daemon also ends when qemu, its client, goes first).
    let daemonFailed = false;
    let daemonWhy = '';
    // one that never serves (it never accepts qemu's connection) would hold qemu before the guest starts
    if (opts.daemons) {
      const daemons = opts.daemons;
      later(DAEMON_ACCEPT_MS, () => {
        if (alive || outcome || !running()) return;
        const stuck = daemons.unserved();
        if (!stuck) return;
        daemonFailed = true;
        daemonWhy = `not serving after ${DAEMON_ACCEPT_MS / 1000} s (qemu's connection never accepted):\n${stuck}`;
        // end() kills the daemons first, as the guest is not up: qemu, blocked on the handshake,
        // heeds no SIGTERM, but its connection then fails and it ends itself (restoring the terminal)
        end(exec ? 'SIGKILL' : 'SIGTERM');
      });
    }
    try {
      opts.daemons?.start((why) => {
        if (alive) {
          later(DAEMON_SETTLE_MS, () => running() && stop({ kind: 'failed', reason: `virtiofsd ended while the VM ran; the guest's files there are gone:\n${why}`, console: '', qemuStderr: '' }, exec ? 'SIGKILL' : 'SIGTERM'));
          return;
        }
        daemonFailed = true;
        end(exec ? 'SIGKILL' : 'SIGTERM');
      }, running);
    } catch (err) {
      stop({ kind: 'failed', reason: `cannot start virtiofsd: ${(err as Error).message}`, console: '', qemuStderr: '' }, 'SIGKILL');
    }
    if (opts.trace) opts.trace.daemonsStarted = opts.adopted ? opts.adopted.daemonsAt : now();
    child.stderr?.on('data', (b: Buffer) => {
      stderrTail.push(b);
      if (!exec) process.stderr.write(b);
    });
    child.stdout?.on('data', (b: Buffer) => stderrTail.push(b));

    // Acknowledge once every byte the guest counted has arrived; mkt-init then powers off.
    const maybeAck = (): void => {
      if (!exitReport || acked) return;
      if (outBytes < exitReport.out || errBytes < exitReport.err) return;
      acked = true;
      outcome ??= { kind: 'exit', code: exitReport.code };
      sock(FD.ctl).write('bye\n');
      // mkt-init synced before it reported, and the root is throw-away: with --exec end qemu
      // now rather than wait for the guest's reboot path (about a tenth of a second under TCG);
      // qemu holds no terminal to restore then. Interactively, the guest's reboot ends qemu,
      // which restores the terminal and leaves no "terminating on signal" line on it.
      if (exec) {
        stop({ kind: 'exit', code: exitReport.code }, 'SIGKILL');
        // the daemons die in parallel with qemu, not after it
        opts.daemons?.kill();
      } else {
        later(3000, () => stop({ kind: 'exit', code: exitReport!.code }));
      }
    };

    // host ms minus guest ms: each timed line (sent at guest time G) bounds it from above by its
    // travel time; the least is the truest (a line mkt read late, while Node.js started, says little)
    const seen = (guestMs: number | undefined): void => {
      const trace = opts.trace;
      if (!trace || guestMs === undefined || !Number.isFinite(guestMs)) return;
      const o = now() - guestMs;
      trace.offset = trace.offset === undefined ? o : Math.min(trace.offset, o);
    };
    let ctlBuf = '';
    const ctl = sock(FD.ctl);
    ctl.on('error', () => {});
    ctl.on('data', (b: Buffer) => {
      ctlBuf += b.toString('utf8');
      let nl: number;
      while ((nl = ctlBuf.indexOf('\n')) >= 0) {
        const line = ctlBuf.slice(0, nl);
        ctlBuf = ctlBuf.slice(nl + 1);
        const words = line.split(' ');
        const trace = opts.trace;
        if (words[0] === 'hello') {
          alive = true;
          if (!exec && process.stdout.isTTY) {
            // the guest shell follows the terminal's size (SIGWINCH on hvc0)
            process.stdout.on('resize', onResize);
          }
          // the spec goes out once mkt-init asks, led by the host's clock: the guest's own comes
          // from the emulated RTC, whole seconds behind, which would date files in the future
          ctl.write(Buffer.concat([Buffer.from(`time=${Date.now()}\0`), plan.spec]));
          if (trace) {
            seen(Number(words[2]));
            trace.guestInit = Number(words[1]);
          }
          startStdin();
          opts.onAlive?.();
        } else if (words[0] === 'ready') {
          if (trace) [trace.guestRoot, trace.guestCommand] = [Number(words[1]), Number(words[2])];
          seen(Number(words[2]));
        } else if (words[0] === 'exit') {
          const [code, out, err, tCmd, tEnd] = words.slice(1).map(Number);
          exitReport = { code: code ?? 125, out: out ?? 0, err: err ?? 0 };
          if (trace) [trace.guestCommand, trace.guestCommandEnd] = [tCmd, tEnd];
          seen(tEnd);
          maybeAck();
        } else if (line.startsWith('error ')) {
          outcome ??= { kind: 'failed', reason: `mkt-init: ${line.slice(6)}`, console: '', qemuStderr: '' };
        }
      }
    });

    if (exec) {
      const serial = sock(FD.serial);
      serial.on('error', () => {});
      serial.on('data', (b: Buffer) => {
        consoleTail.push(b);
        if (opts.verbose) process.stderr.write(b);
        // a halt, or a power-off the machine cannot do (no ACPI), leaves qemu running a stopped
        // guest for good: that is the guest's end (mkt-init itself always reboots, ending qemu)
        const halted = !outcome && !exitReport ? HALTED.exec(consoleTail.last(512)) : null;
        if (halted) stop({ kind: 'failed', reason: `the guest ended before the command did (its kernel: "${halted[0]}")`, console: '', qemuStderr: '' }, 'SIGKILL');
      });
      const pump = (from: Socket, to: NodeJS.WriteStream, count: (n: number) => void): void => {
        let broken = false;
        // a reader that went away (mkt -e ... | head): stop, as a pipeline's writer would
        to.on('error', (err: NodeJS.ErrnoException) => {
          broken = true;
          from.resume();
          if (err.code !== 'EPIPE') {
            stop({ kind: 'failed', reason: `cannot write output: ${err.message}`, console: '', qemuStderr: '' });
            return;
          }
          // As in a shell pipeline: a command that had finished writing when the reader left keeps
          // its status (its report may trail its output a little); one still writing a second later
          // ends as a writer killed by SIGPIPE.
          later(1000, () => !exitReport && stop({ kind: 'signal', signal: 'SIGPIPE' }));
        });
        from.on('error', () => {});
        from.on('data', (b: Buffer) => {
          count(b.length);
          if (!broken && !to.write(b)) {
            from.pause();
            to.once('drain', () => from.resume());
          }
          maybeAck();
        });
      };
      pump(sock(FD.stdout), process.stdout, (n) => (outBytes += n));
      pump(sock(FD.stderr), process.stderr, (n) => (errBytes += n));
    }
    // stdin: forwarded with its EOF (a half-close, which qemu turns into EOF in the guest),
    // from mkt-init's hello on, so an attempt that never booted (dead KVM) consumes none of it
    const input = exec ? sock(FD.stdin) : undefined;
    input?.on('error', () => {});
    const onStdinError = (): void => void input?.end();
    const startStdin = (): void => {
      if (!input) return;
      process.stdin.on('error', onStdinError);
      process.stdin.pipe(input);
    };

    if (opts.timeout !== undefined) {
      const seconds = opts.timeout;
      later(seconds * 1000, () => stop({ kind: 'timeout', seconds }), false);
    }
    if (opts.kvmLifeBoundMs !== undefined) {
      const ms = opts.kvmLifeBoundMs;
      // not while qemu waits on a daemon that does not serve: that is the daemon's failure (see above)
      later(ms, () => !alive && !daemonFailed && !opts.daemons?.unserved() && stop({ kind: 'kvm-dead', reason: `the KVM guest showed no sign of life within ${ms / 1000} s` }), false);
    }

    if (opts.slowNoticeMs !== undefined && opts.onSlow) {
      const ms = opts.slowNoticeMs;
      const cb = opts.onSlow;
      later(ms, () => !alive && !outcome && cb(ms), false);
    }

    // the end of the run for mkt: no timer, signal handler or stdin relay outlives it
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      if (opts.trace) opts.trace.vmGone = now();
      for (const t of timers) clearTimeout(t);
      for (const s of signals) process.off(s, onSignal);
      process.stdout.off('resize', onResize);
      if (input) {
        process.stdin.unpipe(input);
        process.stdin.off('error', onStdinError);
        process.stdin.pause();
      }
    };
    child.on('close', (code, signal) => {
      release();
      process.off('exit', onExit);
      // qemu failing before the guest came up may be a daemon's failure showing first (qemu
      // read EOF on its socket): give the daemons a moment to tell, unless KVM itself failed
      const kvmFailed = opts.kvmLifeBoundMs !== undefined && KVM_FAILURE.test(stderrTail.text());
      const daemonsSay = !outcome && !alive && !kvmFailed && opts.daemons && !daemonWhy ? opts.daemons.settle(daemonFailed ? 0 : DAEMON_SETTLE_MS) : Promise.resolve('');
      void daemonsSay.then((failed) => {
        // qemu found a daemon's socket closed (refused): that daemon had ended first, whatever it said, and
        // its end is the reason, though both ends reached mkt together and qemu's was told first
        const refused = !outcome && !alive && opts.daemons ? REFUSED.exec(stderrTail.text()) : null;
        const why = daemonWhy || failed || (refused ? opts.daemons!.blame(refused[1]!) : '');
        if (why) outcome ??= { kind: 'daemon-failed', reason: why };
        resolve(ending(code, signal));
      });
    });

    const ending = (code: number | null, signal: NodeJS.Signals | null): Outcome => {
      const stderrText = stderrTail.text();
      if (!outcome && !alive && opts.kvmLifeBoundMs !== undefined && KVM_FAILURE.test(stderrText)) {
        outcome = { kind: 'kvm-dead', reason: `qemu failed at KVM setup: ${lastLine(stderrText)}` };
      }
      if (!outcome && !exec && code === 0) outcome = { kind: 'quit' };
      if (!outcome) {
        const consoleText = consoleTail.text();
        const how = signal ? `was killed by ${signal}` : `exited with status ${code}`;
        const initSaid = initFailure(consoleText);
        const reason = panicked(consoleText)
          ? 'the guest kernel panicked'
          : initSaid
            ? initSaid
            : alive
              ? `the guest ended before the command did (qemu ${how})`
              : `qemu ${how} before the guest started`;
        outcome = { kind: 'failed', reason, console: consoleText, qemuStderr: stderrText };
      } else if (outcome.kind === 'failed') {
        outcome = { ...outcome, console: consoleTail.text(), qemuStderr: stderrText };
      }
      return outcome;
    };
  });
}

/** mkt-init's own last word on the console when it gave up before it could reach mkt (it had no port yet). */
export function initFailure(consoleText: string): string | undefined {
  const said = [...consoleText.matchAll(/^mkt-init: (.*)$/gm)].pop()?.[1]?.trim();
  if (!said) return undefined;
  if (/virtio port mkt\.ctl did not appear/.test(said)) {
    return `mkt-init: ${said}: the kernel has no virtio console (CONFIG_VIRTIO_CONSOLE); a kernel that has it as a module needs its modules: pass its tree or installed release rather than a bare bzImage`;
  }
  return `mkt-init: ${said}`;
}

function lastLine(text: string): string {
  return text.trim().split('\n').pop() ?? '';
}
