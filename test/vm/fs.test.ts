/** Both filesystems for the root and the exports: 9p and virtiofs (virtiofs needs root with Debian's daemon). */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { distroKernel, ktree, MKT, mkt, sleep, tempDir, vmProcesses } from './helpers.js';

const K = ktree();
const asRoot = process.getuid?.() === 0;
const work = tempDir('mkt-fs-');
after(() => rmSync(work, { recursive: true, force: true }));
const runDirs = (): string[] => readdirSync(tmpdir()).filter((n) => n.startsWith(`mkt-run-`));

test('auto picks virtiofs as root and 9p otherwise, and says why under --verbose', () => {
  const r = mkt(['run', '--kernel', K, '--fs', 'auto', '--verbose', '--exec', 'true']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, asRoot ? /filesystem: virtiofs through \S*virtiofsd/ : /filesystem: 9p: .*needs root/);
});

for (const fs of ['9p', 'virtiofs'] as const) {
  test(`${fs}: a host-side edit during the run is seen by the guest on the next read`, async () => {
    if (fs === 'virtiofs' && !asRoot) {
      const r = mkt(['run', '--kernel', K, '--fs', 'virtiofs', '--exec', 'true']);
      assert.equal(r.code, 125);
      assert.match(r.stderr, /--fs virtiofs: .*needs root.*--fs 9p/);
      return;
    }
    const d = join(work, `edit-${fs}`);
    spawnMkdir(d);
    writeFileSync(join(d, 'f'), 'before\n');
    // the guest reads, says so, waits for the host's edit, reads again
    const script = `cat '${d}/f'; : > '${d}/read'; while [ ! -e '${d}/edited' ]; do sleep 0.05; done; cat '${d}/f'; ls '${d}'`;
    const child = spawn(MKT, ['run', '--kernel', K, '--fs', fs, '--dir', d, '--exec', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (err += b));
    for (let i = 0; i < 600 && !existsSync(join(d, 'read')); i++) await sleep(100);
    assert.ok(existsSync(join(d, 'read')), `the guest never read the file: ${err}`);
    writeFileSync(join(d, 'f'), 'after, and longer\n');
    writeFileSync(join(d, 'new-file'), '');
    writeFileSync(join(d, 'edited'), '');
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    assert.equal(code, 0, err);
    assert.equal(out, 'before\nafter, and longer\nedited\nf\nnew-file\nread\n');
  });

  test(`${fs}: the core exec checks hold (output, status, stdin, throw-away root, awkward --dir)`, () => {
    if (fs === 'virtiofs' && !asRoot) return assert.equal(mkt(['run', '--kernel', K, '--fs', fs, '--exec', 'true']).code, 125);
    const d = join(work, `dir with space,comma-${fs}`);
    spawnMkdir(d);
    const r = mkt(['run', '--kernel', K, '--fs', fs, '--dir', d, '--exec', `uname -r; wc -c; echo x > /etc/mkt-fs-probe; echo w > '${d}/w'; exit 4`], { input: 'abc', cwd: d });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stdout.toString(), /^6\.1\.\d+\n3\n$/);
    assert.ok(!existsSync('/etc/mkt-fs-probe'));
    assert.ok(existsSync(join(d, 'w')));
  });

  test(`${fs}: writes through a shared mapping reach the host, a background writer's included`, () => {
    if (fs === 'virtiofs' && !asRoot) return;
    const d = join(work, `mmap-${fs}`);
    spawnMkdir(d);
    // a static writer: with "bg", a child maps, writes and then stays, still mapped, when the command ends
    writeFileSync(
      join(d, 'w.c'),
      `#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
  if (argc > 2 && fork() > 0) return 0;
  int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || ftruncate(fd, 4096) < 0) return 1;
  char *p = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return 1;
  close(fd);
  strcpy(p, "mapped write");
  if (argc > 2) { write(1, "w", 1); for (;;) pause(); }
  return 0;
}
`,
    );
    const cc = spawnSync('cc', ['-static', '-o', join(d, 'w'), join(d, 'w.c')], { encoding: 'utf8' });
    assert.equal(cc.status, 0, cc.stderr);
    const fg = mkt(['run', '--kernel', K, '--fs', fs, '--dir', d, '--exec', `${d}/w ${d}/fg`]);
    assert.equal(fg.code, 0, fg.stderr);
    // the background writer has written ("w" on stdout) before the command ends
    const bg = mkt(['run', '--kernel', K, '--fs', fs, '--dir', d, '--exec', `${d}/w ${d}/bg bg | head -c 1`]);
    assert.equal(bg.code, 0, bg.stderr);
    assert.equal(bg.stdout.toString(), 'w');
    for (const f of ['fg', 'bg']) assert.equal(readFileSync(join(d, f), 'latin1').replace(/\0+$/, ''), 'mapped write', f);
  });
}

