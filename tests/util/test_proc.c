/* Unit tests for src/util/proc.c: argv execution, stdout lines, stderr tail, exec
 * failures, the environment and working directory, and the deadline that kills a whole
 * process group. Uses /bin/sh and coreutils only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/proc.h"
#include "util/timeutil.h"

struct lines {
	int n;
	char text[8][128];
};

static void collect(void *arg, const char *line)
{
	struct lines *l = arg;
	if (l->n < 8)
		snprintf(l->text[l->n], sizeof l->text[0], "%s", line);
	l->n++;
}

static struct proc_result *run(const char *const *argv, struct lines *l, int64_t limit_ms,
                               const char *const *env, const char *cwd)
{
	struct proc_result *r = malloc(sizeof *r);
	assert_non_null(r);
	struct proc_opts o = {.argv = argv,
	                      .on_line = collect,
	                      .arg = l,
	                      .env_add = env,
	                      .cwd = cwd,
	                      .deadline_ms = limit_ms ? time_mono_ms() + limit_ms : 0};
	char err[256];
	assert_int_equal(proc_run(&o, r, err, sizeof err), 0);
	return r;
}

static void lines_exit_code_and_stderr(void **state)
{
	(void)state;
	struct lines l = {0};
	const char *argv[] = {"sh", "-c", "printf 'one\\ntwo\\r\\nthree'; echo oops >&2; exit 3",
	                      NULL};
	struct proc_result *r = run(argv, &l, 0, NULL, NULL);
	assert_false(r->exec_failed);
	assert_false(r->timed_out);
	assert_int_equal(r->exit_code, 3);
	assert_int_equal(l.n, 3);
	assert_string_equal(l.text[0], "one");
	assert_string_equal(l.text[1], "two");
	assert_string_equal(l.text[2], "three"); /* a last line without newline */
	assert_string_equal(r->stderr_tail, "oops\n");
	free(r);
}

static void arguments_are_never_interpreted(void **state)
{
	(void)state;
	struct lines l = {0};
	const char *argv[] = {"printf", "%s\\n", "$(touch /tmp/sfa-proc-pwned) ; * `id`", NULL};
	struct proc_result *r = run(argv, &l, 0, NULL, NULL);
	assert_int_equal(r->exit_code, 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.text[0], "$(touch /tmp/sfa-proc-pwned) ; * `id`");
	assert_int_equal(access("/tmp/sfa-proc-pwned", F_OK), -1);
	free(r);
}

static void exec_failure_is_reported(void **state)
{
	(void)state;
	struct lines l = {0};
	const char *argv[] = {"/nonexistent/program", "x", NULL};
	struct proc_result *r = run(argv, &l, 0, NULL, NULL);
	assert_true(r->exec_failed);
	assert_int_equal(r->exec_errno, ENOENT);
	free(r);
	const char *argv2[] = {"sfa-surely-not-on-path", NULL};
	r = run(argv2, &l, 0, NULL, NULL);
	assert_true(r->exec_failed);
	free(r);
	const char *argv3[] = {"true", NULL};
	r = run(argv3, &l, 0, NULL, "/nonexistent-dir");
	assert_true(r->exec_failed); /* chdir failed: reported like an exec failure */
	assert_int_equal(r->exec_errno, ENOENT);
	free(r);
}

static void environment_and_cwd(void **state)
{
	(void)state;
	struct lines l = {0};
	const char *env[] = {"SFA_PROC_TEST=hello", "HOME=/nowhere", NULL};
	const char *argv[] = {"sh", "-c", "echo \"$SFA_PROC_TEST $HOME\"; pwd", NULL};
	struct proc_result *r = run(argv, &l, 0, env, "/tmp");
	assert_int_equal(r->exit_code, 0);
	assert_string_equal(l.text[0], "hello /nowhere");
	assert_string_equal(l.text[1], "/tmp");
	free(r);
}

static void deadline_kills_the_whole_group(void **state)
{
	(void)state;
	struct lines l = {0};
	/* The shell starts a grandchild and waits: both must die at the deadline. */
	const char *argv[] = {"sh", "-c", "sleep 30 & echo $!; wait", NULL};
	int64_t t0 = time_mono_ms();
	struct proc_result *r = run(argv, &l, 300, NULL, NULL);
	int64_t took = time_mono_ms() - t0;
	assert_true(r->timed_out);
	assert_int_equal(r->term_signal, SIGKILL);
	assert_true(took < 5000);
	assert_int_equal(l.n, 1);
	pid_t grandchild = (pid_t)strtol(l.text[0], NULL, 10);
	assert_true(grandchild > 0);
	/* Gone, or at most a zombie waiting for init to reap it. */
	bool dead = false;
	for (int i = 0; i < 100 && !dead; i++) {
		char path[64], st[512];
		snprintf(path, sizeof path, "/proc/%d/stat", (int)grandchild);
		FILE *f = fopen(path, "r");
		if (!f) {
			dead = true;
			break;
		}
		size_t n = fread(st, 1, sizeof st - 1, f);
		fclose(f);
		st[n] = '\0';
		char *close = strrchr(st, ')');
		dead = close && close[1] == ' ' && (close[2] == 'Z' || close[2] == 'X');
		if (!dead)
			usleep(20000);
	}
	assert_true(dead);
	free(r);
}

static void caps_on_lines_and_stderr(void **state)
{
	(void)state;
	struct lines l = {0};
	/* A 70000-byte line is dropped whole; 100 KB of stderr keeps its last 16 KiB. */
	const char *argv[] = {"sh", "-c",
	                      "head -c 70000 /dev/zero | tr '\\0' x; echo; echo after; "
	                      "head -c 100000 /dev/zero | tr '\\0' y >&2; echo END >&2",
	                      NULL};
	struct proc_result *r = run(argv, &l, 0, NULL, NULL);
	assert_int_equal(r->exit_code, 0);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.text[0], "after");
	assert_int_equal(strlen(r->stderr_tail), PROC_STDERR_MAX_BYTES);
	size_t n = strlen(r->stderr_tail);
	assert_string_equal(r->stderr_tail + n - 4, "END\n");
	free(r);
}

static void finding_programs(void **state)
{
	(void)state;
	char path[4096];
	assert_true(proc_find_program("sh", path, sizeof path));
	assert_true(path[0] == '/');
	assert_true(proc_find_program("/bin/sh", NULL, 0));
	assert_false(proc_find_program("sfa-surely-not-on-path", NULL, 0));
	assert_false(proc_find_program("/etc/passwd", NULL, 0)); /* not executable */
	assert_false(proc_find_program("/tmp", NULL, 0));        /* a directory */
	assert_false(proc_find_program("", NULL, 0));
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(lines_exit_code_and_stderr),
		cmocka_unit_test(arguments_are_never_interpreted),
		cmocka_unit_test(exec_failure_is_reported),
		cmocka_unit_test(environment_and_cwd),
		cmocka_unit_test(deadline_kills_the_whole_group),
		cmocka_unit_test(caps_on_lines_and_stderr),
		cmocka_unit_test(finding_programs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
