/** The installed Debian kernel: modular virtio/9p drivers loaded by mkt's initramfs, its modules, a panic. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { distroKernel, mkt, vmProcesses } from './helpers.js';

const D = distroKernel();
const release = D.replace(/^\/boot\/vmlinuz-/, '');

test('the distro kernel boots and its own modules load with modprobe', () => {
  const r = mkt(['run', '--kernel', D, '--exec', 'uname -r; modprobe dummy && grep -c "^dummy " /proc/modules']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.toString(), `${release}\n1\n`);
  // its own /boot files stay as they are (no link to itself)
  const b = mkt(['run', '--kernel', D, '--exec', 'grep -c "^CONFIG_" /boot/config-$(uname -r) >/dev/null && test -s /boot/System.map-$(uname -r) && echo boot-ok']);
  assert.equal(b.stdout.toString(), 'boot-ok\n', b.stderr);
});

test("the distro kernel starts at its PVH entry, uncompressed once on the host; --no-pvh boots its bzImage, the same kernel", () => {
  const dry = mkt(['run', '--kernel', D, '--dry-run', '--verbose', '--exec', 'true']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout.toString(), /-kernel \S+\/mkt\/pvh\/[0-9a-f]{24}\.elf /);
  assert.match(dry.stderr, /mkt: kernel: \/boot\/vmlinuz-\S+, uncompressed (now|earlier) into \S+: qemu starts it at its PVH entry/);
  const bz = mkt(['run', '--kernel', D, '--no-pvh', '--exec', 'uname -rv']);
  assert.equal(bz.code, 0, bz.stderr);
  const pvh = mkt(['run', '--kernel', D, '--exec', 'uname -rv']);
  assert.equal(pvh.code, 0, pvh.stderr);
  assert.equal(pvh.stdout.toString(), bz.stdout.toString());
  assert.ok(pvh.ms < bz.ms, `PVH ${pvh.ms} ms, bzImage ${bz.ms} ms`);
});

test('a filesystem the command mounts from an image in an export keeps what was written to it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mkt-img-'));
  try {
    const img = join(dir, 'fs.img');
    const mk = spawnSync('sh', ['-c', `truncate -s 16M '${img}' && mkfs.ext4 -q -F '${img}'`], { encoding: 'utf8' });
    assert.equal(mk.status, 0, mk.stderr);
    const r = mkt(['run', '--kernel', D, '--dir', dir, '--exec', `modprobe loop && mkdir /tmp/m && mount -o loop '${img}' /tmp/m && echo kept > /tmp/m/f`]);
    assert.equal(r.code, 0, r.stderr);
    const cat = spawnSync('debugfs', ['-R', 'cat /f', img], { encoding: 'utf8' });
    assert.equal(cat.stdout, 'kept\n', cat.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a guest kernel panic ends the run promptly with 125, the reason and the console tail', () => {
  const r = mkt(['run', '--kernel', D, '--exec', 'echo c > /proc/sysrq-trigger; sleep 100']);
  assert.equal(r.code, 125);
  assert.match(r.stderr, /the guest kernel panicked/);
  assert.match(r.stderr, /Kernel panic - not syncing: sysrq triggered crash/);
  assert.ok(r.ms < 90_000, `took ${r.ms} ms`);
  assert.deepEqual(vmProcesses(D), []);
});
