/* proc.c - see proc.h.
 *
 * Start-up failures are told apart from the program's own failures with the classic
 * close-on-exec pipe: the child writes errno into it when chdir or exec fails; a
 * successful exec closes it, so the parent reads end-of-file. Everything the child does
 * between fork and exec is async-signal-safe (the environment is built before the fork).
 */
#include "util/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/err.h"
#include "util/str.h"
#include "util/timeutil.h"

extern char **environ;

static volatile sig_atomic_t running_pgid;

static void on_termination(int sig)
{
	pid_t g = (pid_t)running_pgid;
	if (g > 0)
		kill(-g, SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

void proc_forward_termination(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_termination;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
}

bool proc_find_program(const char *name, char *path_out, size_t n_path_out)
{
	struct stat st;
	if (!name || !*name)
		return false;
	if (strchr(name, '/')) {
		if (stat(name, &st) != 0 || !S_ISREG(st.st_mode) || access(name, X_OK) != 0)
			return false;
		if (path_out)
			str_copy(path_out, n_path_out, name);
		return true;
	}
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");
		char cand[4096];
		if (n > 0 && n + strlen(name) + 2 <= sizeof cand) {
			memcpy(cand, path, n);
			cand[n] = '/';
			str_copy(cand + n + 1, sizeof cand - n - 1, name);
			if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) &&
			    access(cand, X_OK) == 0) {
				if (path_out)
					str_copy(path_out, n_path_out, cand);
				return true;
			}
		}
		path += n;
		if (*path == ':')
			path++;
	}
	return false;
}

/* In a freshly forked child, before exec (async-signal-safe calls only): its own process
 * group, death with the parent, default signal handling (the server blocks SIGTERM and
 * ignores SIGPIPE, and both would be inherited), stdin on /dev/null. */
static void child_setup(pid_t parent, int devnull)
{
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	if (devnull >= 0)
		dup2(devnull, 0);
}

/* environ with env_add appended; entries of environ that env_add overrides are left out.
 * Returns a malloced array of borrowed pointers (caller frees the array only). */
static char **build_env(const char *const *env_add)
{
	size_t n_env = 0, n_add = 0;
	while (environ && environ[n_env])
		n_env++;
	while (env_add && env_add[n_add])
		n_add++;
	char **envp = calloc(n_env + n_add + 1, sizeof *envp);
	if (!envp)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n_env; i++) {
		bool overridden = false;
		for (size_t j = 0; j < n_add && !overridden; j++) {
			const char *eq = strchr(env_add[j], '=');
			size_t n_name = eq ? (size_t)(eq - env_add[j]) : strlen(env_add[j]);
			overridden = strncmp(environ[i], env_add[j], n_name) == 0 &&
			             environ[i][n_name] == '=';
		}
		if (!overridden)
			envp[k++] = environ[i];
	}
	for (size_t j = 0; j < n_add; j++)
		envp[k++] = (char *)env_add[j];
	envp[k] = NULL;
	return envp;
}

struct line_buf {
	char *data; /* PROC_LINE_MAX_BYTES + 1 */
	size_t len;
	bool overflow;
};

static void line_feed(struct line_buf *lb, const struct proc_opts *o, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char ch = p[i];
		if (ch == '\n' || ch == '\r') {
			if (lb->len && !lb->overflow && o->on_line) {
				lb->data[lb->len] = '\0';
				o->on_line(o->arg, lb->data);
			}
			lb->len = 0;
			lb->overflow = false;
		} else if (lb->len < PROC_LINE_MAX_BYTES) {
			lb->data[lb->len++] = ch;
		} else {
			lb->overflow = true;
		}
	}
}

/* Keeps the last PROC_STDERR_MAX_BYTES of everything appended. */
static void tail_append(char *tail, size_t *n_tail, const char *p, size_t n)
{
	const size_t cap = PROC_STDERR_MAX_BYTES;
	if (n > cap) {
		p += n - cap;
		n = cap;
	}
	if (*n_tail + n > cap) {
		size_t drop = *n_tail + n - cap;
		memmove(tail, tail + drop, *n_tail - drop);
		*n_tail -= drop;
	}
	memcpy(tail + *n_tail, p, n);
	*n_tail += n;
	tail[*n_tail] = '\0';
}

static void close_pair(int p[2])
{
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	p[0] = p[1] = -1;
}

