/** `mkt kconfig [DIR]`: add mkt's options to a tree's .config. */
import { Command } from '@commander-js/extra-typings';
import { resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { applyKconfig } from '../kernel/kconfig.js';
import { renderFragment } from '../kernel/kconfig-fragment.js';

export function kconfigCommand(act: (code: number) => void): Command<[string | undefined]> {
  return new Command('kconfig')
    .description("add the options mkt needs to DIR/.config and run 'make olddefconfig'")
    .argument('[dir]', 'kernel tree (default: current directory)')
    .option('-p, --print', 'print the fragment instead of applying it')
    .action((dir, o) => {
      if (o.print) {
        process.stdout.write(renderFragment());
        act(0);
        return;
      }
      if (dir === '') throw new UsageError("mkt kconfig '': an empty directory name: pass a kernel tree, or nothing for the current directory");
      const tree = resolve(dir ?? '.');
      const { lost, slow } = applyKconfig(tree);
      for (const s of slow) process.stderr.write(`mkt: note: CONFIG_${s.option}=${s.value}: ${s.why}\n`);
      if (lost.length) {
        process.stderr.write(`mkt: these options did not stick (their dependencies are off): ${lost.join(', ')}\n`);
        act(1);
        return;
      }
      process.stderr.write(`mkt: ${tree}/.config now has what mkt needs; build with make -j$(nproc)\n`);
      act(0);
    });
}
