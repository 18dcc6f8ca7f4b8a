/* fake_server.h - starting and stopping the Python fakes of tests/fakes/ from C tests.
 *
 * The fake prints its port on its first stdout line; it exits when its stdin closes, so it
 * never outlives a crashed test. */
#ifndef SFA_TESTS_FAKE_SERVER_H
#define SFA_TESTS_FAKE_SERVER_H

#include <stddef.h>
#include <sys/types.h>

/* Runs /usr/bin/python3 script; on success *pid, *stdin_fd and base ("http://127.0.0.1:PORT")
 * are set. `what` names the fake in the failure message. Returns 0 or -1. */
int fake_server_start(const char *script, const char *what, pid_t *pid, int *stdin_fd, char *base,
                      size_t n_base);
void fake_server_stop(pid_t pid, int stdin_fd);

#endif
