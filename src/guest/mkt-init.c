/*
 * mkt-init: PID 1 of every mkt guest, run from the small initramfs mkt writes.
 *
 * It is a static binary rather than a shell script because every fork and
 * exec costs milliseconds under TCG, and the whole of mkt's own work between
 * the kernel starting init and the user's command starting should be a few
 * tens of milliseconds.
 *
 * Steps: load the modules the initramfs carries (for kernels whose virtio or
 * 9p support is modular), read the run spec the host sends over the
 * "mkt.ctl" virtio port, mount the host's root read-only with a tmpfs
 * overlay on top, mount the exported directories, switch into that root,
 * then run either the user's command (exec mode: stdout and stderr relayed to
 * their own ports and counted, so the host knows when it has all of them) or
 * a login shell on hvc0 (shell mode). It reports the exit status on mkt.ctl,
 * waits for the host's acknowledgement and reboots; qemu runs with
 * -no-reboot, so the reboot ends the VM.
 *
 * Spec format (host to guest, on mkt.ctl): records "key=value" separated by
 * NUL bytes, ended by an empty record. Guest to host: text lines
 * "hello INIT NOW", "ready ROOT CMD", "exit CODE OUTBYTES ERRBYTES CMD END",
 * "error MESSAGE" (times in ms since the kernel started).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <mntent.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define MAX_RECORDS 512
#define NEW_ROOT "/newroot"
/*
 * The guest's own files (hostname, hosts, sudoers, /boot links): a lower
 * layer of the overlay above the host's root, so putting them in place
 * copies nothing up and leaves no whiteouts.
 */
#define LAYER "/mkt/layer"

/*
 * Where the guest's own files go: LAYER, under the guest's overlay; or,
 * when the host serves the root writable and throw-away ("root=writable":
 * virtiofs through mkt-ro's overlays), the root itself, which the guest
 * then mounts as it is, without an overlay of its own.
 */
static const char *layer = LAYER;
static int root_writable;

static int ctl_fd = -1;

/* Milliseconds since the kernel started (CLOCK_BOOTTIME), for --boot-trace. */
static double uptime_ms(void)
{
	struct timespec ts;
	/* the system call itself: musl's clock_gettime first parses the vDSO's symbols, code run once and translated for it under TCG */
	syscall(SYS_clock_gettime, CLOCK_BOOTTIME, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double t_init, t_root, t_cmd;

/* A time in ms as "MS.UUU" through %lld.%03lld: printf's floating-point code is some 100 translation blocks of its own */
#define MS3(x) (long long)(x), (long long)((x) * 1000) % 1000

/* make CFLAGS+=-DMKT_STEPS: each boot step's end time on the console, for finding where time goes */
#ifdef MKT_STEPS
/* kept in memory and printed before the exit report (steps_print): writing each to the serial console as it happens takes time of its own */
static struct {
	const char *name;
	double at;
} steps[64];
static int nsteps;
#define STEP(what) (nsteps < 64 ? (void)(steps[nsteps].name = (what), steps[nsteps++].at = uptime_ms()) : (void)0)
static void steps_print(void)
{
	double prev = t_init;
	dprintf(2, "mkt-init: step %-14s %8.3f\n", "init", t_init);
	for (int i = 0; i < nsteps; prev = steps[i++].at)
		dprintf(2, "mkt-init: step %-14s %8.3f %+7.3f\n", steps[i].name, steps[i].at, steps[i].at - prev);
}
#else
#define STEP(what) ((void)0)
#define steps_print() ((void)0)
#endif
static char *spec_keys[MAX_RECORDS];
static char *spec_vals[MAX_RECORDS];
static int spec_count;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof buf - 2)
		n = sizeof buf - 2;
	buf[n++] = '\n';
	if (write(2, "mkt-init: ", 10) < 0 || write(2, buf, n) < 0) {
		/* the console is gone: nothing else to tell */
	}
}

/* Write all of P; returns how much was written (less only when FD failed). */
static size_t write_all(int fd, const char *p, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t w = write(fd, p + done, n - done);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		done += (size_t)w;
	}
	return done;
}

static void ctl_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ctl_line(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof buf - 2)
		n = sizeof buf - 2;
	buf[n++] = '\n';
	if (ctl_fd >= 0)
		write_all(ctl_fd, buf, (size_t)n);
}

static const char *spec_get(const char *key);

/* The decimal number at *P, which is moved past it (for the spec's numbers: strtoul's general code costs more to translate). */
static unsigned long long decimal(const char **p)
{
	unsigned long long v = 0;
	while (**p >= '0' && **p <= '9')
		v = v * 10 + (unsigned long long)(*(*p)++ - '0');
	return v;
}

/*
 * The I-th pause of a wait for something the kernel does when init lets it:
 * yield first, as a kernel without high-resolution timers sleeps a whole
 * tick (4 ms at HZ=250) for the shortest usleep; then 1 ms sleeps.
 */
static void wait_a_little(int i)
{
	if (i < 1000)
		sched_yield();
	else
		usleep(1000);
}

/* /proc/self/mounts as opened just before the command started: its poll() reports a mount table changed since */
static int mounts_fd = -1;

/*
 * Put what the guest wrote where the host can see it, once the command (or
 * shell) has ended. 9p: sync() writes back mapped pages and costs little.
 * virtiofs: without writeback caching, write() and every metadata change
 * reach virtiofsd before they return, and the kernel writes a shared
 * mapping's pages back when it is unmapped. So end whatever the command
 * left running (the VM is going down anyway): its mappings go, and with
 * them the last dirty pages; then sync the filesystems it mounted, one by
 * one. sync() would add FUSE_SYNCFS, which makes
 * virtiofsd syncfs() the host's filesystem: a wait for the host's disk,
 * up to seconds while the host writes a lot, for a durability that is the
 * host's own business.
 */
