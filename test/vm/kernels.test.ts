/** Kernel selection: what --kernel accepts, what mkt picks without it, and what it refuses before booting. */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as require_os from 'node:os';
import * as require_fs from 'node:fs';
import { after, test } from 'node:test';
import { distroKernel, ktree, mkt, tempDir, vmProcesses } from './helpers.js';

const K = ktree();
const work = tempDir();
after(() => rmSync(work, { recursive: true, force: true }));
const before = vmProcesses().length;

/** A copy of the test tree's outputs with its .config edited by EDIT (for feature checks). */
function treeCopy(name: string, edit: (config: string) => string): string {
  const t = join(work, name);
  mkdirSync(join(t, 'arch/x86/boot'), { recursive: true });
  mkdirSync(join(t, 'include/config'), { recursive: true });
  copyFileSync(join(K, 'arch/x86/boot/bzImage'), join(t, 'arch/x86/boot/bzImage'));
  copyFileSync(join(K, 'include/config/kernel.release'), join(t, 'include/config/kernel.release'));
  writeFileSync(join(t, '.config'), edit(readFileSync(join(K, '.config'), 'utf8')));
  return t;
}

test('refused with a one-line error naming the path: missing, vmlinux, unbuilt tree, not a kernel, plain directory', () => {
  const cases: [string, RegExp][] = [
    [join(work, 'no-such-tree'), /--kernel .*no-such-tree: no such file, directory or installed kernel release.*pass a compiled kernel tree/],
    [join(K, 'arch/x86/boot/vmlinux.bin'), /vmlinux\.bin: .*pass the tree it was built in, or that tree's arch\/x86\/boot\/bzImage/],
  ];
  // a vmlinux away from its tree, and one built without CONFIG_PVH (here any x86-64 program) in its tree
  const lone = join(work, 'vmlinux');
  copyFileSync(join(K, 'vmlinux'), lone);
  cases.push([lone, /vmlinux: is an ELF file \(vmlinux\?\), not a bootable bzImage: pass the tree it was built in, or that tree's arch\/x86\/boot\/bzImage/]);
  const nopvh = treeCopy('no-pvh', (c) => c.replace(/^CONFIG_PVH=y$/m, '# CONFIG_PVH is not set'));
  copyFileSync('/bin/true', join(nopvh, 'vmlinux'));
  cases.push([join(nopvh, 'vmlinux'), /no-pvh\/vmlinux: has no PVH entry point \(built without CONFIG_PVH\), so qemu cannot start it directly: pass the tree or its arch\/x86\/boot\/bzImage, or set CONFIG_PVH=y/]);
  const noBz = treeCopy('vmlinux-only', (c) => c);
  rmSync(join(noBz, 'arch/x86/boot/bzImage'));
  copyFileSync(join(K, 'vmlinux'), join(noBz, 'vmlinux'));
  cases.push(['--no-pvh', /--no-pvh boots the bzImage, and .*vmlinux-only has none \(no arch\/x86\/boot\/bzImage\): run 'make -j\$\(nproc\) bzImage' there, or leave out --no-pvh/]);
  // a bzImage whose compressed kernel is damaged: refused before boot (the guest's decompressor would halt, saying nothing)
  const distro = readFileSync(distroKernel());
  const payload = ((distro[0x1f1] || 4) + 1) * 512 + distro.readUInt32LE(0x248);
  const flipped = Buffer.from(distro);
  for (let i = 0; i < 64; i++) flipped[payload + (distro.readUInt32LE(0x24c) >> 1) + i]! ^= 0xff;
  writeFileSync(join(work, 'flipped, copy'), flipped);
  cases.push([join(work, 'flipped, copy'), /kernel .*flipped, copy: its compressed kernel is damaged \(xz: .*\): copy or build it again \(the guest's decompressor would halt; --no-pvh boots it anyway\)/]);
  const unknown = Buffer.from(distro);
  unknown.fill(0x33, payload, payload + 8);
  writeFileSync(join(work, 'unknown'), unknown);
  cases.push([join(work, 'unknown'), /unknown: its compressed kernel starts as no format Linux uses: copy or build it again/]);
  // a vmlinux cut short (a build still running): refused, named; --no-pvh boots the bzImage
  const cut = treeCopy('cut-vmlinux', (c) => c);
  writeFileSync(join(cut, 'vmlinux'), readFileSync(join(K, 'vmlinux')).subarray(0, 4 << 20));
  cases.push([cut, /cut-vmlinux\/vmlinux is cut short: its segments end at byte \d+, the file has 4194304 \(an interrupted build or copy\?\): run 'make -j\$\(nproc\)' there again \(a build still running\?\), or pass --no-pvh to boot its bzImage/]);
  cases.push([join(cut, 'vmlinux'), /vmlinux: is cut short: .*: run 'make -j\$\(nproc\)' in .*cut-vmlinux again/]);
  const unbuilt = join(work, 'unbuilt');
  mkdirSync(unbuilt);
  writeFileSync(join(unbuilt, 'Makefile'), '');
  writeFileSync(join(unbuilt, 'Kconfig'), '');
  cases.push([unbuilt, /unbuilt is a kernel tree that was not built \(no arch\/x86\/boot\/bzImage\): run 'make -j\$\(nproc\)' there first/]);
  const junk = join(work, 'bzImage');
  writeFileSync(junk, 'not a kernel\n');
  cases.push([junk, /bzImage: is too small to be a kernel image|has no x86 boot header/]);
  const plain = join(work, 'plain dir');
  mkdirSync(plain);
  cases.push([plain, /plain dir is a directory but not a kernel tree/]);
  cases.push(['9.9.9-nosuch', /--kernel 9\.9\.9-nosuch: no such file, directory or installed kernel release \(installed: /]);
  for (const [k, want] of cases) {
    const r = mkt(['run', ...(k === '--no-pvh' ? ['--no-pvh', '--kernel', noBz] : ['--kernel', k]), '--exec', 'true']);
    assert.equal(r.code, 125, `${k}: ${r.stderr}`);
    assert.match(r.stderr, want);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});

test('a kernel lacking required options is refused before boot, naming them', () => {
  const t = treeCopy('no-overlay', (c) => c.replace(/^CONFIG_OVERLAY_FS=y$/m, '# CONFIG_OVERLAY_FS is not set').replace(/^CONFIG_MULTIUSER=y$/m, ''));
  const r = mkt(['run', '--kernel', t, '--fs', '9p', '--exec', 'true']);
  assert.equal(r.code, 125);
  assert.match(r.stderr, /lacks CONFIG_OVERLAY_FS, CONFIG_MULTIUSER, which mkt needs.*run 'mkt kconfig'/);
  // over virtiofs as root the host serves the root throw-away: the guest needs no overlayfs of its own
  if (process.getuid?.() === 0) {
    const v = mkt(['run', '--kernel', t, '--fs', 'virtiofs', '--exec', 'true']);
    assert.equal(v.code, 125);
    assert.match(v.stderr, /lacks CONFIG_MULTIUSER, which mkt needs/);
  }
  // a modular boot driver is fine only with modules to load
  const m = treeCopy('modular-9p', (c) => c.replace(/^CONFIG_9P_FS=y$/m, 'CONFIG_9P_FS=m'));
  const r2 = mkt(['run', '--kernel', m, '--fs', '9p', '--exec', 'true']);
  assert.equal(r2.code, 125);
  assert.match(r2.stderr, /9p are modules but no module directory was found/);
});

test('the tree, its vmlinux, its bzImage, an installed release name and /boot/vmlinuz-RELEASE are all accepted', () => {
  const image = (args: string[]): string => {
    const r = mkt(['run', ...args, '--dry-run']);
    assert.equal(r.code, 0, r.stderr);
    return /-kernel (\S+)/.exec(r.stdout.toString())![1]!;
  };
  // the tree: its vmlinux, started directly (CONFIG_PVH), no decompressor; --no-pvh: its bzImage
  assert.equal(image(['--kernel', K]), join(K, 'vmlinux'));
  assert.equal(image(['--kernel', K, '--no-pvh']), join(K, 'arch/x86/boot/bzImage'));
  assert.equal(image(['--kernel', join(K, 'vmlinux')]), join(K, 'vmlinux'));
  // its bzImage named: the same kernel, so the same entry (--no-pvh for the bzImage itself)
  assert.equal(image(['--kernel', join(K, 'arch/x86/boot/bzImage')]), join(K, 'vmlinux'));
  assert.equal(image(['--kernel', join(K, 'arch/x86/boot/bzImage'), '--no-pvh']), join(K, 'arch/x86/boot/bzImage'));
  assert.equal(image(['--kernel', join(work, 'cut-vmlinux'), '--no-pvh']), join(work, 'cut-vmlinux', 'arch/x86/boot/bzImage'));
  // a tree without PVH in its vmlinux boots its bzImage; one with only a vmlinux boots that
  const nopvh = treeCopy('no-pvh-accepted', (c) => c);
  copyFileSync('/bin/true', join(nopvh, 'vmlinux'));
  assert.equal(image(['--kernel', nopvh]), join(nopvh, 'arch/x86/boot/bzImage'));
  const noBz = treeCopy('vmlinux-only-accepted', (c) => c);
  rmSync(join(noBz, 'arch/x86/boot/bzImage'));
  copyFileSync(join(K, 'vmlinux'), join(noBz, 'vmlinux'));
  assert.equal(image(['--kernel', noBz]), join(noBz, 'vmlinux'));
  const distro = distroKernel();
  const rel = distro.replace(/^\/boot\/vmlinuz-/, '');
  // an installed bzImage: its kernel uncompressed into the cache for its PVH entry; --no-pvh: the file itself
  assert.match(image(['--kernel', rel]), /\/mkt\/pvh\/[0-9a-f]{24}\.elf$/);
  assert.equal(image(['--kernel', distro]), image(['--kernel', rel]));
  assert.equal(image(['--kernel', rel, '--no-pvh']), distro);
  assert.equal(image(['--kernel', distro, '--no-pvh']), distro);
});

test('without --kernel: the config file, then a built tree in the current directory, then the newest installed', () => {
  const cfgHome = join(work, 'xdg');
  mkdirSync(join(cfgHome, 'mkt'), { recursive: true });
  writeFileSync(join(cfgHome, 'mkt', 'config'), `[defaults]\nkernel = ${K}\n`);
  let r = mkt(['run', '--dry-run'], { env: { XDG_CONFIG_HOME: cfgHome }, cwd: work });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.toString().includes(`-kernel ${join(K, 'vmlinux')}`));
  r = mkt(['run', '--dry-run'], { env: { XDG_CONFIG_HOME: join(work, 'none') }, cwd: K });
  assert.ok(r.stdout.toString().includes(`-kernel ${join(K, 'vmlinux')}`));
  assert.match(r.stderr, /booting the kernel tree you are in/);
  r = mkt(['run', '--dry-run'], { env: { XDG_CONFIG_HOME: join(work, 'none') }, cwd: work });
  assert.match(r.stdout.toString(), /-kernel \S+\/mkt\/pvh\/[0-9a-f]{24}\.elf /);
  assert.ok(r.stderr.includes(`(${distroKernel()})`), r.stderr);
  assert.match(r.stderr, /booting the newest installed kernel/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
});

test("the seed tool's legacy config file is read too", () => {
  const home = join(work, 'legacy-home');
  const { hostname } = require_os;
  mkdirSync(join(home, '.config', 'mellanox', 'mkt'), { recursive: true });
  writeFileSync(join(home, '.config', 'mellanox', 'mkt', `hv-${hostname()}.mkt`), `[defaults]\nkernel = ${K}\n`);
  const r = mkt(['run', '--dry-run', '--no-home'], { env: { HOME: home, XDG_CONFIG_HOME: join(home, '.config') }, cwd: work });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.toString().includes(`-kernel ${join(K, 'vmlinux')}`));
  assert.equal(r.stderr, '');
});

test('named config sections apply; an unknown one is a usage error', () => {
  const cfgHome = join(work, 'xdg2');
  mkdirSync(join(cfgHome, 'mkt'), { recursive: true });
  writeFileSync(join(cfgHome, 'mkt', 'config'), `[defaults]\nkernel = ${K}\n\n[big]\nmemory = 3G\ncpus = 1\nappend = foo.bar=1\n`);
  const r = mkt(['run', '--dry-run', 'big'], { env: { XDG_CONFIG_HOME: cfgHome } });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout.toString(), /-m 3G -smp 1 .*foo\.bar=1/);
  const bad = mkt(['run', '--dry-run', 'nosuch'], { env: { XDG_CONFIG_HOME: cfgHome } });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /'nosuch' is not a config section \(sections: big\)/);
});

test('the same tree boots through its bzImage (--no-pvh) and through its vmlinux, the same kernel', () => {
  const out = (extra: string[]): string => {
    const r = mkt(['run', '--kernel', K, ...extra, '--exec', 'uname -rv; grep -c . /proc/cpuinfo >/dev/null && echo ok']);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.toString();
  };
  const bz = out(['--no-pvh']);
  assert.match(bz, /ok\n$/);
  assert.equal(out([]), bz);
});

test('nothing is left running', () => {
  assert.ok(vmProcesses().length <= before);
});

test("a kernel or initramfs the cache makes again is not one the launcher's qemu read before: that start is dropped and the run boots", () => {
  const { readdirSync, statSync, truncateSync } = require_fs;
  const cache = join(work, 'remade-cache');
  const img = join(work, 'remade', 'bzImage');
  mkdirSync(join(work, 'remade'), { recursive: true });
  copyFileSync(join(K, 'arch/x86/boot/bzImage'), img);
  const release = readFileSync(join(K, 'include/config/kernel.release'), 'utf8').trim();
  const args = ['run', '--kernel', img, '--verbose', '--exec', 'uname -r'];
  const env = { XDG_CACHE_HOME: cache };
  const run = (want: RegExp | null): void => {
    const r = mkt(args, { env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), `${release}\n`);
    if (want) assert.match(r.stderr, want);
  };
  run(null);
  run(/qemu and its daemons were started by the launcher/);
  // cut short since: both are made again, after the launcher's qemu has read them
  for (const [sub, ext] of [['pvh', '.elf'], ['initramfs', '.cpio']] as const) {
    const dir = join(cache, 'mkt', sub);
    const file = join(dir, readdirSync(dir).find((n) => n.endsWith(ext))!);
    truncateSync(file, Math.floor(statSync(file).size / 2));
    run(/the launcher's start from the last run's plan read a kernel or initramfs this run has made again: starting anew/);
    run(/qemu and its daemons were started by the launcher/);
  }
  assert.deepEqual(vmProcesses(cache), []);
});
