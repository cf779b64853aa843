/*
 * mkt-start ARG...: mkt's entry point (bin/mkt runs it). It runs the CLI,
 * Node.js with bin/mkt.cjs, whose own start takes some 40 ms before it can
 * spawn anything. For `mkt run --exec`, it first looks for the plan an
 * earlier run of the same command line, in the same directory, recorded
 * (src/run/fast-start.ts writes it: qemu's and the daemons' argv, and what
 * they need). Where there is one, it starts those processes at once, in a
 * keeper process of its own, and then runs the CLI, which makes its plan
 * as always and adopts them where its plan is the same, or has the keeper
 * kill them where it is not. Nothing else is decided here.
 *
 * The keeper (a child of mkt's own process, which the CLI is after exec)
 * starts qemu and each daemon as mkt would (their own process group, the
 * parent-death signal, qemu's stdio on socketpairs, each daemon on its
 * listening socket), says on its status pipe what it started, then reports
 * each one's end. SIGTERM from mkt: kill them all. It dies with mkt (the
 * parent-death signal), and what it started dies with it.
 *
 * It hands the CLI, as descriptors it inherits, named in MKT_START (KEEPER
 * START_US PLAN STATUS Q1..Q7 NDAEMONS D0.. RUN_DIR): the plan file as
 * read, the keeper's status pipe, mkt's ends of qemu's descriptors 1..7 and
 * each daemon's stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <ftw.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DAEMON_SOCKET_FD 3 /* virtiofsd's --fd (src/qemu/args.ts) */
#define MAX_DAEMONS 16
#define MAX_TOKENS 4096
#define RUNDIR_MARK '\001'

extern char **environ;

static char *tok[MAX_TOKENS];
static int status_fd = -1; /* the keeper's end of its status pipe */
static long long started_us;

static long long now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}
static int ntok;

/*
 * The plan file's words (each ends with a NUL), or -1 when it is not one
 * this launcher reads, or not the user's own (a file anyone else could have
 * written names programs to run).
 */
static int read_plan(int fd)
{
	static char buf[1 << 16];
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022))
		return -1;
	ssize_t n, len = 0;
	while ((n = read(fd, buf + len, sizeof buf - 1 - (size_t)len)) > 0)
		len += n;
	if (n < 0 || len == 0 || len >= (ssize_t)sizeof buf - 1 || buf[len - 1] != '\0')
		return -1;
	for (char *p = buf; p < buf + len; p += strlen(p) + 1) {
		if (ntok == MAX_TOKENS)
			return -1;
		tok[ntok++] = p;
	}
	/* whole: its version first, "end" last */
	return ntok > 1 && strcmp(tok[0], "mkt-start 1") == 0 && strcmp(tok[ntok - 1], "end") == 0 ? 0 : -1;
}

/* A count in the record: 0 to MAX, else -1. */
static int count(const char *s, int max)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	return errno || end == s || *end || v < 0 || v > max ? -1 : (int)v;
}

/* FNV-1a, 64 bits, over the directory and each argument, each with its NUL: the plan's file name (fastStartKey in fast-start.ts). */
static uint64_t fnv(uint64_t h, const char *s)
{
	do {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	} while (*s++);
	return h;
}

/* The value with each RUNDIR_MARK replaced by DIR, in a buffer of its own. */
static char *expand(const char *s, const char *dir)
{
	size_t n = 1, dl = strlen(dir);
	for (const char *p = s; *p; p++)
		n += *p == RUNDIR_MARK ? dl : 1;
	char *out = malloc(n), *o = out;
	if (!out)
		return NULL;
	for (const char *p = s; *p; p++) {
		if (*p == RUNDIR_MARK) {
			memcpy(o, dir, dl);
			o += dl;
		} else
			*o++ = *p;
	}
	*o = '\0';
	return out;
}

struct proc {
	char **argv;
	char *socket, *dir;
	int lfd;	   /* daemon: its listening socket */
	int out[8];	   /* qemu: the keeper's ends of its fds 1..7 (index = fd) */
	int err[2];	   /* daemon: its stderr pipe */
	volatile pid_t pid;
	volatile sig_atomic_t done;
};

static struct proc qemu, daemons[MAX_DAEMONS];
static int ndaemons;
static volatile sig_atomic_t aborted;

