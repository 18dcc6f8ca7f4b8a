/* proc.h - run an outside program safely: argv array, own process group, wall-clock limit.
 *
 * proc_run forks and execs argv (never through a shell: no word splitting, no globbing,
 * nothing in an argument is ever interpreted). The child gets its own process group, dies
 * with its parent (PR_SET_PDEATHSIG), reads /dev/null, and inherits no descriptor but its
 * stdout and stderr pipes. Its stdout is handed to a callback line by line (each line capped
 * at PROC_LINE_MAX_BYTES; the rest of an overlong line is dropped); its stderr is kept in a
 * capped buffer holding the last PROC_STDERR_MAX_BYTES. When the deadline passes the whole
 * process group is killed (so a program's own children, such as ffmpeg under yt-dlp, go
 * too), and once the leader exits any straggler of its group is killed as well.
 *
 * One proc_run at a time per process (the running group is remembered for
 * proc_forward_termination). Not for use from the threaded server: it is meant for job
 * workers, which are single-threaded processes of their own.
 */
#ifndef SFA_UTIL_PROC_H
#define SFA_UTIL_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum { PROC_LINE_MAX_BYTES = 64 * 1024, PROC_STDERR_MAX_BYTES = 16 * 1024 };

struct proc_opts {
	const char *const *argv;    /* argv[0]: a path, or a name looked up on PATH */
	const char *cwd;            /* working directory of the child; NULL: inherit */
	const char *const *env_add; /* extra "NAME=value" entries, NULL-terminated; may be NULL */
	int64_t deadline_ms;        /* time_mono_ms() value; 0: no limit */
	/* Called for each stdout line without its newline (NUL-terminated). May be NULL. */
	void (*on_line)(void *arg, const char *line);
	void *arg;
};

struct proc_result {
	bool exec_failed; /* the program could not be started: exec_errno says why */
	int exec_errno;   /* ENOENT: not found; EACCES: not executable */
	bool timed_out;   /* the deadline passed and the group was killed */
	int exit_code;    /* when it exited normally, else -1 */
	int term_signal;  /* when a signal ended it, else 0 */
	char stderr_tail[PROC_STDERR_MAX_BYTES + 1]; /* the last bytes of its stderr */
};

/* Runs the program to completion. Returns 0 with *out filled whenever the program was
 * started or failed to start (check out->exec_failed, exit_code, timed_out); a negative
 * SFA_E* code only for local failures (no pipes, fork failed) with a sentence in err. */
int proc_run(const struct proc_opts *o, struct proc_result *out, char *err, size_t n_err);

/* Installs SIGTERM and SIGINT handlers that kill the running child's process group before
 * the process ends with the same signal, so a cancelled job leaves nothing behind. */
void proc_forward_termination(void);

/* Whether name (or a path) is an executable file, searching PATH for a bare name. When
 * found and path_out is not NULL, the full path is written there. */
bool proc_find_program(const char *name, char *path_out, size_t n_path_out);

/* ---- Worker processes of the server ------------------------------------------------
 *
 * proc_spawn is safe to call from the threaded server: it starts exe with argv in its
 * own process group with the same hygiene as proc_run (default signals, stdin on
 * /dev/null, no inherited descriptors, PR_SET_PDEATHSIG) plus no core files, an
 * address-space limit (skipped under ASan, which needs terabytes of shadow space) and a
 * CPU limit. The child's report pipe (its descriptor out_fd: 1 for stdout, 3 for the
 * job protocol) is returned non-blocking in *read_fd; the caller reaps the child. */
struct proc_spawn_opts {
	int out_fd;        /* the pipe's descriptor number in the child (>= 1) */
	int64_t memory_mb; /* RLIMIT_AS; 0: none */
	int cpu_s;         /* RLIMIT_CPU; 0: none */
	int nice;          /* the child's niceness (0-19), if above the parent's */
};

int proc_spawn(const char *exe, char *const argv[], const struct proc_spawn_opts *o, pid_t *pid,
               int *read_fd);

/* proc_spawn, then collects up to n_out - 1 bytes of the report pipe into out
 * (NUL-terminated) until it closes, killing the group after timeout_ms. *status gets the
 * waitpid status. Returns 0, SFA_ETIMEOUT or SFA_EIO. Thread-safe. */
int proc_capture(const char *exe, char *const argv[], const struct proc_spawn_opts *o,
                 int timeout_ms, char *out, size_t n_out, int *status);

#endif
