/** The mkt command line: the one place that calls process.exit. */
import { Command, CommanderError } from '@commander-js/extra-typings';
import { ToolError, UsageError } from '../errors.js';
import { kconfigCommand } from './kconfig.js';
import { runCommand } from './run.js';
import { takeFastStart } from '../run/fast-start.js';

/** Exit once what is queued on stdout and stderr has been handed to the OS. */
function exit(code: number): void {
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

function fail(err: unknown): void {
  if (err instanceof CommanderError) {
    // --help and --version exit 0; help shown for want of a command (bare `mkt`) and every parse error are usage errors
    const asked = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || (err.code === 'commander.help' && err.exitCode === 0);
    return exit(asked ? 0 : 2);
  }
  if (err instanceof UsageError) {
    process.stderr.write(`mkt: ${err.message}\n`);
    return exit(err.exitCode);
  }
  if (err instanceof ToolError) {
    process.stderr.write(`mkt: ${err.message}\n`);
    if (err.stderrTail.trim()) process.stderr.write(`${err.stderrTail.trimEnd()}\n`);
    return exit(125);
  }
  // an InternalError, or anything else nobody meant to throw: a bug, shown with its stack
  process.stderr.write(`mkt: internal error (a bug; please report it): ${(err as Error)?.stack ?? String(err)}\n`);
  exit(125);
}

// A reader that leaves early (mkt run --help | head -1): end quietly, as a
// writer killed by SIGPIPE would. `mkt run` relays a command's output with
// its own handling, so this only acts when nothing else listens.
for (const out of [process.stdout, process.stderr]) {
  out.on('error', (err: NodeJS.ErrnoException) => {
    if (out.listenerCount('error') > 1) return;
    if (err.code === 'EPIPE') process.exit(141);
    throw err;
  });
}

// what bin/mkt's launcher started for this run, if anything: taken first, so that whatever ends
// mkt (a usage error too) kills it and removes its run directory
const fast = takeFastStart(process.env);

const program = new Command('mkt')
  .description('boot freshly compiled Linux kernels in QEMU, with the host as the root filesystem')
  .version('0.1.0')
  .exitOverride()
  .showHelpAfterError('(run with --help for usage)');
const output = { writeErr: (s: string) => process.stderr.write(s.startsWith('error:') ? `mkt: ${s}` : s) };
program.configureOutput(output);
// added subcommands do not inherit the root's output settings
for (const sub of [runCommand(exit, fast), kconfigCommand(exit)]) program.addCommand(sub.exitOverride().configureOutput(output).showHelpAfterError('(run with --help for usage)'));

program.parseAsync(process.argv).catch(fail);
