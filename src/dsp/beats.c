/* beats.c - librosa's dynamic-programming beat tracker (Ellis 2007), tightness 100,
 * trim=True, reproduced step by step from librosa 0.10.2's numba kernels.
 *
 * 1. The onset envelope is divided by its float32 std (ddof=1) plus float32 tiny.
 * 2. Local score: a same-mode convolution with a Gaussian of +-fpb frames (fpb = frames per
 *    beat = round(60 * fps / bpm)), accumulated in float64 in librosa's loop order.
 * 3. DP: for frame i, the best predecessor loc in [i - 2 fpb, i - round(fpb / 2)] (numpy
 *    rounding: half to even) maximises cum[loc] - 100 (ln(i - loc) - ln fpb)^2; the first
 *    frames whose local score is under 1 % of its maximum get no back-link. The penalty
 *    depends only on i - loc, so it is tabulated once: the DP is O(T * fpb) additions.
 * 4. The last beat is the last local maximum of the cumulative score that reaches half the
 *    median of the cumulative score at its local maxima; backtrack from it.
 * 5. Trim: threshold = 0.5 * RMS of convolve(localscore[beats], hanning(5))[2 : T + 2]
 *    (librosa slices with the envelope length T, not the number of beats); frames from the
 *    start, and from the end, whose local score is at or under it lose their beats.
 *
 * Everything after step 1 runs in double, like librosa. The work area is sized once by
 * dsp_beats_work_bytes(); nothing is allocated here.
 */
#include "dsp/dsp_internal.h"

#include <math.h>
#include <string.h>

enum { MAX_FPB = 4 * DSP_TG_WIN };

size_t dsp_beats_work_bytes(size_t n_frames)
{
	/* localscore, cumscore, median scratch (double); onset (float); backlink, flags (int);
	 * window and penalty tables */
	return n_frames * (3 * sizeof(double) + sizeof(float) + 2 * sizeof(int)) +
	       2 * (2 * MAX_FPB + 2) * sizeof(double) + 64;
}

/* np.median of doubles. Reorders a. */
DSP_DEFINE_MEDIAN(median_f64, double, DSP_SELF)

size_t dsp_beat_track(const float *env, size_t n_frames, double bpm, void *work, int *beats)
{
	size_t N = n_frames;
	if (N < 2 || !(bpm > 0.0))
		return 0;
	int any = 0;
	for (size_t i = 0; i < N; i++)
		any |= env[i] != 0.0f;
	if (!any)
		return 0;
	double fpb = nearbyint(DSP_FPS * 60.0 / bpm);
	if (fpb < 1.0 || fpb > MAX_FPB)
		return 0;
	long ifpb = (long)fpb;

	unsigned char *wp = work;
	double *local = (double *)wp;
	double *cum = local + N;
	double *scratch = cum + N;
	double *window = scratch + N;
	double *penalty = window + 2 * MAX_FPB + 2;
	float *onset = (float *)(penalty + 2 * MAX_FPB + 2);
	int *backlink = (int *)(onset + N);
	int *flag = backlink + N;

	/* 1 */
	float norm = dsp_std_ddof1_f32(env, N) + 1.17549435e-38f;
	for (size_t i = 0; i < N; i++)
		onset[i] = env[i] / norm;

	/* 2 */
	long K = 2 * ifpb + 1;
	for (long k = 0; k < K; k++) {
		double x = ((double)(k - ifpb) * 32.0) / fpb;
		window[k] = exp(-0.5 * (x * x));
	}
	long half = K / 2;
	double lmax = -INFINITY;
	for (long i = 0; i < (long)N; i++) {
		long k0 = i + half - (long)N + 1, k1 = i + half + 1;
		if (k0 < 0)
			k0 = 0;
		if (k1 > K)
			k1 = K;
		double acc = 0.0;
		for (long k = k0; k < k1; k++)
			acc += window[k] * (double)onset[i + half - k];
		local[i] = acc;
		if (acc > lmax)
			lmax = acc;
	}

	/* 3 */
	long dmin = (long)nearbyint(fpb / 2.0), dmax = 2 * ifpb;
	for (long d = dmin; d <= dmax; d++) {
		double v = log((double)d) - log(fpb);
		penalty[d] = 100.0 * (v * v);
	}
	double thresh = 0.01 * lmax;
	int first_beat = 1;
	for (long i = 0; i < (long)N; i++) {
		double best = -INFINITY;
		long best_loc = -1;
		for (long loc = i - dmin; loc > i - dmax - 1; loc--) {
			if (loc < 0)
				break;
			double s = cum[loc] - penalty[i - loc];
			if (s > best) {
				best = s;
				best_loc = loc;
			}
		}
		cum[i] = best_loc >= 0 ? local[i] + best : local[i];
		if (first_beat && local[i] < thresh) {
			backlink[i] = -1;
		} else {
			backlink[i] = (int)best_loc;
			first_beat = 0;
		}
	}

	/* 4: util.localmax with edge padding */
	size_t n_max = 0;
	for (size_t i = 0; i < N; i++) {
		double prev = cum[i > 0 ? i - 1 : 0], next = cum[i + 1 < N ? i + 1 : i];
		flag[i] = cum[i] > prev && cum[i] >= next;
		if (flag[i])
			scratch[n_max++] = cum[i];
	}
	long tail = (long)N - 1;
	if (n_max > 0) {
		double thr = 0.5 * median_f64(scratch, n_max);
		for (long i = (long)N - 1; i >= 0; i--) {
			if (flag[i] && cum[i] >= thr) {
				tail = i;
				break;
			}
		}
	}
	memset(flag, 0, sizeof(int) * N);
	for (long n = tail; n >= 0; n = backlink[n])
		flag[n] = 1;

	/* 5 */
	size_t nb = 0;
	for (size_t i = 0; i < N; i++)
		if (flag[i])
			scratch[nb++] = local[i];
	/* full convolution with hanning(5) = [0, .5, 1, .5, 0], elements [2, min(N+2, nb+4)) */
	static const double HW[5] = {0.0, 0.5, 1.0, 0.5, 0.0};
	size_t j_end = nb + 4 < N + 2 ? nb + 4 : N + 2;
	double ss = 0.0;
	size_t n_sm = 0;
	for (size_t j = 2; j < j_end; j++) {
		double acc = 0.0;
		for (size_t q = 0; q < 5; q++) {
			if (j < q || j - q >= nb)
				continue;
			acc += scratch[j - q] * HW[q];
		}
		ss += acc * acc;
		n_sm++;
	}
	double trim = n_sm ? 0.5 * sqrt(ss / (double)n_sm) : 0.0;
	for (size_t n = 0; n < N && local[n] <= trim; n++)
		flag[n] = 0;
	for (long n = (long)N - 1; n >= 0 && local[n] <= trim; n--)
		flag[n] = 0;

	size_t count = 0;
	for (size_t i = 0; i < N; i++)
		if (flag[i])
			beats[count++] = (int)i;
	return count;
}
