/*
 * mkt-ro [--size=SIZE] [ENTRY...] DIR PROGRAM [ARG...]: run PROGRAM in a mount namespace of its own
 * where DIR/v shows the whole host tree, writable, and nothing written
 * there reaches the host: each filesystem of the tree is shown through an
 * overlay whose upper layer is on a tmpfs mounted on DIR, so what is
 * written lands in memory of this namespace, SIZE at most (tmpfs's
 * size=, 1G by default), and dies with it (a
 * filesystem that cannot be an overlay's lower layer, /proc say, is bound
 * read-only instead). mkt serves the host's root to the guest through
 * virtiofsd run this way: Debian's C virtiofsd has no read-only mode, and
 * root in the guest could otherwise write to the host. The guest mounts
 * the share as its root as it is: an overlay of its own, whose lookups go
 * through three layers with a round trip to the host for the lower one,
 * cost it some 10 ms of every boot under TCG. Nothing of this is seen
 * outside: the namespace ends with PROGRAM.
 *
 * Each ENTRY puts one of the guest's own files into the view before
 * PROGRAM starts, as root, in place of what the host has there:
 *   --mkdir PATH              a directory (mode 0755)
 *   --file PATH MODE CONTENT  a file (MODE in octal)
 *   --link PATH TARGET        a symbolic link
 *   --bind SOURCE PATH        SOURCE, a directory of the view, mounted there too
 * PATH and SOURCE as the guest sees them; its parent directories are made as needed.
 * They are written in a child chrooted into the view, so no symbolic link
 * in the host's tree leads outside it. mkt-init would otherwise write them
 * itself at each boot, a round trip to the daemon per step.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* mountinfo escapes space, tab, newline and backslash as \ooo */
static void unescape(char *s)
{
	char *o = s;
	for (char *p = s; *p; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '7' && p[2] && p[3]) {
			*o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
			p += 3;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
}

/*
 * Kernel and pseudo filesystems: nothing of the host's root the guest uses
 * (it mounts its own /proc, /sys and /dev), so the view leaves them out and
 * shows the directories beneath.
 */
static int pseudo(const char *type)
{
	static const char *const types[] = { "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "mqueue", "debugfs", "tracefs", "securityfs",
					     "pstore", "bpf", "configfs", "fusectl", "hugetlbfs", "autofs", "binfmt_misc", "efivarfs", "nsfs", "rpc_pipefs",
					     "selinuxfs" };
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		if (strcmp(type, types[i]) == 0)
			return 1;
	return 0;
}

/* The mount points of this namespace but kernel ones, in mountinfo's order (a parent before what is mounted on it). */
static char **mount_points(size_t *count)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return NULL;
	size_t n = 0, cap = 64;
	char **out = malloc(cap * sizeof *out);
	char line[8192];
	while (out && fgets(line, sizeof line, f)) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER */
		char *dash = strstr(line, " - ");
		char type[64] = "";
		if (!dash || sscanf(dash + 3, "%63s", type) != 1 || pseudo(type))
			continue;
		char *save, *tok = strtok_r(line, " ", &save);
		for (int i = 0; tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		if (!tok)
			continue;
		unescape(tok);
		if (n == cap)
			out = realloc(out, (cap *= 2) * sizeof *out);
		if (out)
			out[n++] = strdup(tok);
	}
	fclose(f);
	*count = n;
	return out;
}

static void die(const char *what, const char *dir)
{
	fprintf(stderr, "mkt-ro: %s %s: %s\n", what, dir, strerror(errno));
	exit(126);
}

/* An overlay option's path: its separators (',' between options, ':' between layers) and '\' escaped. */
static void opt_path(char *out, size_t size, const char *path)
{
	size_t o = 0;
	for (const char *p = path; *p && o + 2 < size; p++) {
		if (*p == ',' || *p == ':' || *p == '\\')
			out[o++] = '\\';
		out[o++] = *p;
	}
	out[o] = '\0';
}

/* Whether PATH is DIR or below it. */
static int under(const char *path, const char *dir)
{
	size_t len = strlen(dir);
	return strncmp(path, dir, len) == 0 && (path[len] == '\0' || path[len] == '/');
}

/*
 * Show the host tree writable at DIR/v: an overlay per mount, its upper and
 * work directories on a tmpfs at DIR, outer mounts first (mountinfo's
 * order), so each lands on the view its parent already shows.
 */
static void overlay_view(const char *dir, const char *size)
{
	size_t n = 0;
	char **mps = mount_points(&n);
	if (!mps)
		die("read the mounts for", dir);
	char tmpfs_opts[128];
	snprintf(tmpfs_opts, sizeof tmpfs_opts, "mode=0700,size=%s", size);
	if (mount("mkt-rw", dir, "tmpfs", 0, tmpfs_opts) < 0)
		die("mount a tmpfs on", dir);
	char view[4096], upper[4200], work[4200], target[8400], opts[3 * 8400 + 64];
	snprintf(view, sizeof view, "%s/v", dir);
	if (mkdir(view, 0755) < 0)
		die("make", view);
	int layers = 0;
	for (size_t i = 0; i < n; i++) {
		const char *mp = mps[i];
		/* the run directory's own (our tmpfs): the view shows the empty directory beneath */
		if (under(mp, dir))
			continue;
		snprintf(target, sizeof target, "%s%s", view, strcmp(mp, "/") == 0 ? "" : mp);
		snprintf(upper, sizeof upper, "%s/u%d", dir, layers);
		snprintf(work, sizeof work, "%s/w%d", dir, layers);
		if (mkdir(upper, 0755) < 0 || mkdir(work, 0755) < 0)
			die("make the layers in", dir);
		layers++;
		char lo[8400], up[8400], wo[8400];
		opt_path(lo, sizeof lo, mp);
		opt_path(up, sizeof up, upper);
		opt_path(wo, sizeof wo, work);
		snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s", lo, up, wo);
		if (mount("overlay", target, "overlay", 0, opts) == 0)
			continue;
		if (strcmp(mp, "/") == 0)
			die("mount an overlay of / on", view);
		/* not a lower layer overlayfs takes (proc, a single file, ...): shown read-only as it is */
		if (mount(mp, target, NULL, MS_BIND, NULL) == 0)
			mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL);
	}
}

