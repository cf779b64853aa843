/**
 * Fast start: Node.js takes some 40 ms to start before mkt can spawn
 * anything. So a `mkt run --exec` that booted records its plan (qemu's and
 * the daemons' argv, what they need) under a key of its command line and
 * directory; the next start of the same command line finds it in
 * mkt-start, the C launcher bin/mkt runs (src/host-helper/mkt-start.c),
 * which starts those processes at once through a keeper process while
 * Node.js starts. mkt then makes its plan as always and adopts them only
 * where that plan is the very same; else it kills them and starts its own.
 * So the launcher decides nothing: a stale record costs a wasted start,
 * never a wrong run.
 */
import { EventEmitter } from 'node:events';
import { closeSync, mkdirSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { constants } from 'node:os';
import { join } from 'node:path';
import type { RunPlan } from './types.js';

/** The record's first word, which mkt-start checks. */
const VERSION = 'mkt-start 1';
/** Stands for the run directory in a record's argv (its name differs each run). */
const RUN_DIR_MARK = '\x01';
/** At most this many records are kept (one per command line and directory); the oldest go. */
const KEEP_RECORDS = 32;

/** What a record holds. */
export interface FastStartRecord {
  readonly cwd: string;
  readonly args: readonly string[];
  /** Whether stdin, stdout and stderr were terminals: y or n each. */
  readonly tty: string;
  /** The MKT_ variables set, NAME=VALUE. */
  readonly env: readonly string[];
  /** Files the processes read as they start. */
  readonly needs: readonly string[];
  /** Where the run directory goes (TMPDIR). */
  readonly tmp: string;
  /** argv, the run directory as RUN_DIR_MARK. */
  readonly qemu: readonly string[];
  readonly daemons: readonly { readonly socket: string; readonly dir: string; readonly argv: readonly string[] }[];
}

/** The record's file name: FNV-1a (64 bits) over the directory and each argument, each with its NUL, in hex (as mkt-start computes it). */
export function fastStartKey(cwd: string, args: readonly string[]): string {
  let h = 0xcbf29ce484222325n;
  for (const s of [cwd, ...args]) {
    for (const b of [...Buffer.from(s, 'utf8'), 0]) {
      h ^= BigInt(b);
      h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
    }
  }
  return h.toString(16).padStart(16, '0');
}

/** Whether a plan's processes can be recorded: none of their words holds the mark itself. */
export function recordable(plan: RunPlan): boolean {
  return ![...plan.argv, ...plan.daemons.flatMap((d) => [...d.argv, d.socket, d.dir ?? ''])].some((w) => w.includes(RUN_DIR_MARK));
}

/** The plan's processes as a record has them: the run directory replaced by its mark. */
export function planProcesses(plan: RunPlan): Pick<FastStartRecord, 'qemu' | 'daemons'> {
  const dir = plan.runDir;
  const mark = (s: string): string => (dir ? s.split(dir).join(RUN_DIR_MARK) : s);
  return {
    qemu: plan.argv.map(mark),
    daemons: plan.daemons.map((d) => ({ socket: mark(d.socket), dir: mark(d.dir ?? ''), argv: d.argv.map(mark) })),
  };
}

/** The record as mkt-start reads it: words each ending with a NUL; undefined when a word could not be written so. */
export function encodeFastStart(r: FastStartRecord): Buffer | undefined {
  const words: string[] = [VERSION, 'cwd', r.cwd, 'args', String(r.args.length), ...r.args, 'tty', r.tty];
  for (const e of r.env) words.push('env', e);
  for (const n of r.needs) words.push('need', n);
  words.push('tmp', r.tmp, 'qemu', String(r.qemu.length), ...r.qemu);
  for (const d of r.daemons) words.push('daemon', d.socket, d.dir, String(d.argv.length), ...d.argv);
  words.push('end');
  // a NUL cannot be written; the mark only where it stands for the run directory (in the argv)
  if (words.some((w) => w.includes('\0')) || [r.cwd, ...r.args, ...r.env, ...r.needs, r.tmp].some((w) => w.includes(RUN_DIR_MARK))) return undefined;
  return Buffer.from(words.map((w) => `${w}\0`).join(''), 'utf8');
}

/** A record read back (for the comparison with mkt's own plan); undefined when it is not one. */
export function decodeFastStart(b: Buffer): FastStartRecord | undefined {
  const w = b.toString('utf8').split('\0');
  if (w.pop() !== '' || w[0] !== VERSION) return undefined;
  let i = 1;
  const r = { cwd: '', args: [] as string[], tty: '', env: [] as string[], needs: [] as string[], tmp: '', qemu: [] as string[], daemons: [] as FastStartRecord['daemons'][number][] };
  const take = (n: number): string[] => {
    if (!(n >= 0) || i + n > w.length) throw new Error('short');
    return w.slice(i, (i += n));
  };
  try {
    for (;;) {
      const k = take(1)[0];
      if (k === 'end') return r;
      if (k === 'cwd') r.cwd = take(1)[0]!;
      else if (k === 'args') r.args = take(Number(take(1)[0]));
      else if (k === 'tty') r.tty = take(1)[0]!;
      else if (k === 'env') r.env.push(take(1)[0]!);
      else if (k === 'need') r.needs.push(take(1)[0]!);
      else if (k === 'tmp') r.tmp = take(1)[0]!;
      else if (k === 'qemu') r.qemu = take(Number(take(1)[0]));
      else if (k === 'daemon') {
        const [socket, dir, n] = take(3);
        r.daemons.push({ socket: socket!, dir: dir!, argv: take(Number(n)) });
      } else return undefined;
    }
  } catch {
    return undefined;
  }
}

/** Whether a record's processes are the plan's own. */
export function sameProcesses(a: Pick<FastStartRecord, 'qemu' | 'daemons'>, b: Pick<FastStartRecord, 'qemu' | 'daemons'>): boolean {
  const eq = (x: readonly string[], y: readonly string[]): boolean => x.length === y.length && x.every((v, i) => v === y[i]);
  return eq(a.qemu, b.qemu) && a.daemons.length === b.daemons.length && a.daemons.every((d, i) => d.socket === b.daemons[i]!.socket && d.dir === b.daemons[i]!.dir && eq(d.argv, b.daemons[i]!.argv));
}

/** Signal numbers to names, the first name of each (SIGABRT, not SIGIOT), as a ChildProcess reports them. */
const SIGNAL_NAMES = new Map<number, NodeJS.Signals>();
for (const [name, n] of Object.entries(constants.signals)) if (!SIGNAL_NAMES.has(n)) SIGNAL_NAMES.set(n, name as NodeJS.Signals);

/**
 * A process the keeper started, to mkt as a spawned child is: its pid,
 * stdio, 'exit' and 'close' (once it has exited and all its stdio sockets
 * have closed, as a ChildProcess waits for its pipes), kill(). Its events
 * wait until it is adopted (release()): it may end before anyone listens.
 */
export class AdoptedProcess extends EventEmitter {
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  readonly stdout: Socket | null;
  readonly stderr: Socket | null;
  private open = 0;
  private held: (() => void)[] | undefined = [];
  constructor(
    readonly pid: number,
    readonly stdio: (Socket | null)[],
  ) {
    super();
    this.stdout = stdio[1] ?? null;
    this.stderr = stdio[2] ?? null;
    for (const s of stdio) {
      if (!s) continue;
      this.open++;
      s.on('close', () => {
        this.open--;
        this.maybeClose();
      });
    }
  }
  /** Its events from now on, those held first (on the next tick: the caller attaches its listeners first). */
  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    process.nextTick(() => held.forEach((f) => f()));
  }
  private tell(f: () => void): void {
    if (this.held) this.held.push(f);
    else f();
  }
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (this.exitCode !== null || this.signalCode !== null) return false;
    try {
      process.kill(this.pid, signal);
      return true;
    } catch {
      return false;
    }
  }
  /** The keeper reaped it. */
  exited(code: number, signal: number): void {
    if (this.exitCode !== null || this.signalCode !== null) return;
    if (signal) this.signalCode = SIGNAL_NAMES.get(signal) ?? 'SIGKILL';
    else this.exitCode = code;
    const [c, sig] = [this.exitCode, this.signalCode];
    this.tell(() => {
      this.emit('exit', c, sig);
      // as a ChildProcess does at its exit: a socket nobody reads is drained, so it ends and closes
      for (const s of this.stdio) if (s && s.listenerCount('data') === 0) s.resume();
    });
    this.maybeClose();
  }
  private closed = false;
  private maybeClose(): void {
    if (this.closed || this.open > 0 || (this.exitCode === null && this.signalCode === null)) return;
    this.closed = true;
    const [c, sig] = [this.exitCode, this.signalCode];
    this.tell(() => this.emit('close', c, sig));
  }
}

