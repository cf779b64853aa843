/** The interactive console, driven through tmux as a person would. */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ktree, MKT, sleep, vmProcesses } from './helpers.js';
import { shellQuote } from '../../src/qemu/escape.js';

const tmux = (...args: string[]): string => execFileSync('tmux', args, { encoding: 'utf8' });
const screen = (s: string): string => tmux('capture-pane', '-p', '-J', '-t', s, '-S', '-200');

/** Type LINE until the screen shows WANT (the shell may not be up yet); false after LIMIT seconds. */
async function typeUntil(s: string, line: string, want: RegExp, limit = 120): Promise<boolean> {
  for (let i = 0; i < limit; i++) {
    await sleep(1000);
    if (want.test(screen(s))) return true;
    if (i % 3 === 0) tmux('send-keys', '-t', s, line, 'Enter');
  }
  return want.test(screen(s));
}

test('interactive: logged in as the caller on hvc0 with TERM and size, a command answered, Ctrl-A x leaves', async () => {
  const have = spawnSync('tmux', ['-V']);
  assert.equal(have.status, 0, 'tmux is needed for this test (apt-get install tmux)');
  const s = `mkt-test-${process.pid}`;
  const cmd = `${shellQuote(MKT)} run --kernel ${shellQuote(ktree())}; echo MKT-EXITED-$?; sleep 60`;
  tmux('new-session', '-d', '-s', s, '-x', '132', '-y', '43', '-e', 'TERM=xterm-256color', cmd);
  try {
    const user = process.env.USER ?? 'root';
    const ok = await typeUntil(s, 'echo "ANS-$((6*7))-$(id -un)-$(tty)-$TERM-$(stty size)"', new RegExp(`ANS-42-${user}-/dev/hvc0-\\S+-\\d+ \\d+`));
    const text = screen(s);
    assert.ok(ok, `no answer from the guest shell; screen:\n${text}`);
    const m = /ANS-42-\S+-\/dev\/hvc0-(\S+)-(\d+) (\d+)/.exec(text);
    assert.ok(m);
    assert.match(m[1]!, /^(screen|tmux)/);
    assert.deepEqual([m[2], m[3]], ['43', '132']);
    // boot messages came first, on the serial console
    assert.match(text, /Linux version|Run \/init|Freeing unused/);
    // Ctrl-C goes to the guest: it interrupts the guest's command, not mkt
    tmux('send-keys', '-t', s, 'sleep 300', 'Enter');
    await sleep(1500);
    tmux('send-keys', '-t', s, 'C-c');
    const alive = await typeUntil(s, 'echo AFTER-$((2*21))', /AFTER-42/, 30);
    assert.ok(alive, `the guest shell did not survive Ctrl-C:\n${screen(s)}`);
    // a resized terminal reaches the guest shell
    tmux('resize-window', '-t', s, '-x', '90', '-y', '25');
    const resized = await typeUntil(s, 'echo "SIZE-$(stty size | tr " " x)"', /SIZE-25x90/, 30);
    assert.ok(resized, `stty size did not follow the resize:\n${screen(s)}`);
    tmux('send-keys', '-t', s, 'C-a', 'x');
    let exited = false;
    for (let i = 0; i < 30 && !exited; i++) {
      await sleep(500);
      exited = /MKT-EXITED-0/.test(screen(s));
    }
    assert.ok(exited, `mkt did not return after Ctrl-A x:\n${screen(s)}`);
  } finally {
    spawnSync('tmux', ['kill-session', '-t', s]);
  }
  await sleep(1000);
  assert.deepEqual(vmProcesses(ktree()), []);
});

test("interactive: leaving the shell powers the VM off, mkt returns the shell's status, and qemu leaves no note on the terminal", async () => {
  const s = `mkt-test-exit-${process.pid}`;
  const cmd = `${shellQuote(MKT)} run --kernel ${shellQuote(ktree())}; echo MKT-EXITED-$?; sleep 60`;
  tmux('new-session', '-d', '-s', s, '-x', '100', '-y', '30', cmd);
  try {
    const up = await typeUntil(s, 'echo UP-$((1+1))', /UP-2/);
    assert.ok(up, screen(s));
    tmux('send-keys', '-t', s, 'exit 3', 'Enter');
    let exited = false;
    for (let i = 0; i < 60 && !exited; i++) {
      await sleep(500);
      exited = /MKT-EXITED-3/.test(screen(s));
    }
    assert.ok(exited, screen(s));
    assert.doesNotMatch(screen(s), /terminating on signal/);
  } finally {
    spawnSync('tmux', ['kill-session', '-t', s]);
  }
});

test('interactive: a virtiofsd that never serves ends the run with 125 and leaves the terminal as it was', async () => {
  if (process.getuid?.() !== 0) return; // virtiofs needs root with Debian's daemon
  const dir = mkdtempSync(join(tmpdir(), 'mkt-mute-'));
  const mute = join(dir, 'mute-virtiofsd');
  writeFileSync(mute, '#!/bin/sh\nwhile :; do sleep 1; done\n', { mode: 0o755 });
  const s = `mkt-test-mute-${process.pid}`;
  const cmd = `MKT_VIRTIOFSD=${shellQuote(mute)} ${shellQuote(MKT)} run --kernel ${shellQuote(ktree())} --fs virtiofs; echo MKT-EXITED-$?; stty -a | grep -o -- '-*icanon' | sed 's/^/TTY-/'; sleep 60`;
  tmux('new-session', '-d', '-s', s, '-x', '120', '-y', '30', cmd);
  try {
    let shown = '';
    for (let i = 0; i < 60 && !/TTY-/.test(shown); i++) {
      await sleep(500);
      shown = screen(s);
    }
    assert.match(shown, /not serving after 5 s/);
    assert.match(shown, /MKT-EXITED-125/);
    assert.match(shown, /^TTY-icanon$/m, 'the terminal was left raw');
    assert.equal(spawnSync('pgrep', ['-f', `${mute} --fd=`]).status, 1, 'the mute daemon outlived its run');
  } finally {
    spawnSync('tmux', ['kill-session', '-t', s]);
    rmSync(dir, { recursive: true, force: true });
  }
});