static void flush_writes(void)
{
	const char *fs = spec_get("fs");
	if (!fs || strcmp(fs, "virtiofs") != 0) {
		sync();
		return;
	}
	if (kill(-1, SIGKILL) == 0) {
		/* reap them all (orphans are init's); a process stuck in the kernel gets 2 s */
		int i;
		for (i = 0; i < 2000; i++) {
			pid_t w = waitpid(-1, NULL, WNOHANG);
			if (w < 0 && errno == ECHILD)
				break;
			if (w <= 0)
				wait_a_little(i);
		}
		if (i == 2000)
			say("processes left after the command did not end within 2 s; their mapped writes may be lost");
	}
	/*
	 * Filesystems the command mounted itself (an ext4 image on a loop
	 * device, say) keep dirty data of their own: sync each but virtiofs
	 * and the memory-only kinds. Reading the mount table costs
	 * milliseconds under TCG: only when it changed since the command
	 * started (poll says so on a mounts file opened then).
	 */
	struct pollfd changed = { mounts_fd, POLLPRI, 0 };
	if (mounts_fd >= 0 && poll(&changed, 1, 0) == 0)
		return;
	static const char *const skip[] = { "virtiofs", "tmpfs", "ramfs", "rootfs", "proc", "sysfs", "devtmpfs", "devpts", "overlay",
					     "cgroup", "cgroup2", "mqueue", "debugfs", "tracefs", "securityfs", "bpf", "pstore", "configfs",
					     "fusectl", "binfmt_misc", "hugetlbfs", "autofs" };
	FILE *m = setmntent("/proc/self/mounts", "r");
	struct mntent *e;
	while (m && (e = getmntent(m))) {
		size_t k = 0;
		while (k < sizeof skip / sizeof skip[0] && strcmp(e->mnt_type, skip[k]) != 0)
			k++;
		if (k < sizeof skip / sizeof skip[0])
			continue;
		int fd = open(e->mnt_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			syncfs(fd);
			close(fd);
		}
	}
	if (m)
		endmntent(m);
}

/* End the VM. With -no-reboot, qemu exits on the reset. */
static void __attribute__((noreturn)) finish(void)
{
	flush_writes();
	reboot(RB_AUTOBOOT);
	for (;;)
		pause();
}

/* Report a fatal error to the host and to the console, then end the VM. */
static void __attribute__((noreturn)) fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void __attribute__((noreturn)) fatal(const char *fmt, ...)
{
	char buf[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	say("%s", buf);
	ctl_line("error %s", buf);
	finish();
}

static const char *spec_get(const char *key)
{
	for (int i = 0; i < spec_count; i++)
		if (strcmp(spec_keys[i], key) == 0)
			return spec_vals[i];
	return NULL;
}

static const char *spec_need(const char *key)
{
	const char *v = spec_get(key);
	if (!v)
		fatal("run spec lacks '%s'", key);
	return v;
}

/* mkdir -p; existing components (directories or links to them) are fine. */
static void mkdir_p(const char *path, mode_t mode)
{
	char buf[4096];
	size_t len = strlen(path);
	if (len >= sizeof buf)
		fatal("path too long: %s", path);
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(buf, mode) < 0 && errno != EEXIST)
				fatal("mkdir %s: %s", buf, strerror(errno));
			*p = c;
			if (c == '\0')
				break;
		}
	}
}

static void do_mount(const char *src, const char *dst, const char *type, unsigned long flags, const char *data)
{
	if (mount(src, dst, type, flags, data) < 0)
		fatal("mount %s on %s (%s, %s): %s", src, dst, type ? type : "-", data ? data : "", strerror(errno));
}

static void load_modules(void)
{
	/* The initramfs lists the modules it carries in load order (dependencies first). */
	FILE *f = fopen("/mkt/modules.list", "r");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = '\0';
		if (!line[0])
			continue;
		int fd = open(line, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			fatal("open %s: %s", line, strerror(errno));
		if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
			fatal("loading module %s: %s", line, strerror(errno));
		close(fd);
	}
	fclose(f);
}

/* Find the /dev node of the virtio port named NAME; -1 when it is not there (yet). */
static int open_port(const char *name, int flags)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	if (!d)
		return -1;
	struct dirent *e;
	int fd = -1;
	while (fd < 0 && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[300], got[128] = "";
		snprintf(p, sizeof p, "/sys/class/virtio-ports/%s/name", e->d_name);
		int nf = open(p, O_RDONLY | O_CLOEXEC);
		if (nf < 0)
			continue;
		ssize_t n = read(nf, got, sizeof got - 1);
		close(nf);
		if (n <= 0)
			continue;
		got[n] = '\0';
		got[strcspn(got, "\n")] = '\0';
		if (strcmp(got, name) == 0) {
			snprintf(p, sizeof p, "/dev/%s", e->d_name);
			fd = open(p, flags | O_CLOEXEC);
			if (fd < 0)
				fatal("open %s (port %s): %s", p, name, strerror(errno));
		}
	}
	closedir(d);
	return fd;
}

/*
 * mkt's ports by number (PORTS in src/qemu/args.ts): mkt puts its
 * virtio-serial device in the first free PCI slot, ahead of every other
 * virtio device, so the kernel numbers it 0 and the port numbered N is
 * /dev/vport0pN. Opening that reads nothing in sysfs.
 */
static const struct {
	const char *name;
	int nr;
} PORTS[] = { { "mkt.ctl", 1 }, { "mkt.stdin", 2 }, { "mkt.stdout", 3 }, { "mkt.stderr", 4 } };

static int open_port_nr(const char *name, int flags)
{
	for (size_t i = 0; i < sizeof PORTS / sizeof PORTS[0]; i++) {
		if (strcmp(PORTS[i].name, name) != 0)
			continue;
		char p[40];
		snprintf(p, sizeof p, "/dev/vport0p%d", PORTS[i].nr);
		return open(p, flags | O_CLOEXEC);
	}
	return -1;
}

