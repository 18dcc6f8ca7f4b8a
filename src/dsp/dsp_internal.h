/* dsp_internal.h - the analysis engine's kernels, shared by its files and its unit tests.
 *
 * Nothing here is part of the public API (that is dsp.h). Each kernel reproduces one step
 * of librosa 0.10.2 at its defaults, at the level of detail that makes the float32 results
 * match librosa's within the tolerances of the reference data: where librosa rounds an
 * intermediate to float32 we do too, and where it works in float64 so do we, when that is
 * cheap. The comments name the librosa/numpy function each kernel stands for.
 *
 * Layout conventions: per-frame matrices are frame-major ([t * n_rows + row]) while they
 * are being built, because every kernel walks frame by frame; dsp_result stores the
 * finished mfcc/chroma row-major by coefficient ([row * n_frames + t]) like librosa.
 *
 * Threading: every function is reentrant. dsp_fft_plans() creates the process-wide FFTW
 * plans once under a mutex; executing a plan on caller-owned buffers is thread-safe.
 */
#ifndef SFA_DSP_DSP_INTERNAL_H
#define SFA_DSP_DSP_INTERNAL_H

#include <fftw3.h>
#include <stddef.h>
#include <stdint.h>

enum {
	DSP_SR_HZ = 22050,
	DSP_N_FFT = 2048,
	DSP_HOP = 512,
	DSP_N_BINS = DSP_N_FFT / 2 + 1, /* 1025 */
	DSP_N_MELS = 128,
	DSP_N_MFCC = 13,
	DSP_DCT_STRIDE = 16, /* the DCT basis's coefficients per band: 13, zero-padded to vectors */
	DSP_N_CHROMA = 12,
	DSP_TG_WIN = 344, /* floor(8 s * 22050 / 512): tempogram window, in frames */
	DSP_ACF_N = 768,  /* FFT length for one tempogram frame: >= 2 * 344 - 1 */
	DSP_MIN_LAG = 9,  /* first lag whose bpm is below 320 */
	DSP_PIP_LO = 14,  /* first bin at or above 150 Hz */
	DSP_PIP_HI = 371, /* last bin below 4000 Hz */
	DSP_TUNING_BINS = 100,
};

/* frames per second of the analysis: 22050 / 512 */
#define DSP_FPS (43.06640625)

/* ---- fft.c ---------------------------------------------------------------------- */
struct dsp_plans {
	fftwf_plan stft;    /* r2c, 2048 */
	fftwf_plan acf_fwd; /* r2c, DSP_ACF_N */
	fftwf_plan acf_inv; /* c2r, DSP_ACF_N */
};
/* Returns the process-wide plans, creating them on first use; they live until exit
 * (nothing to free). Buffers passed to
 * fftwf_execute_dft_* with them must come from fftwf_malloc (SIMD alignment). */
int dsp_fft_plans(const struct dsp_plans **out, char *err, size_t n_err);

/* ---- numeric helpers (frames.c) ------------------------------------------------------ */
/* numpy's pairwise summation of float32 (np.sum / np.mean of a contiguous float32 run). */
float dsp_sum_pairwise_f32(const float *a, size_t n);
/* numpy's float32 np.std(x, ddof=1). 0 for n < 2. */
float dsp_std_ddof1_f32(const float *x, size_t n);
/* Wirth's selection with a median-of-three pivot, then numpy's np.median on top of it
 * (the average of the two middle values for even n, in the element's own precision), for
 * element type T ordered by KEY(x): defines `static R NAME(T *a, size_t n)`, R being the
 * type of KEY(x), which reorders a and returns its median (0 for n = 0). One definition
 * for every median the engine takes (onsets in float, beat thresholds in double, tuning
 * peaks by magnitude), so they all pick the same element for the same data.
 * Selection moves the k-th smallest element to a[k] with no larger element before it, so
 * the lower middle of an even run is the largest of a[0..k). */
