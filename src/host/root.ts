/**
 * What mkt-init would otherwise look up in the host's root through the
 * guest's filesystem, one host round trip per path component under TCG:
 * found here, where a lookup costs microseconds, and sent in the run spec.
 * The guest's lower layer is this host's / (9p or virtiofs), so the
 * answers are the same.
 */
import { accessSync, constants, readFileSync, readlinkSync } from 'node:fs';

export interface HostRoot {
  /** /etc, /boot and /lib/modules with the root's symlinks followed (Debian: /lib -> usr/lib). */
  readonly etc: string;
  readonly boot: string;
  readonly modules: string;
  /** The host's /etc/hosts, for the guest's own (with its name added). */
  readonly hosts: string;
  /** sudo is installed: the guest gets a sudoers file for the user. */
  readonly sudo: boolean;
  /** The daemon serving the root runs as mkt's user: whether the shadow file is there but unreadable to it. */
  readonly shadowLocked: boolean;
}

/**
 * PATH as the host's root resolves it: each component's symlink followed
 * (absolute ones from the root), a missing component kept as it is, as
 * mkt-init makes what is missing in a layer of its own.
 */
export function resolveInRoot(path: string, readlink: (p: string) => string | undefined = tryReadlink): string {
  let out = '';
  let todo = path.split('/').filter(Boolean);
  let hops = 0;
  while (todo.length) {
    const comp = todo.shift()!;
    if (comp === '.') continue;
    if (comp === '..') {
      out = out.slice(0, Math.max(0, out.lastIndexOf('/')));
      continue;
    }
    const link = hops < 40 ? readlink(`${out}/${comp}`) : undefined;
    if (link !== undefined) {
      hops++;
      if (link.startsWith('/')) out = '';
      todo = [...link.split('/').filter(Boolean), ...todo];
      continue;
    }
    out += `/${comp}`;
  }
  return out || '/';
}

function tryReadlink(p: string): string | undefined {
  try {
    return readlinkSync(p);
  } catch {
    return undefined; // not a symlink, or not there
  }
}

/** Whether P exists but mkt's user may not read it (a missing file is not locked away). */
function unreadable(p: string): boolean {
  try {
    accessSync(p, constants.R_OK);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EACCES';
  }
}

const HOSTS_LIMIT = 64 * 1024;

/** Gather them (a few readlinks and one small read). */
export function hostRoot(): HostRoot {
  const etc = resolveInRoot('/etc');
  let hosts = '';
  try {
    // a spec value cannot hold NUL; a hosts file has none. Kept to its first 64 KiB of whole
    // lines (a blocklist can be megabytes): the spec the guest reads is bounded
    hosts = readFileSync(`${etc}/hosts`, 'utf8').replaceAll('\0', '');
    if (hosts.length > HOSTS_LIMIT) hosts = hosts.slice(0, hosts.lastIndexOf('\n', HOSTS_LIMIT) + 1);
  } catch {
    /* none: the guest's has its own name only */
  }
  let sudo = false;
  try {
    accessSync('/usr/bin/sudo', constants.X_OK);
    sudo = true;
  } catch {
    /* no sudo */
  }
  return {
    etc,
    boot: resolveInRoot('/boot'),
    modules: resolveInRoot('/lib/modules'),
    hosts,
    sudo,
    shadowLocked: unreadable(`${etc}/shadow`),
  };
}