/*
 * Ports are announced to the guest asynchronously, by a kernel worker that
 * runs when init lets it; wait a bounded time for one. By its number, and
 * now and then by its name too, should the device have come out otherwise
 * (a --qemu-arg virtio device placed ahead of it, say).
 */
static int wait_port(const char *name, int flags)
{
	for (int i = 0; i < 6000; i++) {
		int fd = open_port_nr(name, flags);
		if (fd < 0 && i % 64 == 63)
			fd = open_port(name, flags);
		if (fd >= 0)
			return fd;
		wait_a_little(i);
	}
	fatal("virtio port %s did not appear", name);
}

static void read_spec(void)
{
	static char buf[1 << 20];
	size_t used = 0;
	for (;;) {
		if (used == sizeof buf)
			fatal("run spec larger than %zu bytes", sizeof buf);
		ssize_t n = read(ctl_fd, buf + used, sizeof buf - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fatal("host closed the control port before sending the run spec");
		used += (size_t)n;
		/* ended by an empty record: two NULs in a row (or one at the start) */
		if ((used >= 2 && buf[used - 1] == '\0' && buf[used - 2] == '\0') || (used == 1 && buf[0] == '\0'))
			break;
	}
	char *p = buf, *end = buf + used;
	while (p < end && *p) {
		char *eq = strchr(p, '=');
		if (!eq || spec_count == MAX_RECORDS)
			fatal("malformed run spec record '%.40s'", p);
		*eq = '\0';
		spec_keys[spec_count] = p;
		spec_vals[spec_count] = eq + 1;
		spec_count++;
		p = eq + 1 + strlen(eq + 1) + 1;
	}
}

/* "time=MS": the host's wall clock when it sent the spec (the RTC only gives whole seconds). */
static void set_clock(void)
{
	const char *t = spec_get("time");
	if (!t)
		return;
	long long ms = (long long)decimal(&t);
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
	if (clock_settime(CLOCK_REALTIME, &ts) < 0)
		say("cannot set the clock: %s", strerror(errno));
}

static void write_file(const char *path, const char *text, mode_t mode, int append)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), mode);
	if (fd < 0) {
		say("cannot write %s: %s", path, strerror(errno));
		return;
	}
	/* the host's file there (in a writable root) keeps its own mode: this one's is MODE */
	struct stat st;
	if (fstat(fd, &st) == 0 && (st.st_mode & 07777) != mode)
		fchmod(fd, mode);
	write_all(fd, text, strlen(text));
	close(fd);
}

/* Bring up lo: the kernel gives it 127.0.0.1/8 once it is up. */
static void loopback_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
			say("cannot bring up lo: %s", strerror(errno));
	}
	close(s);
}

static const char *p9_opts(const char *cache)
{
	static char buf[200];
	/* msize: bigger messages mean fewer round trips per read */
	snprintf(buf, sizeof buf, "trans=virtio,version=9p2000.L,msize=262144,cache=%s,access=any", cache);
	return buf;
}

/*
 * A virtiofs mount's read-ahead: 1 MiB rather than the kernel's 128 KiB.
 * Each FUSE read is a round trip through the host, and a program's first
 * start faults its libraries in window by window: with the bigger window,
 * `true` runs some 5 ms sooner under TCG (the loader and libc in 2 reads
 * rather than 15).
 */
static void set_readahead(const char *mnt, const char *sysfs)
{
	struct stat st;
	char path[120];
	if (stat(mnt, &st) < 0)
		return;
	snprintf(path, sizeof path, "%s/class/bdi/%u:%u/read_ahead_kb", sysfs, major(st.st_dev), minor(st.st_dev));
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	write_all(fd, "1024", 4);
	close(fd);
}

/* Mount the host root at /lower: read-only, or writable where the host throws the writes away. */
static void mount_lower(void)
{
	mkdir_p("/lower", 0755);
	const char *fs = spec_need("fs");
	if (strcmp(fs, "virtiofs") == 0) {
		const char *root = spec_get("root");
		root_writable = root && strcmp(root, "writable") == 0;
		if (root_writable)
			layer = "/lower";
		do_mount("mktroot", "/lower", "virtiofs", root_writable ? 0 : MS_RDONLY, "");
		set_readahead("/lower", "/sys");
	} else
		do_mount("mktroot", "/lower", "9p", MS_RDONLY, p9_opts("loose"));
}

/* The guest's root at NEW_ROOT: a throw-away tmpfs over LAYER over the host's root, or the throw-away root the host serves. */
static void mount_root(void)
{
	if (root_writable) {
		mkdir_p(NEW_ROOT, 0755);
		do_mount("/lower", NEW_ROOT, NULL, MS_BIND, NULL);
		return;
	}
	/* the writable layer lives in guest memory and dies with the VM */
	mkdir_p("/rw", 0755);
	do_mount("mkt-rw", "/rw", "tmpfs", 0, "mode=0755");
	mkdir_p("/rw/upper", 0755);
	mkdir_p("/rw/work", 0755);
	mkdir_p(NEW_ROOT, 0755);
	do_mount("overlay", NEW_ROOT, "overlay", 0, "lowerdir=" LAYER ":/lower,upperdir=/rw/upper,workdir=/rw/work");
}