#define DSP_DEFINE_MEDIAN(NAME, T, KEY)                                                          \
	static void NAME##_select(T *a, ptrdiff_t n, ptrdiff_t k)                                \
	{                                                                                        \
		ptrdiff_t lo = 0, hi = n - 1;                                                    \
		while (lo < hi) {                                                                \
			__typeof__(KEY(a[0])) x = KEY(a[lo]), y = KEY(a[lo + (hi - lo) / 2]),    \
					      z = KEY(a[hi]);                                    \
			__typeof__(KEY(a[0])) pivot = (x < y) ? ((y < z) ? y : (x < z ? z : x))  \
			                                      : ((x < z) ? x : (y < z ? z : y)); \
			ptrdiff_t i = lo, j = hi;                                                \
			do {                                                                     \
				while (KEY(a[i]) < pivot)                                        \
					i++;                                                     \
				while (pivot < KEY(a[j]))                                        \
					j--;                                                     \
				if (i <= j) {                                                    \
					T tmp = a[i];                                            \
					a[i] = a[j];                                             \
					a[j] = tmp;                                              \
					i++;                                                     \
					j--;                                                     \
				}                                                                \
			} while (i <= j);                                                        \
			if (j < k)                                                               \
				lo = i;                                                          \
			if (k < i)                                                               \
				hi = j;                                                          \
		}                                                                                \
	}                                                                                        \
	static __typeof__(KEY(*(T *)0)) NAME(T *a, size_t n)                                     \
	{                                                                                        \
		typedef __typeof__(KEY(a[0])) median_t;                                          \
		if (n == 0)                                                                      \
			return (median_t)0;                                                      \
		size_t k = n / 2;                                                                \
		NAME##_select(a, (ptrdiff_t)n, (ptrdiff_t)k);                                    \
		median_t mid = KEY(a[k]);                                                        \
		if (n % 2)                                                                       \
			return mid;                                                              \
		median_t lower = KEY(a[0]);                                                      \
		for (size_t i = 1; i < k; i++)                                                   \
			if (KEY(a[i]) > lower)                                                   \
				lower = KEY(a[i]);                                               \
		return (lower + mid) / (median_t)2;                                              \
	}
#define DSP_SELF(x) (x)

/* numpy's float32 np.median: average of the two middle values for even n. Reorders a. */
float dsp_median_f32(float *a, size_t n);
/* Periodic Hann window, scipy.signal.get_window('hann', n) in double. */
void dsp_hann_periodic(double *w, size_t n);

/* ---- frames.c: STFT and per-frame features -------------------------------------------- */
static inline size_t dsp_n_frames(size_t n_samples) { return 1 + n_samples / DSP_HOP; }

/* Copies frame t of the signal, zero-padded by n_fft/2 on both sides (librosa center=True),
 * into frame[2048]. */
void dsp_frame_copy(const float *x, size_t n, size_t t, float *frame);

struct dsp_stft {
	const struct dsp_plans *plans;
	float window[DSP_N_FFT];
	float *in;           /* fftwf_malloc, 2048 */
	fftwf_complex *spec; /* fftwf_malloc, 1025 */
};
int dsp_stft_init(struct dsp_stft *s, char *err, size_t n_err);
void dsp_stft_free(struct dsp_stft *s);
/* Magnitude |X| (float32, as np.abs of complex64) and power |X|^2 of frame t. */
void dsp_stft_frame(struct dsp_stft *s, const float *x, size_t n, size_t t, float *mag, float *pow);

/* librosa.feature.rms of frame t (constant padding). */
float dsp_rms_frame(const float *x, size_t n, size_t t);
/* librosa.feature.zero_crossing_rate of frame t (edge padding, threshold 1e-10). */
float dsp_zcr_frame(const float *x, size_t n, size_t t);
/* Bin centre frequencies, np.fft.rfftfreq(2048, 1/22050). */
void dsp_fft_freqs(double *f);
/* spectral_centroid / spectral_rolloff(0.85) of one magnitude frame. */
double dsp_centroid_frame(const float *mag, const double *freqs);
double dsp_rolloff_frame(const float *mag, const double *freqs);

