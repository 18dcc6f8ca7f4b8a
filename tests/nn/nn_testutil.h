/* nn_testutil.h - what the Demucs numerics suites share: reading reference files from the
 * fixtures folder, opening models, separating, and comparing against PyTorch's output with
 * the tolerances (max |diff| <= 1e-4, relative L2 <= 1e-5). Failures end the
 * current cmocka test with a message naming the file or the figures. */
#ifndef SFA_TESTS_NN_TESTUTIL_H
#define SFA_TESTS_NN_TESTUTIL_H

#include <stddef.h>

#include "nn/nn.h"

extern const char *nn_test_fixtures; /* set by main from argv[1] */

/* The file fixtures/name, malloced (caller frees); *n_bytes its size. */
void *nn_test_read(const char *name, size_t *n_bytes);
/* The float32 file fixtures/name, malloced (caller frees); *n its number of floats. */
float *nn_test_read_f32(const char *name, size_t *n);
struct nn_model *nn_test_open_model(const char *name);
float *nn_test_separate(const struct nn_model *m, const float *in, size_t frames,
                        const struct nn_separate_opts *o);
/* Max |a - ref| and ||a - ref|| / ||ref||. */
void nn_test_diff(const float *a, const float *ref, size_t n, double *max_abs, double *rel_l2);
/* Separates fixtures/input with model (shifts 0) and checks it against fixtures/ref. */
void nn_test_run_case(const char *model, const char *input, int split, const char *ref);

#endif