/* Mount the fresh per-boot filesystems and move the kernel ones into the new root. */
static void mount_system(void)
{
	do_mount("/dev", NEW_ROOT "/dev", NULL, MS_MOVE, NULL);
	do_mount("/proc", NEW_ROOT "/proc", NULL, MS_MOVE, NULL);
	do_mount("/sys", NEW_ROOT "/sys", NULL, MS_MOVE, NULL);
	/* fresh scratch space: the host's /tmp and /run content means nothing here */
	do_mount("tmpfs", NEW_ROOT "/tmp", "tmpfs", 0, "mode=1777");
	do_mount("tmpfs", NEW_ROOT "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
	/* POSIX shared memory */
	mkdir_p(NEW_ROOT "/dev/shm", 01777);
	do_mount("tmpfs", NEW_ROOT "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	/* what udev would add: /dev/fd (for <(...)), /dev/stdin, /dev/stdout, /dev/stderr */
	const char *links[][2] = { { "/proc/self/fd", "fd" }, { "/proc/self/fd/0", "stdin" }, { "/proc/self/fd/1", "stdout" }, { "/proc/self/fd/2", "stderr" } };
	for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
		char at[64];
		snprintf(at, sizeof at, NEW_ROOT "/dev/%s", links[i][1]);
		if (symlink(links[i][0], at) < 0 && errno != EEXIST)
			say("cannot link %s: %s", at, strerror(errno));
	}
	/* pseudo terminals, where the kernel has them */
	mkdir_p(NEW_ROOT "/dev/pts", 0755);
	if (mount("devpts", NEW_ROOT "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666") == 0)
		(void)symlink("pts/ptmx", NEW_ROOT "/dev/ptmx");
}

/* Mount each exported host directory at its own path, writable through to the host. */
static void mount_dirs(void)
{
	const char *fs = spec_need("fs");
	const char *cache = spec_get("dircache");
	for (int i = 0; i < spec_count; i++) {
		if (strcmp(spec_keys[i], "dir") != 0)
			continue;
		/* value: TAG:PATH (a tag has no colon; a path may) */
		char *v = spec_vals[i], *colon = strchr(v, ':');
		if (!colon)
			fatal("malformed dir record '%s'", v);
		*colon = '\0';
		char at[4096];
		snprintf(at, sizeof at, NEW_ROOT "%s", colon + 1);
		mkdir_p(at, 0755);
		if (strcmp(fs, "virtiofs") == 0) {
			do_mount(v, at, "virtiofs", 0, "");
			set_readahead(at, NEW_ROOT "/sys"); /* sysfs has moved there (mount_system) */
		} else
			do_mount(v, at, "9p", 0, p9_opts(cache ? cache : "mmap"));
	}
}

/*
 * "show=PATH": a host path the guest needs (the kernel tree the staged
 * modules link to) that a fresh tmpfs (/tmp, /run) hides: bind it back,
 * read-only, from the host's root.
 */
static void show_paths(void)
{
	for (int i = 0; i < spec_count; i++) {
		if (strcmp(spec_keys[i], "show") != 0)
			continue;
		char at[4096], from[4096];
		struct stat st;
		snprintf(at, sizeof at, NEW_ROOT "%s", spec_vals[i]);
		if (stat(at, &st) == 0)
			continue; /* visible already */
		snprintf(from, sizeof from, "/lower%s", spec_vals[i]);
		if (stat(from, &st) < 0)
			continue;
		mkdir_p(at, 0755);
		do_mount(from, at, NULL, MS_BIND, NULL);
		mount(NULL, at, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL);
	}
}

/*
 * The tree's System.map and .config where tools look for them, and a mount
 * point for its modules. "etc", "boot" and "moddir": /etc, /boot and
 * /lib/modules as the host's root resolves them (Debian's /lib -> usr/lib),
 * found by mkt on the host, where a lookup costs no round trip. The mount
 * point is a directory of the layer, which covers whatever the host has at
 * that release's name (a symlink, say): the staged modules are bound there.
 */
static void kernel_files(void)
{
	struct utsname u;
	if (uname(&u) < 0)
		return;
	const char *release = u.release;
	char path[8400];
	if (spec_get("modules")) {
		snprintf(path, sizeof path, "%s%s/%s", layer, spec_need("moddir"), release);
		struct stat st;
		if (root_writable && lstat(path, &st) == 0 && !S_ISDIR(st.st_mode))
			unlink(path); /* the host's entry at that name (a symlink, say) gives way, in the throw-away root */
		mkdir_p(path, 0755);
	}
	const char *links[][2] = { { "sysmap", "System.map" }, { "kconfig", "config" } };
	int made = 0;
	for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
		const char *target = spec_get(links[i][0]);
		if (!target)
			continue;
		snprintf(path, sizeof path, "/boot/%s-%s", links[i][1], release);
		if (strcmp(path, target) == 0)
			continue; /* an installed kernel's own file: already in place */
		if (!made++) {
			snprintf(path, sizeof path, "%s%s", layer, spec_need("boot"));
			mkdir_p(path, 0755);
		}
		snprintf(path, sizeof path, "%s%s/%s-%s", layer, spec_need("boot"), links[i][1], release);
		if (root_writable)
			unlink(path);
		if (symlink(target, path) < 0)
			say("cannot link %s: %s", path, strerror(errno));
	}
}

/* Bind the staged modules at /lib/modules/RELEASE (the mount point is in the layer). */
static void mount_modules(void)
{
	const char *mods = spec_get("modules");
	struct utsname u;
	if (!mods || uname(&u) < 0)
		return;
	char from[4096], path[4096];
	/* from the host's root as exported: the new root's /tmp and /run are fresh tmpfs */
	snprintf(from, sizeof from, "/lower%s", mods);
	snprintf(path, sizeof path, NEW_ROOT "/lib/modules/%s", u.release);
	do_mount(from, path, NULL, MS_BIND, NULL);
}

/*
 * Give the guest its own name, resolvable like any host's, and sudo for the
 * user: files in the layer. From the spec, as mkt read them on the host: "etc",
 * "hosts" (the host's hosts file), "sudo" (sudo is installed), "shadow"
 * ("locked": the host's shadow file is unreadable to the daemon serving the
 * root, as to a regular user's qemu).
 */
