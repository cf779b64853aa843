/** The kernel options mkt needs, each with the reason it is needed. */

/** One `CONFIG_` entry of the fragment that `mkt kconfig` applies. */
export interface KconfigEntry {
  readonly option: string;
  readonly value: 'y' | 'm' | string;
  readonly why: string;
  /** Needed to boot at all (checked before boot); others are recommended. */
  readonly required: boolean;
}

const e = (option: string, value: string, required: boolean, why: string): KconfigEntry => ({
  option,
  value,
  why,
  required,
});

/** Options in dependency order (olddefconfig only keeps a symbol whose dependencies hold). */
export const KCONFIG_FRAGMENT: readonly KconfigEntry[] = [
  e('PCI', 'y', true, 'every mkt device is a virtio-pci device'),
  e('PCI_MSI', 'y', false, 'virtio-pci interrupts without shared-line polling'),
  e('VIRTIO_MENU', 'y', false, 'makes the virtio drivers selectable'),
  e('VIRTIO_PCI', 'y', true, 'the virtio transport mkt uses'),
  e('VIRTIO_MMIO', 'y', false, 'virtio on machines without PCI (qemu microvm)'),
  e('VIRTIO_MMIO_CMDLINE_DEVICES', 'y', false, 'virtio-mmio devices declared on the kernel command line'),
  e('HYPERVISOR_GUEST', 'y', false, 'makes the guest options below selectable'),
  e('PARAVIRT', 'y', false, 'paravirtual interfaces for KVM guests'),
  e('KVM_GUEST', 'y', false, 'kvmclock and other KVM paravirt features: faster, steadier guests under KVM'),
  e('PVH', 'y', false, "mkt starts the kernel at its PVH entry, uncompressed: no decompressor at each boot (under TCG about half a small kernel's boot)"),
  e('TTY', 'y', true, 'consoles at all'),
  e('PRINTK', 'y', false, 'kernel messages (boot log, oops and panic reports) at all'),
  e('VIRTIO_CONSOLE', 'y', true, 'hvc0 shell and the --exec stdio/control ports'),
  e('SERIAL_8250', 'y', false, 'boot messages on the serial port'),
  e('SERIAL_8250_CONSOLE', 'y', false, 'console=ttyS0'),
  e('UNIX98_PTYS', 'y', false, 'pseudo terminals for sudo, tmux, ssh in the guest'),
  e('NET', 'y', true, '9p runs over the network stack'),
  e('INET', 'y', false, 'loopback 127.0.0.1 and sockets of ordinary programs'),
  e('UNIX', 'y', false, 'AF_UNIX sockets of ordinary programs'),
  e('NETWORK_FILESYSTEMS', 'y', false, 'makes 9p selectable'),
  e('NET_9P', 'y', true, 'host root and --dir exports over 9p'),
  e('NET_9P_VIRTIO', 'y', true, '9p transport over virtio'),
  e('9P_FS', 'y', true, 'the 9p filesystem'),
  e('9P_FS_POSIX_ACL', 'y', false, 'ACLs of exported directories'),
  e('FUSE_FS', 'y', false, 'virtiofs is built on FUSE'),
  e('VIRTIO_FS', 'y', false, 'host root and --dir exports over virtiofs'),
  e('OVERLAY_FS', 'y', true, 'throw-away writable layer over the read-only root'),
  e('TMPFS', 'y', true, 'the overlay upper layer, /tmp, /run and /dev/shm'),
  e('TMPFS_XATTR', 'y', false, 'overlayfs keeps its whiteouts and opaque directories in xattrs of the tmpfs upper layer'),
  e('DEVTMPFS', 'y', true, '/dev without udev'),
  e('PROC_FS', 'y', true, '/proc'),
  e('SYSFS', 'y', true, '/sys, used to find the virtio ports'),
  e('BLK_DEV_INITRD', 'y', true, 'mkt starts the guest from a small initramfs'),
  e('BINFMT_ELF', 'y', true, 'run programs'),
  e('BINFMT_SCRIPT', 'y', false, 'run #! scripts'),
  e('MULTIUSER', 'y', true, 'the shell runs as the invoking user'),
  e('MODULES', 'y', false, 'load the tree\'s modules with modprobe'),
  e('MODULE_UNLOAD', 'y', false, 'rmmod, to reload a module under test'),
  e('FUTEX', 'y', false, 'glibc threads and locks of host programs'),
  e('EPOLL', 'y', false, 'event loops of host programs'),
  e('SIGNALFD', 'y', false, 'host programs (systemd tools, sudo) use it'),
  e('TIMERFD', 'y', false, 'host programs use it'),
  e('EVENTFD', 'y', false, 'host programs use it'),
  e('SHMEM', 'y', false, 'shared memory and /dev/shm'),
  e('AIO', 'y', false, 'host programs use it'),
  e('FILE_LOCKING', 'y', false, 'flock and fcntl locks of host programs'),
  e('POSIX_TIMERS', 'y', false, 'timer_create, used by coreutils timeout and others'),
  e('ADVISE_SYSCALLS', 'y', false, 'madvise and fadvise of host programs'),
  e('MAGIC_SYSRQ', 'y', false, 'echo c > /proc/sysrq-trigger and friends'),
];

