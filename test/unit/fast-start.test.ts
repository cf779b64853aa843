/**
 * The fast start (src/run/fast-start.ts, src/host-helper/mkt-start.c): the
 * record's format, and with fake qemus that speak mkt-init's protocol, that
 * the launcher's processes are adopted only when mkt's plan is theirs, and
 * are gone whatever ends mkt.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fakeBzImage, fakeScript, gone, MKT } from '../fakes/processes.js';
import { decodeFastStart, encodeFastStart, fastStartKey, type FastStartRecord, planProcesses, sameProcesses } from '../../src/run/fast-start.js';
import type { RunPlan } from '../../src/run/types.js';

const work = mkdtempSync(join(tmpdir(), 'mkt-fast-'));
after(() => rmSync(work, { recursive: true, force: true }));

const record: FastStartRecord = {
  cwd: '/home/u/linux',
  args: ['run', '--exec', 'echo a  b'],
  tty: 'nny',
  env: ['MKT_FS=9p', 'MKT_ACCEL='],
  needs: ['/k/bzImage'],
  tmp: '/tmp',
  qemu: ['/usr/bin/qemu', '-chardev', 'socket,path=\x01/fs0'],
  daemons: [{ socket: '\x01/fs0', dir: '', argv: ['/usr/lib/qemu/virtiofsd', '--fd=3'] }],
};

test('a record reads back as written; one a NUL would break is not written', () => {
  const b = encodeFastStart(record)!;
  assert.deepEqual(decodeFastStart(b), record);
  assert.equal(encodeFastStart({ ...record, args: ['run', '--exec', 'a\0b'] }), undefined);
  assert.equal(encodeFastStart({ ...record, cwd: '/x\x01' }), undefined);
  assert.equal(decodeFastStart(Buffer.from('mkt-start 2\0end\0')), undefined);
  assert.equal(decodeFastStart(b.subarray(0, b.length - 4)), undefined);
  // the key depends on every argument and on where they are split
  assert.notEqual(fastStartKey('/d', ['run', 'ab']), fastStartKey('/d', ['run', 'a', 'b']));
  assert.match(fastStartKey('/d', ['run']), /^[0-9a-f]{16}$/);
});

test("a plan's processes carry the run directory as a mark, so plans of two runs compare equal", () => {
  const plan = (dir: string): RunPlan =>
    ({ argv: ['/q', `path=${dir}/fs0`], daemons: [{ argv: ['/v', `--socket=${dir}/fs0`], socket: `${dir}/fs0`, dir: `${dir}/root` }], runDir: dir }) as unknown as RunPlan;
  const a = planProcesses(plan('/tmp/mkt-run-1-aaaa'));
  assert.deepEqual(a.qemu, ['/q', 'path=\x01/fs0']);
  assert.equal(a.daemons[0]!.dir, '\x01/root');
  assert.ok(sameProcesses(a, planProcesses(plan('/tmp/mkt-run-2-bbbb'))));
  assert.ok(!sameProcesses(a, { ...a, qemu: ['/q', 'path=\x01/fs1'] }));
});

const kernel = fakeBzImage(join(work, 'bzImage'));

const log = join(work, 'started');
const hang = join(work, 'hang');
/** A qemu that logs its pid, says hello, then reports that the command exited 7 (or hangs, while HANG exists). */
function fakeQemu(name: string): string {
  return fakeScript(work, name, `echo "${name} $$" >> '${log}'\nprintf 'hello 1 2\\n' >&3\n[ -e '${hang}' ] && exec sleep 1000\nprintf 'exit 7 0 0 1 2\\n' >&3\nexec sleep 1000`);
}
const qemuA = fakeQemu('qemu-a');
const qemuB = fakeQemu('qemu-b');

const cache = join(work, 'cache');
const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({ ...process.env, XDG_CACHE_HOME: cache, MKT_ACCEL: 'tcg', MKT_FS: '9p', ...extra });
const args = ['run', '--kernel', kernel, '--qemu', qemuA, '--verbose', '--exec', 'true'];
const run = (extra: Record<string, string> = {}): ReturnType<typeof spawnSync> => spawnSync(MKT, args, { env: env(extra), cwd: work, encoding: 'utf8', timeout: 30_000 });

/** The processes the fake qemus logged: [name, pid]. */
const started = (): [string, number][] =>
  existsSync(log)
    ? readFileSync(log, 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split(' '))
        .map(([n, p]) => [n!, Number(p)])
    : [];

test('the second start of a command line that booted adopts the qemu the launcher started from its record', async () => {
  rmSync(log, { force: true });
  const first = run();
  assert.equal(first.status, 7, String(first.stderr));
  assert.doesNotMatch(String(first.stderr), /started by the launcher/);
  const records = readdirSync(join(cache, 'mkt', 'start'));
  assert.equal(records.length, 1);
  const second = run();
  assert.equal(second.status, 7, String(second.stderr));
  assert.match(String(second.stderr), /qemu and its daemons were started by the launcher/);
  // one qemu per run, each gone
  const s = started();
  assert.deepEqual(
    s.map(([n]) => n),
    ['qemu-a', 'qemu-a'],
  );
  for (const [, pid] of s) assert.ok(await gone(pid), `qemu ${pid} still running`);
  // another MKT_ variable: no launcher start (mkt's plan might differ)
  const other = run({ MKT_QEMU: qemuA });
  assert.equal(other.status, 7);
  assert.doesNotMatch(String(other.stderr), /started by the launcher|does not fit/);
});