static void kill_all(void)
{
	/* qemu's process group (its own), as the daemons' below */
	if (qemu.pid > 0 && !qemu.done && kill(-qemu.pid, SIGKILL) < 0)
		kill(qemu.pid, SIGKILL);
	/* a daemon's process group (its own), and the daemon itself should it not lead one yet */
	for (int i = 0; i < ndaemons; i++)
		if (daemons[i].pid > 0 && !daemons[i].done && kill(-daemons[i].pid, SIGKILL) < 0)
			kill(daemons[i].pid, SIGKILL);
}

/* SIGTERM from mkt: its plan differs, or it is ending; kill (async-signal-safe) is all it does, and no fork follows */
static void on_term(int sig)
{
	(void)sig;
	aborted = 1;
	kill_all();
}

/* Every signal's default action, as a process started by Node.js (libuv) gets; none blocked is left to the caller. */
static void default_signals(void)
{
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			signal(s, SIG_DFL);
}

/*
 * In the child of PARENT (forked with all signals blocked): the default
 * signal actions, its own process group (in the keeper's session, which
 * has no terminal: as good as the session of its own a detached Node.js
 * child gets; the parent sets the group too, so it is there before the pid
 * is told), the parent-death signal SIG, then PROGRAM; never returns.
 */
static void child_exec(char **argv, int sig, pid_t parent)
{
	default_signals();
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, sig);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* the parent ended before the signal was set: it is owed now */
	if (getppid() != parent)
		raise(sig);
	execv(argv[0], argv);
	fprintf(stderr, "mkt-start: cannot execute %s: %m\n", argv[0]);
	_exit(126);
}

/* FD moved above 63, close-on-exec (-1 stays -1) */
static int high(int fd)
{
	if (fd < 0)
		return -1;
	int h = fcntl(fd, F_DUPFD_CLOEXEC, 64);
	close(fd);
	return h;
}

static int listen_at(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof a.sun_path)
		return -1;
	strcpy(a.sun_path, path);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 511) < 0) {
		if (s >= 0)
			close(s);
		return -1;
	}
	return s;
}

static void status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void status(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n > 0 && (size_t)n < sizeof line)
		(void)!write(status_fd, line, (size_t)n);
}

/*
 * The keeper: start what the plan names, report, reap, report. Runs with
 * the status pipe's write end at status_fd; exits when all have ended.
 */
static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	remove(path);
	return 0;
}

