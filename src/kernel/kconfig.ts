/** `mkt kconfig`: add the options mkt needs to a tree's .config. */
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ToolError, UsageError } from '../errors.js';
import { shellQuote } from '../qemu/escape.js';
import { KCONFIG_FRAGMENT, renderFragment, type SlowOption, slowOptions } from './kconfig-fragment.js';

/** Parse .config text into a map of option (without CONFIG_) to value; "is not set" maps to 'n'. */
export function parseDotConfig(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const set = /^CONFIG_([A-Za-z0-9_]+)=(.*)$/.exec(line);
    if (set) {
      out.set(set[1]!, set[2]!);
      continue;
    }
    const unset = /^# CONFIG_([A-Za-z0-9_]+) is not set$/.exec(line);
    if (unset) out.set(unset[1]!, 'n');
  }
  return out;
}

/** Append the fragment to DIR/.config and run `make olddefconfig`; returns options that did not stick and slow ones. */
export function applyKconfig(dir: string): { lost: string[]; slow: SlowOption[] } {
  const dotconfig = join(dir, '.config');
  if (!existsSync(dir)) throw new UsageError(`${dir}: no such directory: pass a kernel tree (or make O= build directory)`);
  if (!statSync(dir).isDirectory()) throw new UsageError(`${dir} is not a directory: pass the kernel tree (or make O= build directory) it belongs to`);
  // a source tree has Kconfig; a make O= build directory has a Makefile that leads to it, and a .config
  if (!existsSync(join(dir, 'Makefile')) || !(existsSync(join(dir, 'Kconfig')) || existsSync(dotconfig))) {
    throw new UsageError(`${dir} is not a kernel source tree or build directory (no Makefile and Kconfig): pass the tree as DIR or cd into it`);
  }
  if (!existsSync(dotconfig)) {
    throw new UsageError(`${dotconfig} does not exist: run 'make defconfig' (or tinyconfig) in ${dir} first`);
  }
  const before = readFileSync(dotconfig);
  appendFileSync(dotconfig, `\n# added by mkt kconfig\n${renderFragment()}`);
  const argv = ['make', '-C', dir, 'olddefconfig'];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    // make did not take the fragment in: the .config goes back to what it was, not a second copy of it next time
    writeFileSync(dotconfig, before);
    throw new ToolError(
      `${argv.map(shellQuote).join(' ')} failed; ${dotconfig} is as it was`,
      argv,
      r.status,
      (r.stderr ?? String(r.error)).slice(-2000),
    );
  }
  const after = parseDotConfig(readFileSync(dotconfig, 'utf8'));
  return {
    lost: KCONFIG_FRAGMENT.filter((x) => after.get(x.option) !== x.value).map((x) => `CONFIG_${x.option}`),
    slow: slowOptions(after),
  };
}