function spawnMkdir(d: string): void {
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d, { recursive: true });
}

test('the host root stays read-only even to a guest root that mounts the export again read-write', () => {
  const probe = join(tmpdir(), `mkt-ro-probe-${process.pid}`);
  for (const fs of asRoot ? (['9p', 'virtiofs'] as const) : (['9p'] as const)) {
    const r = mkt(['run', '--kernel', K, '--fs', fs, '--exec',
      `mkdir -p /tmp/m && mount -t ${fs === '9p' ? '9p -o trans=virtio' : 'virtiofs'} mktroot /tmp/m; mount -o remount,rw /tmp/m; echo x > /tmp/m${probe} 2>/dev/null; echo tried`]);
    assert.equal(r.stdout.toString(), 'tried\n', r.stderr);
    assert.equal(existsSync(probe), false, `${fs}: the guest wrote ${probe} on the host`);
  }
});

test("the guest writes freely to its root, also on another of the host's filesystems under it, and the host keeps its files", () => {
  if (!asRoot) return; // mounting the host filesystem needs root
  const sub = `/var/tmp/mkt-sub-${process.pid}`;
  mkdirSync(sub, { recursive: true });
  assert.equal(spawnSync('mount', ['-t', 'tmpfs', 'mkt-test', sub]).status, 0);
  try {
    writeFileSync(join(sub, 'f'), 'host\n');
    for (const fs of ['9p', 'virtiofs'] as const) {
      const r = mkt(['run', '--kernel', K, '--fs', fs, '--exec',
        `cat ${sub}/f && echo guest > ${sub}/f && echo new > ${sub}/g && echo etc > /etc/mkt-probe-${process.pid} && cat ${sub}/f ${sub}/g /etc/mkt-probe-${process.pid} && stat -c %a /etc/hostname`]);
      assert.equal(r.code, 0, `${fs}: ${r.stderr}`);
      assert.equal(r.stdout.toString(), 'host\nguest\nnew\netc\n644\n', fs);
      assert.equal(readFileSync(join(sub, 'f'), 'utf8'), 'host\n', `${fs}: the host's file changed`);
      assert.ok(!existsSync(join(sub, 'g')) && !existsSync(`/etc/mkt-probe-${process.pid}`), `${fs}: the guest's files reached the host`);
    }
  } finally {
    spawnSync('umount', [sub]);
    rmSync(sub, { recursive: true, force: true });
  }
  // held in the root daemon's memory, as much as the guest's own at most
  const full = mkt(['run', '--kernel', K, '--fs', 'virtiofs', '--memory', '256M', '--exec',
    'head -c 300000000 /dev/zero > /var/tmp/mkt-full; echo "status $?"; rm /var/tmp/mkt-full && echo removed']);
  assert.equal(full.code, 0, full.stderr);
  assert.equal(full.stdout.toString(), 'status 1\nremoved\n');
  assert.match(full.stderr, /No space left on device/);
});

