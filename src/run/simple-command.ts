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