/* ---- mel.c -------------------------------------------------------------------------- */
/* Sparse Slaney mel filterbank: band m covers bins lo[m] .. lo[m] + len[m] - 1. */
struct dsp_melbank {
	uint16_t lo[DSP_N_MELS];
	uint16_t len[DSP_N_MELS];
	uint32_t off[DSP_N_MELS]; /* offset of band m's weights in w */
	float w[4 * DSP_N_BINS];  /* nonzero weights, band after band */
	size_t n_w;
};
/* librosa.filters.mel(sr=22050, n_fft=2048, n_mels=128), float32 like librosa. */
void dsp_melbank_init(struct dsp_melbank *mb);
/* Dense copy of the filterbank, for tests: dense[m * 1025 + k]. */
void dsp_melbank_dense(const struct dsp_melbank *mb, float *dense);
/* mel power of one power frame, then 10*log10(max(1e-10, x)) (float32), not clamped. */
void dsp_mel_db_frame(const struct dsp_melbank *mb, const float *pow, float *db);
/* Orthonormal DCT-II basis, 13 x 128, stored band by band: basis[band * DSP_DCT_STRIDE +
 * coefficient], DSP_DCT_STRIDE * 128 doubles, the padding zero. */
void dsp_dct_init(double *basis);
/* One MFCC frame from one clamped dB frame. */
void dsp_mfcc_frame(const double *basis, const float *db, float *mfcc);

/* ---- chroma.c ----------------------------------------------------------------------- */
/* Peak collection for estimate_tuning (librosa.piptrack on the power spectrum). */
struct dsp_peak {
	float mag;   /* interpolated peak magnitude */
	uint8_t bin; /* tuning-histogram bin of its pitch, 0 .. 99 */
};
struct dsp_peaks {
	struct dsp_peak *p;
	size_t n, cap; /* cap: fixed at init; see dsp_peaks_cap() */
};
/* Upper bound on the peaks of n_frames frames: one per two bins in 150..4000 Hz. */
size_t dsp_peaks_cap(size_t n_frames);
/* Appends the peaks of one power frame. Never exceeds cap (the bound is exact). */
void dsp_peaks_frame(struct dsp_peaks *pk, const float *pow);
/* estimate_tuning from the collected peaks; reorders them. Result in fractions of a
 * chroma bin, a left histogram edge (-0.5, -0.49, ..., 0.49). */
double dsp_tuning_from_peaks(struct dsp_peaks *pk);
/* librosa.filters.chroma(sr=22050, n_fft=2048, tuning=tuning) transposed: fb[k * 12 + c]. */
void dsp_chroma_fb(double tuning, float *fb);
/* One chroma frame (12 values, each divided by the frame's max). */
void dsp_chroma_frame(const float *fb, const float *pow, float *chroma);

/* ---- onset.c ------------------------------------------------------------------------ */
/* Onset strength with median aggregation from the clamped mel dB matrix db[t * 128 + m].
 * env gets n_frames values. scratch: 128 floats. */
void dsp_onset_env(const float *db, size_t n_frames, float *env, float *scratch);

/* ---- tempo.c ------------------------------------------------------------------------ */
/* Mean autocorrelation tempogram (librosa.feature.tempogram, win 344, then np.mean over
 * time) in tg[344]. work: fftwf_malloc'ed buffers from dsp_tempogram_work_*. */
