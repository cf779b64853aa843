/** Process handling against fake qemu executables: failures, the KVM fallback, signals, leftovers. */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { alive, fakeBzImage, fakeScript, gone, MKT } from '../fakes/processes.js';

const work = mkdtempSync(join(tmpdir(), 'mkt-proc-'));
after(() => rmSync(work, { recursive: true, force: true }));

const kernel = fakeBzImage(join(work, 'bzImage'));
const fake = (name: string, body: string): string => fakeScript(work, name, body);

const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  ...process.env,
  XDG_CACHE_HOME: join(work, 'cache'),
  MKT_ACCEL: '',
  ...extra,
});


test('help into a reader that leaves at once ends quietly (141, as SIGPIPE would, or 0 when it all fitted the pipe)', () => {
  for (let i = 0; i < 3; i++) {
    const r = spawnSync('bash', ['-c', `"${MKT}" run --help | true; echo "\${PIPESTATUS[0]}"`], { env: env(), encoding: 'utf8' });
    assert.equal(r.stderr, '');
    assert.match(r.stdout.trim(), /^(0|141)$/);
  }
});

test("the CLI's code cache: written into mkt's cache directory, checked, and a corrupted one replaced", () => {
  const cache = join(work, 'v8cache');
  const dir = join(cache, 'mkt');
  const e = env({ XDG_CACHE_HOME: cache });
  // no directory mkt made: nothing is written, and the start is unharmed
  let r = spawnSync(MKT, ['--version'], { env: e, encoding: 'utf8' });
  assert.equal(r.status, 0);
  assert.equal(existsSync(dir), false);
  mkdirSync(dir, { recursive: true });
  r = spawnSync(MKT, ['--version'], { env: e, encoding: 'utf8' });
  assert.equal(r.status, 0);
  const files = readdirSync(dir).filter((f) => /^cli-.*-other\.v8$/.test(f));
  assert.equal(files.length, 1);
  const file = join(dir, files[0]!);
  const valid = (b: Buffer): boolean => createHash('sha1').update(b.subarray(20)).digest().equals(b.subarray(0, 20));
  assert.ok(valid(readFileSync(file)));
  // bit flips V8 itself would trust (and crash on): refused, and the file written anew
  const bad = readFileSync(file);
  for (let i = 200; i < bad.length; i += 97) bad[i] = bad[i]! ^ 0x5a;
  writeFileSync(file, bad);
  r = spawnSync(MKT, ['--version'], { env: e, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), '0.1.0');
  assert.ok(valid(readFileSync(file)));
  // one per subcommand
  spawnSync(MKT, ['run', '--help'], { env: e, encoding: 'utf8' });
  assert.ok(readdirSync(dir).some((f) => /^cli-.*-run\.v8$/.test(f)));
});

test('bin/mkt starts node without NODE_EXTRA_CA_CERTS, which only slows its start', () => {
  // node warns on stderr about a certificate file it cannot load, before any JS runs
  const r = spawnSync(MKT, ['--version'], { env: env({ NODE_EXTRA_CA_CERTS: join(work, 'no-such.pem') }), encoding: 'utf8' });
  assert.equal(r.status, 0);
  assert.equal(r.stderr, '');
  assert.equal(r.stdout.trim(), '0.1.0');
});

test('a current directory removed from under mkt: the guest starts in home; a relative path is refused', () => {
  const gone = join(work, 'gone');
  const run = (args: string): ReturnType<typeof spawnSync> =>
    spawnSync('sh', ['-c', `mkdir -p '${gone}' && cd '${gone}' && rmdir '${gone}' && exec "$0" run ${args} --accel tcg --dry-run --exec true`, MKT], { env: env(), encoding: 'utf8' });
  const ok = run(`--kernel '${kernel}'`);
  assert.equal(ok.status, 0, String(ok.stderr));
  const rel = run('--kernel ./linux');
  assert.equal(rel.status, 2);
  assert.match(String(rel.stderr), /the current directory no longer exists, so '\.\/linux' means nothing/);
});

