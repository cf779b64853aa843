/**
 * `--exec` commands that need no shell: plain words, which `sh -c` would
 * only split at spaces and then exec. mkt-init execs them itself, sparing
 * the guest the start of a shell (tens of milliseconds under TCG).
 */

/** dash's builtins and reserved words: as a first word they mean what no program on PATH does. */
const SHELL_WORDS = new Set([
  '.', ':', 'alias', 'bg', 'break', 'cd', 'chdir', 'command', 'continue', 'echo', 'eval', 'exec', 'exit', 'export', 'false', 'fc',
  'fg', 'getopts', 'hash', 'jobs', 'kill', 'local', 'printf', 'pwd', 'read', 'readonly', 'return', 'set', 'shift', 'test', 'times',
  'trap', 'true', 'type', 'ulimit', 'umask', 'unalias', 'unset', 'wait',
  'case', 'do', 'done', 'elif', 'else', 'esac', 'fi', 'for', 'if', 'in', 'then', 'until', 'while',
]);

/** Builtins whose program does exactly the same when given no arguments. */
const SAME_WITHOUT_ARGS = new Set(['true', 'false']);

/**
 * Characters no shell gives a meaning to inside a word: no quoting,
 * expansion, globbing, redirection, separator, comment or tilde. Words are
 * separated by single spaces or runs of them (tabs and newlines go to sh).
 */
const PLAIN = /^[ A-Za-z0-9_./=:,+@%-]*$/;

/** Bounds for the words' own spec records (mkt-init takes 512 records and 1 MiB); longer commands go to sh. */
const MAX_WORDS = 256;
const MAX_LENGTH = 64 * 1024;

/** The argv that `sh -c CMD` would exec, when CMD is only plain words naming a program; else undefined. */
export function simpleArgv(cmd: string): string[] | undefined {
  if (cmd.length > MAX_LENGTH || !PLAIN.test(cmd)) return undefined;
  const words = cmd.split(' ').filter((w) => w !== '');
  const first = words[0];
  if (first === undefined || words.length > MAX_WORDS) return undefined;
  // sh -c reads a CMD that starts with '-' as options of its own
  if (cmd.startsWith('-')) return undefined;
  // NAME=VALUE first is an assignment to the environment, not a program
  if (first.includes('=')) return undefined;
  if (SHELL_WORDS.has(first) && !(SAME_WITHOUT_ARGS.has(first) && words.length === 1)) return undefined;
  return words;
}

/**
 * The file the guest's PATH search for WORD (a first word without '/')
 * ends at, found on the host: the guest's root is the host's, so each
 * entry is a lookup here rather than a failed exec and a round trip to
 * the host per entry there (about 0.6 ms each under TCG). SHOWN says
 * whether the guest sees the host's files at a path (not where it mounts
 * a fresh filesystem, unless exported); PROBE gives an executable regular
 * file's real path, else undefined. Undefined where the guest's answer
 * could differ: a relative PATH entry, a program whose real path the
 * guest does not see. mkt-init still searches PATH itself when this file
 * is gone by then.
 */
export function guestProgram(word: string, path: string, shown: (p: string) => boolean, probe: (file: string) => string | undefined): string | undefined {
  if (word.includes('/')) return undefined;
  for (const dir of path.split(':')) {
    // '' is the current directory: the guest's may differ
    if (!dir.startsWith('/')) return undefined;
    // a fresh, empty filesystem in the guest: nothing to find there
    if (!shown(dir)) continue;
    const file = `${dir.replace(/\/+$/, '')}/${word}`;
    const real = probe(file);
    if (real === undefined) continue;
    return shown(real) ? file : undefined;
  }
  return undefined;
}