test("the guest's own files are the same whether the host put them into its root (virtiofs as root) or mkt-init wrote them (9p)", () => {
  const probe = 'stat -c "%a %U %n" /etc/hostname /etc/hosts; cat /etc/hostname; tail -n 1 /etc/hosts; readlink /boot/System.map-$(uname -r) /boot/config-$(uname -r); ' +
    'grep -q "^127.0.0.1" /etc/hosts && echo has-host-lines; stat -c %F /lib/modules/$(uname -r); echo host >/etc/hostname && cat /etc/hostname; ' +
    // read-only over 9p, thrown away over virtiofs: either way the host's staged modules stay as they are
    `test -s /lib/modules/$(uname -r)/modules.dep && { touch /lib/modules/$(uname -r)/mkt-probe-${process.pid} 2>/dev/null; echo modules; }`;
  const seen: string[] = [];
  for (const fs of asRoot ? ['9p', 'virtiofs'] : ['9p']) {
    const r = mkt(['run', '--kernel', K, '--fs', fs, '--exec', probe]);
    assert.equal(r.code, 0, r.stderr);
    seen.push(r.stdout.toString());
  }
  assert.equal(seen[0], `644 root /etc/hostname\n644 root /etc/hosts\nmkt\n127.0.1.1\tmkt\n${K}/System.map\n${K}/.config\nhas-host-lines\ndirectory\nhost\nmodules\n`);
  if (seen.length > 1) assert.equal(seen[1], seen[0]);
  // nothing of it reached the host
  assert.notEqual(readFileSync('/etc/hostname', 'utf8'), 'host\n');
  assert.ok(!readFileSync('/etc/hosts', 'utf8').includes('127.0.1.1\tmkt'));
  const staged = spawnSync('find', [join(process.env.XDG_CACHE_HOME ?? join(process.env.HOME!, '.cache'), 'mkt', 'modules'), '-name', `mkt-probe-${process.pid}`], { encoding: 'utf8' });
  assert.equal(staged.stdout, '', 'a file the guest made in its /lib/modules reached the staged modules on the host');
});

test('a virtiofsd that fails: auto boots over 9p and says why under --verbose; --fs virtiofs fails with its stderr', () => {
  if (!asRoot) return; // auto picks 9p for a regular user anyway (the first test)
  const bad = join(work, 'bad-virtiofsd');
  writeFileSync(bad, '#!/bin/sh\necho "virtiofsd: cannot serve today" >&2\nexit 1\n', { mode: 0o755 });
  const before = runDirs().length;
  const auto = mkt(['run', '--kernel', K, '--fs', 'auto', '--verbose', '--exec', 'echo booted'], { env: { MKT_VIRTIOFSD: bad } });
  assert.equal(auto.code, 0, auto.stderr);
  assert.equal(auto.stdout.toString(), 'booted\n');
  assert.match(auto.stderr, /filesystem: 9p, as virtiofsd did not start:[\s\S]*cannot serve today/);
  const strict = mkt(['run', '--kernel', K, '--fs', 'virtiofs', '--exec', 'echo booted'], { env: { MKT_VIRTIOFSD: bad } });
  assert.equal(strict.code, 125);
  assert.match(strict.stderr, /virtiofsd failed to start \(--fs 9p avoids it\):[\s\S]*cannot serve today/);
  // neither run leaves its private directory behind (the next run also sweeps those of dead ones)
  assert.ok(runDirs().length <= before, runDirs().join(' '));
});

