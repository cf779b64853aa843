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
  ['FUSE_FS', 'fuse'],
  ['VIRTIO_FS', 'virtiofs'],
]);

/** Options a boot over 9p needs beyond the common ones, and those a boot over virtiofs needs. */
const NEEDS_9P = ['NET_9P', 'NET_9P_VIRTIO', '9P_FS'];
const NEEDS_VIRTIOFS = ['FUSE_FS', 'VIRTIO_FS'];

/** Can this kernel mount virtiofs: built in, as modules, not at all, or unknown (no .config, no module index)? */
export function virtiofsSupport(config: ReadonlyMap<string, string> | undefined, index: ModuleIndex | undefined): 'yes' | 'no' | 'unknown' {
  if (config) return NEEDS_VIRTIOFS.every((o) => config.get(o) === 'y' || config.get(o) === 'm') ? 'yes' : 'no';
  if (index) return index.builtin.has('virtiofs') || index.deps.has('virtiofs') ? 'yes' : 'no';
  return 'unknown';
}

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
  fs: '9p' | 'virtiofs' = '9p',
  guestOverlay = true,
): BootNeeds {
  // in fragment order, which puts each module after what it needs
  const own = fs === '9p' ? NEEDS_9P : NEEDS_VIRTIOFS;
  // no overlay in the guest where the host serves its root throw-away (virtiofs through mkt-ro)
  const required = KCONFIG_FRAGMENT.filter((x) => own.includes(x.option) || (x.required && !NEEDS_9P.includes(x.option)))
    .map((x) => x.option)
    .filter((o) => guestOverlay || o !== 'OVERLAY_FS');
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
