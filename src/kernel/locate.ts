/** Turning what the user passed as --kernel into a bootable image and its companions. */
import { closeSync, existsSync, openSync, readFileSync, readSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { isNotBzImage, parseBzImage } from './bzimage.js';
import { elfKernelFile } from './elf.js';

/** A kernel mkt can boot. */
export interface KernelInfo {
  /** The bzImage to pass to qemu -kernel (symlinks resolved); a tree's vmlinux where the tree has no bzImage. */
  readonly image: string;
  /**
   * The tree's vmlinux, where qemu can start it directly (built with
   * CONFIG_PVH): booted instead of IMAGE, with no decompressor run, unless
   * --no-pvh.
   */
  readonly pvh?: string;
  /** Why the tree's vmlinux cannot be used though it is there (cut short, unreadable): an error unless --no-pvh. */
  readonly pvhProblem?: string;
  /** The tree's vmlinux is whole but has no PVH entry (built without CONFIG_PVH). */
  readonly vmlinuxWithoutPvh?: boolean;
  readonly release: string;
  /** The compiled tree (or make O= build directory) the image came from. */
  readonly tree?: string;
  /** The kernel's .config, when known (tree/.config or /boot/config-RELEASE). */
  readonly dotconfig?: string;
  /** System.map, when known. */
  readonly sysmap?: string;
  /** An installed module directory (/lib/modules/RELEASE) when the kernel is installed. */
  readonly installedModules?: string;
  /** How it was chosen, for the one-line note when mkt picked it itself. */
  readonly how: 'flag' | 'config' | 'cwd' | 'newest-installed';
}

const TREE_IMAGE = 'arch/x86/boot/bzImage';
const TREE_VMLINUX = 'vmlinux';

/** The file qemu -kernel boots: the vmlinux where it can be started directly, else the image. */
export function bootImage(k: KernelInfo): string {
  return k.pvh ?? k.image;
}

/** K without the direct start of its vmlinux (--no-pvh); SHOWN names the kernel for the error when it has nothing else. */
export function withoutPvh(k: KernelInfo, shown: string): KernelInfo {
  if (k.pvh === undefined && k.pvhProblem === undefined) return k;
  if (k.pvh !== undefined && k.image === k.pvh) {
    throw new UsageError(`${shown}: --no-pvh boots the bzImage, and ${k.tree ?? 'the tree'} has none (no ${TREE_IMAGE}): run 'make -j$(nproc) bzImage' there, or leave out --no-pvh`, 125);
  }
  const { pvh: _, pvhProblem: _p, ...rest } = k;
  return rest;
}

function readHead(path: string, shown: string): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UsageError(
      e.code === 'EACCES'
        ? `${shown}: not readable by you (some distributions make /boot/vmlinuz-* mode 0600): run 'sudo chmod a+r ${path}' or pass another kernel`
        : `${shown}: cannot read it: ${e.message}`,
      125,
    );
  }
  try {
    const buf = Buffer.alloc(64 * 1024);
    const n = readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** Read the release from a bzImage's header, or fail naming the file and what to pass instead. */
export function bzImageRelease(path: string, shown: string): string {
  const info = parseBzImage(readHead(path, shown), statSync(path).size);
  if (isNotBzImage(info)) {
    const hint = basename(path).startsWith('vmlinux')
      ? `pass the tree it was built in, or that tree's ${TREE_IMAGE}`
      : 'pass a compiled kernel tree, a bzImage or an installed release';
    throw new UsageError(`${shown}: ${info.reason}: ${hint}`, 125);
  }
  if (!info.release) throw new UsageError(`${shown}: the bzImage header carries no kernel version string`, 125);
  return info.release;
}

/**
 * A compiled tree's kernel. PICK: what the user named, the tree or its
 * bzImage (the vmlinux where it can be started directly, else the
 * bzImage), or its vmlinux (that, or an error saying why not).
 */
function fromTree(tree: string, shown: string, how: KernelInfo['how'], pick: 'tree' | 'vmlinux' = 'tree'): KernelInfo {
  const bz = join(tree, TREE_IMAGE);
  const vmlinux = join(tree, TREE_VMLINUX);
  const relFile = join(tree, 'include/config/kernel.release');
  let pvh: string | undefined;
  let pvhProblem: string | undefined;
  let vmlinuxWithoutPvh = false;
  if (existsSync(vmlinux)) {
    const elf = elfKernelFile(vmlinux);
    if (elf?.pvh) pvh = vmlinux;
    else if (pick === 'vmlinux') {
      throw new UsageError(
        elf && !elf.cut
          ? `${shown}: ${elf.reason}, so qemu cannot start it directly: pass the tree or its ${TREE_IMAGE}, or set CONFIG_PVH=y ('mkt kconfig' adds it)`
          : `${shown}: ${elf ? elf.reason : 'cannot be read'}: run 'make -j$(nproc)' in ${tree} again`,
        125,
      );
    } else if (elf && !elf.cut) vmlinuxWithoutPvh = true;
    else pvhProblem = `${vmlinux} ${elf ? elf.reason : 'cannot be read'}: run 'make -j$(nproc)' there again (a build still running?), or pass --no-pvh to boot its bzImage`;
  }
  if (!existsSync(bz) && !pvh) {
    if (pvhProblem) throw new UsageError(`${shown}: ${pvhProblem.replace(/, or pass --no-pvh.*/, '')}`, 125);
    throw new UsageError(
      `${shown}: ${tree} is a kernel tree that was not built (no ${TREE_IMAGE}${vmlinuxWithoutPvh ? ', and its vmlinux has no PVH entry point to start it by' : ''}): run 'make -j$(nproc)' there first`,
      125,
    );
  }
  const image = existsSync(bz) ? bz : vmlinux;
  // the header is read either way, so a corrupt image is refused before boot
  const headerRelease = image === bz ? bzImageRelease(bz, shown) : undefined;
  if (!existsSync(relFile) && headerRelease === undefined) {
    throw new UsageError(`${shown}: ${tree} has a vmlinux but no include/config/kernel.release: run 'make -j$(nproc)' there first`, 125);
  }
  const release = existsSync(relFile) ? readFileSync(relFile, 'utf8').trim() : headerRelease!;
  const opt = (p: string): string | undefined => (existsSync(join(tree, p)) ? join(tree, p) : undefined);
  return {
    image,
    ...(pvh ? { pvh } : {}),
    ...(pvhProblem ? { pvhProblem } : {}),
    ...(vmlinuxWithoutPvh ? { vmlinuxWithoutPvh } : {}),
    release,
    tree,
    dotconfig: opt('.config'),
    sysmap: opt('System.map'),
    how,
  };
}

function installed(release: string, how: KernelInfo['how']): KernelInfo {
  const image = realpathSync(`/boot/vmlinuz-${release}`);
  bzImageRelease(image, `kernel ${image}`); // readable, and a bzImage
  const opt = (p: string): string | undefined => (existsSync(p) ? p : undefined);
  return {
    image,
    release,
    dotconfig: opt(`/boot/config-${release}`),
    sysmap: opt(`/boot/System.map-${release}`),
    installedModules: opt(`/lib/modules/${release}`),
    how,
  };
}

function looksLikeTree(dir: string): boolean {
  return existsSync(join(dir, 'Makefile')) && (existsSync(join(dir, 'Kconfig')) || existsSync(join(dir, 'include/config')));
}

/** Resolve one --kernel value (a tree, a build directory, a bzImage, a release or /boot/vmlinuz-RELEASE). */
export function locateKernel(value: string, how: KernelInfo['how'] = 'flag', cwd = process.cwd(), label = '--kernel'): KernelInfo {
  const shown = `${label} ${value}`;
  if (value === '') throw new UsageError(`${label} needs a value`);
  const path = resolve(cwd, value);
  try {
    statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EACCES') {
      throw new UsageError(`${shown}: permission denied: a directory on the way is not readable by you`, 125);
    }
  }
  if (existsSync(path)) {
    const real = realpathSync(path);
    if (statSync(real).isDirectory()) {
      if (existsSync(join(real, TREE_IMAGE)) || existsSync(join(real, TREE_VMLINUX)) || looksLikeTree(real)) return fromTree(real, shown, how);
      throw new UsageError(
        `${shown}: ${real} is a directory but not a kernel tree (no ${TREE_IMAGE}, and no Makefile with Kconfig or include/config beside it): pass a compiled tree, a bzImage or an installed release`,
        125,
      );
    }
    // a bzImage or vmlinux inside its own tree: the tree's, for its modules and .config
    for (const [name, pick] of [[TREE_IMAGE, 'tree'], [TREE_VMLINUX, 'vmlinux']] as const) {
      if (!real.endsWith(`/${name}`)) continue;
      const tree = real.slice(0, -name.length - 1);
      if (existsSync(join(tree, 'include/config/kernel.release'))) return fromTree(tree, shown, how, pick);
    }
    if (!statSync(real).isFile()) throw new UsageError(`${shown}: not a regular file (a pipe or device?): pass a bzImage file`, 125);
    const release = bzImageRelease(real, shown);
    const m = /^vmlinuz-(.+)$/.exec(basename(path));
    if (dirname(path) === '/boot' && m && m[1] === release) return installed(release, how);
    const opt = (p: string): string | undefined => (existsSync(p) ? p : undefined);
    return {
      image: real,
      release,
      installedModules: opt(`/lib/modules/${release}`),
      dotconfig: opt(`/boot/config-${release}`),
      sysmap: opt(`/boot/System.map-${release}`),
      how,
    };
  }
  if (!value.includes('/') && existsSync(`/boot/vmlinuz-${value}`)) return installed(value, how);
  const releases = installedReleases();
  throw new UsageError(
    `${shown}: no such file, directory or installed kernel release` +
      (releases.length ? ` (installed: ${releases.join(', ')})` : '') +
      ': pass a compiled kernel tree, a bzImage or a release',
      125,
  );
}

