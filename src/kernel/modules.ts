/** Module directories: staging a tree's modules for modprobe, and the modules an initramfs must load. */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { statKey } from '../cache-key.js';
import { ToolError, UsageError } from '../errors.js';
import { shellQuote } from '../qemu/escape.js';

/** A module's canonical name: file name without .ko[.xz|.zst|.gz], dashes as underscores. */
export function moduleName(path: string): string {
  const base = path.slice(path.lastIndexOf('/') + 1);
  return base.replace(/\.ko(\.(xz|zst|gz))?$/, '').replaceAll('-', '_');
}

/** The parts of a module directory that decide what can be loaded. */
export interface ModuleIndex {
  /** Names of modules built into the kernel (modules.builtin). */
  readonly builtin: ReadonlySet<string>;
  /** name → path relative to the module directory and the names it depends on (modules.dep). */
  readonly deps: ReadonlyMap<string, { readonly path: string; readonly deps: readonly string[] }>;
}

/** Parse modules.dep and modules.builtin texts. */
export function parseModuleIndex(depText: string, builtinText: string): ModuleIndex {
  const deps = new Map<string, { path: string; deps: string[] }>();
  for (const line of depText.split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const path = line.slice(0, colon).trim();
    const rest = line.slice(colon + 1).trim();
    deps.set(moduleName(path), { path, deps: rest ? rest.split(/\s+/).map(moduleName) : [] });
  }
  const builtin = new Set(builtinText.split('\n').filter(Boolean).map(moduleName));
  return { builtin, deps };
}

/** Read the index of a module directory; undefined when it has no modules.dep. */
export function readModuleIndex(dir: string): ModuleIndex | undefined {
  const dep = join(dir, 'modules.dep');
  if (!existsSync(dep)) return undefined;
  const builtin = join(dir, 'modules.builtin');
  return parseModuleIndex(readFileSync(dep, 'utf8'), existsSync(builtin) ? readFileSync(builtin, 'utf8') : '');
}

/** Paths (relative to the module directory) to load for NAMES, each after its dependencies, once. */
export function loadOrder(index: ModuleIndex, names: readonly string[]): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string, chain: readonly string[]): void => {
    if (seen.has(name) || index.builtin.has(name)) return;
    const entry = index.deps.get(name);
    if (!entry) throw new UsageError(`module ${name} (needed by ${chain.join(' → ') || 'mkt'}) is not in modules.dep`);
    seen.add(name);
    for (const d of entry.deps) visit(d, [...chain, name]);
    out.push(entry.path);
  };
  for (const n of names) visit(n, []);
  return out;
}

/**
 * Stage a compiled tree's modules as a module directory that modprobe can use
 * without `make modules_install`: symlinks to the tree's .ko files plus
 * depmod's indexes. Keyed by the files a rebuild rewrites (modules.order,
 * Module.symvers, modules.builtin*), so a run with nothing rebuilt only stats
 * those four files. Returns the staged lib/modules/RELEASE directory, or
 * undefined when the tree has no modules.
 */
export function stageTreeModules(tree: string, release: string, cacheDir: string, depmod: string): string | undefined {
  const order = join(tree, 'modules.order');
  if (!existsSync(order)) return undefined;
  const inputs = ['modules.order', 'Module.symvers', 'modules.builtin', 'modules.builtin.modinfo'].map((f) => join(tree, f));
  const key = createHash('sha256').update([release, tree, ...inputs.map((p) => statKey(p, true))].join('\n')).digest('hex').slice(0, 16);
  const treeKey = createHash('sha256').update(tree).digest('hex').slice(0, 12);
  const root = join(cacheDir, 'modules', `${treeKey}-${key}`);
  const modDir = join(root, 'lib', 'modules', release);
  if (existsSync(join(root, '.complete'))) return modDir;

  const tmp = `${root}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  const tmpMod = join(tmp, 'lib', 'modules', release);
  mkdirSync(tmpMod, { recursive: true });
  const listed: string[] = [];
  for (const line of readFileSync(order, 'utf8').split('\n')) {
    const rel = line.trim().replace(/\.o$/, '.ko'); // 6.2+ lists .o files
    if (!rel) continue;
    const found = ['', '.xz', '.zst', '.gz'].map((ext) => rel + ext).find((p) => existsSync(join(tree, p)));
    if (!found) continue; // listed but not built (a failed or partial build): modprobe will say so
    const link = join(tmpMod, 'kernel', found);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(join(tree, found), link);
    listed.push(`kernel/${found}`);
  }
  writeFileSync(join(tmpMod, 'modules.order'), listed.map((l) => `${l}\n`).join(''));
  const builtin = join(tree, 'modules.builtin');
  if (existsSync(builtin)) {
    const text = readFileSync(builtin, 'utf8');
    writeFileSync(join(tmpMod, 'modules.builtin'), text.split('\n').filter(Boolean).map((l) => `kernel/${l}\n`).join(''));
  }
  const modinfo = join(tree, 'modules.builtin.modinfo');
  if (existsSync(modinfo)) copyFileSync(modinfo, join(tmpMod, 'modules.builtin.modinfo'));
  const argv = [depmod, '-b', tmp, release];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    rmSync(tmp, { recursive: true, force: true });
    throw new ToolError(`${argv.map(shellQuote).join(' ')} failed`, argv, r.status, r.stderr || String(r.error));
  }
  writeFileSync(join(tmp, '.complete'), '');
  try {
    renameSync(tmp, root);
  } catch {
    rmSync(tmp, { recursive: true, force: true }); // another run staged it first
  }
  // older stagings of the same tree are stale; keep the last hour's for VMs still running from them
  for (const name of readdirSync(join(cacheDir, 'modules'))) {
    const old = join(cacheDir, 'modules', name);
    if (name.startsWith(`${treeKey}-`) && name !== `${treeKey}-${key}` && !name.includes('.tmp-') && Date.now() - statSync(old).mtimeMs > 3600_000) {
      rmSync(old, { recursive: true, force: true });
    }
  }
  return modDir;
}
