/** mkt's small host-side caches and what it tells the guest from them: the TSC rate, the files at cache paths that are not files, option values. */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { baseCmdline, renderCmdline } from '../../src/qemu/cmdline.js';
import { constantTsc, hostTscKhz, parseTscCache, plausibleTscKhz } from '../../src/host/tsc.js';

test('tsc_early_khz goes on the command line under TCG only, and --append=-tsc_early_khz leaves it out', () => {
  const tcg = renderCmdline(baseCmdline({ quiet: true, accel: 'tcg', tscKhz: 2599998 }), []);
  assert.match(tcg, / tsc_early_khz=2599998( |$)/);
  assert.doesNotMatch(renderCmdline(baseCmdline({ quiet: true, accel: 'kvm', tscKhz: 2599998 }), []), /tsc_early_khz/);
  assert.doesNotMatch(renderCmdline(baseCmdline({ quiet: true, accel: 'tcg' }), []), /tsc_early_khz/);
  assert.doesNotMatch(renderCmdline(baseCmdline({ quiet: true, accel: 'tcg', tscKhz: 2599998 }), ['-tsc_early_khz']), /tsc_early_khz/);
  // a run without a measurement may still name it: nothing to leave out, no error
  assert.doesNotMatch(renderCmdline(baseCmdline({ quiet: true, accel: 'kvm' }), ['-tsc_early_khz']), /tsc_early_khz/);
  // the user's own value comes last, so the kernel takes it
  assert.match(renderCmdline(baseCmdline({ quiet: true, accel: 'tcg', tscKhz: 2599998 }), ['tsc_early_khz=1000000']), /tsc_early_khz=2599998 .*tsc_early_khz=1000000$/);
});

test('the cache holds one measurement per host boot; implausible values are none', () => {
  assert.equal(parseTscCache('boot-1 2599998\n', 'boot-1'), 2599998);
  assert.equal(parseTscCache('boot-1 2599998\n', 'boot-2'), undefined);
  assert.equal(parseTscCache('boot-1 12\n', 'boot-1'), undefined);
  assert.equal(parseTscCache('', 'boot-1'), undefined);
  assert.equal(parseTscCache('boot-1 2.5e6\n', 'boot-1'), 2500000);
  assert.ok(plausibleTscKhz(3_000_000) && !plausibleTscKhz(2599998.5) && !plausibleTscKhz(Number.NaN) && !plausibleTscKhz(99_999));
  assert.ok(constantTsc('processor\t: 0\nflags\t\t: fpu tsc constant_tsc rep_good nonstop_tsc cpuid\n'));
  assert.ok(!constantTsc('flags\t\t: fpu tsc constant_tsc cpuid\n'), 'a TSC that stops in deep sleep states');
  assert.ok(!constantTsc('processor : 0\n'));
});