test("a record whose plan is not mkt's: the launcher's qemu is killed and mkt starts its own", async () => {
  rmSync(log, { force: true });
  assert.equal(run().status, 7);
  const dir = join(cache, 'mkt', 'start');
  const file = join(dir, readdirSync(dir)[0]!);
  // as if qemu's argv had changed since (another binary at the same place in it)
  const rec = decodeFastStart(readFileSync(file))!;
  writeFileSync(file, encodeFastStart({ ...rec, qemu: [qemuB, ...rec.qemu.slice(1)] })!);
  rmSync(log, { force: true });
  const r = run();
  assert.equal(r.status, 7, String(r.stderr));
  assert.match(String(r.stderr), /does not fit this run's: starting anew/);
  const s = started();
  assert.deepEqual(s.map(([n]) => n).sort(), ['qemu-a', 'qemu-b']);
  for (const [, pid] of s) assert.ok(await gone(pid), `qemu ${pid} still running`);
  // and the record is mkt's own plan again
  assert.equal(decodeFastStart(readFileSync(file))!.qemu[0], qemuA);
});

test('what the launcher started dies with mkt: a failure before adoption, and SIGKILL after it', async () => {
  rmSync(log, { force: true });
  assert.equal(run().status, 7);
  // mkt fails before it plans (a broken config file, which the launcher does not read)
  const cfgDir = join(work, 'cfg');
  mkdirSync(join(cfgDir, 'mkt'), { recursive: true });
  writeFileSync(join(cfgDir, 'mkt', 'config'), '[defaults\n');
  rmSync(log, { force: true });
  const bad = run({ XDG_CONFIG_HOME: cfgDir });
  assert.equal(bad.status, 2, String(bad.stderr));
  assert.match(String(bad.stderr), /bad section header/);
  const s = started();
  assert.equal(s.length, 1, 'the launcher started its qemu');
  assert.ok(await gone(s[0]![1]), 'the launcher\'s qemu outlived a mkt that failed');
  // adopted, then mkt is SIGKILLed: qemu goes too (the keeper's and qemu's parent-death signals)
  writeFileSync(hang, '');
  rmSync(log, { force: true });
  const mkt = spawn(MKT, args, { env: env(), cwd: work, stdio: 'ignore' });
  for (let i = 0; i < 100 && started().length === 0; i++) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 500));
  mkt.kill('SIGKILL');
  rmSync(hang);
  const [[, pid]] = started() as [[string, number]];
  assert.ok(await gone(pid), `qemu ${pid} outlived a SIGKILLed mkt`);
});