test('a qemu that fails to start gives 125 with its stderr', () => {
  const q = fake('qemu-fail', 'echo "qemu-system-x86_64: -device foo: not found" >&2; exit 1');
  const r = spawnSync(MKT, ['run', '--kernel', kernel, '--accel', 'tcg', '--qemu', q, '--exec', 'true'], { env: env(), encoding: 'utf8' });
  assert.equal(r.status, 125);
  assert.match(r.stderr, /qemu exited with status 1 before the guest started/);
  assert.match(r.stderr, /-device foo: not found/);
});

test('a missing qemu, a bad option value and a bad --qemu are refused clearly', () => {
  // a PATH with node on it and no qemu
  const bin = join(work, 'bin-node-only');
  spawnSync('mkdir', ['-p', bin]);
  spawnSync('ln', ['-sf', process.execPath, join(bin, 'node')]);
  const r = spawnSync(MKT, ['run', '--kernel', kernel, '--exec', 'true'], { env: env({ PATH: bin }), encoding: 'utf8' });
  assert.equal(r.status, 125);
  assert.match(r.stderr, /qemu-system-x86_64 not found: install the qemu-system-x86 package/);
  const m = spawnSync(MKT, ['run', '--kernel', kernel, '--memory', 'lots', '--exec', 'true'], { env: env(), encoding: 'utf8' });
  assert.equal(m.status, 2);
  assert.match(m.stderr, /--memory lots: expected a size/);
  const a = spawnSync(MKT, ['run', '--kernel', kernel, '--accel', 'xen', '--exec', 'true'], { env: env(), encoding: 'utf8' });
  assert.equal(a.status, 2);
  assert.match(a.stderr, /--accel xen: expected auto, kvm or tcg/);
  const q = spawnSync(MKT, ['run', '--kernel', kernel, '--qemu', join(work, 'nope'), '--exec', 'true'], { env: env(), encoding: 'utf8' });
  assert.equal(q.status, 125);
  assert.match(q.stderr, /nope is not an executable: fix --qemu/);
});

const kvmUsable = spawnSync('sh', ['-c', 'test -r /dev/kvm && test -w /dev/kvm']).status === 0;

test('auto: a KVM guest with no sign of life falls back to TCG and the verdict is remembered for this boot', () => {
  const log = join(work, 'accel.log');
  // records the -accel value, then hangs like a stuck KVM guest
  const q = fake('qemu-hang', `for a; do case $prev in -accel) echo "$a" >> '${log}';; esac; prev=$a; done\nexec sleep 1000`);
  const cache = join(work, 'cache-kvm');
  const e = env({ XDG_CACHE_HOME: cache, MKT_KVM_PROBE_SECONDS: '2' });
  const r = spawnSync(MKT, ['run', '--kernel', kernel, '--qemu', q, '--timeout', '6', '--verbose', '--exec', 'true'], { env: e, encoding: 'utf8' });
  assert.equal(r.status, 124, r.stderr);
  if (kvmUsable) {
    assert.deepEqual(readFileSync(log, 'utf8').split('\n').filter(Boolean), ['kvm', 'tcg']);
    assert.match(r.stderr, /no sign of life within 2 s; likely cause: nested virtualization/);
    assert.match(r.stderr, /Falling back to TCG/);
    const verdict = JSON.parse(readFileSync(join(cache, 'mkt', 'kvm-verdict.json'), 'utf8'));
    assert.equal(verdict.works, false);
    // the next run goes straight to TCG; with --exec (whose stderr is the command's) it says why under --verbose only
    const again = spawnSync(MKT, ['run', '--kernel', kernel, '--qemu', q, '--timeout', '2', '--exec', 'true'], { env: e, encoding: 'utf8' });
    assert.equal(again.status, 124);
    assert.doesNotMatch(again.stderr, /KVM did not work earlier/);
    const told = spawnSync(MKT, ['run', '--kernel', kernel, '--qemu', q, '--timeout', '2', '--verbose', '--exec', 'true'], { env: e, encoding: 'utf8' });
    assert.match(told.stderr, /KVM did not work earlier in this boot/);
    assert.deepEqual(readFileSync(log, 'utf8').split('\n').filter(Boolean), ['kvm', 'tcg', 'tcg', 'tcg']);
  } else {
    assert.deepEqual(readFileSync(log, 'utf8').split('\n').filter(Boolean), ['tcg']);
    assert.match(r.stderr, /using TCG, which is slow: \/dev\/kvm/);
  }
});