struct dsp_tg_work {
	float *frame;        /* DSP_ACF_N */
	fftwf_complex *spec; /* DSP_ACF_N / 2 + 1 */
	float *acf;          /* DSP_ACF_N */
	double window[DSP_TG_WIN];
};
int dsp_tg_work_init(struct dsp_tg_work *w, char *err, size_t n_err);
void dsp_tg_work_free(struct dsp_tg_work *w);
void dsp_tempogram_mean(struct dsp_tg_work *w, const float *env, size_t n_frames, double *tg);
/* bpm of a lag in frames. */
double dsp_lag_bpm(int lag);
/* librosa's tempo: the lag maximising log1p(1e6 tg) + log-normal prior (120 BPM, 1 oct). */
int dsp_tempo_lag(const double *tg);
/* Octave correction, see tempo.c. The kick-aware envelope: mean over bands of the rise of
 * log1p(1000 * mel power / file max), from the clamped dB matrix (same frame alignment as
 * dsp_onset_env). */
void dsp_flux_env(const float *db, size_t n_frames, float db_max, float *flux);
/* Normalised autocorrelation of the mean-removed envelope at a fractional lag. */
double dsp_acf_at(const float *env, size_t n, double lag);
/* 1 when librosa's lag is two beats and the tempo must be doubled. */
int dsp_tempo_should_double(const float *med, const float *flux, size_t n_frames, int lag);
/* lag refined by a parabola through tg[lag - 1 .. lag + 1] (lag itself if not a peak). */
double dsp_refine_lag(const double *tg, int lag);
/* The beat period (frames) that best fits the tracked beats: each beat gets the index its
 * distance from the previous one implies at the estimated period (a missed beat skips one;
 * a beat more than an eighth of a beat off the grid is left out), and a least-squares line through
 * (index, frame) gives the slope. The frame grid limits each beat to +-half a frame, but
 * the slope over many beats is far finer than the tempogram's lag grid. Returns period
 * unchanged when the beats do not fit one steady tempo (fewer than 8 on the grid, more than
 * a fifth off it, or a slope more than 3 % away). */
double dsp_refine_period_from_beats(const int *beats, size_t n, double period);
/* The reported beat period (frames), as precise as DJ software shows it. Each tracked beat
 * moves to where the onset envelope env (T frames) peaks within a sixth of a beat, to a
 * fraction of a frame; the beats are cut into stretches wherever a step is more than 1.5
 * frames off a whole number of beats (the tracker's slips: a fill it followed, a phase it
 * lost and found again half a beat away), and one least-squares slope is fitted through
 * all stretches of at least 8 beats, each with its own phase. Returns period unchanged when
 * those stretches hold under four fifths of the beats or the slope is more than 3 % away.
 * (dsp_refine_period_from_beats stays what the metrical level's score was fitted with.) */
double dsp_precise_period(const float *env, size_t T, const int *beats, size_t n, double period);
/* How sure the tempo is, 0..1 (see tempo.c): from the kick-aware envelope flux[n], the beats
 * tracked at the tempo (frames, ascending, as the tracker gives them) and the beat period
 * in frames. 0 when period is not positive. */
double dsp_tempo_confidence(const float *flux, size_t n, const int *beats, size_t nb,
                            double period);
/* The beat period (frames) among p0 and the metrical levels around it that looks most like
 * the beat (see tempo.c). env: librosa's onset envelope, flux: the kick-aware one, hi:
 * the high band's (dsp_band_onsets from DSP_HI_MEL), all [n]; beat_work: dsp_beats_work_bytes(n) bytes;
 * beats: scratch for n beat frames. When another level than p0 wins, its beats (as
 * dsp_beat_track gives them at that period) are copied to out[*n_out]; else out is left. */
double dsp_tempo_choose_period(const float *env, const float *flux, const float *hi, size_t n,
                               double p0, void *beat_work, int *beats, int *out, size_t *n_out);
/* The onset envelope of mel bands [m0, m1) of the T frames of db into out[T]: their mean
 * positive dB rise, aligned like librosa's envelope (frame t compares frames t-2 and t-3).
 * The high band, DSP_HI_MEL up (about 5 kHz: hats and cymbals), is the tempo's. */
