/**
 * The exec checks as a regular (non-root) user. Run as root, the suite
 * creates the user mkt-test-user (test/setup/user.sh) and runs a copy of mkt
 * and of the test kernel's outputs that the user can read; run as a regular
 * user, the checks run as that user directly.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ktree, ROOT, tempDir } from './helpers.js';

const K = ktree();
const release = readFileSync(join(K, 'include/config/kernel.release'), 'utf8').trim();
const asRoot = process.getuid?.() === 0;
const user = asRoot ? (process.env.MKT_TEST_USER ?? 'mkt-test-user') : (process.env.USER ?? '');
const work = tempDir('mkt-user-');
chmodSync(work, 0o755);
after(() => rmSync(work, { recursive: true, force: true }));

function ids(): { uid: number; gid: number; home: string } {
  const r = spawnSync('getent', ['passwd', user], { encoding: 'utf8' });
  assert.equal(r.status, 0, `user ${user} does not exist: run test/setup/user.sh as root`);
  const f = r.stdout.trim().split(':');
  return { uid: Number(f[2]), gid: Number(f[3]), home: f[5]! };
}

/** A readable copy of mkt (bin, dist and runtime modules) and of the tree's boot outputs and module. */
function copies(): { mkt: string; tree: string } {
  if (!asRoot) return { mkt: join(ROOT, 'bin', 'mkt'), tree: K };
  const pkg = join(work, 'mkt');
  // the runtime dependencies as package.json lists them
  const deps = Object.keys((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> }).dependencies ?? {});
  for (const p of ['bin', 'dist', 'package.json', ...deps.map((d) => `node_modules/${d}`)]) {
    cpSync(join(ROOT, p), join(pkg, p), { recursive: true });
  }
  const tree = join(work, 'tree');
  for (const p of ['arch/x86/boot/bzImage', 'include/config/kernel.release', '.config', 'System.map', 'modules.order',
    'Module.symvers', 'modules.builtin', 'modules.builtin.modinfo', 'drivers/net/dummy.ko']) {
    mkdirSync(join(tree, p, '..'), { recursive: true });
    copyFileSync(join(K, p), join(tree, p));
  }
  spawnSync('chmod', ['-R', 'a+rX', work]);
  return { mkt: join(pkg, 'bin', 'mkt'), tree };
}

const c = copies();
const me = ids();

function asUser(args: string[], input = ''): { code: number | null; out: string; err: string } {
  const env = ['HOME=' + me.home, 'USER=' + user, 'LOGNAME=' + user, 'PATH=/usr/local/bin:/usr/bin:/bin', `MKT_ACCEL=${process.env.MKT_ACCEL ?? ''}`];
  const argv = asRoot ? ['runuser', '-u', user, '--', 'env', '-i', ...env, c.mkt, ...args] : [c.mkt, ...args];
  const r = spawnSync(argv[0]!, argv.slice(1), { input, encoding: 'utf8', timeout: 400_000, cwd: '/' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('as a regular user: uname, status, stdout/stderr apart, stdin, identity', () => {
  const r = asUser(['run', '--kernel', c.tree, '--exec', 'uname -r; id -un; id -u; echo "$HOME"; wc -l; echo to-err >&2; exit 5'], 'a\nb\n');
  assert.equal(r.code, 5, r.err);
  assert.equal(r.out, `${release}\n${user}\n${me.uid}\n${me.home}\n2\n`);
  assert.match(r.err, /to-err/);
});

test("as a regular user: another user's stale run directory in /tmp is left alone, and the run goes on", { skip: !asRoot && 'needs root to leave a directory of its own' }, () => {
  // what a SIGKILLed root mkt leaves: its pid is gone, its private directory stays until root's next run
  const dead = spawnSync('true').pid!;
  const stale = join('/tmp', `mkt-run-${dead}-0badf00d`);
  mkdirSync(join(stale, 'root'), { recursive: true, mode: 0o700 });
  chmodSync(stale, 0o700);
  try {
    const r = asUser(['run', '--kernel', c.tree, '--exec', 'exit 3']);
    assert.equal(r.code, 3, r.err);
    assert.ok(existsSync(join(stale, 'root')), "root's directory is root's to sweep");
  } finally {
    rmSync(stale, { recursive: true, force: true });
  }
});

test('as a regular user: files written to an exported directory keep the user as owner; root stays throw-away', () => {
  const d = join(me.home, `mkt-export ${process.pid}`);
  const r0 = spawnSync(asRoot ? 'runuser' : 'sh', asRoot ? ['-u', user, '--', 'mkdir', '-p', d] : ['-c', `mkdir -p '${d}'`]);
  assert.equal(r0.status, 0);
  try {
    const r = asUser(['run', '--kernel', c.tree, '--dir', d, '--exec', `echo hi > '${d}/f' && echo x > /var/tmp/mkt-user-probe && cat /var/tmp/mkt-user-probe`]);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, 'x\n');
    assert.ok(!existsSync('/var/tmp/mkt-user-probe'));
    const st = statSync(join(d, 'f'));
    assert.equal(st.uid, me.uid);
    assert.equal(readFileSync(join(d, 'f'), 'utf8'), 'hi\n');
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test('as a regular user: passwordless sudo in the guest, and the tree modules load through it', () => {
  const hasSudo = spawnSync('sh', ['-c', 'command -v sudo']).status === 0;
  assert.ok(hasSudo, 'sudo is needed for this test (apt-get install sudo)');
  const r = asUser(['run', '--kernel', c.tree, '--exec', 'sudo -n id -u && sudo -n modprobe dummy && grep -c "^dummy " /proc/modules']);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, '0\n1\n');
});

test('as a regular user without the kvm group: auto says how to fix it and uses TCG', () => {
  const inKvm = spawnSync('sh', ['-c', `id -nG ${user} | tr ' ' '\\n' | grep -qx kvm`]).status === 0;
  // with --exec and stderr not a terminal, the standing notice is --verbose only (the command's stderr is its own)
  const quiet = asUser(['run', '--kernel', c.tree, '--accel', 'auto', '--exec', 'true']);
  assert.equal(quiet.code, 0, quiet.err);
  if (!inKvm && asRoot) assert.doesNotMatch(quiet.err, /kvm group/);
  const r = asUser(['run', '--kernel', c.tree, '--accel', 'auto', '--verbose', '--exec', 'true']);
  assert.equal(r.code, 0, r.err);
  if (!inKvm && asRoot) assert.match(r.err, /\/dev\/kvm is not accessible to mkt-test-user: add the user to the kvm group/);
});
