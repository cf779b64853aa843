/** Reading mkt's config files (the mkt INI format: [defaults] and named sections). */
import { readFileSync } from 'node:fs';
import { hostname, homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { xdgBase } from '../host/facts.js';

/** The keys mkt understands in a section, each with where it came from. */
export interface ConfigSection {
  readonly kernel?: string;
  readonly dir: readonly string[];
  readonly memory?: string;
  readonly cpus?: string;
  readonly append?: string;
  readonly accel?: string;
  readonly fs?: string;
  /** Where each key was set: "FILE [section]". */
  readonly origin?: Readonly<Record<string, string>>;
}

/** A parsed config file. */
export interface ConfigFile {
  readonly path: string;
  readonly defaults: ConfigSection;
  readonly sections: ReadonlyMap<string, ConfigSection>;
}

const KEYS = new Set(['kernel', 'dir', 'memory', 'cpus', 'append', 'accel', 'fs']);

/**
 * A path written in a config file: ~ is the home directory, and a relative
 * path is relative to the file's directory. A bare word (a kernel release
 * such as 6.1.0-18-amd64) stays as it is.
 */
export function configPath(file: string, value: string): string {
  if (value === '~' || value.startsWith('~/')) return join(homedir(), value.slice(1));
  if (isAbsolute(value) || !value.includes('/')) return value;
  return resolve(dirname(file), value);
}

/** One key = value line of a section, where it stands. */
interface Line {
  readonly key: string;
  readonly value: string;
  readonly line: number;
}

/** A value as written: quotes around the whole of it are dropped; a comment after it (` ;` or ` #`) is not part of it. */
function unquote(raw: string): string {
  const v = raw.replace(/\s+[;#].*$/, '').trim();
  if (v.length >= 2 && ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'")))) return v.slice(1, -1);
  return v;
}

function section(path: string, name: string, lines: readonly Line[]): ConfigSection {
  const origin: Record<string, string> = {};
  const out: Record<string, unknown> = { dir: [] as string[], origin };
  const seen = new Map<string, number>();
  for (const { key, value, line } of lines) {
    const k = key.replace(/\[\]$/, '');
    const at = `${path}:${line}`;
    if (!KEYS.has(k)) throw new UsageError(`${at}: [${name}] has unknown key '${key}' (known: ${[...KEYS].join(', ')})`);
    if (value === '') throw new UsageError(`${at}: [${name}] ${k} needs a value`);
    // dir may be given more than once (dir or dir[]): each is exported; any other key once per section
    const before = seen.get(k);
    if (before !== undefined && k !== 'dir') throw new UsageError(`${at}: [${name}] sets ${k} again (line ${before} set it already): keep one`);
    seen.set(k, line);
    origin[k] = `${at} [${name}] ${k}`;
    if (k === 'dir') (out.dir as string[]).push(configPath(path, value));
    else if (k === 'kernel') out[k] = configPath(path, value);
    else out[k] = value;
  }
  return out as unknown as ConfigSection;
}

/**
 * Parse the text of a config file; PATH is used in messages, each with the
 * line it is about. The mkt INI format: [name] starts a section (any name,
 * dots included: [v6.1]), key = value lines, dir (or dir[]) as often as
 * wanted, ; and # start comments, quotes around a whole value are dropped.
 */
export function parseConfig(path: string, text: string): ConfigFile {
  const found = new Map<string, Line[]>();
  const headers = new Map<string, number>();
  let current: Line[] | undefined;
  text
    .replace(/^\uFEFF/, '')
    .split(/\r?\n/)
    .forEach((raw, i) => {
      const line = i + 1;
      const t = raw.trim();
      if (t === '' || t.startsWith(';') || t.startsWith('#')) return;
      if (t.startsWith('[')) {
        const m = /^\[\s*([^\][]+?)\s*\]\s*([;#].*)?$/.exec(t);
        if (!m) throw new UsageError(`${path}:${line}: bad section header '${t}': write it as [name]`);
        const name = m[1]!;
        const before = headers.get(name);
        if (before !== undefined) throw new UsageError(`${path}:${line}: [${name}] again (line ${before} started it already): put its keys in one section`);
        headers.set(name, line);
        current = [];
        found.set(name, current);
        return;
      }
      const eq = t.indexOf('=');
      if (eq < 0) throw new UsageError(`${path}:${line}: '${t}' is no key = value line`);
      const key = t.slice(0, eq).trim();
      if (key === '') throw new UsageError(`${path}:${line}: '${t}' has no key before '='`);
      if (!current) throw new UsageError(`${path}:${line}: '${key}' is outside any section; put it under [defaults]`);
      current.push({ key, value: unquote(t.slice(eq + 1)), line });
    });
  let defaults: ConfigSection = { dir: [] };
  const sections = new Map<string, ConfigSection>();
  for (const [name, lines] of found) {
    const s = section(path, name, lines);
    if (name === 'defaults') defaults = s;
    else sections.set(name, s);
  }
  return { path, defaults, sections };
}

/** The config files mkt reads, in order: the legacy seed-tool file, then mkt's own (which wins). */
export function configPaths(env: NodeJS.ProcessEnv = process.env): string[] {
  const home = env.HOME || homedir();
  const xdg = xdgBase(env.XDG_CONFIG_HOME) ?? join(home, '.config');
  return [join(home, '.config', 'mellanox', 'mkt', `hv-${hostname()}.mkt`), join(xdg, 'mkt', 'config')];
}

/** Read the config files that exist; a missing file is not an error, an unreadable one is. */
export function readConfigs(paths: readonly string[]): ConfigFile[] {
  const out: ConfigFile[] = [];
  for (const p of paths) {
    let text: string;
    try {
      text = readFileSync(p, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new UsageError(`cannot read config file ${p}: ${(err as Error).message}`);
    }
    out.push(parseConfig(p, text));
  }
  return out;
}