test('--accel kvm never falls back', () => {
  const q = fake('qemu-kvmfail', 'echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2; exit 1');
  const r = spawnSync(MKT, ['run', '--kernel', kernel, '--qemu', q, '--accel', 'kvm', '--exec', 'true'], { env: env(), encoding: 'utf8' });
  assert.equal(r.status, 125);
  if (kvmUsable) assert.match(r.stderr, /qemu failed at KVM setup.*--accel kvm never falls back/s);
  else assert.match(r.stderr, /--accel kvm: \/dev\/kvm/);
});

async function startHanging(name: string): Promise<{ mkt: ReturnType<typeof spawn>; qemuPid: number }> {
  const pidfile = join(work, `${name}.pid`);
  const q = fake(name, `echo $$ > '${pidfile}'\nexec sleep 1000`);
  const child = spawn(MKT, ['run', '--kernel', kernel, '--accel', 'tcg', '--qemu', q, '--exec', 'true'], { env: env(), stdio: 'ignore' });
  for (let i = 0; i < 100 && !existsSync(pidfile); i++) await new Promise((r) => setTimeout(r, 100));
  const qemuPid = Number(readFileSync(pidfile, 'utf8'));
  assert.ok(alive(qemuPid));
  return { mkt: child, qemuPid };
}