test('a virtiofsd that ends at once with status 0, and sockets too long for TMPDIR: auto boots over 9p, --fs virtiofs says why', () => {
  if (!asRoot) return;
  const quiet = join(work, 'quiet-virtiofsd');
  writeFileSync(quiet, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  const auto = mkt(['run', '--kernel', K, '--fs', 'auto', '--exec', 'echo booted'], { env: { MKT_VIRTIOFSD: quiet } });
  assert.equal(auto.code, 0, auto.stderr);
  assert.equal(auto.stdout.toString(), 'booted\n');
  const strict = mkt(['run', '--kernel', K, '--fs', 'virtiofs', '--exec', 'echo booted'], { env: { MKT_VIRTIOFSD: quiet } });
  assert.equal(strict.code, 125);
  assert.match(strict.stderr, /virtiofsd failed to start \(--fs 9p avoids it\)/);
  // a Unix socket path holds 107 bytes: a TMPDIR of 90 leaves no room for the run directory's sockets
  const deep = join(work, 'd'.repeat(90 - work.length - 1));
  mkdirSync(deep);
  const long = mkt(['run', '--kernel', K, '--fs', 'virtiofs', '--exec', 'echo booted'], { env: { TMPDIR: deep } });
  assert.equal(long.code, 125);
  assert.match(long.stderr, /longer than the 107 bytes a Unix socket path may have: set TMPDIR to a shorter directory/);
  const longAuto = mkt(['run', '--kernel', K, '--exec', 'echo booted'], { env: { TMPDIR: deep } });
  assert.equal(longAuto.code, 0, longAuto.stderr);
  assert.deepEqual(readdirSync(deep), [], 'nothing left in that TMPDIR');
});

test('a virtiofsd that never serves: after 5 s auto boots over 9p, --fs virtiofs fails saying so', () => {
  if (!asRoot) return;
  const mute = join(work, 'mute-virtiofsd');
  writeFileSync(mute, '#!/bin/sh\nwhile :; do sleep 1; done\n', { mode: 0o755 });
  const t0 = Date.now();
  const auto = mkt(['run', '--kernel', K, '--fs', 'auto', '--verbose', '--exec', 'echo booted'], { env: { MKT_VIRTIOFSD: mute } });
  assert.equal(auto.code, 0, auto.stderr);
  assert.equal(auto.stdout.toString(), 'booted\n');
  assert.match(auto.stderr, /filesystem: 9p, as virtiofsd did not start:\nnot serving after 5 s/);
  assert.ok(Date.now() - t0 < 60_000);
  const strict = mkt(['run', '--kernel', K, '--fs', 'virtiofs', '--exec', 'echo booted'], { env: { MKT_VIRTIOFSD: mute } });
  assert.equal(strict.code, 125);
  assert.match(strict.stderr, /virtiofsd failed to start \(--fs 9p avoids it\):\nnot serving after 5 s \(qemu's connection never accepted\)/);
  assert.equal(spawnSync('pgrep', ['-f', mute]).status, 1, 'a mute daemon outlived its run');
});

test('a wrapper that runs virtiofsd without exec serves through its child: a boot slower than the 5 s wait is not cut off', () => {
  if (!asRoot) return;
  const wrapper = join(work, 'forking-virtiofsd');
  writeFileSync(wrapper, '#!/bin/sh\n/usr/lib/qemu/virtiofsd "$@"\n', { mode: 0o755 });
  // a boot that reaches mkt-init after the 5 s check, which must find the child serving: the Debian kernel
  // (CONFIG_BOOT_PRINTK_DELAY) holding each of its some 650 boot messages 1 ms, shown with --verbose
  const t0 = Date.now();
  const r = mkt(['run', '--kernel', distroKernel(), '--fs', 'virtiofs', '--verbose', '--append', 'boot_delay=1', '--exec', 'echo served'], { env: { MKT_VIRTIOFSD: wrapper } });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString(), 'served\n');
  assert.ok(Date.now() - t0 > 5000, 'the boot was quicker than the check: this test shows nothing');
});

test('a wrapper that leaves a child in the background and exits: after 5 s auto boots 9p, virtiofs fails; the child goes with it', () => {
  if (!asRoot) return;
  const tag = String(3000 + (process.pid % 1000));
  const wrapper = join(work, 'bg-virtiofsd');
  writeFileSync(wrapper, `#!/bin/sh\nsleep ${tag}1 &\nexit 0\n`, { mode: 0o755 });
  const auto = mkt(['run', '--kernel', K, '--fs', 'auto', '--verbose', '--exec', 'findmnt -no FSTYPE /root'], { env: { MKT_VIRTIOFSD: wrapper } });
  assert.equal(auto.code, 0, auto.stderr);
  assert.equal(auto.stdout.toString(), '9p\n');
  assert.match(auto.stderr, /filesystem: 9p, as virtiofsd did not start:\nnot serving after 5 s/);
  const strict = mkt(['run', '--kernel', K, '--fs', 'virtiofs', '--exec', 'true'], { env: { MKT_VIRTIOFSD: wrapper } });
  assert.equal(strict.code, 125);
  assert.match(strict.stderr, /not serving after 5 s/);
  assert.equal(spawnSync('pgrep', ['-f', `sleep ${tag}1`]).status, 1, "the wrapper's child outlived the run");
});

test('a wrapper that exits at once, its child out of reach: auto boots 9p at once; a daemon that fails says its status', () => {
  if (!asRoot) return;
  const tag = String(4000 + (process.pid % 1000));
  const wrapper = join(work, 'setsid-virtiofsd');
  writeFileSync(wrapper, `#!/bin/sh\nsetsid sleep ${tag}2 3>&- &\nexit 0\n`, { mode: 0o755 });
  try {
    const auto = mkt(['run', '--kernel', K, '--fs', 'auto', '--exec', 'findmnt -no FSTYPE /root'], { env: { MKT_VIRTIOFSD: wrapper } });
    assert.equal(auto.code, 0, auto.stderr);
    assert.equal(auto.stdout.toString(), '9p\n');
  } finally {
    spawnSync('pkill', ['-f', `sleep ${tag}2`]);
  }
  const three = join(work, 'three-virtiofsd');
  writeFileSync(three, '#!/bin/sh\nexit 3\n', { mode: 0o755 });
  const strict = mkt(['run', '--kernel', K, '--fs', 'virtiofs', '--exec', 'true'], { env: { MKT_VIRTIOFSD: three } });
  assert.equal(strict.code, 125);
  assert.match(strict.stderr, /three-virtiofsd --fd=3 .* \(exited with status 3\):\n\(nothing on stderr\)/);
  // not needed with 9p: a bad MKT_VIRTIOFSD is no error there
  const p9 = mkt(['run', '--kernel', K, '--fs', '9p', '--exec', 'echo ok'], { env: { MKT_VIRTIOFSD: '/nonexistent' } });
  assert.equal(p9.code, 0, p9.stderr);
  assert.equal(p9.stdout.toString(), 'ok\n');
});

test('--timeout holds while qemu waits on a daemon that never serves', () => {
  if (!asRoot) return;
  const mute = join(work, 'mute2-virtiofsd');
  writeFileSync(mute, '#!/bin/sh\nwhile :; do sleep 1; done\n', { mode: 0o755 });
  const t0 = Date.now();
  const r = mkt(['run', '--kernel', K, '--fs', 'virtiofs', '--timeout', '2', '--exec', 'true'], { env: { MKT_VIRTIOFSD: mute } });
  const ms = Date.now() - t0;
  assert.equal(r.code, 124, r.stderr);
  assert.ok(ms < 2800, `--timeout 2 took ${ms} ms`);
  assert.equal(spawnSync('pgrep', ['-f', `${mute} --fd=`]).status, 1, 'the mute daemon outlived its run');
});

test('a virtiofsd that dies while the guest runs ends the run with 125 and says so, rather than hang', async () => {
  if (!asRoot) return;
  const dir = join(work, `served-${process.pid}`);
  mkdirSync(dir);
  const child = spawn(MKT, ['run', '--kernel', K, '--fs', 'virtiofs', '--dir', dir, '--exec', `echo up >&2; sleep 3; ls ${dir}; echo survived`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const daemon = (): number[] => spawnSync('pgrep', ['-f', `virtiofsd --fd=3 -o source=${dir} `]).stdout.toString().split('\n').filter(Boolean).map(Number);
  for (let i = 0; i < 100 && !daemon().length; i++) await sleep(50);
  assert.ok(daemon().length, 'the daemon never started');
  // the guest is up (a slow boot must not make this a daemon that failed to start)
  for (let i = 0; i < 600 && !err.includes('up\n'); i++) await sleep(50);
  assert.match(err, /^up$/m, 'the guest never came up');
  for (const pid of daemon()) process.kill(pid, 'SIGKILL');
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  assert.equal(code, 125, err);
  assert.match(err, /virtiofsd ended while the VM ran/);
  assert.equal(out, '');
});

test('no virtiofsd or run directory is left, even when qemu is killed', async () => {
  const before = runDirs().length;
  const procsBefore = vmProcesses().length;
  const marker = `mkt-fs-kill-${process.pid}`;
  const child = spawn(MKT, ['run', '--kernel', K, '--append', `${marker}=1`, '--exec', 'sleep 100'], { stdio: 'ignore' });
  let qemu: number[] = [];
  for (let i = 0; i < 100 && !qemu.length; i++) {
    await sleep(100);
    qemu = vmProcesses(marker);
  }
  assert.ok(qemu.length, 'qemu never started');
  await sleep(1500);
  process.kill(qemu[0]!, 'SIGKILL');
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  assert.equal(code, 125);
  await sleep(500);
  assert.ok(vmProcesses().length <= procsBefore, 'a virtiofsd or qemu outlived the run');
  assert.ok(runDirs().length <= before, `run directories left: ${runDirs().join(' ')}`);
});

test('a signal, or a SIGKILL of mkt, while qemu waits on daemons that never serve: no daemon left, nor the run directory', async () => {
  if (!asRoot) return;
  // a daemon that never accepts on its socket and ignores SIGTERM, as virtiofsd waiting for qemu does in effect
  const slow = join(work, 'slow-virtiofsd');
  writeFileSync(slow, `#!/bin/sh\ntrap '' TERM\nexec sleep 60 # mkt-fs-slow-${process.pid}\n`, { mode: 0o755 });
  const needle = `sleep 60`;
  const sleepers = (): number => spawnSync('pgrep', ['-fx', needle]).stdout.toString().split('\n').filter(Boolean).length;
  const base = sleepers();
  for (const sig of ['SIGINT', 'SIGKILL'] as const) {
    const before = runDirs().length;
    const child = spawn(MKT, ['run', '--kernel', K, '--fs', 'virtiofs', '--exec', 'true'], { stdio: 'ignore', env: { ...process.env, MKT_VIRTIOFSD: slow } });
    for (let i = 0; i < 50 && sleepers() < base + 2; i++) await sleep(100);
    assert.equal(sleepers(), base + 2, 'the daemons did not start');
    process.kill(child.pid!, sig);
    const code = await new Promise<number | null>((r) => child.on('exit', (c, s) => r(c ?? (s === 'SIGKILL' ? 137 : null))));
    assert.equal(code, sig === 'SIGINT' ? 130 : 137);
    await sleep(500);
    assert.equal(sleepers(), base, `a daemon outlived mkt's ${sig}`);
    if (sig === 'SIGINT') assert.ok(runDirs().length <= before, `run directories left: ${runDirs().join(' ')}`);
  }
  // the next run sweeps the directory the SIGKILLed one left
  assert.equal(mkt(['run', '--kernel', K, '--fs', 'virtiofs', '--exec', 'true']).code, 0);
});

test("virtiofs: the launcher's start from the last run's plan is adopted, or killed when the plan differs; nothing is left", () => {
  if (!asRoot) return;
  const cache = join(work, 'fast-cache');
  const d = join(work, 'fast dir');
  spawnMkdir(d);
  const args = ['run', '--kernel', K, '--fs', 'virtiofs', '--dir', d, '--verbose', '--exec', `cat '${d}/in'; echo err >&2; exit 3`];
  const env = { XDG_CACHE_HOME: cache };
  const check = (want: RegExp | null): void => {
    writeFileSync(join(d, 'in'), `${Math.random()}\n`);
    const r = mkt(args, { env });
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.stdout.toString(), readFileSync(join(d, 'in'), 'utf8'));
    assert.match(r.stderr, /^err$/m);
    if (want) assert.match(r.stderr, want);
    else assert.doesNotMatch(r.stderr, /launcher/);
    assert.deepEqual(vmProcesses(cache), []);
    assert.deepEqual(vmProcesses(d.replace(/ /g, '.')), []);
    assert.deepEqual(runDirs(), []);
  };
  check(null);
  check(/qemu and its daemons were started by the launcher/);
  // a daemon's argv changed since: the launcher's processes are killed, mkt starts its own
  const dir = join(cache, 'mkt', 'start');
  const file = join(dir, readdirSync(dir)[0]!);
  writeFileSync(file, readFileSync(file).toString('latin1').replace('cache=auto', 'cache=never'), 'latin1');
  check(/does not fit this run's: starting anew/);
  // adopted, every time: its status is the command's (the daemons' ends hold mkt up until told)
  for (let i = 0; i < 4; i++) check(/qemu and its daemons were started by the launcher/);
});

test('virtiofs: a signal right after the start, before mkt adopts what the launcher started, leaves nothing behind', async () => {
  if (!asRoot) return;
  const cache = join(work, 'fast-cache-2');
  const args = ['run', '--kernel', K, '--fs', 'virtiofs', '--exec', 'sleep 5'];
  const env = { ...process.env, XDG_CACHE_HOME: cache };
  assert.equal(mkt(['run', '--kernel', K, '--fs', 'virtiofs', '--exec', 'sleep 5'], { env }).code, 0);
  // before Node.js runs, while mkt plans (a signal caught then is told only later), after it adopts
  for (const ms of [20, 35, 40, 45, 50, 60, 150]) {
    const child = spawn(MKT, args, { env, stdio: 'ignore' });
    await sleep(ms);
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('exit', (c, sig) => r(c ?? (sig ? 128 + 2 : null))));
    assert.equal(code, 130, `SIGINT after ${ms} ms`);
    // (mkt killed outright, before Node.js ran: its keeper kills the rest and removes the run directory, a moment later)
    for (let i = 0; i < 30 && (vmProcesses(cache).length || runDirs().length); i++) await sleep(100);
    assert.deepEqual(vmProcesses(cache), [], `SIGINT after ${ms} ms`);
    assert.deepEqual(runDirs(), [], `SIGINT after ${ms} ms`);
  }
});
