/** The host TSC rate a TCG guest is told: parsing, caching per host boot, and the kernel argument. */
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
