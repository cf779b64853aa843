/** Does a kernel have what an mkt boot needs, and which of it must the initramfs load as modules? */
import { UsageError } from '../errors.js';
import { KCONFIG_FRAGMENT } from './kconfig-fragment.js';
import type { ModuleIndex } from './modules.js';

/** Options that may be modules, with the module that provides each; mkt-init loads them before mounting. */
export const MODULAR_BOOT_DRIVERS: ReadonlyMap<string, string> = new Map([
  ['VIRTIO_PCI', 'virtio_pci'],
  ['VIRTIO_CONSOLE', 'virtio_console'],
  ['NET_9P', '9pnet'],
  ['NET_9P_VIRTIO', '9pnet_virtio'],
  ['9P_FS', '9p'],
  ['OVERLAY_FS', 'overlay'],
]);

/** The result of checking a kernel: the boot-driver modules the initramfs must load (in option order). */
export interface BootNeeds {
  readonly modules: readonly string[];
}

/**
 * Decide from the kernel's .config (when known) and its module index (when
 * known) which boot drivers are modules, and refuse a kernel that lacks a
 * required option entirely. Without a .config, a driver counts as modular
 * when the module index has it and not as built-in.
 */
export function checkBootNeeds(
  shown: string,
  config: ReadonlyMap<string, string> | undefined,
  index: ModuleIndex | undefined,
): BootNeeds {
  const required = KCONFIG_FRAGMENT.filter((x) => x.required).map((x) => x.option);
  const modules: string[] = [];
  const missing: string[] = [];
  for (const opt of required) {
    const mod = MODULAR_BOOT_DRIVERS.get(opt);
    const value = config?.get(opt);
    if (config) {
      if (value === 'y') continue;
      if (value === 'm' && mod) {
        modules.push(mod);
        continue;
      }
      missing.push(value === 'm' ? `CONFIG_${opt}=y (it is =m)` : `CONFIG_${opt}`);
      continue;
    }
    if (mod && index && !index.builtin.has(mod) && index.deps.has(mod)) modules.push(mod);
  }
  if (missing.length) {
    throw new UsageError(
      `--kernel ${shown}: the kernel lacks ${missing.join(', ')}, which mkt needs to boot it: run 'mkt kconfig' in the tree and rebuild`,
      125,
    );
  }
  if (modules.length && !index) {
    throw new UsageError(
      `--kernel ${shown}: ${modules.join(', ')} are modules but no module directory was found: build the tree's modules (make modules) or install them`,
      125,
    );
  }
  return { modules };
}
