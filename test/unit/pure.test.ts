import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findQboot } from '../../src/host/facts.js';
import { resolveInRoot } from '../../src/host/root.js';
import { homedir } from 'node:os';
import { test } from 'node:test';
import { spawnSync } from 'node:child_process';
import { parseConfig } from '../../src/config/file.js';
import { dedupeDirs } from '../../src/config/resolve.js';
import { isNotBzImage, parseBzImage } from '../../src/kernel/bzimage.js';
import { elfKernel } from '../../src/kernel/elf.js';
import { findPayload, pvhImage } from '../../src/kernel/pvh-image.js';
import { gzipSync } from 'node:zlib';
import { findExecutable, SYSTEM_DIRS } from '../../src/host/facts.js';
import { checkBootNeeds } from '../../src/kernel/features.js';
import { parseDotConfig } from '../../src/kernel/kconfig.js';
import { KCONFIG_FRAGMENT, renderFragment } from '../../src/kernel/kconfig-fragment.js';
import { loadOrder, moduleName, parseModuleIndex } from '../../src/kernel/modules.js';
import { accelArgs, consoleArgs, PORTS, firmwareArgs, fs9pArgs, machineArgs, virtiofsArgs, virtiofsdArgv, virtiofsShares } from '../../src/qemu/args.js';
import { chooseFs } from '../../src/run/fs-choice.js';
import { guestProgram, simpleArgv } from '../../src/run/simple-command.js';
import { rootSeed, specRecords } from '../../src/run/plan.js';
import { virtiofsSupport } from '../../src/kernel/features.js';
import { ToolError } from '../../src/errors.js';
import { baseCmdline, COMMAND_LINE_SIZE, renderCmdline } from '../../src/qemu/cmdline.js';
import { fuseOptValue, qemuOpts, qemuValue, shellQuote } from '../../src/qemu/escape.js';
import { writeCpio } from '../../src/rootfs/cpio.js';
import { initramfsEntries, pruneInitramfsCache, wholeCpio } from '../../src/rootfs/initramfs.js';
import { decodeSpec, encodeSpec } from '../../src/run/spec.js';
import { initFailure, panicked } from '../../src/run/execute.js';
import { UsageError } from '../../src/errors.js';

test('qemu values double commas, and only commas', () => {
  assert.equal(qemuValue('/a,b,,c d'), '/a,,b,,,,c d');
  assert.equal(qemuOpts('local', { id: 'x', path: '/dir with space,comma', readonly: true, skip: undefined }),
    'local,id=x,path=/dir with space,,comma,readonly=on');
  assert.equal(qemuOpts('stdio', { mux: true, signal: false }), 'stdio,mux=on,signal=off');
});

test('shell quoting round-trips through sh', async () => {
  const { execFileSync } = await import('node:child_process');
  const words = ['plain', '', "it's", 'a b', '$HOME', 'x,y', '"q"', 'back\\slash', '-append'];
  const out = execFileSync('sh', ['-c', `printf '%s\\n' ${words.map(shellQuote).join(' ')}`], { encoding: 'utf8' });
  assert.deepEqual(out.split('\n').slice(0, -1), words);
  assert.equal(shellQuote('/usr/bin/qemu'), '/usr/bin/qemu');
});

test('9p exports escape awkward paths and keep the root read-only', () => {
  const args = fs9pArgs([{ path: '/tmp/a b,c', real: '/tmp/a b,c' }], false);
  assert.deepEqual(args.slice(0, 2), ['-fsdev', 'local,id=mktroot,path=/,security_model=none,readonly=on,multidevs=remap']);
  assert.equal(args[5], 'local,id=mktd0,path=/tmp/a b,,c,security_model=none,multidevs=remap');
  assert.equal(fs9pArgs([{ path: '/x', real: '/x' }], true)[5], 'local,id=mktd0,path=/x,security_model=passthrough,multidevs=remap');
});

test('console fragments: exec uses inherited sockets, shell the stdio mux with hvc0 last', () => {
  const exec = consoleArgs('exec').join(' ');
  assert.match(exec, /socket,id=mktser,fd=4 -serial chardev:mktser/);
  for (const name of ['mkt.ctl', 'mkt.stdin', 'mkt.stdout', 'mkt.stderr']) assert.ok(exec.includes(`name=${name}`), name);
  assert.ok(!exec.includes('virtconsole'));
  const shell = consoleArgs('shell').join(' ');
  assert.match(shell, /stdio,id=mktcon,mux=on,signal=off -serial chardev:mktcon/);
  assert.ok(shell.indexOf('virtconsole') < shell.indexOf('mkt.ctl'));
  assert.ok(!shell.includes('mkt.stdout'));
  // max_ports: port 0 is the console's, then one per attached port, no spares
  assert.match(exec, /virtio-serial-pci,id=mktvs,addr=2,max_ports=5/);
  assert.equal(exec.split('-device virtserialport').length - 1, 4);
  assert.match(shell, /virtio-serial-pci,id=mktvs,addr=2,max_ports=2/);
  // fixed numbers, as mkt-init's PORTS table has them: it opens /dev/vport0pN without a look in sysfs
  for (const [name, nr] of Object.entries(PORTS)) assert.ok(exec.includes(`nr=${nr},chardev=mkt`) && exec.includes(`name=mkt.${name}`), name);
  assert.match(exec, /nr=1,chardev=mktctl,name=mkt\.ctl/);
  assert.match(exec, /nr=4,chardev=mkterr,name=mkt\.stderr/);
  assert.match(shell, /virtconsole,bus=mktvs\.0,nr=0,chardev=mktcon/);
  const init = readFileSync(new URL('../../../src/guest/mkt-init.c', import.meta.url), 'utf8');
  for (const [name, nr] of Object.entries(PORTS)) assert.ok(init.includes(`{ "mkt.${name}", ${nr} }`), `mkt-init.c numbers mkt.${name} ${nr}`);
  assert.equal(shell.split('-device virtserialport').length - 1, 1);
  // TCG runs rep movsb a byte at a time: no ERMS/FSRM, so copies take the 8-byte paths
  assert.deepEqual(accelArgs('tcg'), ['-accel', 'tcg', '-cpu', 'max,erms=off,fsrm=off']);
  assert.deepEqual(accelArgs('kvm'), ['-accel', 'kvm', '-cpu', 'host']);
});