/** What mkt-start started, and what became of it. */
export interface FastStart {
  /** The run directory the keeper made (the daemons' sockets are in it). */
  readonly runDir: string;
  /** ms from mkt-start's start to this process's time origin (performance.now() counts from that), and to qemu's spawn. */
  readonly launchedBefore: number;
  readonly qemuSpawnedAt: number;
  /** ms from mkt-start's start to the last daemon's spawn (qemu's when none). */
  readonly daemonsSpawnedAt: number;
  /** The record as mkt-start read it. */
  readonly recordBytes: Buffer;
  /**
   * mkt's plan is the record's: hand over qemu and the daemons (with their
   * listening sockets' inodes); else undefined, and the caller abandons them.
   */
  adopt(plan: RunPlan): { qemu: AdoptedProcess; daemons: AdoptedProcess[]; inodes: number[] } | undefined;
  /** Kill what is not adopted (mkt is ending, or its plan differs); resolves once the keeper has reaped it (2 s at most). */
  abandon(): Promise<void>;
}

/**
 * The processes mkt-start started for this run (MKT_START), else undefined.
 * MKT_START is KEEPER START_US PLAN STATUS Q1..Q7 NDAEMONS D0.. RUN_DIR
 * (mkt-start.c): numbers, descriptors but the first two. Deletes it, so
 * nothing mkt starts sees it. (The descriptors cannot be close-on-exec,
 * as node inherits them, and Node.js cannot set that after: a program mkt
 * runs before it adopts or abandons them, depmod say, inherits them too,
 * which only matters were it to outlive mkt.) Until adopted, they are
 * killed and their run directory removed when mkt ends (an error, say).
 */
