/* fft.c - the process-wide FFTW plans of the analysis engine.
 *
 * FFTW's planner is not thread-safe, its executor is: fftwf_execute_dft_r2c() and friends
 * may run concurrently on different buffers with one plan. So the engine plans exactly
 * once per process, under a mutex, and every analysis executes those plans on its own
 * fftwf_malloc'ed buffers (the new-array execute functions require the alignment the plan
 * was made with, which fftwf_malloc guarantees).
 *
 * Plans use FFTW_ESTIMATE: FFTW_MEASURE would pick algorithms by timing, so two runs (or
 * two machines) could round differently, and the tests compare results to the last bit
 * where librosa's output is discrete (tempo, beats, tuning).
 */
#include "dsp/dsp_internal.h"

#include <pthread.h>

#include "util/err.h"

static pthread_mutex_t g_plan_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dsp_plans g_plans;
static int g_ready; /* written under g_plan_lock */

int dsp_fft_plans(const struct dsp_plans **out, char *err, size_t n_err)
{
	int rc = 0;
	pthread_mutex_lock(&g_plan_lock);
	if (!g_ready) {
		float *r = fftwf_malloc(sizeof(float) * DSP_N_FFT);
		fftwf_complex *c = fftwf_malloc(sizeof(fftwf_complex) * DSP_N_BINS);
		if (!r || !c) {
			rc = sfa_err(err, n_err, SFA_ENOMEM, "Out of memory while planning FFTs.");
		} else {
			g_plans.stft = fftwf_plan_dft_r2c_1d(DSP_N_FFT, r, c, FFTW_ESTIMATE);
			g_plans.acf_fwd = fftwf_plan_dft_r2c_1d(DSP_ACF_N, r, c, FFTW_ESTIMATE);
			g_plans.acf_inv = fftwf_plan_dft_c2r_1d(DSP_ACF_N, c, r, FFTW_ESTIMATE);
			if (!g_plans.stft || !g_plans.acf_fwd || !g_plans.acf_inv)
				rc = sfa_err(err, n_err, SFA_EUNSUPP,
				             "FFTW could not plan the transforms.");
			else
				g_ready = 1;
		}
		fftwf_free(r);
		fftwf_free(c);
	}
	pthread_mutex_unlock(&g_plan_lock);
	if (rc == 0)
		*out = &g_plans;
	return rc;
}