/* Make PATH's parent directories (mode 0755), as the guest sees them. */
static int make_parents(char *path)
{
	for (char *p = path + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		int r = mkdir(path, 0755);
		*p = '/';
		if (r < 0 && errno != EEXIST)
			return -1;
	}
	return 0;
}

/* Remove what PATH is unless it is a directory (KEEP_DIR) or absent. */
static int clear(const char *path, int keep_dir)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -1;
	if (S_ISDIR(st.st_mode))
		return keep_dir ? 0 : (errno = EISDIR, -1);
	return unlink(path);
}

static int put_file(const char *path, const char *mode, const char *content)
{
	char *end;
	long m = strtol(mode, &end, 8);
	if (*mode == '\0' || *end || m < 0 || m > 07777)
		return errno = EINVAL, -1;
	if (clear(path, 0) < 0)
		return -1;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	size_t len = strlen(content), done = 0;
	while (done < len) {
		ssize_t n = write(fd, content + done, len - done);
		if (n < 0) {
			close(fd);
			return -1;
		}
		done += (size_t)n;
	}
	if (fchmod(fd, (mode_t)m) < 0 || close(fd) < 0)
		return -1;
	return 0;
}

/* Apply the entries ARGV[0..N) in a child chrooted into VIEW; 0 when all were made. */
static int seed(const char *view, char **argv, int n)
{
	if (n == 0)
		return 0;
	pid_t pid = fork();
	if (pid < 0)
		die("fork to fill", view);
	if (pid == 0) {
		if (chroot(view) < 0 || chdir("/") < 0) {
			fprintf(stderr, "mkt-ro: chroot %s: %s\n", view, strerror(errno));
			_exit(1);
		}
		umask(022);
		for (int i = 0; i < n;) {
			const char *op = argv[i];
			char *path = argv[i + 1];
			int r;
			if (strcmp(op, "--mkdir") == 0) {
				r = make_parents(path) < 0 || clear(path, 1) < 0 || (mkdir(path, 0755) < 0 && errno != EEXIST) ? -1 : 0;
				i += 2;
			} else if (strcmp(op, "--file") == 0) {
				r = make_parents(path) < 0 || put_file(path, argv[i + 2], argv[i + 3]) < 0 ? -1 : 0;
				i += 4;
			} else if (strcmp(op, "--bind") == 0) {
				/* SOURCE first, PATH second */
				path = argv[i + 2];
				r = make_parents(path) < 0 || clear(path, 1) < 0 || (mkdir(path, 0755) < 0 && errno != EEXIST) ||
						    mount(argv[i + 1], path, NULL, MS_BIND, NULL) < 0
					    ? -1
					    : 0;
				i += 3;
			} else {
				r = make_parents(path) < 0 || clear(path, 0) < 0 || symlink(argv[i + 2], path) < 0 ? -1 : 0;
				i += 3;
			}
			if (r < 0) {
				fprintf(stderr, "mkt-ro: cannot make %s in the guest's root: %s\n", path, strerror(errno));
				_exit(1);
			}
		}
		_exit(0);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			die("wait for the filling of", view);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* How many words the entry at ARGV takes (0: not an entry). */
static int entry_words(char **argv)
{
	if (strcmp(argv[0], "--mkdir") == 0)
		return 2;
	if (strcmp(argv[0], "--link") == 0 || strcmp(argv[0], "--bind") == 0)
		return 3;
	if (strcmp(argv[0], "--file") == 0)
		return 4;
	return 0;
}

int main(int argc, char **argv)
{
	const char *size = "1G";
	if (argc > 1 && strncmp(argv[1], "--size=", 7) == 0) {
		size = argv[1] + 7;
		argv++;
		argc--;
	}
	char **entries = argv + 1;
	int nentries = 0;
	for (int w; 1 + nentries < argc && (w = entry_words(argv + 1 + nentries)) > 0; nentries += w) {
		if (1 + nentries + w > argc || argv[2 + nentries][0] != '/' || (strcmp(argv[1 + nentries], "--bind") == 0 && argv[3 + nentries][0] != '/')) {
			fprintf(stderr, "mkt-ro: %s needs an absolute PATH and its values\n", argv[1 + nentries]);
			return 2;
		}
	}
	argv += nentries;
	argc -= nentries;
	if (argc < 3 || strlen(size) > 32) {
		fprintf(stderr, "usage: mkt-ro [--size=SIZE] [--mkdir PATH | --file PATH MODE CONTENT | --link PATH TARGET | --bind SOURCE PATH]... DIR PROGRAM [ARG...]\n");
		return 2;
	}
	const char *dir = argv[1];
	if (unshare(CLONE_NEWNS) < 0)
		die("unshare the mount namespace for", dir);
	/* nothing done here propagates back to the host's namespace */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		die("make / private for", dir);
	overlay_view(dir, size);
	char view[4096];
	snprintf(view, sizeof view, "%s/v", dir);
	if (seed(view, entries, nentries) < 0)
		return 126;
	execv(argv[2], argv + 2);
	die("execute", argv[2]);
	return 126;
}