static void keeper(const char *run_dir, pid_t mkt)
{
	/*
	 * mkt's death (however it died: before Node.js runs a line, a Ctrl-C
	 * kills it outright) is a SIGTERM here: everything goes, and so does the
	 * run directory, below, which nobody else would remove.
	 */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	/*
	 * The caller's descriptors are mkt's, not the keeper's, nor qemu's: a
	 * reader waiting for EOF, or a lock, must not wait on them (Node.js's
	 * children do not get them either). stdio becomes /dev/null, every other
	 * descriptor but the keeper's own (all close-on-exec) is closed.
	 */
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	for (int fd = 0; fd <= 2 && null >= 0; fd++)
		if (dup2(null, fd) == fd)
			fcntl(fd, F_SETFD, FD_CLOEXEC);
	DIR *fds = opendir("/proc/self/fd");
	struct dirent *e;
	while (fds && (e = readdir(fds))) {
		int fd = atoi(e->d_name);
		int fl = fd > 2 && fd != dirfd(fds) ? fcntl(fd, F_GETFD) : -1;
		if (fl >= 0 && !(fl & FD_CLOEXEC))
			close(fd);
	}
	if (fds)
		closedir(fds);
	/*
	 * Out of the terminal's process group (a Ctrl-C is mkt's to handle, not
	 * a reason for the keeper to die), with the caller's signal settings
	 * undone (an ignored SIGCHLD would leave nothing to reap); forks with
	 * every signal blocked, so no child runs this process's handler.
	 */
	setsid();
	default_signals();
	pid_t me = getpid();
	sigset_t all, old;
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	struct sigaction sa = { .sa_handler = on_term, .sa_flags = SA_RESTART };
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (getppid() != mkt)
		_exit(0);
	if (ndaemons && mkdir(run_dir, 0700) < 0) {
		status("failed mkdir %s\n", strerror(errno));
		_exit(0);
	}
	for (int i = 0; i < ndaemons; i++) {
		struct proc *d = &daemons[i];
		struct stat st;
		if ((d->dir[0] && mkdir(d->dir, 0755) < 0) || (d->lfd = high(listen_at(d->socket))) < 0 || fstat(d->lfd, &st) < 0) {
			status("failed socket %s\n", strerror(errno));
			_exit(0);
		}
		status("ino %d %llu\n", i, (unsigned long long)st.st_ino);
	}
	/* qemu first, then the daemons, as mkt starts them (execute.ts) */
	pid_t p = fork();
	if (p > 0)
		setpgid(p, p); /* as the child does (child_exec) */
	if (p == 0) {
		int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
		dup2(in, 0);
		/* the ends sit above 63 (high()), so no dup2 here overwrites one still to come; dup2 clears close-on-exec */
		for (int fd = 1; fd <= 7; fd++)
			dup2(qemu.out[fd], fd);
		child_exec(qemu.argv, SIGTERM, me);
	}
	qemu.pid = p;
	status("pid q %d %lld\n", (int)p, now_us());
	sigprocmask(SIG_SETMASK, &old, NULL); /* a SIGTERM pending runs now */
	for (int i = 0; i < ndaemons && p > 0 && !aborted; i++) {
		struct proc *d = &daemons[i];
		sigprocmask(SIG_SETMASK, &all, NULL);
		p = fork();
		if (p > 0)
			setpgid(p, p);
		if (p == 0) {
			int null = open("/dev/null", O_RDWR | O_CLOEXEC);
			dup2(null, 0);
			dup2(null, 1);
			dup2(d->err[1], 2);
			dup2(d->lfd, DAEMON_SOCKET_FD);
			child_exec(d->argv, SIGKILL, me);
		}
		d->pid = p;
		status("pid %d %d %lld\n", i, (int)p, now_us());
		sigprocmask(SIG_SETMASK, &old, NULL);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	/* only the children hold their ends now */
	for (int fd = 1; fd <= 7; fd++)
		close(qemu.out[fd]);
	for (int i = 0; i < ndaemons; i++) {
		close(daemons[i].err[1]);
		if (daemons[i].lfd >= 0)
			close(daemons[i].lfd);
	}
	if (p < 0 || aborted) {
		status("failed %s\n", aborted ? "aborted" : strerror(errno));
		kill_all();
	} else
		status("ready\n");
	for (;;) {
		int st;
		pid_t w = waitpid(-1, &st, 0);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1, sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
		if (w == qemu.pid) {
			qemu.done = 1;
			status("exit q %d %d\n", code, sig);
		}
		for (int i = 0; i < ndaemons; i++)
			if (w == daemons[i].pid) {
				daemons[i].done = 1;
				status("exit %d %d %d\n", i, code, sig);
			}
	}
	/*
	 * All reaped: with mkt gone, or its plan another, the run directory is
	 * the keeper's to remove, now that no daemon of its own is left to make
	 * anything in it (mkt removes it itself after a run it adopted)
	 */
	if (ndaemons && (aborted || getppid() != mkt))
		nftw(run_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	_exit(0);
}

/*
 * Parse the plan and check that it fits this start: the same directory,
 * arguments, standard streams that are terminals or not, MKT_ variables,
 * and the files it needs present. 0 when it does.
 */
static int plan_fits(int argc, char **argv, const char *cwd, char *run_dir, size_t run_dir_size)
{
	int i = 1;
	const char *tmp = NULL;
	char ttys[4] = { isatty(0) ? 'y' : 'n', isatty(1) ? 'y' : 'n', isatty(2) ? 'y' : 'n', 0 };
	int nenv = 0;
	/* read_plan made sure the last word is "end": every key's value is before it */
	for (;;) {
		const char *k = tok[i++];
		if (strcmp(k, "end") == 0)
			break;
		if (i >= ntok - 1)
			return -1;
		if (strcmp(k, "cwd") == 0) {
			if (strcmp(tok[i++], cwd) != 0)
				return -1;
		} else if (strcmp(k, "args") == 0) {
			const char *c = tok[i++];
			int n = count(c, ntok - 1 - i); /* words, not reaching the last, "end" */
			if (n != argc - 1)
				return -1;
			for (int a = 0; a < n; a++)
				if (strcmp(tok[i++], argv[a + 1]) != 0)
					return -1;
		} else if (strcmp(k, "tty") == 0) {
			if (strcmp(tok[i++], ttys) != 0)
				return -1;
		} else if (strcmp(k, "env") == 0) {
			const char *e = tok[i++], *eq = strchr(e, '=');
			if (!eq)
				return -1;
			char name[256];
			if ((size_t)(eq - e) >= sizeof name)
				return -1;
			memcpy(name, e, (size_t)(eq - e));
			name[eq - e] = '\0';
			const char *v = getenv(name);
			if (!v || strcmp(v, eq + 1) != 0)
				return -1;
			nenv++;
		} else if (strcmp(k, "need") == 0) {
			if (access(tok[i++], R_OK) < 0)
				return -1;
		} else if (strcmp(k, "tmp") == 0) {
			tmp = tok[i++];
		} else if (strcmp(k, "qemu") == 0 || strcmp(k, "daemon") == 0) {
			struct proc *p = &qemu;
			if (k[0] == 'd') {
				if (ndaemons == MAX_DAEMONS || i + 3 > ntok - 1)
					return -1;
				p = &daemons[ndaemons++];
				p->socket = tok[i++];
				p->dir = tok[i++];
			} else if (qemu.argv)
				return -1;
			const char *c = tok[i++];
			int n = count(c, ntok - 1 - i);
			if (n < 1 || !(p->argv = calloc((size_t)n + 1, sizeof *p->argv)))
				return -1;
			for (int a = 0; a < n; a++)
				p->argv[a] = tok[i++];
		} else
			return -1;
	}
	/* every MKT_ variable set now was set then (MKT_START is this launcher's own) */
	int now = 0;
	for (char **e = environ; *e; e++)
		if (strncmp(*e, "MKT_", 4) == 0)
			now++;
	if (now != nenv || !qemu.argv || !tmp)
		return -1;
	/* the same TMPDIR, as Node.js's os.tmpdir() reads it (TMPDIR, TMP, TEMP, /tmp; no trailing slash) */
	const char *t = getenv("TMPDIR");
	if (!t || !*t)
		t = getenv("TMP");
	if (!t || !*t)
		t = getenv("TEMP");
	if (!t || !*t)
		t = "/tmp";
	size_t tl = strlen(t);
	if (tl > 1 && t[tl - 1] == '/')
		tl--;
	if (strlen(tmp) != tl || strncmp(tmp, t, tl) != 0)
		return -1;
	/* the run directory, named as run.ts names it: mkt-run-PID-RANDOM in TMPDIR */
	unsigned int r = 0;
	int rf = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (rf < 0 || read(rf, &r, sizeof r) != sizeof r)
		return -1;
	close(rf);
	if (snprintf(run_dir, run_dir_size, "%s/mkt-run-%d-%08x", tmp, (int)getpid(), r) >= (int)run_dir_size)
		return -1;
	for (char **a = qemu.argv; *a; a++)
		if (!(*a = expand(*a, run_dir)))
			return -1;
	for (int d = 0; d < ndaemons; d++) {
		struct proc *p = &daemons[d];
		if (!(p->socket = expand(p->socket, run_dir)) || !(p->dir = expand(p->dir, run_dir)))
			return -1;
		for (char **a = p->argv; *a; a++)
			if (!(*a = expand(*a, run_dir)))
				return -1;
	}
	return 0;
}

/* Descriptors handed to the CLI (inherited across its exec), to close in the keeper or on failure. */
static int given[2 + 7 + MAX_DAEMONS], ngiven;

/* FD as a descriptor the CLI inherits (close-on-exec off), the original closed; -1 on failure. */
static int give(int fd)
{
	if (fd < 0)
		return -1;
	int g = fcntl(fd, F_DUPFD, 3);
	close(fd);
	if (g >= 0)
		given[ngiven++] = g;
	return g;
}

/* Try to start the plan's processes; on any doubt, start nothing (the CLI then starts them itself). */
static void speculate(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "run") != 0)
		return;
	const char *home = getenv("HOME"), *xdg = getenv("XDG_CACHE_HOME");
	char path[PATH_MAX], cwd[PATH_MAX], run_dir[PATH_MAX];
	int n;
	if (!getcwd(cwd, sizeof cwd))
		return;
	uint64_t h = fnv(14695981039346656037ULL, cwd);
	for (int i = 1; i < argc; i++)
		h = fnv(h, argv[i]);
	if (xdg && xdg[0] == '/')
		n = snprintf(path, sizeof path, "%s/mkt/start/%016llx", xdg, (unsigned long long)h);
	else if (home && home[0])
		n = snprintf(path, sizeof path, "%s/.cache/mkt/start/%016llx", home, (unsigned long long)h);
	else
		return;
	if (n >= (int)sizeof path)
		return;
	/* O_NONBLOCK: a FIFO there must not hold the start (read_plan takes only a regular file) */
	int pf = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (pf < 0)
		return;
	if (read_plan(pf) < 0 || plan_fits(argc, argv, cwd, run_dir, sizeof run_dir) < 0 || lseek(pf, 0, SEEK_SET) < 0) {
		close(pf);
		return;
	}
	int plan_fd = give(pf), q[8] = { 0 }, d[MAX_DAEMONS] = { 0 }, sp[2], status_pipe[2], status_in;
	pid_t k = -1;
	if (plan_fd < 0)
		goto undo;
	for (int fd = 1; fd <= 7; fd++) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0 || (q[fd] = give(sp[0])) < 0)
			goto undo;
		if ((qemu.out[fd] = high(sp[1])) < 0)
			goto undo;
	}
	for (int i = 0; i < ndaemons; i++) {
		if (pipe2(daemons[i].err, O_CLOEXEC) < 0 || (d[i] = give(daemons[i].err[0])) < 0)
			goto undo;
		if ((daemons[i].err[1] = high(daemons[i].err[1])) < 0)
			goto undo;
	}
	if (pipe2(status_pipe, O_CLOEXEC) < 0)
		goto undo;
	status_fd = high(status_pipe[1]);
	if (status_fd < 0 || (status_in = give(status_pipe[0])) < 0)
		goto undo;
	pid_t mkt = getpid();
	k = fork();
	if (k == 0) {
		for (int i = 0; i < ngiven; i++)
			close(given[i]);
		keeper(run_dir, mkt);
	}
	close(status_fd);
	if (k < 0)
		goto undo;
	for (int fd = 1; fd <= 7; fd++)
		close(qemu.out[fd]);
	for (int i = 0; i < ndaemons; i++)
		close(daemons[i].err[1]);
	/* KEEPER START_US PLAN STATUS Q1..Q7 NDAEMONS D0.. RUN_DIR */
	char val[PATH_MAX + 512];
	int len = snprintf(val, sizeof val, "%d %lld %d %d", (int)k, started_us, plan_fd, status_in);
	for (int fd = 1; fd <= 7; fd++)
		len += snprintf(val + len, sizeof val - (size_t)len, " %d", q[fd]);
	len += snprintf(val + len, sizeof val - (size_t)len, " %d", ndaemons);
	for (int i = 0; i < ndaemons; i++)
		len += snprintf(val + len, sizeof val - (size_t)len, " %d", d[i]);
	snprintf(val + len, sizeof val - (size_t)len, " %s", run_dir);
	setenv("MKT_START", val, 1);
	return;