test('SIGTERM or SIGINT to mkt stops qemu and exits 128+N', async () => {
  for (const [sig, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
    const { mkt, qemuPid } = await startHanging(`qemu-${sig}`);
    const exited = new Promise<number | null>((r) => mkt.on('exit', (c) => r(c)));
    mkt.kill(sig);
    assert.equal(await exited, code);
    assert.ok(await gone(qemuPid), `qemu ${qemuPid} still running after ${sig}`);
  }
});

test('SIGKILL of mkt still takes qemu down (parent-death signal)', async () => {
  const { mkt, qemuPid } = await startHanging('qemu-kill');
  mkt.kill('SIGKILL');
  assert.ok(await gone(qemuPid), `qemu ${qemuPid} outlived a SIGKILLed mkt`);
});

test('--dry-run starts nothing and prints a pasteable, quoted command line', () => {
  const log = join(work, 'dry.log');
  const q = fake('qemu dry,run', `echo started > '${log}'`);
  const d = join(work, "a dir, with 'quotes'");
  spawnSync('mkdir', ['-p', d]);
  const r = spawnSync(MKT, ['run', '--kernel', kernel, '--accel', 'tcg', '--qemu', q, '--dir', d, '--dry-run'], { env: env(), encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(!existsSync(log));
  // the shell splits it back into the same words: the dir path with its comma doubled for qemu
  const words = spawnSync('sh', ['-c', `eval "set -- $1"; printf '%s\\n' "$@"`, 'sh', r.stdout.trim()], { encoding: 'utf8' }).stdout.split('\n');
  assert.equal(words[0], q);
  const model = process.getuid?.() === 0 ? 'passthrough' : 'none';
  assert.ok(words.some((w) => /^local,id=mktd\d,path=/.test(w) && w.endsWith(`path=${d.replaceAll(',', ',,')},security_model=${model},multidevs=remap`)), r.stdout);
  assert.ok(words.includes('-kernel'));
});

test('bad input is refused before anything starts, naming the input and the fix', () => {
  const fifo = join(work, 'a fifo');
  spawnSync('mkfifo', [fifo]);
  const cfg = (text: string): Record<string, string> => {
    const d = mkdtempSync(join(work, 'cfg-'));
    spawnSync('mkdir', ['-p', join(d, 'mkt')]);
    writeFileSync(join(d, 'mkt', 'config'), text);
    return { XDG_CONFIG_HOME: d };
  };
  const file = join(work, 'plain-file');
  writeFileSync(file, 'x');
  const procLink = join(work, 'proc-link');
  spawnSync('ln', ['-sfn', '/proc', procLink]);
  const cases: [string[], Record<string, string>, number, RegExp][] = [
    [['--dir', '/proc'], {}, 2, /--dir \/proc: \/proc is the guest's own/],
    [['--dir', '/sys/kernel'], {}, 2, /\/sys is the guest's own/],
    [['--dir', ''], {}, 2, /--dir needs a directory/],
    [['--dir', file], {}, 2, /not a directory/],
    [['--kernel', ''], {}, 2, /--kernel needs a value/],
    [['--cpus', ''], {}, 2, /--cpus needs a value/],
    [['--accel', ''], {}, 2, /--accel needs a value/],
    [['--qemu', ''], {}, 2, /--qemu needs a value/],
    [['--qemu-arg', ''], {}, 2, /--qemu-arg needs a value/],
    [['--timeout', '3000000'], {}, 2, /at most 2147483 seconds/],
    [['--timeout', '.'], {}, 2, /--timeout \.: expected a positive number of seconds/],
    [['--timeout', '-1'], {}, 2, /--timeout -1: expected a positive number of seconds/],
    [['--memory', '10'], {}, 2, /--memory 10: at least 128M/],
    [['--fs', 'nfs'], {}, 2, /--fs nfs: expected auto, 9p or virtiofs/],
    [['--kernel', fifo], {}, 125, /not a regular file/],
    [[], { XDG_CACHE_HOME: '/proc' }, 125, /cannot use \/proc\/mkt as mkt's cache.*XDG_CACHE_HOME/],
    [[], { XDG_CACHE_HOME: file }, 125, /cannot use .*plain-file\/mkt as mkt's cache.*XDG_CACHE_HOME/],
    // the path as resolved decides, not as written: a symlink to /proc is /proc
    [[], { XDG_CACHE_HOME: procLink }, 125, /proc-link\/mkt as mkt's cache: \/proc is a kernel filesystem/],
    [[], { XDG_CACHE_HOME: '', HOME: join(work, 'no-such-home') }, 125, /your home .*no-such-home does not exist: set XDG_CACHE_HOME/],
    [['--memory', '1T'], {}, 2, /--memory 1T: more than this host's \d+M of memory/],
    [['--cpus', '1000'], {}, 2, /--cpus 1000: the pc machine takes at most 255 CPUs/],
    [['--qemu', work], {}, 125, /is not an executable: fix --qemu/],
    [[], { MKT_VIRTIOFSD: work }, 2, /MKT_VIRTIOFSD=.*: not an executable file: fix or unset it \(--fs 9p needs none\)/],
    [[], { MKT_VIRTIOFSD: 'no-such-virtiofsd' }, 2, /MKT_VIRTIOFSD=no-such-virtiofsd: not an executable file on PATH/],
    [['some/tree'], {}, 2, /'some\/tree' is not a config section; to boot it, pass --kernel some\/tree/],
  ];
  for (const [args, extra, code, want] of cases) {
    const kernelArgs = args.includes('--kernel') ? [] : ['--kernel', kernel];
    const r = spawnSync(MKT, ['run', ...kernelArgs, ...args, '--exec', 'true'], { env: env(extra), encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, code, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, want, args.join(' '));
    assert.ok(!/internal error/.test(r.stderr), r.stderr);
  }
  // a fraction without its leading 0 is a number of seconds too
  const half = spawnSync(MKT, ['run', '--kernel', kernel, '--timeout', '.5', '--dry-run', '--exec', 'true'], { env: env(), encoding: 'utf8', timeout: 20_000 });
  assert.equal(half.status, 0, half.stderr);
  // an interactive shell needs a terminal: from a pipe it would wait for ever
  const notty = spawnSync(MKT, ['run', '--kernel', kernel], { env: env(), encoding: 'utf8', input: 'echo hi\n', timeout: 20_000 });
  assert.equal(notty.status, 2);
  assert.match(notty.stderr, /needs a terminal on stdin: use --exec CMD/);
  // a relative XDG_CACHE_HOME is ignored (the XDG spec), not created under the current directory
  const rel = spawnSync(MKT, ['run', '--kernel', kernel, '--dry-run', '--exec', 'true'], { env: env({ XDG_CACHE_HOME: 'rel/cache' }), cwd: work, encoding: 'utf8' });
  assert.equal(rel.status, 0, rel.stderr);
  assert.equal(existsSync(join(work, 'rel')), false);
  // a bare memory size is MiB for the shared-memory backend too, as for -m
  const mem = spawnSync(MKT, ['run', '--kernel', kernel, '--fs', '9p', '--memory', '2048', '--dry-run', '--exec', 'true'], { env: env(), encoding: 'utf8' });
  assert.match(mem.stdout, / -m 2048M /);
  const bad = spawnSync(MKT, ['run', '--exec', 'true'], { env: env(cfg('[defaults\nkernel = /x\n')), encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /config:1: bad section header '\[defaults'/);
  const nok = spawnSync(MKT, ['run', '--exec', 'true'], { env: env(cfg('[defaults]\nkernel = /no/such/kernel\nmemory = lots\n')), encoding: 'utf8' });
  assert.match(nok.stderr, /config:\d+ \[defaults\] (kernel \/no\/such\/kernel: no such file|memory lots: expected a size)/);
  // a fault in the config file's append names the file and line, not --append
  const app = spawnSync(MKT, ['run', '--kernel', kernel, '--dry-run', '--exec', 'true'], { env: env(cfg('[defaults]\nappend = -bogus\n')), encoding: 'utf8' });
  assert.equal(app.status, 2);
  assert.match(app.stderr, /^mkt: \S*config:2 \[defaults\] append -bogus: mkt passes no bogus to leave out/m);
  // an MKT_* variable set to nothing is not set
  const empty = spawnSync(MKT, ['run', '--kernel', kernel, '--fs', '9p', '--dry-run', '--exec', 'true'], { env: env({ MKT_QEMU: '', MKT_FS: '', MKT_ACCEL: '' }), encoding: 'utf8' });
  assert.equal(empty.status, 0, empty.stderr);
  assert.match(empty.stdout, /qemu-system-x86_64 /);
  const emptyFs = spawnSync(MKT, ['run', '--kernel', kernel, '--dry-run', '--exec', 'true'], { env: env({ MKT_FS: '' }), encoding: 'utf8' });
  assert.doesNotMatch(emptyFs.stderr, /fs : expected/);
  // mkt kconfig: a make that fails leaves the .config as it was (no fragment added again each try); odd DIRs named
  const kd = join(work, 'kc tree');
  mkdirSync(kd, { recursive: true });
  writeFileSync(join(kd, 'Makefile'), 'olddefconfig:\n\tfalse\n');
  writeFileSync(join(kd, 'Kconfig'), '');
  writeFileSync(join(kd, '.config'), 'CONFIG_X=y\n');
  for (let i = 0; i < 2; i++) {
    const failed = spawnSync(MKT, ['kconfig', kd], { encoding: 'utf8' });
    assert.equal(failed.status, 125, failed.stderr);
    assert.match(failed.stderr, /olddefconfig failed; .*kc tree\/\.config is as it was/);
    assert.equal(readFileSync(join(kd, '.config'), 'utf8'), 'CONFIG_X=y\n');
  }
  const notDir = spawnSync(MKT, ['kconfig', join(kd, 'Makefile')], { encoding: 'utf8' });
  assert.equal(notDir.status, 2);
  assert.match(notDir.stderr, /Makefile is not a directory/);
  const emptyName = spawnSync(MKT, ['kconfig', ''], { encoding: 'utf8', cwd: kd });
  assert.equal(emptyName.status, 2);
  assert.match(emptyName.stderr, /an empty directory name/);
  const kc = spawnSync(MKT, ['kconfig', join(work, 'nope')], { encoding: 'utf8' });
  assert.equal(kc.status, 2);
  assert.match(kc.stderr, /nope: no such directory/);
});
