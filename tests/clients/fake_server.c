/* fake_server.c - see fake_server.h. */
#include "fake_server.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int fake_server_start(const char *script, const char *what, pid_t *pid, int *stdin_fd, char *base,
                      size_t n_base)
{
	int out[2], in[2];
	if (pipe(out) != 0 || pipe(in) != 0)
		return -1;
	pid_t p = fork();
	if (p < 0)
		return -1;
	if (p == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		execl("/usr/bin/python3", "python3", script, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	fcntl(in[1], F_SETFD, FD_CLOEXEC);
	*pid = p;
	*stdin_fd = in[1];
	/* The first line is the port; give the interpreter a generous 20 s to start. */
	char line[32] = "";
	size_t n = 0;
	while (n < sizeof line - 1) {
		struct pollfd pfd = {.fd = out[0], .events = POLLIN};
		if (poll(&pfd, 1, 20000) <= 0)
			break;
		ssize_t r = read(out[0], line + n, 1);
		if (r <= 0 || line[n] == '\n')
			break;
		n++;
	}
	line[n] = '\0';
	close(out[0]);
	long port = strtol(line, NULL, 10);
	if (port <= 0 || port > 65535) {
		fprintf(stderr, "# the fake %s did not print its port (got \"%s\")\n", what, line);
		return -1;
	}
	snprintf(base, n_base, "http://127.0.0.1:%ld", port);
	return 0;
}

void fake_server_stop(pid_t pid, int stdin_fd)
{
	if (stdin_fd >= 0)
		close(stdin_fd);
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
	}
}