undo:
	for (int i = 0; i < ngiven; i++)
		close(given[i]);
	if (k > 0)
		kill(k, SIGKILL);
}

int main(int argc, char **argv)
{
	started_us = now_us();
	/* where mkt is: this binary is dist/host/mkt-start in mkt's tree */
	char self[PATH_MAX], entry[PATH_MAX + 32];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0) {
		perror("mkt: cannot find itself (/proc/self/exe)");
		return 125;
	}
	self[n] = '\0';
	for (int up = 0; up < 3; up++) {
		char *slash = strrchr(self, '/');
		if (!slash)
			break;
		*slash = '\0';
	}
	snprintf(entry, sizeof entry, "%s/bin/mkt.cjs", self);
	/* only this launcher sets it, and only for the CLI it runs */
	unsetenv("MKT_START");
	/*
	 * Node.js parses every certificate NODE_EXTRA_CA_CERTS names before it
	 * runs a line (30-40 ms); mkt makes no TLS connection. Unset before
	 * anything starts: the processes mkt starts never had it either.
	 */
	unsetenv("NODE_EXTRA_CA_CERTS");
	speculate(argc, argv);
	char **args = calloc((size_t)argc + 2, sizeof *args);
	if (!args)
		return 125;
	args[0] = "node";
	args[1] = entry;
	for (int i = 1; i < argc; i++)
		args[i + 1] = argv[i];
	execvp("node", args);
	fprintf(stderr, "mkt: cannot run node (%m): install Node.js 20 or later (scripts/setup.sh does)\n");
	return 125;
}
