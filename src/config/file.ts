/** Reading mkt's config files (the mkt INI format: [defaults] and named sections). */
import { readFileSync } from 'node:fs';
import { hostname, homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse } from 'ini';
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

function section(path: string, name: string, raw: Record<string, unknown>): ConfigSection {
  const origin: Record<string, string> = {};
  const out: Record<string, unknown> = { dir: [] as string[], origin };
  for (const [key, value] of Object.entries(raw)) {
    const k = key.replace(/\[\]$/, '');
    if (!KEYS.has(k)) {
      throw new UsageError(`${path}: [${name}] has unknown key '${key}' (known: ${[...KEYS].join(', ')})`);
    }
    const values = (Array.isArray(value) ? value : [value]).map((v) => {
      if (typeof v !== 'string' || v === '') throw new UsageError(`${path}: [${name}] ${k} needs a value`);
      return v;
    });
    origin[k] = `${path} [${name}] ${k}`;
    if (k === 'dir') (out.dir as string[]).push(...values.map((v) => configPath(path, v)));
    else if (k === 'kernel') out[k] = configPath(path, values[values.length - 1]!);
    else out[k] = values[values.length - 1];
  }
  return out as unknown as ConfigSection;
}

/** Parse the text of a config file; PATH is used in messages. */
export function parseConfig(path: string, text: string): ConfigFile {
  text.split('\n').forEach((line, i) => {
    const t = line.trim();
    if (t.startsWith('[') && !/^\[[^\]]+\]\s*([;#].*)?$/.test(t)) {
      throw new UsageError(`${path}:${i + 1}: bad section header '${t}': write it as [name]`);
    }
  });
  let raw: Record<string, unknown>;
  try {
    raw = parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new UsageError(`${path}: cannot parse: ${(err as Error).message}`);
  }
  let defaults: ConfigSection = { dir: [] };
  const sections = new Map<string, ConfigSection>();
  for (const [name, value] of Object.entries(raw)) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new UsageError(`${path}: '${name}' is outside any section; put it under [defaults]`);
    }
    const s = section(path, name, value as Record<string, unknown>);
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