test('kernel command line: entries, user args last, quiet only when asked, size limit', () => {
  assert.equal(renderCmdline(baseCmdline({ quiet: false }), ['foo=1']),
    'console=ttyS0 panic=-1 rdinit=/init i8042.noaux pci=lastbus=0 tsc=reliable no_timer_check rcupdate.rcu_expedited=1 rcupdate.rcu_normal_after_boot=1 foo=1');
  assert.ok(renderCmdline(baseCmdline({ quiet: true }), []).endsWith(' quiet'));
  for (const e of baseCmdline({ quiet: true })) assert.ok(e.why.length > 10, e.arg);
  // TCG only: address randomization off, so translated code is shared between processes
  assert.ok(baseCmdline({ quiet: true, accel: 'tcg' }).some((e) => e.arg === 'norandmaps'));
  assert.ok(!baseCmdline({ quiet: true, accel: 'kvm' }).some((e) => e.arg === 'norandmaps'));
  // TCG only: no APIC timer calibration; -ARG in --append removes one of mkt's own arguments
  assert.ok(baseCmdline({ quiet: true, accel: 'tcg' }).some((e) => e.arg === 'nolapic_timer'));
  assert.ok(!baseCmdline({ quiet: true, accel: 'kvm' }).some((e) => e.arg === 'nolapic_timer'));
  const tcg = baseCmdline({ quiet: true, accel: 'tcg' });
  assert.ok(!renderCmdline(tcg, ['-nolapic_timer', 'x=1']).includes('nolapic_timer'));
  assert.ok(renderCmdline(tcg, ['-nolapic_timer', 'x=1']).endsWith(' quiet x=1'));
  assert.ok(!renderCmdline(tcg, ['-pci']).includes('pci=lastbus=0'), 'by the name before =');
  assert.ok(renderCmdline(tcg, ['--', '-s']).endsWith(' -- -s'), 'init arguments after -- are not removals');
  assert.throws(() => renderCmdline(tcg, ['-nosuch']), /--append -nosuch: mkt passes no nosuch to leave out \(its own arguments: console=ttyS0 .*\); to pass -nosuch to init, put it after --append=--/);
  // word by word, as the kernel splits them (a config file's append is one string)
  assert.ok(renderCmdline(tcg, ['-nolapic_timer loglevel=7']).endsWith(' quiet loglevel=7'));
  assert.ok(renderCmdline(tcg, ['loglevel=7 -nolapic_timer', 'x="a -b"']).endsWith(' quiet loglevel=7 x="a -b"'));
  assert.ok(renderCmdline(tcg, ['-nolapic_timer -- -x']).endsWith(' quiet -- -x'));
  // one this run does not pass (KVM: no TCG entries) is no error; one mkt needs cannot go
  assert.ok(!renderCmdline(baseCmdline({ quiet: true, accel: 'kvm' }), ['-nolapic_timer']).includes('nolapic'));
  assert.throws(() => renderCmdline(tcg, ['-panic']), /--append -panic: mkt needs panic=-1 .*cannot be left out/);
  assert.throws(() => renderCmdline(tcg, ['-console']), /cannot be left out/);
  assert.throws(() => renderCmdline([], ['a\nb']), UsageError);
  assert.throws(() => renderCmdline([], ['x'.repeat(COMMAND_LINE_SIZE)]), /shorten --append/);
});

test("firmware: qboot from the chosen qemu's own share/qemu, through symlinks; none where it has none", () => {
  const d = mkdtempSync(join(tmpdir(), 'mkt-qboot-'));
  try {
    mkdirSync(join(d, 'opt', 'bin'), { recursive: true });
    mkdirSync(join(d, 'opt', 'share', 'qemu'), { recursive: true });
    writeFileSync(join(d, 'opt', 'bin', 'qemu-system-x86_64'), '', { mode: 0o755 });
    symlinkSync(join(d, 'opt', 'bin', 'qemu-system-x86_64'), join(d, 'qemu'));
    assert.equal(findQboot(join(d, 'qemu')), undefined);
    writeFileSync(join(d, 'opt', 'share', 'qemu', 'qboot.rom'), '');
    assert.equal(findQboot(join(d, 'qemu')), join(d, 'opt', 'share', 'qemu', 'qboot.rom'));
    assert.equal(findQboot(join(d, 'missing')), undefined);
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
  assert.deepEqual(firmwareArgs('/q/qboot.rom'), ['-bios', '/q/qboot.rom']);
  assert.deepEqual(firmwareArgs(undefined), []);
});

/** A fake bzImage header: boot flag, HdrS, protocol, loadflags and a version string. */
function fakeBzImage(version: string | undefined, opts: { protocol?: number; loadflags?: number } = {}): Buffer {
  const b = Buffer.alloc(0x1000);
  b.writeUInt16LE(0xaa55, 0x1fe);
  b.write('HdrS', 0x202, 'latin1');
  b.writeUInt16LE(opts.protocol ?? 0x020f, 0x206);
  b.writeUInt8(opts.loadflags ?? 1, 0x211);
  if (version) {
    b.writeUInt16LE(0x600 - 0x200, 0x20e);
    b.write(`${version}\0`, 0x600, 'latin1');
  }
  return b;
}

test('bzImage header parsing', () => {
  const ok = parseBzImage(fakeBzImage('6.1.192 (root@host) #1 SMP'));
  assert.ok(!isNotBzImage(ok));
  assert.equal(ok.release, '6.1.192');
  assert.equal(ok.protocol, 0x020f);
  const elf = parseBzImage(Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46]), Buffer.alloc(2000)]));
  assert.ok(isNotBzImage(elf) && /ELF/.test(elf.reason));
  assert.ok(isNotBzImage(parseBzImage(Buffer.from('not a kernel\n'))));
  assert.ok(isNotBzImage(parseBzImage(Buffer.alloc(4096))));
  const z = parseBzImage(fakeBzImage('1.0', { loadflags: 0 }));
  assert.ok(isNotBzImage(z) && /zImage/.test(z.reason));
  const old = parseBzImage(fakeBzImage('1.0', { protocol: 0x0100 }));
  assert.ok(isNotBzImage(old));
  const nover = parseBzImage(fakeBzImage(undefined));
  assert.ok(!isNotBzImage(nover) && nover.release === undefined);
});

/** An x86-64 ELF file with one PT_LOAD and one PT_NOTE segment holding NOTES ([owner, type, desc bytes]). */
function fakeElf(notes: [string, number, number][], opts: { machine?: number; cls?: number } = {}): Buffer {
  const body = Buffer.concat(
    notes.map(([name, type, descsz]) => {
      const nsz = Buffer.byteLength(name) + 1;
      const b = Buffer.alloc(12 + ((nsz + 3) & ~3) + ((descsz + 3) & ~3));
      b.writeUInt32LE(nsz, 0);
      b.writeUInt32LE(descsz, 4);
      b.writeUInt32LE(type, 8);
      b.write(name, 12, 'latin1');
      return b;
    }),
  );
  const h = Buffer.alloc(64 + 2 * 56);
  h.writeUInt32BE(0x7f454c46, 0);
  h[4] = opts.cls ?? 2;
  h[5] = 1;
  h.writeUInt16LE(opts.machine ?? 62, 18);
  h.writeBigUInt64LE(64n, 32); // e_phoff
  h.writeUInt16LE(56, 54);
  h.writeUInt16LE(2, 56);
  h.writeUInt32LE(1, 64); // PT_LOAD first, as in a vmlinux
  h.writeUInt32LE(4, 64 + 56); // PT_NOTE
  h.writeBigUInt64LE(BigInt(h.length), 64 + 56 + 8);
  h.writeBigUInt64LE(BigInt(body.length), 64 + 56 + 32);
  return Buffer.concat([h, body]);
}

