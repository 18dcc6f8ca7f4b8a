/* proc.c - see proc.h. */
#include "util/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/err.h"
#include "util/timeutil.h"

int proc_spawn(const char *exe, char *const argv[], const struct proc_opts *o, pid_t *pid,
               int *read_fd)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return SFA_EIO;
	pid_t parent = getpid();
	pid_t child = fork();
	if (child < 0) {
		close(p[0]);
		close(p[1]);
		return SFA_EIO;
	}
	if (child == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		if (dup2(p[1], o->out_fd) < 0)
			_exit(127);
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0) {
			dup2(devnull, 0);
			close(devnull);
		}
		close_range((unsigned)o->out_fd + 1, ~0u, 0);
		struct rlimit core = {0, 0};
		setrlimit(RLIMIT_CORE, &core);
#ifndef __SANITIZE_ADDRESS__
		if (o->memory_mb > 0) {
			rlim_t mem = (rlim_t)o->memory_mb << 20;
			struct rlimit as = {mem, mem};
			setrlimit(RLIMIT_AS, &as);
		}
#endif
		if (o->cpu_s > 0) {
			struct rlimit cpu = {(rlim_t)o->cpu_s, (rlim_t)o->cpu_s + 5};
			setrlimit(RLIMIT_CPU, &cpu);
		}
		execv(exe, argv);
		_exit(127);
	}
	close(p[1]);
	setpgid(child, child);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	*pid = child;
	*read_fd = p[0];
	return 0;
}

int proc_run(const char *exe, char *const argv[], const struct proc_opts *o, int timeout_ms,
             char *out, size_t n_out, int *status)
{
	pid_t pid;
	int fd;
	int rc = proc_spawn(exe, argv, o, &pid, &fd);
	if (rc)
		return rc;
	size_t len = 0;
	int64_t deadline = time_mono_ms() + timeout_ms;
	bool timed_out = false;
	for (;;) {
		int64_t left = deadline - time_mono_ms();
		if (left <= 0) {
			timed_out = true;
			break;
		}
		struct pollfd pfd = {fd, POLLIN, 0};
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		char chunk[4096];
		ssize_t n = read(fd, chunk, sizeof chunk);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n && len + 1 < n_out; i++)
			out[len++] = chunk[i];
	}
	out[len] = '\0';
	close(fd);
	if (timed_out)
		kill(-pid, SIGKILL);
	while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
	}
	kill(-pid, SIGKILL); /* nothing of its group may linger */
	return timed_out ? SFA_ETIMEOUT : 0;
}
