/*
 * mkt-exec PARENT SIGNAL FD PROGRAM [ARG...]: run PROGRAM so that it gets
 * SIGNAL (a number) when mkt, process PARENT, ends, even by SIGKILL (the
 * parent-death signal); FD, unless it is -1, is a listening socket mkt
 * bound (non-blocking, as Node.js makes its sockets) that PROGRAM accepts
 * on in blocking mode: virtiofsd's --fd. mkt starts qemu and the virtiofsd
 * daemons through it: it does what `setpriv --pdeathsig` did, without
 * setpriv's locale loading, and it closes the window in which mkt dies
 * before the signal is set.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: mkt-exec PARENT SIGNAL FD PROGRAM [ARG...]\n");
		return 2;
	}
	pid_t parent = (pid_t)atoi(argv[1]);
	int sig = atoi(argv[2]), fd = atoi(argv[3]);
	if (prctl(PR_SET_PDEATHSIG, sig) < 0) {
		perror("mkt-exec: prctl");
		return 126;
	}
	/* mkt ended before the signal was set: it is owed now */
	if (getppid() != parent)
		raise(sig);
	if (fd >= 0) {
		int fl = fcntl(fd, F_GETFL);
		if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
			fprintf(stderr, "mkt-exec: descriptor %d: %m\n", fd);
			return 126;
		}
	}
	execv(argv[4], argv + 4);
	fprintf(stderr, "mkt-exec: cannot execute %s: %m\n", argv[4]);
	return 126;
}