test('a vmlinux is started directly only with its PVH entry note', () => {
  const at = (f: Buffer) => (o: number, n: number) => f.subarray(o, o + n);
  assert.deepEqual(elfKernel(at(fakeElf([['GNU', 3, 20], ['Linux', 6, 4], ['Xen', 18, 8]]))), { pvh: true });
  // the other Xen notes, or the entry type under another owner, are not it
  const none = elfKernel(at(fakeElf([['GNU', 3, 20], ['Xen', 17, 8], ['Linux', 18, 4]])));
  assert.ok(!none.pvh && /no PVH entry point \(built without CONFIG_PVH\)/.test(none.reason));
  assert.ok(!elfKernel(at(fakeElf([['Xen', 18, 8]], { machine: 3 }))).pvh); // i386
  assert.ok(!elfKernel(at(fakeElf([['Xen', 18, 8]], { cls: 1 }))).pvh);
  const notElf = elfKernel(at(Buffer.from('not a kernel at all, just some text that is long enough to be read as a header\n')));
  assert.ok(!notElf.pvh && /not an ELF file/.test(notElf.reason));
  // cut short: a note whose sizes run past the segment ends the search; with the file's size, said so
  const cut = fakeElf([['Xen', 18, 8]]);
  assert.ok(!elfKernel(at(cut.subarray(0, cut.length - 4))).pvh);
  const short = elfKernel(at(cut.subarray(0, cut.length - 4)), cut.length - 4);
  assert.ok(!short.pvh && short.cut && /is cut short: its segments end at byte \d+, the file has \d+/.test(short.reason));
  assert.deepEqual(elfKernel(at(cut), cut.length), { pvh: true });
});

/** A bzImage-shaped file whose payload is PAYLOAD (the bytes as they follow the setup sectors' end). */
function fakeBzWithPayload(payload: Buffer): Buffer {
  const b = fakeBzImage('6.1.0 (fake)');
  b.writeUInt16LE(0x020f, 0x206);
  b.writeUInt8(3, 0x1f1); // setup_sects: the kernel proper starts at (3 + 1) * 512
  const start = 4 * 512;
  const head = Buffer.alloc(Math.max(b.length, start + 64));
  b.copy(head);
  head.writeUInt32LE(64, 0x248); // payload_offset from the kernel proper's start
  head.writeUInt32LE(payload.length, 0x24c);
  return Buffer.concat([head.subarray(0, start + 64), payload, Buffer.alloc(100)]);
}