/** The fragment as `.config` lines with a comment giving each reason. */
export function renderFragment(entries: readonly KconfigEntry[] = KCONFIG_FRAGMENT): string {
  return entries.map((x) => `# ${x.why}\nCONFIG_${x.option}=${x.value}\n`).join('');
}

/** An option that makes every boot slower, and what to do instead. */
export interface SlowOption {
  readonly option: string;
  readonly value: string;
  readonly why: string;
  /** Only without CONFIG_PVH: with it mkt starts the kernel uncompressed, and the compression never runs at boot. */
  readonly withoutPvh?: true;
}

/** Options `mkt kconfig` mentions when the resulting .config has them (it changes none of them). */
export const SLOW_BOOT_OPTIONS: readonly SlowOption[] = [
  { option: 'KERNEL_XZ', value: 'y', withoutPvh: true, why: 'xz is the slowest to decompress at every boot without CONFIG_PVH (with it mkt starts the kernel uncompressed); CONFIG_KERNEL_LZ4 (or GZIP) boots faster' },
  { option: 'KERNEL_LZMA', value: 'y', withoutPvh: true, why: 'lzma decompresses slowly at every boot without CONFIG_PVH (with it mkt starts the kernel uncompressed); CONFIG_KERNEL_LZ4 (or GZIP) boots faster' },
  { option: 'KERNEL_BZIP2', value: 'y', withoutPvh: true, why: 'bzip2 decompresses slowly at every boot without CONFIG_PVH (with it mkt starts the kernel uncompressed); CONFIG_KERNEL_LZ4 (or GZIP) boots faster' },
  { option: 'CRYPTO_MANAGER_DISABLE_TESTS', value: 'n', why: 'the crypto self-tests run at every boot; CONFIG_CRYPTO_MANAGER_DISABLE_TESTS=y skips them' },
  { option: 'KASAN', value: 'y', why: 'KASAN slows everything several times over (keep it if you are hunting memory bugs)' },
  { option: 'DEBUG_PAGEALLOC_ENABLE_DEFAULT', value: 'y', why: 'page-allocation debugging is on by default: boots and runs slower' },
  { option: 'PROVE_LOCKING', value: 'y', why: 'lockdep slows boots and locking (keep it if you test locking)' },
  { option: 'DEBUG_KMEMLEAK_DEFAULT_OFF', value: 'n', why: 'kmemleak scans run from boot; kmemleak=off or DEBUG_KMEMLEAK_DEFAULT_OFF=y defers them' },
  { option: 'SERIO_I8042', value: 'y', why: 'the PS/2 probe waits out timeouts; mkt passes i8042.noaux, and a VM needs no PS/2 at all' },
  { option: 'LEGACY_PTYS', value: 'y', why: 'registers 256 BSD pty pairs at every boot (44 ms of a TCG boot of the test kernel); Unix98 ptys (/dev/pts) need none: CONFIG_LEGACY_PTYS=n' },
  { option: 'CC_OPTIMIZE_FOR_SIZE', value: 'y', why: "-Os inlines memset as rep stosb, which TCG runs a byte at a time (freeing the kernel's init memory took 0.17 s of a TCG boot of the test kernel); CONFIG_CC_OPTIMIZE_FOR_PERFORMANCE=y avoids it" },
];

/** The slow options a parsed .config has. */
export function slowOptions(config: ReadonlyMap<string, string>): SlowOption[] {
  const pvh = config.get('PVH') === 'y';
  return SLOW_BOOT_OPTIONS.filter((s) => !(s.withoutPvh && pvh) && (s.value === 'n' ? config.has(s.option) && config.get(s.option) === 'n' : config.get(s.option) === s.value));
}
