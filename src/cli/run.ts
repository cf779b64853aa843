/** `mkt run`: the subcommand's options; everything else happens in src/run. */
import { Command, Option } from '@commander-js/extra-typings';
import { readConfigs, configPaths } from '../config/file.js';
import { resolveRun } from '../config/resolve.js';
import { probeHost } from '../host/facts.js';
import type { FastStart } from '../run/fast-start.js';
import { runMkt, type Reporter } from '../run/run.js';
import { UsageError } from '../errors.js';
import { EXIT_TABLE } from './exit-codes.js';

const collect = (v: string, prev: string[]): string[] => [...prev, v];

/** A reporter printing "mkt: ..." lines on stderr; info only with --verbose. */
export function stderrReporter(verbose: boolean): Reporter {
  const line = (m: string): void => void process.stderr.write(`mkt: ${m}\n`);
  return { warn: line, error: line, info: (m) => verbose && line(m) };
}

/**
 * An option's value that is another of the command's options (`--memory
 * --exec true`: the parser takes --exec as the size) is a missing value: said
 * as such, before the words after it are taken for config-section names.
 * --append and --qemu-arg are left alone: their values are often dashed.
 */
export function checkValuesAreNotOptions(cmd: Command<[string[]]>, values: Readonly<Record<string, unknown>>): void {
  const flags = new Set(cmd.options.flatMap((o) => [o.long, o.short].filter((f): f is string => Boolean(f))));
  for (const o of cmd.options) {
    const key = o.attributeName();
    if (key === 'append' || key === 'qemuArg' || !o.required) continue;
    const given = values[key];
    for (const v of Array.isArray(given) ? given : [given]) {
      if (typeof v === 'string' && flags.has(v.split('=')[0]!)) {
        const path = /<path>/.test(o.flags) ? ` (a path that starts with dashes: ${o.long}=./${v})` : '';
        throw new UsageError(`${o.long} needs a value, but the word after it is the option ${v}: write ${o.long}=${o.flags.split(' ').at(-1)}${path}`);
      }
    }
  }
}

/** Build the `run` subcommand; ACT receives the exit status; FAST: what bin/mkt's launcher started. */
export function runCommand(act: (code: number) => void, fast?: FastStart): Command<[string[]]> {
  const cmd: Command<[string[]]> = new Command('run')
    .description("boot a kernel in a VM with the host's root (read-only, throw-away writes) and a shell or one command")
    .argument('[configs...]', 'names of config-file sections to apply over [defaults]')
    .option('-k, --kernel <path>', "compiled kernel tree (or make O= dir), its vmlinux or bzImage, a bzImage, or an installed release")
    .option('-d, --dir <path>', 'export a host directory at the same path, writable (repeatable)', collect, [] as string[])
    .option('--no-home', 'do not export your home directory')
    .option('-e, --exec <cmd>', 'run CMD with /bin/sh -c as you, then power off; its stdio and status are mkt\'s')
    .option('--timeout <seconds>', 'stop the VM after SECONDS (exit 124)')
    .addOption(new Option('--accel <accel>', 'auto, kvm or tcg (env MKT_ACCEL); auto falls back to TCG when KVM is unusable'))
    .addOption(new Option('--fs <fs>', 'auto, 9p or virtiofs (env MKT_FS): how the root and --dir reach the guest'))
    .option('-m, --memory <size>', 'guest memory (default 1G)')
    .option('-c, --cpus <n>', 'guest CPUs (default: host CPUs)')
    .option('-a, --append <args>', "extra kernel command line arguments (repeatable); -ARG leaves out mkt's own ARG", collect, [] as string[])
    .option('--qemu <path>', 'qemu binary (default qemu-system-x86_64 on PATH; env MKT_QEMU)')
    .option('--qemu-arg <arg>', 'extra qemu argument, appended last (repeatable)', collect, [] as string[])
    .option('-n, --dry-run', 'print the qemu command line, shell-quoted, and start nothing')
    .option('-v, --verbose', 'show the boot console and what mkt does on stderr')
    .option('--no-pvh', 'boot the bzImage even where the kernel can be started at its PVH entry, uncompressed (to run the decompressor, KASLR)')
    .option('--boot-trace', 'print on stderr when each boot phase finished (ms since mkt started)')
    .addHelpText('after', `\nConsole: Ctrl-A x ends the VM; Ctrl-A h lists the other Ctrl-A keys.\n\n${EXIT_TABLE}\n\nSee docs/mkt-run.md for the whole reference.`)
    .action(async (names, o) => {
      checkValuesAreNotOptions(cmd, o);
      const host = probeHost();
      const configs = readConfigs(configPaths());
      const run = resolveRun(
        {
          kernel: o.kernel,
          dir: o.dir,
          home: o.home,
          exec: o.exec,
          timeout: o.timeout,
          accel: o.accel,
          fs: o.fs,
          memory: o.memory,
          cpus: o.cpus,
          append: o.append,
          qemu: o.qemu,
          qemuArg: o.qemuArg,
          dryRun: o.dryRun ?? false,
          verbose: o.verbose ?? false,
          bootTrace: o.bootTrace ?? false,
          pvh: o.pvh,
          names,
        },
        configs,
        host,
      );
      act(await runMkt(run, host, stderrReporter(run.verbose), fast));
    });
  return cmd;
}