test("a bzImage's kernel is uncompressed once into the cache when it has a PVH entry, and a kernel without one is remembered", async () => {
  const d = mkdtempSync(join(tmpdir(), 'mkt-pvh-'));
  const find = (t: string): string | undefined => findExecutable(t, process.env.PATH, SYSTEM_DIRS);
  try {
    const elf = fakeElf([['Xen', 18, 8]]);
    const img = join(d, 'bzImage');
    writeFileSync(img, fakeBzWithPayload(gzipSync(elf)));
    const p = findPayload(readFileSync(img));
    assert.ok(!('reason' in p) && p.format === 'gzip' && p.size === elf.length, JSON.stringify(p));
    const first = pvhImage(img, join(d, 'cache'), find);
    assert.ok('path' in first && first.fresh, JSON.stringify(first));
    assert.deepEqual(readFileSync(first.path), elf);
    const again = pvhImage(img, join(d, 'cache'), find);
    assert.ok('path' in again && !again.fresh && again.path === first.path);
    // a new build at the same path is a new key
    const elf2 = fakeElf([['GNU', 3, 20], ['Xen', 18, 8]]);
    writeFileSync(img, fakeBzWithPayload(gzipSync(elf2)));
    utimesSync(img, new Date(), new Date(Date.now() + 5000));
    const rebuilt = pvhImage(img, join(d, 'cache'), find);
    assert.ok('path' in rebuilt && rebuilt.fresh && rebuilt.path !== first.path);
    assert.deepEqual(readFileSync(rebuilt.path), elf2);

    // without the note: refused, and remembered (no second decompression)
    const plain = join(d, 'plain');
    writeFileSync(plain, fakeBzWithPayload(gzipSync(fakeElf([['Xen', 17, 8]]))));
    const no = pvhImage(plain, join(d, 'cache'), find);
    assert.ok('reason' in no && /no PVH entry point/.test(no.reason), JSON.stringify(no));
    let asked = 0;
    const again2 = pvhImage(plain, join(d, 'cache'), (t) => (asked++, find(t)));
    assert.ok('reason' in again2 && asked === 0);

    // xz where xz is missing: booted as it is, and asked again next time
    const xz = join(d, 'xz');
    writeFileSync(xz, fakeBzWithPayload(Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), Buffer.alloc(40), Buffer.from([1, 0, 0, 0])])));
    const noTool = pvhImage(xz, join(d, 'cache'), () => undefined);
    assert.ok('reason' in noTool && /xz-compressed and xz is not installed/.test(noTool.reason));
    // damaged data, or a start in no format Linux uses: damaged, in the decompressor's words (not remembered: refused each time)
    const bad = pvhImage(xz, join(d, 'cache'), find);
    assert.ok('damaged' in bad && /its compressed kernel is damaged \(xz: /.test(bad.damaged), JSON.stringify(bad));
    assert.ok('damaged' in pvhImage(xz, join(d, 'cache'), find));
    const junk = join(d, 'junk');
    writeFileSync(junk, fakeBzWithPayload(Buffer.from('not compressed at all, plain text')));
    const j = pvhImage(junk, join(d, 'cache'), find);
    assert.ok('damaged' in j && /no format Linux uses/.test(j.damaged));
    // a decompressor that dies (a signal, a full disk): booted as it is, asked again next time, nothing left behind
    const dies = pvhImage(img, join(d, 'cache2'), () => '/bin/false');
    assert.ok('reason' in dies && /gzip could not uncompress its kernel: gzip exited with status 1/.test(dies.reason), JSON.stringify(dies));
    const again3 = pvhImage(img, join(d, 'cache2'), find);
    assert.ok('path' in again3 && again3.fresh);
    // a cached kernel cut short since is made again; a temporary file of a process that is gone is swept
    writeFileSync(again3.path, readFileSync(again3.path).subarray(0, 100));
    writeFileSync(join(d, 'cache2', 'pvh', 'x.elf.tmp-999999999'), 'left by a run that died');
    const remade = pvhImage(img, join(d, 'cache2'), find);
    assert.ok('path' in remade && remade.fresh && readFileSync(remade.path).equals(elf2));
    assert.deepEqual(readdirSync(join(d, 'cache', 'pvh')).filter((n) => n.includes('.tmp-')), []);
    assert.deepEqual(readdirSync(join(d, 'cache2', 'pvh')).filter((n) => n.includes('.tmp-')), []);
    // a FIFO where a cached kernel or a note belongs is neither, read at once: replaced by what it should be
    const { execFileSync } = await import('node:child_process');
    rmSync(remade.path);
    execFileSync('mkfifo', [remade.path]);
    const fromFifo = pvhImage(img, join(d, 'cache2'), find);
    assert.ok('path' in fromFifo && fromFifo.fresh && readFileSync(fromFifo.path).equals(elf2));
    const note = readdirSync(join(d, 'cache', 'pvh')).filter((n) => n.endsWith('.no'));
    assert.equal(note.length, 1);
    const notePath = join(d, 'cache', 'pvh', note[0]!);
    rmSync(notePath);
    execFileSync('mkfifo', [notePath]);
    const noAgain = pvhImage(plain, join(d, 'cache'), find);
    assert.ok('reason' in noAgain && /no PVH entry point/.test(noAgain.reason));
    assert.ok(statSync(notePath).isFile(), 'the note replaced the FIFO');
    assert.deepEqual(readdirSync(join(d, 'cache', 'pvh')).filter((n) => n.includes('.tmp-')), []);
    // a cache that cannot be written: booted as it is, with the reason
    writeFileSync(join(d, 'cache3'), 'a file where the cache directory should be');
    const nowhere = pvhImage(img, join(d, 'cache3'), find);
    assert.ok('reason' in nowhere && /cannot write to .*cache3\/pvh/.test(nowhere.reason), JSON.stringify(nowhere));
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test('bzImage parsing reads the real installed kernel', () => {
  const image = '/boot/vmlinuz-6.1.0-57-amd64';
  let head: Buffer;
  try {
    head = readFileSync(image).subarray(0, 65536);
  } catch {
    return; // the VM tests cover a real image on machines without this one
  }
  const size = statSync(image).size;
  const info = parseBzImage(head, size);
  assert.ok(!isNotBzImage(info));
  assert.equal(info.release, '6.1.0-57-amd64');
  // cut short, as an interrupted copy leaves it: the header's length says so
  const cut = parseBzImage(head, size - 100_000);
  assert.ok(isNotBzImage(cut) && /is cut short: its header says \d+ bytes, the file has \d+/.test(cut.reason), JSON.stringify(cut));
});

test('the initramfs cache keeps the most recently used images and drops stale temporary files', () => {
  const d = mkdtempSync(join(tmpdir(), 'mkt-cpio-'));
  try {
    const now = Date.now();
    const at = (name: string, agoS: number): void => {
      writeFileSync(join(d, name), 'x');
      const t = new Date(now - agoS * 1000);
      utimesSync(join(d, name), t, t);
    };
    for (let i = 0; i < 20; i++) at(`img${String(i).padStart(2, '0')}.cpio`, i * 60);
    at('img99.cpio.tmp-123', 7200);
    at('img98.cpio.tmp-456', 10);
    at('unrelated', 99999);
    pruneInitramfsCache(d, 16, now);
    const left = readdirSync(d).sort();
    assert.deepEqual(left, [...Array.from({ length: 16 }, (_, i) => `img${String(i).padStart(2, '0')}.cpio`), 'img98.cpio.tmp-456', 'unrelated']);
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test('a cached initramfs is used only while it is whole: header first, trailer last', () => {
  const d = mkdtempSync(join(tmpdir(), 'mkt-cpio-'));
  try {
    const good = writeCpio(initramfsEntries(Buffer.alloc(5000, 1), []));
    const p = join(d, 'a.cpio');
    writeFileSync(p, good);
    assert.equal(wholeCpio(p), true);
    writeFileSync(p, good.subarray(0, good.length - 600));
    assert.equal(wholeCpio(p), false);
    writeFileSync(p, Buffer.concat([Buffer.from('garbage'), good.subarray(7)]));
    assert.equal(wholeCpio(p), false);
    writeFileSync(p, '');
    assert.equal(wholeCpio(p), false);
    assert.equal(wholeCpio(join(d, 'missing.cpio')), false);
    // a FIFO at its place: no initramfs, answered at once
    spawnSync('mkfifo', [join(d, 'fifo.cpio')]);
    assert.equal(wholeCpio(join(d, 'fifo.cpio')), false);
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test('cpio newc writer: headers, padding, device node and trailer', async () => {
  const { execFileSync } = await import('node:child_process');
  const buf = writeCpio([
    { kind: 'dir', name: 'dev' },
    { kind: 'chardev', name: 'dev/console', major: 5, minor: 1 },
    { kind: 'file', name: 'init', data: Buffer.from('abc'), mode: 0o755 },
  ]);
  assert.equal(buf.length % 4, 0);
  assert.equal(buf.toString('ascii', 0, 6), '070701');
  assert.ok(buf.includes(Buffer.from('TRAILER!!!\0')));
  // the system cpio reads it back: names, types, device numbers and data
  const listing = execFileSync('cpio', ['-itv', '--quiet'], { input: buf, encoding: 'utf8' });
  assert.match(listing, /^d.* dev$/m);
  assert.match(listing, /^c.* 5, +1 .*dev\/console$/m);
  assert.match(listing, /^-rwxr-xr-x .* 3 .* init$/m);
  assert.throws(() => writeCpio([{ kind: 'dir', name: '/abs' }]));
});

test('initramfs lists modules in load order', () => {
  const e = initramfsEntries(Buffer.from('x'), [
    { name: 'virtio_pci', data: Buffer.from('a') },
    { name: '9p', data: Buffer.from('b') },
  ]);
  const list = e.find((x) => x.name === 'mkt/modules.list');
  assert.ok(list && list.kind === 'file');
  assert.equal(Buffer.from(list.data).toString(), '/mkt/00-virtio_pci.ko\n/mkt/01-9p.ko\n');
  assert.ok(e.some((x) => x.name === 'init' && x.kind === 'file' && x.mode === 0o755));
  assert.ok(!initramfsEntries(Buffer.from('x'), []).some((x) => x.name.startsWith('mkt')));
});

test('run spec encoding round-trips and rejects NUL', () => {
  const recs = [['cmd', "echo 'a b'\nexit 3"], ['dir', 'mktd0:/tmp/x:y,z'], ['env', 'LANG=C.UTF-8']] as const;
  const buf = encodeSpec(recs);
  assert.ok(buf.subarray(-2).equals(Buffer.from([0, 0])));
  assert.deepEqual(decodeSpec(buf), recs);
  assert.throws(() => encodeSpec([['cmd', 'a\0b']]), UsageError);
});

test('config file: [defaults], named sections, arrays, unknown keys', () => {
  const cfg = parseConfig('hv.mkt', readFileSync(new URL('../../../test/fixtures/hv-example.mkt', import.meta.url), 'utf8'));
  assert.equal(cfg.defaults.kernel, '/images/src/linux');
  assert.deepEqual(cfg.defaults.dir, ['/images/src']);
  const rdma = cfg.sections.get('rdma');
  assert.equal(rdma?.memory, '4G');
  assert.deepEqual(rdma?.dir, ['/labs/rdma', '/labs/with space,comma']);
  assert.equal(rdma?.append, 'rdma.debug=1');
  assert.throws(() => parseConfig('f', '[defaults]\nkernal = x\n'), /f:2: \[defaults\] has unknown key 'kernal'/);
  // every error names its line; what the old parser misread is read as written
  assert.throws(() => parseConfig('f', '[defaults]\nmemory = 1G\n\nthis is garbage\n'), /^UsageError: f:4: 'this is garbage' is no key = value line/);
  assert.throws(() => parseConfig('f', '[defaults]\n= 5\n'), /f:2: '= 5' has no key before '='/);
  assert.throws(() => parseConfig('f', '[defaults]\nmemory = 1G\nmemory = 2G\n'), /f:3: \[defaults\] sets memory again \(line 2 set it already\)/);
  assert.throws(() => parseConfig('f', '[a]\ncpus = 1\n[a]\ncpus = 2\n'), /f:3: \[a\] again \(line 1 started it already\)/);
  assert.throws(() => parseConfig('f', '[defaults]\nmemory =\n'), /f:2: \[defaults\] memory needs a value/);
  const odd = parseConfig('f', '\uFEFF[defaults]\r\nmemory = true\r\n  [v6.1]  ; a release\nkernel = 6.1.0-18-amd64\ndir = /a\ndir = /b\ndir[] = /c\nappend = "quiet loglevel=3" ; comment\n');
  assert.equal(odd.defaults.memory, 'true', 'a string, for the size check to refuse by name');
  assert.equal(odd.sections.get('v6.1')?.kernel, '6.1.0-18-amd64');
  assert.deepEqual(odd.sections.get('v6.1')?.dir, ['/a', '/b', '/c']);
  assert.equal(odd.sections.get('v6.1')?.append, 'quiet loglevel=3');
  assert.equal(odd.sections.get('v6.1')?.origin?.kernel, 'f:4 [v6.1] kernel');
  assert.equal(parseConfig('f', '[d]\ndir = /tmp/a#b\n').sections.get('d')?.dir[0], '/tmp/a#b', 'a # inside a value is no comment');
  assert.throws(() => parseConfig('f', 'kernel = x\n'), /outside any section/);
  const rel = parseConfig('/etc/mkt/hv.mkt', '[defaults]\nkernel = ../src/linux\ndir = ~/work\n[r]\nkernel = 6.1.0-18-amd64\n');
  assert.equal(rel.defaults.kernel, '/etc/src/linux');
  assert.deepEqual(rel.defaults.dir, [`${homedir()}/work`]);
  assert.equal(rel.sections.get('r')?.kernel, '6.1.0-18-amd64');
});

test('exported directories inside another export are dropped', () => {
  const d = (p: string) => ({ path: p, real: p });
  assert.deepEqual(dedupeDirs([d('/home/u/src'), d('/home/u'), d('/home/uu'), d('/data')]).map((x) => x.real), ['/data', '/home/u', '/home/uu']);
});

test('.config parsing and the kconfig fragment', () => {
  const m = parseDotConfig('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="s"\nCONFIG_D=m\n');
  assert.deepEqual([...m], [['A', 'y'], ['B', 'n'], ['C', '"s"'], ['D', 'm']]);
  const frag = renderFragment();
  for (const o of ['VIRTIO_CONSOLE', 'NET_9P_VIRTIO', 'OVERLAY_FS', 'VIRTIO_PCI', 'DEVTMPFS']) {
    assert.match(frag, new RegExp(`^CONFIG_${o}=y$`, 'm'));
  }
  assert.equal(frag.split('\n').filter((l) => l.startsWith('# ')).length, KCONFIG_FRAGMENT.length);
});

const DEP = `kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko
kernel/fs/netfs/netfs.ko:
kernel/drivers/char/virtio_console.ko:
kernel/fs/overlayfs/overlay.ko:
`;

test('module load order puts dependencies first, once', () => {
  const idx = parseModuleIndex(DEP, 'kernel/drivers/virtio/virtio.ko\n');
  assert.equal(moduleName('kernel/fs/x/foo-bar.ko.zst'), 'foo_bar');
  assert.deepEqual(loadOrder(idx, ['virtio_pci', '9pnet_virtio', '9p']), [
    'kernel/drivers/virtio/virtio_pci_modern_dev.ko',
    'kernel/drivers/virtio/virtio_pci.ko',
    'kernel/net/9p/9pnet.ko',
    'kernel/net/9p/9pnet_virtio.ko',
    'kernel/fs/netfs/netfs.ko',
    'kernel/fs/9p/9p.ko',
  ]);
  assert.deepEqual(loadOrder(idx, ['virtio']), []); // built in
  assert.throws(() => loadOrder(idx, ['nosuch']), /nosuch/);
});

test('boot needs: built-in, modular, and missing options', () => {
  const idx = parseModuleIndex(DEP, '');
  const all = new Map(KCONFIG_FRAGMENT.filter((x) => x.required).map((x) => [x.option, 'y']));
  assert.deepEqual(checkBootNeeds('k', all, undefined).modules, []);
  const modular = new Map(all).set('9P_FS', 'm').set('VIRTIO_PCI', 'm');
  assert.deepEqual(checkBootNeeds('k', modular, idx).modules, ['VIRTIO_PCI', '9P_FS'].map((o) => (o === '9P_FS' ? '9p' : 'virtio_pci')));
  assert.throws(() => checkBootNeeds('k', modular, undefined), /no module directory/);
  const lacking = new Map(all);
  lacking.delete('OVERLAY_FS');
  lacking.set('MULTIUSER', 'n');
  assert.throws(() => checkBootNeeds('k', lacking, idx), /lacks CONFIG_OVERLAY_FS, CONFIG_MULTIUSER/);
  // without a .config, the module index decides
  assert.deepEqual(checkBootNeeds('k', undefined, idx).modules, ['virtio_pci', 'virtio_console', '9pnet', '9pnet_virtio', '9p', 'overlay']);
  // a guest whose root the host serves throw-away (virtiofs through mkt-ro) needs no overlayfs: not loaded, not required
  const lackingOverlay = new Map([...all, ['FUSE_FS', 'y'], ['VIRTIO_FS', 'y']]);
  lackingOverlay.delete('OVERLAY_FS');
  assert.doesNotThrow(() => checkBootNeeds('k', lackingOverlay, idx, 'virtiofs', false));
  assert.throws(() => checkBootNeeds('k', lackingOverlay, idx, 'virtiofs'), /lacks CONFIG_OVERLAY_FS/);
  assert.ok(!checkBootNeeds('k', undefined, idx, 'virtiofs', false).modules.includes('overlay'));
});

test("mkt-init's last word on the console becomes the reason, with a hint for a missing virtio console", () => {
  assert.equal(initFailure('[ 0.5] booting\n'), undefined);
  assert.match(initFailure('x\nmkt-init: virtio port mkt.ctl did not appear\n[ 9.1] reboot: Restarting system\n')!,
    /^mkt-init: virtio port mkt.ctl did not appear: the kernel has no virtio console \(CONFIG_VIRTIO_CONSOLE\).*rather than a bare bzImage$/);
  assert.equal(initFailure('mkt-init: first\nmkt-init: mount x on y: No such device\n'), 'mkt-init: mount x on y: No such device');
});

test('panic detection on console text', () => {
  assert.ok(panicked('[ 1.0] Kernel panic - not syncing: sysrq triggered crash'));
  assert.ok(!panicked('all fine\n'));
});

test('virtiofs: shared memory, one vhost-user-fs device and one daemon argv per share, awkward paths escaped', () => {
  assert.deepEqual(machineArgs('1G', 2, true), [
    '-object', 'memory-backend-memfd,id=mktmem,size=1G,share=on', '-machine', 'pc,memory-backend=mktmem', '-m', '1G', '-smp', '2',
  ]);
  const shares = virtiofsShares([{ path: '/tmp/a,b', real: '/tmp/a,b' }], '/run/x');
  assert.deepEqual(shares.map((s) => [s.tag, s.source, s.cache]), [['mktroot', '/', 'always'], ['mktd0', '/tmp/a,b', 'auto']]);
  assert.deepEqual(virtiofsArgs(shares).slice(4), [
    '-chardev', 'socket,id=mktfs1,path=/run/x/fs1', '-device', 'vhost-user-fs-pci,chardev=mktfs1,tag=mktd0,queue-size=1024',
  ]);
  const argv = virtiofsdArgv('/usr/lib/qemu/virtiofsd', shares[1]!);
  assert.ok(argv.includes('source=/tmp/a\\,b'), 'virtiofsd splits -o values on commas: escaped with a backslash');
  assert.equal(fuseOptValue('a\\b,c'), 'a\\\\b\\,c');
  assert.ok(argv.includes('sandbox=chroot'));
  // the socket mkt bound, on descriptor 3: no --socket-path, so no lock file either
  assert.ok(argv.includes('--fd=3') && !argv.some((a) => a.startsWith('--socket-path')));
  // with mkt-ro the root's daemon serves v in an empty directory of the run dir, where its namespace shows / through
  // throw-away overlays (upper layers on a tmpfs mkt-ro mounts on that directory)
  const ro = virtiofsShares([], '/run/x', true, '2G');
  assert.deepEqual([ro[0]!.source, ro[0]!.view], ['/run/x/root/v', '/run/x/root']);
  const roArgv = virtiofsdArgv('/usr/lib/qemu/virtiofsd', ro[0]!, '/opt/mkt/dist/host/mkt-ro');
  // what the guest writes there is held in the daemon's memory, up to the guest's own size
  assert.deepEqual(roArgv.slice(0, 4), ['/opt/mkt/dist/host/mkt-ro', '--size=2G', '/run/x/root', '/usr/lib/qemu/virtiofsd']);
  assert.ok(roArgv.includes('source=/run/x/root/v'));
  assert.ok(roArgv.includes('cache=always'));
  // exports stay writable: no helper for them
  assert.equal(virtiofsdArgv('/v', shares[1]!, '/opt/mkt-ro')[0], '/v');
  // the guest's own files go in through mkt-ro's entries, ahead of the directory
  const seeded = virtiofsdArgv('/v', virtiofsShares([], '/run/x', true, '2G', ['--file', '/etc/hostname', '644', 'mkt\n'])[0]!, '/opt/mkt-ro');
  assert.deepEqual(seeded.slice(0, 7), ['/opt/mkt-ro', '--size=2G', '--file', '/etc/hostname', '644', 'mkt\n', '/run/x/root']);
});

test("the guest's own files are put into its root by the host only where the root is served writable", () => {
  const root = { etc: '/etc', boot: '/boot', modules: '/usr/lib/modules', hosts: '127.0.0.1 localhost', sudo: true, shadowLocked: false };
  const host = { user: { name: 'u', uid: 0, gid: 0, groups: [0], home: '/root', shell: '/bin/sh' }, env: {}, root, roHelper: '/x/mkt-ro' } as never;
  const run = { kernel: { tree: '/k', release: '6.1.9', sysmap: '/k/System.map', dotconfig: '/k/.config' } } as never;
  const staged = { initramfs: 'x', modules: '/c/lib/modules/6.1.9' } as never;
  assert.deepEqual(rootSeed(run, host, staged, 'virtiofs'), [
    '--file', '/etc/hosts', '644', '127.0.0.1 localhost\n127.0.1.1\tmkt\n',
    '--file', '/etc/hostname', '644', 'mkt\n',
    '--file', '/etc/sudoers', '440', rootSeed(run, host, staged, 'virtiofs')![11]!,
    '--bind', '/c/lib/modules/6.1.9', '/usr/lib/modules/6.1.9',
    '--link', '/boot/System.map-6.1.9', '/k/System.map',
    '--link', '/boot/config-6.1.9', '/k/.config',
  ]);
  assert.match(rootSeed(run, host, staged, 'virtiofs')![11]!, /^u ALL=\(ALL:ALL\) NOPASSWD: ALL$/m);
  const spec = (fs: 'virtiofs' | '9p', h: object = host as object): string[] => specRecords({ ...(run as object), cwd: '/', dirs: [], aliases: [], exec: 'true' } as never, h as never, staged, 'exec', fs).filter(([k]) => k === 'seeded').map(([, v]) => v);
  assert.deepEqual(spec('virtiofs'), ['1']);
  // 9p, no mkt-ro, a locked shadow file (made from the host's passwd in the guest): mkt-init writes them
  assert.equal(rootSeed(run, host, staged, '9p'), undefined);
  assert.deepEqual(spec('9p'), []);
  assert.equal(rootSeed(run, { ...(host as object), roHelper: undefined } as never, staged, 'virtiofs'), undefined);
  assert.equal(rootSeed(run, { ...(host as object), root: { ...root, shadowLocked: true } } as never, staged, 'virtiofs'), undefined);
  // root needs no sudoers; an installed kernel's own /boot files stay; a NUL cannot go in a word
  const installed = { kernel: { release: '6.1.0-9-amd64', sysmap: '/boot/System.map-6.1.0-9-amd64' } } as never;
  assert.deepEqual(rootSeed(installed, { ...(host as object), user: { name: 'root' } } as never, { initramfs: 'x' } as never, 'virtiofs'), [
    '--file', '/etc/hosts', '644', '127.0.0.1 localhost\n127.0.1.1\tmkt\n', '--file', '/etc/hostname', '644', 'mkt\n',
  ]);
  assert.equal(rootSeed(run, { ...(host as object), root: { ...root, hosts: 'a\0b' } } as never, staged, 'virtiofs'), undefined);
});

test('filesystem choice: virtiofs where it can serve, else 9p with the reason; explicit virtiofs fails instead', () => {
  const root = { virtiofsd: '/usr/lib/qemu/virtiofsd', uid: 0 };
  assert.equal(chooseFs('auto', root, 'yes').fs, 'virtiofs');
  assert.equal(chooseFs('9p', root, 'yes').fs, '9p');
  assert.match(chooseFs('auto', { ...root, uid: 1000 }, 'yes').why, /^9p: .*needs root/);
  assert.match(chooseFs('auto', { virtiofsd: undefined, uid: 0 }, 'yes').why, /no virtiofsd found/);
  assert.match(chooseFs('auto', root, 'no').why, /lacks CONFIG_VIRTIO_FS/);
  assert.equal(chooseFs('auto', root, 'unknown').fs, '9p');
  assert.throws(() => chooseFs('virtiofs', root, 'no'), ToolError);
  assert.throws(() => chooseFs('virtiofs', { ...root, uid: 1000 }, 'yes'), /--fs virtiofs: .*needs root.*--fs 9p/);
  assert.equal(virtiofsSupport(new Map([['FUSE_FS', 'y'], ['VIRTIO_FS', 'm']]), undefined), 'yes');
  assert.equal(virtiofsSupport(new Map([['FUSE_FS', 'y']]), undefined), 'no');
  assert.equal(virtiofsSupport(undefined, undefined), 'unknown');
});

test('kconfig names options that slow every boot, and only those', async () => {
  const { slowOptions } = await import('../../src/kernel/kconfig-fragment.js');
  const names = (t: string) => slowOptions(parseDotConfig(t)).map((s) => s.option);
  assert.deepEqual(names('CONFIG_KERNEL_XZ=y\n# CONFIG_CRYPTO_MANAGER_DISABLE_TESTS is not set\nCONFIG_SERIO_I8042=y\n'), ['KERNEL_XZ', 'CRYPTO_MANAGER_DISABLE_TESTS', 'SERIO_I8042']);
  assert.deepEqual(names('CONFIG_KERNEL_LZ4=y\nCONFIG_CRYPTO_MANAGER_DISABLE_TESTS=y\n'), []);
  assert.deepEqual(names('CONFIG_LEGACY_PTYS=y\nCONFIG_CC_OPTIMIZE_FOR_SIZE=y\n'), ['LEGACY_PTYS', 'CC_OPTIMIZE_FOR_SIZE']);
  assert.deepEqual(names('# CONFIG_LEGACY_PTYS is not set\nCONFIG_CC_OPTIMIZE_FOR_PERFORMANCE=y\n'), []);
  // with the PVH entry mkt boots the kernel uncompressed: its compression costs no boot
  assert.deepEqual(names('CONFIG_KERNEL_XZ=y\nCONFIG_PVH=y\n'), []);
  assert.deepEqual(names('CONFIG_KERNEL_BZIP2=y\n# CONFIG_PVH is not set\n'), ['KERNEL_BZIP2']);
});

test('boot trace: phases in order, guest times mapped through the hello offset, missing ones dashed', async () => {
  const { renderTrace } = await import('../../src/run/run.js');
  const plan = { mode: 'exec', accel: 'tcg', fs: 'virtiofs', daemons: [{ argv: [], socket: '' }] } as never;
  const text = renderTrace({ qemuStarted: 100, daemonsStarted: 120, offset: 1000, guestInit: 500, guestRoot: 600, guestCommand: 610, guestCommandEnd: 700, vmGone: 1750 }, plan);
  const rows = text.split('\n').slice(1).map((l) => l.trim().replace(/\s+/g, ' '));
  assert.deepEqual(rows, [
    '0 ms (+0) mkt started', '100 ms (+100) qemu started', '120 ms (+20) virtiofsd started', '1000 ms (+880) kernel started',
    '1500 ms (+500) init started', '1600 ms (+100) root mounted', '1610 ms (+10) command started', '1700 ms (+90) command ended',
    '1750 ms (+50) VM gone',
  ]);
  assert.match(renderTrace({ qemuStarted: 5 }, { ...(plan as object), daemons: [] } as never), /- +kernel started/);
});

test('simpleArgv: plain words are exec-ready; anything a shell would interpret is left to sh', () => {
  assert.deepEqual(simpleArgv('true'), ['true']);
  assert.deepEqual(simpleArgv('  uname   -r '), ['uname', '-r']);
  assert.deepEqual(simpleArgv('make -C /src/linux O=build -j8 modules_install'), ['make', '-C', '/src/linux', 'O=build', '-j8', 'modules_install']);
  assert.deepEqual(simpleArgv('./run-test.sh a,b +x @y 50% k:v'), ['./run-test.sh', 'a,b', '+x', '@y', '50%', 'k:v']);
  // quoting, expansion, globbing, redirection, separators, comments, tilde, tabs and newlines
  for (const c of ["echo 'a b'", 'ls "x"', 'ls $HOME', 'ls *.c', 'cat <f', 'ls >f', 'a | b', 'a; b', 'a && b', 'a &', 'ls # c', 'ls ~', 'ls\t-l', 'a\nb', 'ls \\x', 'ls {a,b}', '(ls)', 'ls ?', 'ls [a]', '! ls']) {
    assert.equal(simpleArgv(c), undefined, c);
  }
  // an assignment first, a builtin or a reserved word: only sh knows what they mean
  for (const c of ['FOO=1 make', 'cd /tmp', 'exit 3', 'echo hi', 'true x', 'false --help', 'pwd', '. ./env.sh', ': x', 'if', 'exec ls', 'kill 1', 'test -d x', 'ulimit -c 0']) {
    assert.equal(simpleArgv(c), undefined, c);
  }
  assert.deepEqual(simpleArgv('false'), ['false']);
  // sh -c takes a leading '-' as its own options; a long command exceeds what the spec carries as words
  assert.equal(simpleArgv('-hello x'), undefined);
  assert.deepEqual(simpleArgv(' -hello'), ['-hello']);
  assert.equal(simpleArgv(`echo ${Array.from({ length: 600 }, (_, i) => i).join(' ')}`.replace('echo', '/bin/echo')), undefined);
  assert.equal(simpleArgv(`/bin/echo ${'x'.repeat(70000)}`), undefined);
  assert.equal(simpleArgv(`/bin/echo ${Array.from({ length: 200 }, (_, i) => i).join(' ')}`)?.length, 201);
  assert.equal(simpleArgv(''), undefined);
  assert.equal(simpleArgv('   '), undefined);
});

test("resolveInRoot: the host root's symlinks followed as mkt-init would, missing components kept", () => {
  const links: Record<string, string> = { '/lib': 'usr/lib', '/usr/lib/modules': '/srv/mods', '/etc': '/etc2/../etc3', '/loop': '/loop' };
  const readlink = (p: string): string | undefined => links[p];
  assert.equal(resolveInRoot('/lib/modules', readlink), '/srv/mods');
  assert.equal(resolveInRoot('/lib/firmware', readlink), '/usr/lib/firmware');
  assert.equal(resolveInRoot('/boot', readlink), '/boot');
  assert.equal(resolveInRoot('/etc', readlink), '/etc3');
  assert.equal(resolveInRoot('/', readlink), '/');
  // a loop ends after 40 hops, kept as it stands
  assert.equal(resolveInRoot('/loop/x', readlink), '/loop/x');
  // and the real root: /etc is where the host keeps it
  assert.equal(resolveInRoot('/etc'), realpathSync('/etc'));
});

test("the run spec carries what mkt found in the host's root, and binds the tree back only where the guest hides it", () => {
  const root = { etc: '/etc', boot: '/boot', modules: '/usr/lib/modules', hosts: '127.0.0.1 localhost\n', sudo: true, shadowLocked: false };
  const host = { user: { name: 'u', uid: 1000, gid: 1000, groups: [1000], home: '/home/u', shell: '/bin/sh' }, env: {}, terminal: undefined, root } as never;
  const run = (tree: string) => ({ cwd: '/home/u', dirs: [], aliases: [], exec: 'true', kernel: { tree, sysmap: `${tree}/System.map`, dotconfig: `${tree}/.config` } }) as never;
  const get = (recs: readonly (readonly [string, string])[], k: string): string[] => recs.filter(([key]) => key === k).map(([, v]) => v);
  let r = specRecords(run('/home/u/linux'), host, { initramfs: 'x', modules: '/c/lib/modules/6.1' } as never, 'exec', 'virtiofs');
  assert.deepEqual([get(r, 'etc'), get(r, 'boot'), get(r, 'moddir'), get(r, 'hosts'), get(r, 'sudo'), get(r, 'shadow')],
    [['/etc'], ['/boot'], ['/usr/lib/modules'], ['127.0.0.1 localhost\n'], ['1'], []]);
  assert.deepEqual(get(r, 'show'), [], 'a tree in home is visible in the guest as it is');
  // the root share through mkt-ro's throw-away overlays is the guest's root as it is; without mkt-ro, or with 9p, the guest overlays it
  assert.deepEqual(get(r, 'root'), []);
  assert.deepEqual(get(specRecords(run('/home/u/linux'), { ...(host as object), roHelper: '/x/mkt-ro' } as never, { initramfs: 'x' } as never, 'exec', 'virtiofs'), 'root'), ['writable']);
  assert.deepEqual(get(specRecords(run('/home/u/linux'), { ...(host as object), roHelper: '/x/mkt-ro' } as never, { initramfs: 'x' } as never, 'exec', '9p'), 'root'), []);
  r = specRecords(run('/tmp/linux'), { ...(host as object), root: { ...root, sudo: false, shadowLocked: true } } as never, { initramfs: 'x', modules: undefined } as never, 'exec', '9p');
  assert.deepEqual([get(r, 'show'), get(r, 'sudo'), get(r, 'shadow'), get(r, 'moddir')], [['/tmp/linux'], [], ['locked'], []]);
  assert.deepEqual(get(specRecords(run('/run/k'), host, { initramfs: 'x' } as never, 'exec'), 'show'), ['/run/k']);
  assert.deepEqual(get(specRecords(run('/tmpfoo/k'), host, { initramfs: 'x' } as never, 'exec'), 'show'), []);
  // the guest's starting directory: as the caller names it where the guest shows it, else as it really is, else none (home)
  const at = (cwd: string, cwdReal: string, dirs: { path: string; real: string }[] = []): string[] =>
    get(specRecords({ ...(run('/home/u/linux') as object), cwd, cwdReal, dirs } as never, host, { initramfs: 'x' } as never, 'exec'), 'cwd');
  assert.deepEqual(at('/home/u/src', '/home/u/src'), ['/home/u/src']);
  assert.deepEqual(at('/tmp/t/link', '/tmp/t/plain', [{ path: '/tmp/t/plain', real: '/tmp/t/plain' }]), ['/tmp/t/plain']);
  assert.deepEqual(at('/tmp/t', '/tmp/t', [{ path: '/tmp/t/plain', real: '/tmp/t/plain' }]), []);
  assert.deepEqual(at('/tmp', '/tmp'), []);
  assert.deepEqual(at('/tmp/x', '/tmp/x', [{ path: '/tmp/x', real: '/tmp/x' }]), ['/tmp/x']);
});

test('guestProgram: the PATH search ends where the guest\'s would, or is left to the guest', () => {
  const files: Record<string, string> = { '/usr/bin/true': '/usr/bin/true', '/home/u/bin/tool': '/home/u/bin/tool', '/opt/x/run': '/tmp/build/run', '/tmp/t/bin/t': '/tmp/t/bin/t' };
  const probe = (f: string): string | undefined => files[f];
  const shown = (p: string): boolean => !/^\/(tmp|run)(\/|$)/.test(p);
  assert.equal(guestProgram('true', '/home/u/bin:/usr/local/bin:/usr/bin:/bin', shown, probe), '/usr/bin/true');
  assert.equal(guestProgram('tool', '/home/u/bin:/usr/bin', shown, probe), '/home/u/bin/tool');
  // a slash: the guest execs it as it is
  assert.equal(guestProgram('./true', '/usr/bin', shown, probe), undefined);
  // not on PATH: the guest searches (and sh says "not found")
  assert.equal(guestProgram('nope', '/usr/bin:/bin', shown, probe), undefined);
  // an entry the guest covers with a fresh filesystem is empty there: skipped, the search goes on
  assert.equal(guestProgram('t', '/tmp/t/bin:/usr/bin', shown, probe), undefined);
  files['/usr/bin/t'] = '/usr/bin/t';
  assert.equal(guestProgram('t', '/tmp/t/bin:/usr/bin', shown, probe), '/usr/bin/t');
  // exported there, it is the host's: found
  assert.equal(guestProgram('t', '/tmp/t/bin:/usr/bin', (p) => shown(p) || p.startsWith('/tmp/t'), probe), '/tmp/t/bin/t');
  // a symlink into what the guest does not show, or a relative or empty entry before the match: the guest decides
  assert.equal(guestProgram('run', '/opt/x:/usr/bin', shown, probe), undefined);
  assert.equal(guestProgram('true', 'bin:/usr/bin', shown, probe), undefined);
  assert.equal(guestProgram('true', ':/usr/bin', shown, probe), undefined);
  // a trailing slash in an entry
  assert.equal(guestProgram('true', '/usr/bin/', shown, probe), '/usr/bin/true');
});