int proc_run(const struct proc_opts *o, struct proc_result *out, char *err, size_t n_err)
{
	int outp[2] = {-1, -1}, errp[2] = {-1, -1}, execp[2] = {-1, -1};
	struct line_buf lb = {malloc(PROC_LINE_MAX_BYTES + 1), 0, false};
	char **envp = build_env(o->env_add);
	int rc = 0;
	if (!lb.data || !envp) {
		rc = sfa_err(err, n_err, SFA_ENOMEM, "Out of memory starting %s.", o->argv[0]);
		goto out;
	}
	if (pipe2(outp, O_CLOEXEC) || pipe2(errp, O_CLOEXEC) || pipe2(execp, O_CLOEXEC)) {
		rc = sfa_err(err, n_err, SFA_EIO, "Cannot create pipes for %s: %s.", o->argv[0],
		             strerror(errno));
		goto out;
	}
	int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		if (devnull >= 0)
			close(devnull);
		rc = sfa_err(err, n_err, SFA_EIO, "Cannot start %s: %s.", o->argv[0],
		             strerror(errno));
		goto out;
	}
	if (pid == 0) {
		child_setup(parent, devnull);
		dup2(outp[1], 1);
		dup2(errp[1], 2);
		/* The exec-status pipe becomes fd 3, close-on-exec; everything above goes. */
		if (dup2(execp[1], 3) < 0 || fcntl(3, F_SETFD, FD_CLOEXEC) < 0)
			_exit(127);
		close_range(4, ~0u, 0);
		int e;
		if (o->cwd && chdir(o->cwd) != 0) {
			e = errno;
		} else {
			execvpe(o->argv[0], (char *const *)o->argv, envp);
			e = errno;
		}
		ssize_t w = write(3, &e, sizeof e);
		(void)w;
		_exit(127);
	}
	setpgid(pid, pid); /* also in the parent, so a kill right away finds the group */
	running_pgid = pid;
	if (devnull >= 0)
		close(devnull);
	close(outp[1]);
	close(errp[1]);
	close(execp[1]);
	outp[1] = errp[1] = execp[1] = -1;

	memset(out, 0, sizeof *out);
	out->exit_code = -1;
	int e = 0;
	ssize_t n;
	do
		n = read(execp[0], &e, sizeof e);
	while (n < 0 && errno == EINTR);
	int status = 0;
	if (n == (ssize_t)sizeof e) {
		waitpid(pid, &status, 0);
		running_pgid = 0;
		out->exec_failed = true;
		out->exec_errno = e;
		goto out;
	}

	size_t n_tail = 0;
	bool leader_done = false;
	int fds[2] = {outp[0], errp[0]};
	char chunk[8192];
	while (fds[0] >= 0 || fds[1] >= 0) {
		if (o->deadline_ms && !out->timed_out && time_mono_ms() >= o->deadline_ms) {
			kill(-pid, SIGKILL);
			out->timed_out = true;
		}
		if (!leader_done && waitpid(pid, &status, WNOHANG) == pid) {
			leader_done = true;
			kill(-pid, SIGKILL); /* stragglers would hold the pipes open */
		}
		struct pollfd pfd[2];
		nfds_t np = 0;
		int which[2];
		for (int i = 0; i < 2; i++) {
			if (fds[i] >= 0) {
				pfd[np].fd = fds[i];
				pfd[np].events = POLLIN;
				which[np++] = i;
			}
		}
		int pr = poll(pfd, np, 100);
		if (pr < 0 && errno != EINTR)
			break;
		for (nfds_t k = 0; pr > 0 && k < np; k++) {
			if (!pfd[k].revents)
				continue;
			int i = which[k];
			n = read(fds[i], chunk, sizeof chunk);
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (n <= 0) {
				if (i == 0)
					line_feed(&lb, o, "\n",
					          1); /* a last line without newline */
				close(fds[i]);
				fds[i] = -1;
				continue;
			}
			if (i == 0)
				line_feed(&lb, o, chunk, (size_t)n);
			else
				tail_append(out->stderr_tail, &n_tail, chunk, (size_t)n);
		}
	}
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	outp[0] = errp[0] = -1;
	if (!leader_done)
		waitpid(pid, &status, 0);
	kill(-pid, SIGKILL);
	running_pgid = 0;
	if (WIFEXITED(status))
		out->exit_code = WEXITSTATUS(status);
	else if (WIFSIGNALED(status))
		out->term_signal = WTERMSIG(status);
out:
	close_pair(outp);
	close_pair(errp);
	close_pair(execp);
	free(envp);
	free(lb.data);
	return rc;
}

int proc_spawn(const char *exe, char *const argv[], const struct proc_spawn_opts *o, pid_t *pid,
               int *read_fd)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0)
		return SFA_EIO;
	int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	pid_t parent = getpid();
	pid_t child = fork();
	if (child < 0) {
		if (devnull >= 0)
			close(devnull);
		close(p[0]);
		close(p[1]);
		return SFA_EIO;
	}
	if (child == 0) {
		child_setup(parent, devnull);
		if (dup2(p[1], o->out_fd) < 0)
			_exit(127);
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
		if (o->nice > getpriority(PRIO_PROCESS, 0))
			setpriority(PRIO_PROCESS, 0, o->nice);
		execv(exe, argv);
		_exit(127);
	}
	if (devnull >= 0)
		close(devnull);
	close(p[1]);
	setpgid(child, child);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	*pid = child;
	*read_fd = p[0];
	return 0;
}

int proc_capture(const char *exe, char *const argv[], const struct proc_spawn_opts *o,
                 int timeout_ms, char *out, size_t n_out, int *status)
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