/** The keeper: the child of mkt's process that the launcher left (its command name is mkt-start's). */
function keeperOf(mktPid: number): number | undefined {
  for (const e of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === mktPid && state !== 'Z' && stat.includes('(mkt-start)')) return Number(e);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

/** Start mkt with the fake qemu hanging after hello, adopted from the record; its pid, the qemu's, and its end. */
async function hangingAdopted(how: string[] = []): Promise<{ mkt: ReturnType<typeof spawn>; qemu: number; ended: Promise<number | null> }> {
  assert.equal(run().status, 7);
  writeFileSync(hang, '');
  rmSync(log, { force: true });
  const mkt = spawn(how[0] ?? MKT, [...how.slice(1), ...(how.length ? [MKT] : []), ...args], { env: env(), cwd: work, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let err = '';
  mkt.stderr!.on('data', (b) => (err += b));
  const ended = new Promise<number | null>((r) => mkt.on('exit', (c, s) => r(c ?? (s ? -1 : null))));
  for (let i = 0; i < 100 && !/started by the launcher/.test(err); i++) await new Promise((r) => setTimeout(r, 50));
  assert.match(err, /started by the launcher/);
  rmSync(hang);
  return { mkt, qemu: started()[0]![1], ended };
}

test('a Ctrl-C to the whole process group, or a keeper that dies, still ends mkt and its qemu', async () => {
  // the terminal's Ctrl-C: SIGINT to mkt's whole group (the keeper is not in it)
  const a = await hangingAdopted();
  await new Promise((r) => setTimeout(r, 300));
  process.kill(-a.mkt.pid!, 'SIGINT');
  assert.equal(await a.ended, 130);
  assert.ok(await gone(a.qemu), 'qemu outlived a Ctrl-C');
  // the keeper killed (nothing would report qemu's end): mkt must not wait for ever
  const b = await hangingAdopted();
  const k = keeperOf(b.mkt.pid!);
  assert.ok(k, 'no keeper found');
  process.kill(k, 'SIGKILL');
  const code = await Promise.race([b.ended, new Promise((r) => setTimeout(() => r('hung'), 10_000))]);
  assert.equal(code, 125);
  assert.ok(await gone(b.qemu), 'qemu outlived its keeper');
});

test("a caller's ignored SIGCHLD does not stop the keeper from reporting", async () => {
  assert.equal(run().status, 7);
  const r = spawnSync('sh', ['-c', `trap '' CHLD; exec "$@"`, 'sh', MKT, ...args], { env: env(), cwd: work, encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 7, r.stderr);
  assert.match(r.stderr, /started by the launcher/);
});

test("a record that is broken, or anyone else's to write, is not used: the run is the CLI's own", () => {
  assert.equal(run().status, 7);
  const dir = join(cache, 'mkt', 'start');
  const file = join(dir, readdirSync(dir)[0]!);
  const good = readFileSync(file);
  const bad: Buffer[] = [
    Buffer.from(good.toString('latin1').replace(/\0args\0\d+\0/, '\0args\x002147483647\0'), 'latin1'),
    Buffer.from(good.toString('latin1').replace(/\0qemu\0\d+\0/, '\0qemu\x00-5\0'), 'latin1'),
    good.subarray(0, good.length - 4),
    Buffer.concat([good.subarray(0, good.length - 4), Buffer.from('qemu\x001\0/bin/true\0end\0')]),
  ];
  for (const b of bad) {
    writeFileSync(file, b);
    const r = run();
    assert.equal(r.status, 7, String(r.stderr));
    assert.doesNotMatch(String(r.stderr), /started by the launcher|does not fit/);
  }
  assert.equal(run().status, 7);
  chmodSync(file, 0o666);
  const r = run();
  assert.equal(r.status, 7);
  assert.doesNotMatch(String(r.stderr), /started by the launcher/);
  // and that run wrote it anew, the user's own
  assert.match(String(run().stderr), /started by the launcher/);
});

test("the caller's extra descriptors reach neither the launcher's qemu nor its keeper; a FIFO for a record holds nothing up", async () => {
  assert.equal(run().status, 7);
  const fdLog = join(work, 'fds');
  const q = join(work, 'qemu-fds');
  writeFileSync(q, `#!/bin/sh\nls /proc/$$/fd > '${fdLog}'\nprintf 'hello 1 2\\n' >&3\nprintf 'exit 7 0 0 1 2\\n' >&3\nexec sleep 1000\n`);
  chmodSync(q, 0o755);
  const fdArgs = ['run', '--kernel', kernel, '--qemu', q, '--verbose', '--exec', 'true'];
  const withFd = (): ReturnType<typeof spawnSync> =>
    spawnSync('sh', ['-c', `exec "$@" 9>'${join(work, 'fd9')}'`, 'sh', MKT, ...fdArgs], { env: env(), cwd: work, encoding: 'utf8', timeout: 30_000 });
  assert.equal(withFd().status, 7);
  const r = withFd();
  assert.equal(r.status, 7, String(r.stderr));
  assert.match(String(r.stderr), /started by the launcher/);
  const fds = readFileSync(fdLog, 'utf8').split('\n').filter(Boolean).map(Number);
  // (the shell of the fake holds 10 and up for itself)
  assert.ok(!fds.includes(8) && !fds.includes(9), `qemu got descriptors ${fds.join(' ')}`);
  // a FIFO where the record would be: not opened for reading (that would wait for a writer)
  const dir = join(cache, 'mkt', 'start');
  for (const f of readdirSync(dir)) rmSync(join(dir, f));
  spawnSync('mkfifo', [join(dir, fastStartKey(work, args))]);
  const fifo = run();
  assert.equal(fifo.status, 7, String(fifo.stderr));
});

test("an unfit start's whole process group goes, not only its qemu", async () => {
  assert.equal(run().status, 7);
  const dir = join(cache, 'mkt', 'start');
  const file = join(dir, fastStartKey(work, args));
  const childLog = join(work, 'qemu-c-child');
  const q = join(work, 'qemu-c');
  // a "qemu" that leaves a child behind, in its own process group
  writeFileSync(q, `#!/bin/sh\nsleep 1000 &\necho $! > '${childLog}'\nexec sleep 1000\n`);
  chmodSync(q, 0o755);
  const rec = decodeFastStart(readFileSync(file))!;
  writeFileSync(file, encodeFastStart({ ...rec, qemu: [q, ...rec.qemu.slice(1)] })!, { mode: 0o600 });
  rmSync(childLog, { force: true });
  const r = run();
  assert.equal(r.status, 7);
  assert.match(String(r.stderr), /does not fit/);
  for (let i = 0; i < 50 && !existsSync(childLog); i++) await new Promise((res) => setTimeout(res, 20));
  assert.ok(await gone(Number(readFileSync(childLog, 'utf8'))), "the unfit qemu's child outlived it");
});