static void identity_files(void)
{
	const char *host = spec_need("hostname");
	if (sethostname(host, strlen(host)) < 0)
		say("sethostname: %s", strerror(errno));
	const char *etc = spec_need("etc");
	char path[4200];
	snprintf(path, sizeof path, "%s%s", layer, etc);
	mkdir_p(path, 0755);

	/* the host's hosts file, then the guest's name */
	const char *hosts = spec_get("hosts");
	size_t len = hosts ? strlen(hosts) : 0;
	/* a static buffer for the usual hosts file: malloc and free cost mmap and munmap under TCG */
	static char small[16384];
	char *text = len + 600 <= sizeof small ? small : malloc(len + 600);
	if (!text)
		fatal("out of memory");
	snprintf(text, len + 600, "%s\n127.0.1.1\t%s\n", hosts ? hosts : "", host);
	snprintf(path, sizeof path, "%s%s/hosts", layer, etc);
	write_file(path, text, 0644, 0);
	if (text != small)
		free(text);
	char line[400];
	snprintf(line, sizeof line, "%s\n", host);
	snprintf(path, sizeof path, "%s%s/hostname", layer, etc);
	write_file(path, line, 0644, 0);

	const char *user = spec_need("user");
	if (spec_get("sudo") && strcmp(user, "root") != 0) {
		/*
		 * A fresh sudoers rather than an edited one: when mkt runs as a
		 * regular user, qemu cannot read the host's (mode 0440).
		 */
		char sudoers[600];
		snprintf(sudoers, sizeof sudoers,
			 "# written by mkt-init for this VM only\n"
			 "Defaults env_reset\n"
			 "Defaults secure_path=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\n"
			 "root ALL=(ALL:ALL) ALL\n"
			 "%s ALL=(ALL:ALL) NOPASSWD: ALL\n", user);
		snprintf(path, sizeof path, "%s%s/sudoers", layer, etc);
		write_file(path, sudoers, 0440, 0);
	}
	const char *shadow = spec_get("shadow");
	if (shadow && strcmp(shadow, "locked") == 0) {
		/*
		 * PAM's account check (sudo) fails without a shadow file: give
		 * every account a locked password and no ageing.
		 */
		snprintf(path, sizeof path, "/lower%s/passwd", etc);
		FILE *pw = fopen(path, "r");
		FILE *sh = NULL;
		snprintf(path, sizeof path, "%s%s/shadow", layer, etc);
		if (pw && (sh = fopen(path, "w"))) {
			char l[1024];
			while (fgets(l, sizeof l, pw)) {
				size_t n = strcspn(l, ":\n");
				if (n > 0)
					fprintf(sh, "%.*s:*:::::::\n", (int)n, l);
			}
		}
		if (sh)
			fclose(sh);
		if (pw)
			fclose(pw);
		chmod(path, 0640);
	}
}

