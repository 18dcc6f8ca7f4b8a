/* proc.h - starting the child processes that do untrusted or heavy work.
 *
 * proc_spawn forks and execs exe with argv in its own process group, with default
 * signal handling (the server blocks SIGTERM and ignores SIGPIPE, which children would
 * otherwise inherit), stdin on /dev/null, every descriptor above the report pipe closed,
 * no core files, an address-space limit (skipped under ASan, which needs terabytes of
 * shadow space) and PR_SET_PDEATHSIG, so a child never outlives the server. The child's
 * report pipe (its descriptor out_fd: 1 for stdout, 3 for the job protocol) is returned
 * non-blocking in *read_fd. Thread-safe; the caller reaps the child with waitpid.
 */
#ifndef SFA_UTIL_PROC_H
#define SFA_UTIL_PROC_H

#include <stdint.h>
#include <sys/types.h>

struct proc_opts {
	int out_fd;         /* the pipe's descriptor number in the child (>= 1) */
	int64_t memory_mb;  /* RLIMIT_AS; 0: none */
	int cpu_s;          /* RLIMIT_CPU; 0: none */
};

int proc_spawn(const char *exe, char *const argv[], const struct proc_opts *o, pid_t *pid,
               int *read_fd);

/* Runs exe to completion, collecting up to n_out - 1 bytes of its report pipe into out
 * (NUL-terminated); kills its group after timeout_ms. *status gets the waitpid status.
 * Returns 0, SFA_ETIMEOUT or SFA_EIO. */
int proc_run(const char *exe, char *const argv[], const struct proc_opts *o, int timeout_ms,
             char *out, size_t n_out, int *status);

#endif