enum { DSP_HI_MEL = 96 };
void dsp_band_onsets(const float *db, size_t T, int m0, int m1, float *out);
/* The same onsets in the percussive part of db, for n_bands bands [m0, m1) into env[b]: a
 * band's level above its median over 17 frames (the harmonic part: the horizontal median
 * filter of harmonic/percussive separation, the edges repeating the first and last frame)
 * is its percussive level. col: DSP_PERC_LANES * T floats of work. */
enum { DSP_PERC_LANES = 16 };
void dsp_percussive_onsets(const float *db, size_t T, const int bands[][2], int n_bands, float *col,
                           float *const env[]);
/* The largest value of env[n] in frames t0..t1 (clipped to the envelope), at least 0. */
double dsp_env_peak(const float *env, size_t n, long t0, long t1);

/* ---- beats.c ------------------------------------------------------------------------ */
/* librosa's Ellis DP beat tracker at bpm on onset envelope env; writes beat frames to
 * beats (capacity n_frames) and returns their count (0 for an all-zero envelope or a bpm
 * outside 1..4 * 344 frames per beat). work: dsp_beats_work_bytes(n_frames) bytes,
 * 8-byte aligned. */
size_t dsp_beats_work_bytes(size_t n_frames);
size_t dsp_beat_track(const float *env, size_t n_frames, double bpm, void *work, int *beats);

/* ---- key.c -------------------------------------------------------------------------- */
/* Krumhansl-Kessler correlations of a mean chroma (C..B) with the 24 rotated profiles:
 * scores[2 * pc + minor]. Returns the best index, or -1 if the correlation is undefined
 * (constant chroma). */
int dsp_key_kk(const double *chroma_mean, double *scores);
/* The key of a chord timeline (n chords in order; see the top of key.c): scores[2 * pc +
 * minor] of every key, higher is better, and *confidence (0.5..1). Returns the best index,
 * or -1 when no chord lasts long enough to vote (no key; *confidence untouched). */
struct dsp_chord; /* dsp.h */
int dsp_key_chords(const struct dsp_chord *c, size_t n, double *scores, double *confidence);
/* The vote of a chord (root 0..11, enum dsp_chord_quality) for the key pc, minor, per second
 * it lasts: its function's weight there (key.c), negative for a chord foreign to the key. */
double dsp_key_chord_weight(int root_pc, int quality, int pc, int minor);
/* The key (2 * pc + minor) that the n key segments s spend longest in, summed over its
 * stretches, with *share its part of their total length; vote when none lasts longer than
 * it (ties too), or when n is 0 (*share 1 then). */
struct dsp_key_segment; /* dsp.h */
int dsp_key_longest(const struct dsp_key_segment *s, size_t n, int vote, double *share);
/* Camelot code ("8A") of pitch class pc and mode into out[4]. */
void dsp_camelot(int pc, int minor, char *out);

/* ---- structure.c: downbeats and sections ------------------------------------------- */
struct dsp_section; /* dsp.h */
/* Floats of work dsp_downbeats needs for n_beats beats of T frames. */
size_t dsp_downbeats_work_floats(size_t n_beats, size_t T);
/* The beats' phase and the bars (see structure.c): moves the *n_beats beats, stretch by
 * stretch, by part of a beat where their off-beats look more like beats (beats that then
 * collide are dropped, so *n_beats may shrink), then writes the frames of the beats that
 * start bars into down (at most *n_beats) and the beats per bar (4 or 3, the meter of most
 * beats). db: the clamped mel dB matrix, frame-major. 0 when there are too few beats
 * (fewer than 8), the beats untouched. */
size_t dsp_downbeats(const float *db, size_t T, int *beats, size_t *n_beats, float *work,
                     int *beats_per_bar, int *down);