export function takeFastStart(env: NodeJS.ProcessEnv): FastStart | undefined {
  const v = env.MKT_START;
  delete env.MKT_START;
  const w = v?.split(' ') ?? [];
  const nums = w.slice(0, 12 + Number(w[11])).map(Number);
  if (nums.length < 12 || nums.some((n) => !Number.isInteger(n) || n < 0) || w.length <= nums.length) return undefined;
  const [keeper, launchedAtUs, PLAN_FD, STATUS_FD] = nums as [number, number, number, number];
  const qemuFds = nums.slice(4, 11);
  const ndaemons = nums[11]!;
  const daemonFds = nums.slice(12);
  const runDir = w.slice(nums.length).join(' ');
  const close = (fd: number): void => {
    try {
      closeSync(fd);
    } catch {
      // not handed over
    }
  };
  let recordBytes: Buffer;
  try {
    recordBytes = readFileSync(PLAN_FD);
  } catch {
    recordBytes = Buffer.alloc(0);
  }
  close(PLAN_FD);
  // the keeper's first words: what it started, then ready (or why it failed); it says them at once
  let status = '';
  const buf = Buffer.alloc(4096);
  while (!/^(ready|failed.*)$/m.test(status)) {
    let n = 0;
    try {
      n = readSync(STATUS_FD, buf, 0, buf.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue;
    }
    if (n <= 0) break;
    status += buf.toString('utf8', 0, n);
  }
  const pids = new Map<string, number>();
  const inodes: number[] = [];
  let qemuSpawnedUs = 0;
  let daemonsSpawnedUs = 0;
  for (const line of status.split('\n')) {
    const w = line.split(' ');
    if (w[0] === 'pid') {
      pids.set(w[1]!, Number(w[2]));
      if (w[1] === 'q') qemuSpawnedUs = Number(w[3]);
      daemonsSpawnedUs = Math.max(daemonsSpawnedUs, Number(w[3]));
    } else if (w[0] === 'ino') inodes[Number(w[1])] = Number(w[2]);
  }
  const ready = /^ready$/m.test(status) && pids.has('q');
  const sock = (fd: number): Socket => new Socket({ fd, readable: true, writable: true });
  const qemuPid = pids.get('q');
  const qemu = ready && qemuPid ? new AdoptedProcess(qemuPid, [null, ...qemuFds.map(sock)]) : undefined;
  const daemons: AdoptedProcess[] = [];
  for (let i = 0; i < ndaemons; i++) {
    const pid = pids.get(String(i));
    if (ready && pid) daemons.push(new AdoptedProcess(pid, [null, null, new Socket({ fd: daemonFds[i]!, readable: true, writable: false })]));
    else close(daemonFds[i]!);
  }
  if (!qemu) qemuFds.forEach(close);
  // the rest of what the keeper says: each end, as it reaps
  const statusStream = new Socket({ fd: STATUS_FD, readable: true, writable: false });
  let rest = status.slice(status.search(/^(ready|failed.*)$/m)).replace(/^.*\n?/, '');
  const onLine = (line: string): void => {
    const [what, who, code, sig] = line.split(' ');
    if (what !== 'exit') return;
    const p = who === 'q' ? qemu : daemons[Number(who)];
    p?.exited(Number(code), Number(sig));
  };
  const feed = (): void => {
    let nl: number;
    while ((nl = rest.indexOf('\n')) >= 0) {
      onLine(rest.slice(0, nl));
      rest = rest.slice(nl + 1);
    }
  };
  feed();
  statusStream.on('data', (b: Buffer) => {
    rest += b.toString('utf8');
    feed();
  });
  statusStream.on('error', () => {});
  // the status pipe alone must not keep mkt up until its processes are adopted: then it tells of
  // their ends, as a ChildProcess's own handle does, and holds mkt up for them (adopt())
  statusStream.unref();

  let decided = false;
  let adopted = false;
  let keeperGone = false;
  const all = (): AdoptedProcess[] => [...(qemu ? [qemu] : []), ...daemons];
  const killAll = (): void => {
    for (const p of all()) {
      if (p.exitCode !== null || p.signalCode !== null) continue;
      try {
        // each one's process group (its own), or the process should it not lead one yet
        process.kill(-p.pid, 'SIGKILL');
      } catch {
        p.kill('SIGKILL');
      }
    }
  };
  // The keeper ends once all it started have ended and it has said so. Should it end otherwise
  // (killed), nothing would tell of their ends: kill them and count them as killed.
  const keeperEnded = new Promise<void>((resolve) =>
    statusStream.once('close', () => {
      keeperGone = true;
      if (!decided || adopted) {
        killAll();
        for (const p of all()) p.exited(0, constants.signals.SIGKILL);
      }
      resolve();
    }),
  );
  const abandonNow = (): void => {
    if (adopted) return;
    decided = true;
    killAll();
    try {
      process.kill(keeper, 'SIGTERM');
    } catch {
      // gone already
    }
    for (const p of all()) for (const s of p.stdio) s?.destroy();
    if (ndaemons) rmSync(runDir, { recursive: true, force: true });
  };
  const abandon = async (): Promise<void> => {
    abandonNow();
    // reaped before mkt starts its own (which may want what they held: a port, a lock); the wait
    // holds mkt up (nothing else may yet)
    if (!keeperGone) {
      statusStream.ref();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([keeperEnded, new Promise((r) => (timer = setTimeout(r, 2000)))]);
      clearTimeout(timer);
    }
    statusStream.destroy();
    stopListening();
  };
  process.once('exit', abandonNow);
  // A signal before mkt decides, which would end mkt without its 'exit' handlers: the same, and
  // mkt's status for it, as once the run is under way (128+N). One caught while mkt's code runs
  // is told later, when the event loop turns: by then the run's own listeners may be there, but
  // too late to have caught it, so it goes to them; this listener goes once that turn is past.
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
  const onSignal = (sig: NodeJS.Signals): void => {
    const others = process.listeners(sig).filter((l) => l !== onSignal) as ((s: NodeJS.Signals) => void)[];
    if (!decided || !others.length) {
      abandonNow();
      process.exit(128 + (constants.signals[sig] ?? 1));
    }
    for (const l of others) l(sig);
  };
  const stopListening = (): void => void setImmediate(() => signals.forEach((s) => process.off(s, onSignal)));
  for (const s of signals) process.on(s, onSignal);
  const timeOrigin = performance.timeOrigin;
  return {
    runDir,
    launchedBefore: timeOrigin - launchedAtUs / 1000,
    qemuSpawnedAt: (qemuSpawnedUs - launchedAtUs) / 1000,
    daemonsSpawnedAt: (daemonsSpawnedUs - launchedAtUs) / 1000,
    recordBytes,
    adopt(plan) {
      const record = decodeFastStart(recordBytes);
      const fits =
        !decided &&
        !keeperGone &&
        qemu !== undefined &&
        daemons.length === ndaemons &&
        ndaemons === plan.daemons.length &&
        record !== undefined &&
        plan.mode === 'exec' &&
        recordable(plan) &&
        sameProcesses(record, planProcesses(plan));
      if (!fits) return undefined;
      decided = adopted = true;
      process.off('exit', abandonNow);
      stopListening();
      statusStream.ref();
      for (const p of all()) p.release();
      return { qemu: qemu!, daemons, inodes };
    },
    abandon,
  };
}

/** What stdin, stdout and stderr are: y for a terminal, n for not, as mkt-start writes it. */
export function ttyWord(): string {
  return [process.stdin, process.stdout, process.stderr].map((s) => ((s as { isTTY?: boolean }).isTTY ? 'y' : 'n')).join('');
}

/**
 * Keep the record of a run that booted, for the next start of the same
 * command line (best effort: a record that cannot be written costs the next
 * start some milliseconds). SAME: the bytes of the record this run started from.
 */
export function recordFastStart(cacheDir: string, record: FastStartRecord, same?: Buffer): void {
  const bytes = encodeFastStart(record);
  if (!bytes) return;
  const dir = join(cacheDir, 'start');
  const file = join(dir, fastStartKey(record.cwd, record.args));
  // the mtime says when it was last used, for the pruning below
  const touch = (): void => {
    const now = new Date();
    utimesSync(file, now, now);
  };
  try {
    if (same && bytes.equals(same)) return touch();
    mkdirSync(dir, { recursive: true });
    try {
      // one that anyone else could write, or no file (a FIFO would hold a read), mkt-start ignores: written anew
      const st = statSync(file);
      if (st.isFile() && st.uid === process.getuid?.() && (st.mode & 0o022) === 0 && readFileSync(file).equals(bytes)) return touch();
    } catch {
      // none yet
    }
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, bytes, { mode: 0o600 });
    renameSync(tmp, file);
    const names = readdirSync(dir).filter((n) => /^[0-9a-f]{16}$/.test(n));
    if (names.length > KEEP_RECORDS) {
      const byAge = names.map((n) => ({ n, t: statSync(join(dir, n)).mtimeMs })).sort((a, b) => a.t - b.t);
      for (const { n } of byAge.slice(0, names.length - KEEP_RECORDS)) rmSync(join(dir, n), { force: true });
    }
  } catch {
    // see above
  }
}