/* Runs after switch_root, so absolute host symlinks resolve in the guest's root. */
static void dir_aliases(void)
{
	/*
	 * "alias=PATH" then "to=REAL": the user named PATH, a symlink on the
	 * host to REAL (which is mounted above). Where PATH does not already
	 * lead there in the guest (it lay on a fresh tmpfs such as /tmp), make
	 * it a symlink to REAL again.
	 */
	for (int i = 0; i + 1 < spec_count; i++) {
		if (strcmp(spec_keys[i], "alias") != 0 || strcmp(spec_keys[i + 1], "to") != 0)
			continue;
		char at[4096], real[4096], parent[4096];
		struct stat a, b;
		snprintf(at, sizeof at, "%s", spec_vals[i]);
		snprintf(real, sizeof real, "%s", spec_vals[i + 1]);
		if (stat(at, &a) == 0 && stat(real, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
			continue;
		snprintf(parent, sizeof parent, "%s", at);
		char *slash = strrchr(parent, '/');
		if (slash && slash > parent) {
			*slash = '\0';
			mkdir_p(parent, 0755);
		}
		if (lstat(at, &a) == 0 && S_ISDIR(a.st_mode))
			do_mount(real, at, NULL, MS_BIND, NULL);
		else if (symlink(spec_vals[i + 1], at) < 0)
			say("cannot link %s to %s: %s", spec_vals[i], spec_vals[i + 1], strerror(errno));
	}
}

static void switch_root(void)
{
	if (chdir(NEW_ROOT) < 0)
		fatal("chdir %s: %s", NEW_ROOT, strerror(errno));
	do_mount(".", "/", NULL, MS_MOVE, NULL);
	if (chroot(".") < 0 || chdir("/") < 0)
		fatal("chroot: %s", strerror(errno));
}

static char **build_env(void)
{
	/* room for the records, the fixed variables and PWD (exec_plain) */
	static char *env[MAX_RECORDS + 9];
	static char bufs[6][4200];
	int n = 0;
	const char *pairs[][2] = {
		{ "HOME", spec_need("home") }, { "USER", spec_need("user") }, { "LOGNAME", spec_need("user") },
		{ "SHELL", spec_need("shell") }, { "PATH", spec_need("path") }, { "TERM", spec_get("term") },
	};
	for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
		if (!pairs[i][1])
			continue;
		snprintf(bufs[i], sizeof bufs[i], "%s=%s", pairs[i][0], pairs[i][1]);
		env[n++] = bufs[i];
	}
	for (int i = 0; i < spec_count; i++)
		if (strcmp(spec_keys[i], "env") == 0)
			env[n++] = spec_vals[i];
	env[n] = NULL;
	return env;
}

/* In the child: become the invoking user (same uid, gid and groups). */
static void drop_privileges(void)
{
	gid_t groups[256];
	int ng = 0;
	const char *gl = spec_get("groups");
	while (gl && *gl && ng < 256) {
		groups[ng++] = (gid_t)decimal(&gl);
		if (*gl == ',')
			gl++;
	}
	const char *u = spec_need("uid"), *g = spec_need("gid");
	uid_t uid = (uid_t)decimal(&u);
	gid_t gid = (gid_t)decimal(&g);
	/*
	 * The system calls themselves: this runs in a vfork child, and musl's
	 * wrappers would synchronize the credentials of threads init has none
	 * of (code run once, for nothing, under TCG).
	 */
	if (syscall(SYS_setgroups, (size_t)ng, groups) < 0 || syscall(SYS_setresgid, gid, gid, gid) < 0 || syscall(SYS_setresuid, uid, uid, uid) < 0) {
		say("cannot become uid %u gid %u: %s", uid, gid, strerror(errno));
		_exit(126);
	}
}

static void enter_cwd(void)
{
	const char *cwd = spec_get("cwd");
	if (cwd && chdir(cwd) == 0)
		return;
	if (chdir(spec_need("home")) == 0)
		return;
	if (chdir("/") < 0)
		_exit(126);
}

static int wait_status_code(int st)
{
	/* as a shell reports it: 128+N for a command killed by signal N */
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return 125;
}

/*
 * Relay at most LIMIT bytes from FROM (a pipe) to TO (a port); stops early
 * when the pipe would block. Returns -1 at EOF, else the bytes moved. The
 * limit keeps a fast writer from starving the check for the command's end.
 */
static long long relay(int from, int to, long long *count, long long limit)
{
	static char buf[65536];
	long long moved = 0;
	while (moved < limit) {
		size_t want = limit - moved < (long long)sizeof buf ? (size_t)(limit - moved) : sizeof buf;
		ssize_t n = read(from, buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return moved; /* EAGAIN: drained for now */
		if (n == 0)
			return -1;
		size_t w = write_all(to, buf, (size_t)n);
		*count += (long long)w;
		moved += n;
	}
	return moved;
}

static int sigchld_pipe[2] = { -1, -1 };

static void on_sigchld(int sig)
{
	(void)sig;
	int saved = errno;
	if (write(sigchld_pipe[1], "c", 1) < 0) {
		/* the pipe is full: a wake-up is already pending */
	}
	errno = saved;
}

/*
 * "arg=WORD" records: the command is plain words (the host checked), which
 * sh -c would split and exec. Exec them as sh would, with PWD set and PATH
 * searched, sparing the guest a shell's start. Returns only when that
 * failed (not found, not executable, not a format the kernel runs): sh -c
 * then runs the command, or refuses it, in its own words and status.
 */
static void exec_plain(char **env)
{
	static char *argv[MAX_RECORDS + 1];
	int n = 0;
	for (int i = 0; i < spec_count; i++)
		if (strcmp(spec_keys[i], "arg") == 0)
			argv[n++] = spec_vals[i];
	if (!n)
		return;
	argv[n] = NULL;
	static char pwd[4200];
	char cwd[4096];
	if (getcwd(cwd, sizeof cwd)) {
		int k = 0;
		while (env[k])
			k++;
		snprintf(pwd, sizeof pwd, "PWD=%s", cwd);
		env[k] = pwd;
		env[k + 1] = NULL;
	}
	/*
	 * PATH searched as sh searches it, but a file the kernel cannot execute
	 * (ENOEXEC: no #!, a foreign or broken binary) is left to sh, which
	 * decides between running it as a script and refusing it.
	 */
	if (strchr(argv[0], '/')) {
		execve(argv[0], argv, env);
		return;
	}
	/* "exe": where mkt, on the host, found the search ends: one exec rather than a failed one per PATH entry */
	const char *exe = spec_get("exe");
	if (exe) {
		execve(exe, argv, env);
		if (errno != ENOENT && errno != ENOTDIR && errno != EACCES)
			return;
	}
	const char *path = NULL;
	for (int i = 0; env[i]; i++)
		if (strncmp(env[i], "PATH=", 5) == 0)
			path = env[i] + 5;
	if (!path)
		return;
	static char file[8192];
	for (const char *p = path;; p++) {
		const char *end = strchr(p, ':');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		/* an empty entry is the current directory */
		if (len + strlen(argv[0]) + 2 < sizeof file) {
			snprintf(file, sizeof file, "%.*s%s%s", (int)len, p, len ? "/" : "", argv[0]);
			execve(file, argv, env);
			if (errno != ENOENT && errno != ENOTDIR && errno != EACCES)
				return;
		}
		if (!end)
			return;
		p = end;
	}
}

/*
 * Start the command on the given stdin, stdout and stderr, as the user, in
 * a session of its own; its pid.
 *
 * vfork, not fork: copying init's memory for a child that execs at once
 * took 6-9 ms under TCG, and its teardown at the exec and the copy-on-write
 * faults of init after it more. The child shares init's memory until it
 * execs, so it only sets up its descriptors and credentials (system calls),
 * writes to nothing init reads later (the environment it is given is its
 * own), and leaves by exec or _exit. init is single-threaded, so the C
 * library's set*id calls are plain system calls. A function of its own, so
 * no variable of the caller lives across the vfork.
 */
static pid_t __attribute__((noinline)) start_command(const char *cmd, int in, int out, int err, char **env)
{
	pid_t pid = vfork();
	if (pid < 0)
		fatal("vfork: %s", strerror(errno));
	if (pid == 0) {
		signal(SIGCHLD, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		setsid();
		dup2(in, 0);
		dup2(out, 1);
		dup2(err, 2);
		drop_privileges();
		enter_cwd();
		exec_plain(env);
		char *argv[] = { "sh", "-c", (char *)cmd, NULL };
		execve("/bin/sh", argv, env);
		say("cannot run /bin/sh: %s", strerror(errno));
		_exit(127);
	}
	return pid;
}

static void run_exec(int in_fd, int out_port, int err_port)
{
	const char *cmd = spec_need("cmd");
	/*
	 * stdin through a pipe too, not the port itself: a virtio port opens
	 * once, so `cat /dev/stdin` (a reopen) would fail with EBUSY.
	 */
	int out[2], err[2], inp[2];
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 || pipe2(inp, O_CLOEXEC) < 0)
		fatal("pipe: %s", strerror(errno));
	/* a command that leaves stdin unread must not kill init with SIGPIPE; the command itself gets the default back */
	signal(SIGPIPE, SIG_IGN);
	char **env = build_env();
	mounts_fd = open("/proc/self/mounts", O_RDONLY | O_CLOEXEC);
	STEP("exec_prep");
	pid_t pid = start_command(cmd, inp[0], out[1], err[1], env);
	t_cmd = uptime_ms();
	STEP("spawned");
	/*
	 * The command's end: a pidfd (Linux 5.3 on), readable once it has
	 * exited, which spares the kernel delivering a SIGCHLD to a handler (a
	 * path run, and translated under TCG, for this alone); else SIGCHLD
	 * through a self-pipe, poked once as the command may have ended before
	 * the handler was there.
	 */
	int end_fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (end_fd < 0) {
		if (pipe2(sigchld_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
			fatal("pipe: %s", strerror(errno));
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = on_sigchld;
		sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
		sigaction(SIGCHLD, &sa, NULL);
		end_fd = sigchld_pipe[0];
		on_sigchld(SIGCHLD);
	}
	/* ready ROOT CMD: when the root was mounted and the command (or shell) started */
	ctl_line("ready %lld.%03lld %lld.%03lld", MS3(t_root), MS3(t_cmd));
	close(out[1]);
	close(err[1]);
	close(inp[0]);
	fcntl(in_fd, F_SETFL, O_NONBLOCK);
	fcntl(inp[1], F_SETFL, O_NONBLOCK);
	fcntl(out[0], F_SETFL, O_NONBLOCK);
	fcntl(err[0], F_SETFL, O_NONBLOCK);
	/* bigger pipes: fewer wake-ups per megabyte of output */
	fcntl(out[0], F_SETPIPE_SZ, 1 << 20);
	fcntl(err[0], F_SETPIPE_SZ, 1 << 20);
	long long nout = 0, nerr = 0;
	int status = -1;
	/* stdin: from the port into the pipe, a buffer at a time, its EOF passed on as the pipe's */
	static char ibuf[65536];
	size_t ilen = 0, ioff = 0;
	struct pollfd fds[5] = { { out[0], POLLIN, 0 }, { err[0], POLLIN, 0 }, { end_fd, POLLIN, 0 }, { in_fd, POLLIN, 0 }, { -1, POLLOUT, 0 } };
	while (status < 0) {
		fds[3].fd = ilen == 0 ? in_fd : -1;
		fds[4].fd = ilen > 0 ? inp[1] : -1;
		if (poll(fds, 5, -1) < 0 && errno != EINTR)
			fatal("poll: %s", strerror(errno));
		if (fds[3].fd >= 0 && fds[3].revents) {
			ssize_t n = read(in_fd, ibuf, sizeof ibuf);
			if (n > 0) {
				ilen = (size_t)n;
				ioff = 0;
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				/* the host's EOF (or a port gone): the command's too */
				close(in_fd);
				close(inp[1]);
				in_fd = inp[1] = -1;
			}
		}
		if (fds[4].fd >= 0 && fds[4].revents) {
			ssize_t w = write(inp[1], ibuf + ioff, ilen - ioff);
			if (w > 0) {
				ioff += (size_t)w;
				if (ioff == ilen)
					ilen = 0;
			} else if (w < 0 && errno != EAGAIN && errno != EINTR) {
				/* the command closed its stdin: read no more of it */
				close(in_fd);
				close(inp[1]);
				in_fd = inp[1] = -1;
				ilen = 0;
			}
		}
		for (int i = 0; i < 2; i++)
			if (fds[i].fd >= 0 && fds[i].revents) {
				if (relay(fds[i].fd, i ? err_port : out_port, i ? &nerr : &nout, 1 << 20) < 0) {
					close(fds[i].fd);
					fds[i].fd = -1;
				}
			}
		if (fds[2].revents && end_fd == sigchld_pipe[0]) {
			char c[64];
			while (read(sigchld_pipe[0], c, sizeof c) > 0) {
			}
		}
		/* reap everything; the main child's end decides */
		int st;
		pid_t w;
		while ((w = waitpid(-1, &st, WNOHANG)) > 0)
			if (w == pid)
				status = wait_status_code(st);
	}
	if (in_fd >= 0)
		close(in_fd);
	if (inp[1] >= 0)
		close(inp[1]);
	/*
	 * What the command wrote before it ended: the bytes in the pipe now,
	 * and no more, so a background child still writing cannot keep the VM up.
	 */
	for (int i = 0; i < 2; i++) {
		int pending = 0;
		if (fds[i].fd >= 0 && ioctl(fds[i].fd, FIONREAD, &pending) == 0 && pending > 0)
			relay(fds[i].fd, i ? err_port : out_port, i ? &nerr : &nout, pending);
	}
	STEP("command");
	flush_writes();
	STEP("flush");
	steps_print();
	ctl_line("exit %d %lld %lld %lld.%03lld %lld.%03lld", status, nout, nerr, MS3(t_cmd), MS3(uptime_ms()));
}

/* Start the login shell on hvc0, its controlling terminal, as the user; its pid. vfork: see start_command. */
static pid_t __attribute__((noinline)) start_shell(const char *shell, char **env)
{
	pid_t pid = vfork();
	if (pid < 0)
		fatal("vfork: %s", strerror(errno));
	if (pid == 0) {
		setsid();
		int tty = open("/dev/hvc0", O_RDWR);
		if (tty < 0) {
			say("open /dev/hvc0: %s", strerror(errno));
			_exit(126);
		}
		ioctl(tty, TIOCSCTTY, 0);
		const char *rows = spec_get("rows"), *cols = spec_get("cols");
		if (rows && cols) {
			struct winsize ws = { (unsigned short)atoi(rows), (unsigned short)atoi(cols), 0, 0 };
			ioctl(tty, TIOCSWINSZ, &ws);
		}
		dup2(tty, 0);
		dup2(tty, 1);
		dup2(tty, 2);
		if (tty > 2)
			close(tty);
		drop_privileges();
		enter_cwd();
		/* a leading '-' in argv[0] makes it a login shell */
		const char *base = strrchr(shell, '/');
		char arg0[256];
		snprintf(arg0, sizeof arg0, "-%s", base ? base + 1 : shell);
		char *argv[] = { arg0, NULL };
		execve(shell, argv, env);
		say("cannot run %s: %s", shell, strerror(errno));
		_exit(127);
	}
	return pid;
}

static void run_shell(void)
{
	const char *shell = spec_need("shell");
	char **env = build_env();
	mounts_fd = open("/proc/self/mounts", O_RDONLY | O_CLOEXEC);
	pid_t pid = start_shell(shell, env);
	t_cmd = uptime_ms();
	/* ready ROOT CMD: when the root was mounted and the command (or shell) started */
	ctl_line("ready %lld.%03lld %lld.%03lld", MS3(t_root), MS3(t_cmd));
	/*
	 * While the shell runs, the host sends "winsize ROWS COLS" when its
	 * terminal is resized; setting it on hvc0 sends the shell SIGWINCH.
	 */
	int tty = open("/dev/hvc0", O_RDWR | O_NOCTTY | O_CLOEXEC);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigchld;
	sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
	if (pipe2(sigchld_pipe, O_CLOEXEC | O_NONBLOCK) == 0)
		sigaction(SIGCHLD, &sa, NULL);
	char line[128];
	size_t used = 0;
	int st, status = -1;
	while (status < 0) {
		pid_t w;
		while ((w = waitpid(-1, &st, WNOHANG)) > 0)
			if (w == pid)
				status = wait_status_code(st);
		if (status >= 0 || w < 0)
			break;
		struct pollfd fds[2] = { { sigchld_pipe[0], POLLIN, 0 }, { ctl_fd, POLLIN, 0 } };
		if (poll(fds, 2, -1) < 0 && errno != EINTR)
			break;
		if (fds[0].revents) {
			char c[64];
			while (read(sigchld_pipe[0], c, sizeof c) > 0) {
			}
		}
		if (fds[1].revents & POLLIN) {
			ssize_t n = read(ctl_fd, line + used, sizeof line - 1 - used);
			if (n <= 0)
				continue;
			used += (size_t)n;
			line[used] = '\0';
			char *nl;
			while ((nl = strchr(line, '\n'))) {
				*nl = '\0';
				unsigned short r, c;
				if (tty >= 0 && sscanf(line, "winsize %hu %hu", &r, &c) == 2) {
					struct winsize ws = { r, c, 0, 0 };
					ioctl(tty, TIOCSWINSZ, &ws);
				}
				used -= (size_t)(nl + 1 - line);
				memmove(line, nl + 1, used + 1);
			}
			if (used == sizeof line - 1)
				used = 0; /* a line too long to mean anything */
		}
	}
	flush_writes();
	ctl_line("exit %d 0 0 %lld.%03lld %lld.%03lld", status, MS3(t_cmd), MS3(uptime_ms()));
}

int main(void)
{
	t_init = uptime_ms();
	/* the kernel's own filesystems, needed to find ports and load modules */
	mkdir_p("/dev", 0755);
	mkdir_p("/proc", 0755);
	mkdir_p("/sys", 0755);
	mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	do_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	do_mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	STEP("early_mounts");
	load_modules();
	STEP("load_modules");

	ctl_fd = wait_port("mkt.ctl", O_RDWR);
	STEP("ctl port");
	/* hello INIT NOW: when init started and the time of this line, in ms since the kernel started */
	ctl_line("hello %lld.%03lld %lld.%03lld", MS3(t_init), MS3(uptime_ms()));
	read_spec();
	STEP("read_spec");
	set_clock();
	STEP("set_clock");
	const char *mode = spec_need("mode");
	int in_fd = -1, out_port = -1, err_port = -1;
	if (strcmp(mode, "exec") == 0) {
		in_fd = wait_port("mkt.stdin", O_RDONLY);
		out_port = wait_port("mkt.stdout", O_WRONLY);
		err_port = wait_port("mkt.stderr", O_WRONLY);
		STEP("ports");
	}

	mount_lower();
	STEP("mount_lower");
	/*
	 * the guest's own files, in a layer of the root: an export covering /etc or /boot never
	 * receives them; where the host put them into the root already ("seeded"), the name alone
	 */
	if (spec_get("seeded")) {
		const char *name = spec_need("hostname");
		if (sethostname(name, strlen(name)) < 0)
			say("sethostname: %s", strerror(errno));
	} else {
		kernel_files();
		STEP("kernel_files");
		identity_files();
	}
	STEP("identity_files");
	mount_root();
	STEP("mount_root");
	mount_system();
	STEP("mount_system");
	show_paths();
	STEP("show_paths");
	if (!spec_get("seeded")) /* else the host bound them there in the root already */
		mount_modules();
	STEP("mount_modules");
	mount_dirs();
	STEP("mount_dirs");
	switch_root();
	STEP("switch_root");
	dir_aliases();
	STEP("dir_aliases");
	loopback_up();
	STEP("loopback_up");
	t_root = uptime_ms();

	if (strcmp(mode, "exec") == 0)
		run_exec(in_fd, out_port, err_port);
	else
		run_shell();

	/*
	 * Wait for the host to say it has every byte: until then, output may
	 * still sit in the virtqueues (a reader paging through it, say). A
	 * host that is gone hangs up, and mkt stops a guest that never ends.
	 */
	struct pollfd p = { ctl_fd, POLLIN, 0 };
	while (poll(&p, 1, -1) < 0 && errno == EINTR) {
	}
	finish();
}