/* The tracker leaves out a quiet start (an intro without drums); DJ software runs the grid
 * from the start. Adds beats before the first at the median of its first 8 intervals, back
 * to the first frame with sound (a mel band within 50 dB of db_max, the loudest before the
 * clamp), as long as *n_beats stays within cap; returns how many. Needs 9 beats. */
size_t dsp_beats_from_start(const float *db, size_t T, float db_max, int *beats, size_t *n_beats,
                            size_t cap);
/* The median length of the first bars (down: their first frames), in frames. */
double dsp_median_bar_frames(const int *down, size_t nd);
size_t dsp_sections_work_floats(size_t n_downbeats);
/* Most sections dsp_sections can write for n_downbeats bars. */
size_t dsp_sections_cap(size_t n_downbeats);
/* The song's sections from its bars (down: their first frames), into out (at most
 * dsp_sections_cap): labelled by level; see structure.c. 0 when it has too few bars. */
size_t dsp_sections(const float *db, const float *rms, size_t T, const int *down, size_t nd,
                    float *work, struct dsp_section *out);

/* ---- chords.c: the chord timeline ------------------------------------------------ */
struct dsp_chord; /* dsp.h */
/* Most segments dsp_chords writes for T frames and nb beats, and the work it needs. */
size_t dsp_chords_cap(size_t T, size_t nb);
size_t dsp_chords_work_bytes(size_t T, size_t nb);
/* The chord segments of a song of T frames from its bass and mid signals (below), its
 * tuning, its per-frame RMS (NULL: no silence test), its beats (nb may be 0) and its key
 * (2 * pc + minor, or -1 for none; see chords.c), into out; they cover 0 .. duration_s.
 * work: dsp_chords_work_bytes, 8-byte aligned. notes_ready: work holds the notes of a call
 * on the same signals, tuning, T and beats (the chords' second reading), not taken again. */
size_t dsp_chords(const float *low, size_t n_low, const float *mid, size_t n_mid, double tuning,
                  const float *rms, size_t T, double duration_s, const int *beats, size_t nb,
                  int key, int notes_ready, void *work, struct dsp_chord *out);
/* The bass signal: x (22050 Hz) low-passed and decimated by 16, dsp_bass_signal_len(n)
 * samples; the mid signal the same, decimated by 4. */
size_t dsp_bass_signal_len(size_t n);
void dsp_bass_signal(const float *x, size_t n, float *low);
size_t dsp_mid_signal_len(size_t n);
void dsp_mid_signal(const float *x, size_t n, float *mid);
/* The keys of the song's stretches (see chords.c), from its chord timeline (chords, n_chords
 * as dsp_chords gave them) or, with none, from the chroma, favouring the song's key home
 * (2 * pc + minor, or -1); into out (at most dsp_chords_cap); 0 when the song has no key.
 * work: dsp_key_changes_work_bytes. */
struct dsp_key_segment; /* dsp.h */
size_t dsp_key_changes_work_bytes(size_t T, size_t nb);
size_t dsp_key_changes(const float *chroma, size_t T, double duration_s, const int *beats,
                       size_t nb, const struct dsp_chord *chords, size_t n_chords, int home,
                       void *work, struct dsp_key_segment *out);

/* ---- loudness.c: the meter, fed the file's own samples by a decoder ------------------------ */
struct audio_stream_info;
struct dsp_loudness;
struct dsp_meter;
/* A meter reading the rate and channels from info (the decoder's, filled before each sink
 * call). NULL when out of memory. */
struct dsp_meter *dsp_meter_new(const struct audio_stream_info *info);
/* An audio_sink_fn: measures n frames of the file's own channels. */
int dsp_meter_sink(void *meter, const float *const *planes, size_t n);
/* Writes the loudness of everything measured and frees the meter. */
int dsp_meter_finish(struct dsp_meter *m, struct dsp_loudness *out, char *err, size_t n_err);
void dsp_meter_free(struct dsp_meter *m);

#endif