test('measured once per host boot with the helper, then read back; a failing helper or a varying TSC gives none', () => {
  const d = mkdtempSync(join(tmpdir(), 'mkt-tsc-'));
  try {
    const cpuinfo = join(d, 'cpuinfo');
    writeFileSync(cpuinfo, 'flags\t\t: fpu tsc constant_tsc nonstop_tsc\n');
    const counter = join(d, 'runs');
    const helper = join(d, 'helper');
    writeFileSync(helper, `#!/bin/sh\necho x >> '${counter}'\necho 2599998\n`);
    chmodSync(helper, 0o755);
    const cache = join(d, 'cache');
    const runs = (): number => (existsSync(counter) ? readFileSync(counter, 'utf8').split('\n').filter(Boolean).length : 0);
    assert.equal(hostTscKhz(cache, 'boot-1', helper, cpuinfo), 2599998);
    assert.equal(hostTscKhz(cache, 'boot-1', helper, cpuinfo), 2599998);
    assert.equal(runs(), 1, 'the second run reads the cache');
    assert.equal(readFileSync(join(cache, 'tsc'), 'utf8'), 'boot-1 2599998\n');
    assert.equal(hostTscKhz(cache, 'boot-2', helper, cpuinfo), 2599998);
    assert.equal(runs(), 2, 'a new host boot measures again');
    assert.deepEqual(readdirSync(cache), ['tsc'], 'no temporary file left');
    // a boot id that is unknown is never cached
    hostTscKhz(cache, 'unknown', helper, cpuinfo);
    hostTscKhz(cache, 'unknown', helper, cpuinfo);
    assert.equal(runs(), 4);
    const failing = join(d, 'failing');
    writeFileSync(failing, '#!/bin/sh\necho 2599998\nexit 1\n');
    chmodSync(failing, 0o755);
    assert.equal(hostTscKhz(join(d, 'c2'), 'boot-1', failing, cpuinfo), undefined);
    assert.equal(hostTscKhz(join(d, 'c3'), 'boot-1', join(d, 'missing'), cpuinfo), undefined);
    writeFileSync(cpuinfo, 'flags\t\t: fpu tsc\n');
    assert.equal(hostTscKhz(join(d, 'c4'), 'boot-1', helper, cpuinfo), undefined, 'a TSC whose rate varies is not measured');
    assert.equal(runs(), 4);
    assert.ok(!existsSync(join(d, 'c2')) && !existsSync(join(d, 'c4')));
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test('mkt-tsc measures this host the same twice, to within 1e-4', { skip: process.arch !== 'x64' && 'the TSC is x86-64' }, async () => {
  const { spawnSync } = await import('node:child_process');
  const helper = new URL('../../../dist/host/mkt-tsc', import.meta.url).pathname;
  const a = Number(spawnSync(helper, { encoding: 'utf8' }).stdout.trim());
  const b = Number(spawnSync(helper, { encoding: 'utf8' }).stdout.trim());
  assert.ok(plausibleTscKhz(a) && plausibleTscKhz(b), `${a} ${b}`);
  assert.ok(Math.abs(a - b) * 10_000 <= a, `${a} against ${b}`);
});

test('-tsc_early_khz=VALUE leaves out the value this run passes; another value is refused naming both', () => {
  const entries = baseCmdline({ quiet: true, accel: 'tcg', tscKhz: 2599998 });
  assert.doesNotMatch(renderCmdline(entries, ['-tsc_early_khz=2599998']), /tsc_early_khz/);
  assert.throws(() => renderCmdline(entries, ['-tsc_early_khz=1']), /this run passes tsc_early_khz=2599998, not tsc_early_khz=1; --append=-tsc_early_khz leaves it out/);
  assert.throws(() => renderCmdline(entries, ['-pci=lastbus=255']), /this run passes pci=lastbus=0, not pci=lastbus=255/);
  // the list of what may be left out names the rate as a placeholder, not a made-up value
  assert.throws(() => renderCmdline(entries, ['-nosuch']), (e: Error) => / tsc_early_khz=KHZ\)/.test(e.message) && !/tsc_early_khz=1\b/.test(e.message));
  // a run that passes none (KVM) has nothing to leave out, whatever the value
  assert.doesNotMatch(renderCmdline(baseCmdline({ quiet: true, accel: 'kvm' }), ['-tsc_early_khz=5']), /tsc_early_khz/);
});

test('a FIFO, a device or a directory where a cache file belongs is no entry, read at once; the TSC is measured again', async () => {
  const { execFileSync } = await import('node:child_process');
  const { readCacheText } = await import('../../src/host/cache-file.js');
  const { readVerdict } = await import('../../src/host/kvm-verdict.js');
  const { mkdirSync, symlinkSync } = await import('node:fs');
  const d = mkdtempSync(join(tmpdir(), 'mkt-cachefile-'));
  try {
    const fifo = join(d, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const t0 = Date.now();
    assert.equal(readCacheText(fifo), undefined);
    symlinkSync('/dev/zero', join(d, 'zero'));
    assert.equal(readCacheText(join(d, 'zero')), undefined);
    mkdirSync(join(d, 'dir'));
    assert.equal(readCacheText(join(d, 'dir')), undefined);
    assert.equal(readCacheText(join(d, 'missing')), undefined);
    writeFileSync(join(d, 'big'), 'x'.repeat(100_000));
    assert.equal(readCacheText(join(d, 'big'))?.length, 64 * 1024);
    // the real readers: a FIFO at the KVM verdict's and the TSC cache's place
    const cache = join(d, 'cache');
    mkdirSync(cache);
    execFileSync('mkfifo', [join(cache, 'kvm-verdict.json'), join(cache, 'tsc')]);
    assert.equal(readVerdict(cache, 'boot-1'), undefined);
    const cpuinfo = join(d, 'cpuinfo');
    writeFileSync(cpuinfo, 'flags\t\t: constant_tsc nonstop_tsc\n');
    const helper = join(d, 'helper');
    writeFileSync(helper, '#!/bin/sh\necho 2599998\n');
    chmodSync(helper, 0o755);
    assert.equal(hostTscKhz(cache, 'boot-1', helper, cpuinfo), 2599998);
    assert.equal(readFileSync(join(cache, 'tsc'), 'utf8'), 'boot-1 2599998\n', 'the FIFO was replaced by the measurement');
    assert.ok(Date.now() - t0 < 5000, 'nothing waited on a FIFO');
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test("an option whose value is another option is a missing value, said before the words after it are taken for config names", async () => {
  const { runCommand } = await import('../../src/cli/run.js');
  const parse = (args: string[]): Promise<unknown> => {
    const cmd = runCommand(() => {}).exitOverride();
    return cmd.parseAsync(args, { from: 'user' });
  };
  await assert.rejects(parse(['--memory', '--exec', 'true']), /--memory needs a value, but the word after it is the option --exec: write --memory=<size>$/);
  await assert.rejects(parse(['-c', '-e', 'true']), /--cpus needs a value, but the word after it is the option -e/);
  await assert.rejects(parse(['--kernel', '--exec', 'true']), /--kernel needs a value.*a path that starts with dashes: --kernel=\.\/--exec/);
  await assert.rejects(parse(['--dir', '--no-home', '--exec', 'true']), /--dir needs a value, but the word after it is the option --no-home/);
  await assert.rejects(parse(['--memory=--exec=x', 'true']), /--memory needs a value/);
  // --append and --qemu-arg values are often dashed: left alone
  const { checkValuesAreNotOptions } = await import('../../src/cli/run.js');
  assert.doesNotThrow(() => checkValuesAreNotOptions(runCommand(() => {}), { append: ['-nolapic_timer', '--', '-e'], qemuArg: ['-d', '--kernel'], memory: '2G', dir: ['/tmp/a'] }));
});

test("a FIFO where bin/mkt's compiled-code cache belongs does not stop it starting, and is replaced", async () => {
  const { execFileSync, spawnSync } = await import('node:child_process');
  const { mkdirSync, statSync } = await import('node:fs');
  const root = new URL('../../../', import.meta.url).pathname;
  const st = statSync(join(root, 'dist', 'cli', 'mkt.cjs'));
  const d = mkdtempSync(join(tmpdir(), 'mkt-v8-'));
  try {
    mkdirSync(join(d, 'mkt'));
    const name = join(d, 'mkt', `cli-${process.version}-${st.size}-${Math.round(st.mtimeMs)}-run.v8`);
    execFileSync('mkfifo', [name]);
    const r = spawnSync(join(root, 'bin', 'mkt'), ['run', '--help'], { env: { ...process.env, XDG_CACHE_HOME: d }, timeout: 20_000, encoding: 'utf8' });
    assert.equal(r.status, 0, `${r.signal ?? ''} ${r.stderr}`);
    assert.match(r.stdout, /--kernel/);
    assert.ok(statSync(name).isFile(), 'the FIFO was replaced by the cache');
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});