/** The kernel tree (or make O= build directory) DIR is in, if any: the habit of running mkt anywhere inside one. */
function enclosingTree(dir: string): string | undefined {
  for (let d = dir; ; d = dirname(d)) {
    if (existsSync(join(d, TREE_IMAGE)) || looksLikeTree(d)) return d;
    if (d === '/') return undefined;
  }
}

/** Installed kernel releases (from /boot/vmlinuz-*), oldest first by version order. */
export function installedReleases(): string[] {
  let names: string[] = [];
  try {
    names = readdirSync('/boot');
  } catch {
    return [];
  }
  return names
    .filter((n) => n.startsWith('vmlinuz-'))
    .map((n) => n.slice('vmlinuz-'.length))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
}

/** Pick the kernel when --kernel is absent: config, then the current directory if built, then the newest installed. */
export function defaultKernel(configKernel: string | undefined, cwd = process.cwd(), configLabel = 'kernel in the config file'): KernelInfo {
  if (configKernel) return locateKernel(configKernel, 'config', cwd, configLabel);
  let real: string | undefined;
  try {
    real = realpathSync(cwd);
  } catch {
    /* a current directory that was removed is in no tree */
  }
  const tree = real === undefined ? undefined : enclosingTree(real);
  if (tree) {
    if (existsSync(join(tree, TREE_IMAGE)) || existsSync(join(tree, TREE_VMLINUX))) return fromTree(tree, `the kernel tree ${tree}`, 'cwd');
    throw new UsageError(
      `the current directory is in the kernel tree ${tree}, which was not built (no ${TREE_IMAGE}): run 'make -j$(nproc)' there, or pass --kernel`,
      125,
    );
  }
  const newest = installedReleases().pop();
  if (newest) return installed(newest, 'newest-installed');
  throw new UsageError(
    'no kernel to boot: pass --kernel TREE|BZIMAGE|RELEASE, run mkt inside a built kernel tree, set kernel= under [defaults] in the config file, or install one (apt-get install linux-image-amd64)',
      125,
  );
}
