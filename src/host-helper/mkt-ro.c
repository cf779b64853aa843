/*
 * mkt-ro DIR PROGRAM [ARG...]: run PROGRAM in a mount namespace of its own
 * where DIR shows the whole host tree read-only (a recursive bind of /,
 * every mount in it made read-only). mkt serves the host's root to the
 * guest this way: Debian's C virtiofsd has no read-only mode, and a guest
 * root could otherwise remount the export read-write. Nothing of this is
 * seen outside: the namespace ends with PROGRAM.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

struct mkt_mount_attr {
	unsigned long long attr_set, attr_clr, propagation, userns_fd;
};

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

/* Before Linux 5.12 (no mount_setattr): remount every mount at or below DIR read-only, one by one. */
static int each_read_only(const char *dir)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return -1;
	size_t len = strlen(dir);
	char line[8192];
	int ok = 0;
	while (fgets(line, sizeof line, f)) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... */
		char *save, *tok = strtok_r(line, " ", &save);
		for (int i = 0; tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		if (!tok)
			continue;
		unescape(tok);
		if (strncmp(tok, dir, len) != 0 || (tok[len] != '\0' && tok[len] != '/'))
			continue;
		if (mount(NULL, tok, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0 && errno != ENOENT && errno != EACCES)
			ok = -1;
	}
	fclose(f);
	return ok;
}

static void die(const char *what, const char *dir)
{
	fprintf(stderr, "mkt-ro: %s %s: %s\n", what, dir, strerror(errno));
	exit(126);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: mkt-ro DIR PROGRAM [ARG...]\n");
		return 2;
	}
	const char *dir = argv[1];
	if (unshare(CLONE_NEWNS) < 0)
		die("unshare the mount namespace for", dir);
	/* nothing done here propagates back to the host's namespace */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		die("make / private for", dir);
	if (mount("/", dir, NULL, MS_BIND | MS_REC, NULL) < 0)
		die("bind / on", dir);
	struct mkt_mount_attr attr = { MOUNT_ATTR_RDONLY, 0, 0, 0 };
	if (syscall(SYS_mount_setattr, AT_FDCWD, dir, AT_RECURSIVE, &attr, sizeof attr) < 0 && (errno != ENOSYS || each_read_only(dir) < 0))
		die("make read-only", dir);
	execv(argv[2], argv + 2);
	die("execute", argv[2]);
	return 126;
}
