/* rawf32.h - the reference-data format of bench/separate: raw float32 samples, planar.
 * Threading: none kept; any thread. */
#ifndef SFA_BENCH_RAWF32_H
#define SFA_BENCH_RAWF32_H

#include <stddef.h>

/* The whole file as floats (*n of them): a malloced array the caller frees, or NULL when
 * it cannot be opened or read. */
float *raw_f32_read(const char *path, size_t *n);

#endif
