/* err.h - error codes shared by every module.
 *
 * Fallible functions return int: 0 on success, a negative SFA_E* code on failure, and
 * write a sentence a user can act on into a caller-supplied buffer (char *err, size_t
 * n_err; err may be NULL). Out-parameters are written only on success. Modules never
 * map these to HTTP statuses: that happens in src/api/ only.
 *
 *
 * Threading: constants and sfa_err, which writes only the caller's buffer.
 */
#ifndef SFA_UTIL_ERR_H
#define SFA_UTIL_ERR_H

#include <stddef.h>

enum {
	SFA_OK = 0,
	SFA_EINVAL = -1,     /* bad input: parse error, out of range, wrong type */
	SFA_ENOMEM = -2,     /* allocation failed */
	SFA_EIO = -3,        /* file or socket error */
	SFA_ENOTFOUND = -4,  /* no such row, file or key */
	SFA_ECONFLICT = -5,  /* unique constraint, state conflict */
	SFA_ETOOBIG = -6,    /* a size cap was hit */
	SFA_EFORMAT = -7,    /* foreign or corrupt file format */
	SFA_EUNSUPP = -8,    /* valid but not supported by this build */
	SFA_EDB = -9,        /* database failure */
	SFA_EAUTH = -10,     /* credentials rejected */
	SFA_EUPSTREAM = -11, /* an external service failed */
	SFA_ECANCELED = -12, /* cancelled by the user */
	SFA_ETIMEOUT = -13,  /* a deadline passed */
};

/* Writes a printf-style message into err (if err != NULL and n_err > 0) and returns
 * code, so that callers can write `return sfa_err(err, n_err, SFA_EINVAL, "...")`. */
int sfa_err(char *err, size_t n_err, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
