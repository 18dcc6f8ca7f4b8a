/* chords.c - a chord timeline: beat-synchronous notes, template matching, HMM smoothing.
 *
 * 1. Segments: one per beat. The beat tracker leaves out quiet starts and ends, so the
 *    beats are extended before the first and after the last at their median interval,
 *    and the first segment starts at frame 0. Without beats (no tempo, or an analysis
 *    without them) the segments are CHORD_NOBEAT_FRAMES long (half a second).
 * 2. Each segment's chroma is that of its notes (below): the magnitude of every note from
 *    F#3 to B5 over the segment, summed by pitch class and divided by the largest.
 * 3. Emission: the Pearson correlation of that vector with each of 60 chord templates
 *    (12 roots x major, minor, dominant seventh, major seventh, minor seventh;
 *    pitch-class masks, 1 on the triad's notes and CHORD_SEVENTH_WEIGHT on the seventh).
 *    Correlation rather than cosine because it ignores a constant added to every pitch
 *    class, which is what drums and noise add to chroma. The light seventh keeps a minor
 *    seventh (A C E G) from reading as its relative major (C E G); the sevenths also pay
 *    CHORD_SEVENTH_COST, so a seventh wins only where its fourth note is clearly there
 *    (a triad's harmonics put some energy on its major seventh: E's third harmonic is B).
 *    The constants were chosen on the first 60 songs of the bench/analysis-accuracy
 *    corpus: majmin 69 % with equal weights, beta 12 and a cost of 0.06; 72.6 % as they
 *    were, where the time read as a seventh was the labelled seventh 45 % of the time (23 %
 *    without the cost, for 73.4 % majmin: majmin does not see a false seventh). With the
 *    notes' chroma the cost is 0.04: on seeds 18-20 of the corpus the time read as a
 *    seventh is the labelled one 72-85 % of the time and reads 40-49 % of the labelled
 *    sevenths' time (the chroma_stft before: 45 % and 27 % on seed 18; with the cost at
 *    0.08, 77 % and 26 %, at 0.02, 67 % and 48 %; at 0.03 the key one song worse on 17).
 *    The no-chord state N scores CHORD_N_SCORE: it wins where no template correlates
 *    better (flat chroma: drums alone, noise), and 1 in silence (a segment more than
 *    CHORD_SILENCE_DB under the song's loudest, or digital silence).
 *    The bass (below): every chord's score gains CHORD_BASS_WEIGHT times the segment's
 *    bass weight times (the bass chroma on its root, plus CHORD_BASS_INV times the larger
 *    on its third or fifth for an inversion, less the bass chroma's mean). The chroma the
 *    templates see is the notes' chroma less CHORD_HARMONIC5 times the note a major third
 *    below each pitch class (a note's fifth harmonic, which makes a minor chord's root
 *    sound its major third). On the first 100 songs of the corpus these took majmin from
 *    76.3 % to 85.0 % (root 79.0 % to 88.2 %) and the key from 87 % to 91 % (with a chroma
 *    from the STFT then): the bass alone 0.2-0.8 gave 80-81 %; the bass weighed by its
 *    level and the pedal test 84.6 %; a weight of 0.8 then 85.3 %; the harmonic 0.1 / 0.2
 *    / 0.3 / 0.4 moved majmin by -0.2..+0.1 and the key from 90 % to 89 / 92 / 92 / 90 %.
 *    Given the song's key (the caller reads the chords once without one, takes their key,
 *    key.c, and reads them again with it), every chord's score gains CHORD_KEY_WEIGHT
 *    times its function's weight in that key (dsp_key_chord_weight: the tonic 1, IV and V
 *    0.6, a foreign chord -0.3): of two chords the chroma shows about as well, the one that
 *    belongs to the key wins. On the first 100 songs of the corpus majmin rose from 74.2 %
 *    to 76.3 % (0.05: 75.3 %, 0.15: 76.1 %), and the key over time from 84.8 % to 86.9 %.
 * 4. An HMM over those 61 states, emissions exp(CHORD_BETA * score), a transition matrix
 *    that stays with probability CHORD_P_SELF and moves to each other state with equal
 *    probability; Viterbi gives the most likely path. With equal off-diagonal
 *    transitions the best predecessor of a state is either itself or the best state of
 *    the previous step, so a step costs O(states), not O(states^2).
 * 5. Runs of one state become chord segments; a segment's confidence is the mean over its
 *    beats of the state's posterior under the emissions alone (a softmax of the scores),
 *    so a clear triad reads near 1 and a segment the smoothing carried reads low.
 *
 * The bass: chroma_stft's 2048-point frames are 10.8 Hz apart, more than the semitones
 * below 180 Hz, so the bass notes that name a chord's root smear over their neighbours
 * there. dsp_bass_signal low-passes the song (three moving means of 16 samples: nulls on
 * the multiples of 1378 Hz, so little folds onto the bass) and keeps every 16th sample;
 * each segment's bass chroma is the power of the notes C2 (65 Hz) to F#3 (185 Hz) at the
 * song's tuning, by Goertzel over the segment (at least BASS_MIN_S, Hann window), summed
 * by pitch class and divided by the largest. Lower notes are left out because a kick
 * drum's tail sits there (a bass under C2 still shows by its octave). The bass counts
 * fully from CHORD_BASS_REL times the song's median bass power up (a segment without bass
 * has no say), and less where its strongest note is the strongest in more than
 * CHORD_PEDAL_SHARE of the 2 * CHORD_PEDAL_WINDOW + 1 segments around it: a pedal note
 * held under changing chords is not their root (the 12 pedal songs of the first 100 read
 * 67.7 % without the bass, 61-63 % with the bass trusted throughout, 74 % with the test).
 *
 * The notes above the bass: chroma_stft's bins are a semitone wide at 185 Hz, and a
 * harmonic-rich sound smears its partials over the neighbouring pitch classes there.
 * dsp_mid_signal low-passes the song the same way (three moving means of 4 samples) and
 * keeps every 4th sample (5513 Hz); each segment's notes F#3 (185 Hz) to B5 (988 Hz) at the
 * song's tuning are taken by Goertzel over the segment (at least MID_MIN_S, Hann window:
 * a main lobe of +-4 Hz over a 0.5 s beat, against 11 Hz between semitones at F#3), their
 * magnitudes (not powers: a chord's quieter notes still count) summed by pitch class.
 * Against half chroma_stft and half a treble chroma of its bins from 183 Hz up (seeds
 * 17-22 of the corpus, 800 songs; 21 and 22 held out while the choice was made): majmin
 * +4.6..+7.9 points on every seed, the key exact on 96.3 / 95 / 91 / 93 / 93 / 92 % against
 * 95.3 / 92 / 90 / 91 / 87 / 93 %. Powers instead of magnitudes gave +0.8 / -0.3 / +1.1
 * majmin and the key -3..0 songs on seeds 18-20; half STFT chroma and half the notes'
 * chroma, -1.1..-0.3 majmin against the notes alone and the key -2..0 songs.
 *
 * Memory: the caller's work buffer (dsp_chords_work_bytes) and output array
 * (dsp_chords_cap); nothing is allocated here. Threading: reentrant.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dsp/dsp.h"
#include "dsp/dsp_internal.h"
#include "util/simd.h"

enum {
	N_QUAL = 5,                 /* maj, min, 7, maj7, m7 */
	N_STATES = N_QUAL * 12 + 1, /* + N, the last */
	STATE_N = N_STATES - 1,
	CHORD_NOBEAT_FRAMES = 22, /* ~0.51 s */
};

#define CHORD_BETA           30.0
#define CHORD_P_SELF         0.9
#define CHORD_SEVENTH_WEIGHT 0.6
#define CHORD_SEVENTH_COST   0.04
#define CHORD_N_SCORE        0.2
#define CHORD_KEY_WEIGHT     0.1
#define CHORD_SILENCE_DB     45.0

#define CHORD_HARMONIC5   0.2
#define CHORD_BASS_WEIGHT 0.8
#define CHORD_BASS_INV    0.3
#define CHORD_BASS_REL    0.5
#define CHORD_PEDAL_SHARE 0.6
enum { CHORD_PEDAL_WINDOW = 8 };

/* the bass: a signal at DSP_SR_HZ / BASS_DECIM (1378 Hz), notes BASS_LO (C2, 65 Hz) to
 * BASS_HI (F#3, 185 Hz), over at least BASS_MIN_S and at most BASS_MAX_LEN samples; the
 * notes above: a signal at DSP_SR_HZ / MID_DECIM (5513 Hz), notes MID_LO (F#3) to MID_HI
 * (B5, 988 Hz), over at least MID_MIN_S and at most MID_MAX_LEN samples. Per segment
 * (SEG_COLS floats): the bass chroma, its power, its weight, then the notes' chroma. */
enum { BASS_DECIM = 16, BASS_LO = 36, BASS_HI = 54, BASS_MAX_LEN = 4096 };
enum { MID_DECIM = 4, MID_LO = 54, MID_HI = 83, MID_MAX_LEN = 8192 };
enum { SEG_POWER = 12, SEG_WEIGHT = 13, SEG_MID = 14, SEG_COLS = SEG_MID + 12 };
enum { BANK_MAX = 32 }; /* notes one Goertzel bank takes */
#define BASS_SR    ((double)DSP_SR_HZ / BASS_DECIM)
#define BASS_MIN_S 0.4
#define MID_SR     ((double)DSP_SR_HZ / MID_DECIM)
#define MID_MIN_S  0.25
_Static_assert(BASS_HI - BASS_LO + 1 <= BANK_MAX && MID_HI - MID_LO + 1 <= BANK_MAX,
               "the notes fit a Goertzel bank");
_Static_assert((int)BASS_MAX_LEN <= (int)MID_MAX_LEN, "the window buffer holds the bass's");
_Static_assert((int)MID_DECIM <= (int)BASS_DECIM, "decimate's rings hold either factor");

static const struct {
	const char *suffix;
	int n;
	int iv[4];
} QUAL[N_QUAL] = {
	{"", 3, {0, 4, 7}},         {"m", 3, {0, 3, 7}},      {"7", 4, {0, 4, 7, 10}},
	{"maj7", 4, {0, 4, 7, 11}}, {"m7", 4, {0, 3, 7, 10}},
};

int dsp_chord_parse(const char *label, int *root_pc, int iv[4])
{
	if (!label)
		return -1;
	if (strcmp(label, "N") == 0)
		return 0;
	for (int pc = 0; pc < 12; pc++) {
		const char *name = dsp_pitch_name(pc);
		size_t len = strlen(name);
		/* "C" must not take "C#m": the sharp names are tried as longer matches first */
		if (strncmp(label, name, len) != 0 || (len == 1 && label[1] == '#'))
			continue;
		for (int q = 0; q < N_QUAL; q++)
			if (strcmp(label + len, QUAL[q].suffix) == 0) {
				*root_pc = pc;
				memcpy(iv, QUAL[q].iv, sizeof QUAL[q].iv);
				return QUAL[q].n;
			}
		return -1;
	}
	return -1;
}

/* Segments for nb beats over T frames: the beats, plus the extension at >= 8 frames a
 * beat (a tempo of at most 320 BPM), or half-second pieces without beats. */
size_t dsp_chords_cap(size_t T, size_t nb) { return nb + T / 8 + T / CHORD_NOBEAT_FRAMES + 4; }

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

size_t dsp_chords_work_bytes(size_t T, size_t nb)
{
	size_t cap = dsp_chords_cap(T, nb);
	return align8(cap * sizeof(int)) +              /* segment starts */
	       align8(cap * N_STATES * sizeof(float)) + /* scores */
	       align8(cap * N_STATES) +                 /* back-pointers */
	       align8((nb + 1) * sizeof(float)) +       /* beat intervals */
	       align8(cap * sizeof(uint8_t)) +          /* the path */
	       align8(cap * SEG_COLS * sizeof(float)) + /* bass and notes, per segment */
	       align8(cap * sizeof(float)) +            /* the bass powers, to sort */
	       align8(MID_MAX_LEN * sizeof(double)) +   /* a windowed segment */
	       64;
}

/* The first frames of the segments into seg (at most dsp_chords_cap); seg[0] is 0. */
static size_t segments(const int *beats, size_t nb, size_t T, float *iv, int *seg)
{
	size_t ns = 0;
	seg[ns++] = 0;
	float P = 0.0f;
	if (nb >= 2) {
		for (size_t i = 0; i + 1 < nb; i++)
			iv[i] = (float)(beats[i + 1] - beats[i]);
		P = dsp_median_f32(iv, nb - 1);
	}
	if (!(P >= 8.0f)) { /* no usable beats: half-second pieces */
		for (size_t t = CHORD_NOBEAT_FRAMES; t + CHORD_NOBEAT_FRAMES / 2 < T;
		     t += CHORD_NOBEAT_FRAMES)
			seg[ns++] = (int)t;
		return ns;
	}
	/* before the first beat, at the median interval; a piece under half a beat joins
	 * the one after it */
	double first = beats[0];
	size_t before = (size_t)floor(first / P);
	for (size_t k = before; k > 0; k--) {
		long f = lround(first - (double)k * P);
		if (f >= (long)(P / 2))
			seg[ns++] = (int)f;
	}
	for (size_t i = 0; i < nb; i++)
		if ((double)beats[i] > seg[ns - 1] + (ns == 1 ? P / 2 : 0.0) &&
		    (size_t)beats[i] < T)
			seg[ns++] = beats[i];
	for (double f = (double)seg[ns - 1] + P; f + P / 2 < (double)T; f += P)
		seg[ns++] = (int)lround(f);
	return ns;
}

/* The most likely state path of an HMM whose states stay with p_self and move to each
 * other state alike, with emissions exp(beta * score): Viterbi in the log domain,
 * delta_s(j) = beta * score_s(j) + max(delta_{s-1}(j) + log p_self,
 *                                      max_k delta_{s-1}(k) + log p_move).
 * score is [ns][n] (n <= VITERBI_MAX_STATES), back [ns][n] scratch, path [ns] the result. */
enum { VITERBI_MAX_STATES = 64 };
static void viterbi(const float *score, size_t ns, int n, double p_self, double beta, uint8_t *back,
                    uint8_t *path)
{
	const double l_self = log(p_self), l_move = log((1.0 - p_self) / (n - 1));
	double delta[VITERBI_MAX_STATES], next[VITERBI_MAX_STATES];
	for (int j = 0; j < n; j++)
		delta[j] = beta * score[j];
	for (size_t s = 1; s < ns; s++) {
		int best = 0;
		for (int j = 1; j < n; j++)
			if (delta[j] > delta[best])
				best = j;
		const float *sc = score + s * (size_t)n;
		for (int j = 0; j < n; j++) {
			double stay = delta[j] + l_self, move = delta[best] + l_move;
			back[s * (size_t)n + (size_t)j] = (uint8_t)(stay >= move ? j : best);
			next[j] = (stay >= move ? stay : move) + beta * sc[j];
		}
		memcpy(delta, next, (size_t)n * sizeof *delta);
	}
	int st = 0;
	for (int j = 1; j < n; j++)
		if (delta[j] > delta[st])
			st = j;
	for (size_t s = ns; s-- > 0;) {
		path[s] = (uint8_t)st;
		if (s > 0)
			st = back[s * (size_t)n + (size_t)st];
	}
}
_Static_assert((int)N_STATES <= (int)VITERBI_MAX_STATES, "the chord states fit viterbi()");

/* ---- the bass and the notes -------------------------------------------------------- */
size_t dsp_bass_signal_len(size_t n) { return n / BASS_DECIM; }
size_t dsp_mid_signal_len(size_t n) { return n / MID_DECIM; }

/* three moving means of `factor` samples, then every factor-th sample */
static void decimate(const float *x, size_t n, int factor, float *out)
{
	double ring[3][BASS_DECIM], sum[3] = {0.0, 0.0, 0.0};
	memset(ring, 0, sizeof ring);
	size_t m = n / (size_t)factor;
	for (size_t i = 0; i < m * (size_t)factor; i++) {
		double v = x[i];
		int slot = (int)(i % (size_t)factor);
		for (int st = 0; st < 3; st++) {
			sum[st] += v - ring[st][slot];
			ring[st][slot] = v;
			v = sum[st] / factor;
		}
		if (slot == factor - 1)
			out[i / (size_t)factor] = (float)v;
	}
}

void dsp_bass_signal(const float *x, size_t n, float *low) { decimate(x, n, BASS_DECIM, low); }
void dsp_mid_signal(const float *x, size_t n, float *mid) { decimate(x, n, MID_DECIM, mid); }

/* Goertzel's power of n notes (coef: each one's 2 cos(w)) over xw[0, len): the notes in
 * lanes, each its own recurrence in the same order as one at a time, so every clone gives
 * the same bits. */
SFA_CLONES static void goertzel_bank(const double *xw, long len, const double *coef, int n,
                                     double *power)
{
	double cw[BANK_MAX] = {0}, s1[BANK_MAX] = {0}, s2[BANK_MAX] = {0};
	memcpy(cw, coef, (size_t)n * sizeof *cw);
	for (long j = 0; j < len; j++)
		for (int m = 0; m < BANK_MAX; m++) {
			double s0 = xw[j] + cw[m] * s1[m] - s2[m];
			s2[m] = s1[m];
			s1[m] = s0;
		}
	for (int m = 0; m < n; m++) {
		double p = s1[m] * s1[m] + s2[m] * s2[m] - cw[m] * s1[m] * s2[m];
		power[m] = p > 0.0 ? p : 0.0;
	}
}

/* The notes lo..hi (coef: Goertzel's 2 cos(w) of each, at the song's tuning) in sig[j0, j1)
 * of a signal at sr, the span widened to min_s around its middle and cut to max_len, under
 * a Hann window (xw: max_len doubles), by pitch class into acc: their power, or with
 * magnitude its square root. Returns the span's length (0: too short, acc all 0). */
static long note_classes(const float *sig, size_t n_sig, long j0, long j1, double sr, double min_s,
                         long max_len, int lo, int hi, const double *coef, int magnitude,
                         double *xw, double *acc)
{
	for (int c = 0; c < 12; c++)
		acc[c] = 0.0;
	long min_len = (long)(min_s * sr);
	if (j1 - j0 < min_len) {
		long mid = (j0 + j1) / 2;
		j0 = mid - min_len / 2;
		j1 = j0 + min_len;
	}
	if (j0 < 0)
		j0 = 0;
	if (j1 > (long)n_sig)
		j1 = (long)n_sig;
	if (j1 - j0 > max_len) {
		j0 = (j0 + j1) / 2 - max_len / 2;
		j1 = j0 + max_len;
	}
	long len = j1 - j0;
	if (len < 16)
		return 0;
	/* the Hann window by rotating (cos, sin) of the phase 2 pi (j + 0.5) / len */
	double step = 2.0 * M_PI / (double)len;
	double wc = cos(0.5 * step), ws = sin(0.5 * step), cs = cos(step), ss = sin(step);
	for (long j = 0; j < len; j++) {
		xw[j] = (0.5 - 0.5 * wc) * sig[j0 + j];
		double next = wc * cs - ws * ss;
		ws = ws * cs + wc * ss;
		wc = next;
	}
	double power[BANK_MAX];
	goertzel_bank(xw, len, coef, hi - lo + 1, power);
	for (int m = lo; m <= hi; m++)
		acc[m % 12] += magnitude ? sqrt(power[m - lo]) : power[m - lo];
	return len;
}

/* acc divided by its largest into out (all 0 when there is none); returns their sum. */
static double by_largest(const double *acc, float *out)
{
	double mx = 0.0, total = 0.0;
	for (int c = 0; c < 12; c++) {
		total += acc[c];
		if (acc[c] > mx)
			mx = acc[c];
	}
	for (int c = 0; c < 12; c++)
		out[c] = mx > 0.0 ? (float)(acc[c] / mx) : 0.0f;
	return total;
}

/* Goertzel's 2 cos(w) of the notes lo..hi at the song's tuning, for a signal at sr. */
static void note_coefs(int lo, int hi, double tuning, double sr, double *coef)
{
	for (int m = lo; m <= hi; m++)
		coef[m - lo] = 2.0 * cos(2.0 * M_PI * 440.0 *
		                         pow(2.0, ((double)m - 69.0 + tuning) / 12.0) / sr);
}

/* Every segment's notes into notes[s * SEG_COLS ..] (tmp: ns floats, xw: MID_MAX_LEN
 * doubles): the notes' chroma, and the bass (its chroma, its power, the weight it gets):
 * full weight from CHORD_BASS_REL times the song's median power up, and less where the
 * segment's bass note is the strongest in more than CHORD_PEDAL_SHARE of the segments
 * around it (a pedal: the weight falls from full at that share to none when all of them
 * have it). */
static void take_notes(const float *low, size_t n_low, const float *mid, size_t n_mid,
                       double tuning, const int *seg, size_t ns, size_t T, float *notes, float *tmp,
                       double *xw)
{
	double bass_coef[BANK_MAX], mid_coef[BANK_MAX], acc[12];
	note_coefs(BASS_LO, BASS_HI, tuning, BASS_SR, bass_coef);
	note_coefs(MID_LO, MID_HI, tuning, MID_SR, mid_coef);
	for (size_t s = 0; s < ns; s++) {
		long a = seg[s], b = s + 1 < ns ? seg[s + 1] : (long)T;
		float *bs = notes + s * SEG_COLS;
		long len = note_classes(low, n_low, a * (DSP_HOP / BASS_DECIM),
		                        b * (DSP_HOP / BASS_DECIM), BASS_SR, BASS_MIN_S,
		                        BASS_MAX_LEN, BASS_LO, BASS_HI, bass_coef, 0, xw, acc);
		double total = by_largest(acc, bs);
		bs[SEG_POWER] = len ? (float)(total / (double)len) : 0.0f;
		tmp[s] = bs[SEG_POWER];
		note_classes(mid, n_mid, a * (DSP_HOP / MID_DECIM), b * (DSP_HOP / MID_DECIM),
		             MID_SR, MID_MIN_S, MID_MAX_LEN, MID_LO, MID_HI, mid_coef, 1, xw, acc);
		by_largest(acc, bs + SEG_MID);
	}
	double med = dsp_median_f32(tmp, ns);
	for (size_t s = 0; s < ns; s++) {
		float *bs = notes + s * SEG_COLS;
		double w = med > 0.0 ? bs[SEG_POWER] / (CHORD_BASS_REL * med) : 0.0;
		int dom = 0;
		for (int c = 1; c < 12; c++)
			if (bs[c] > bs[dom])
				dom = c;
		long same = 0, all = 0;
		for (long k = (long)s - CHORD_PEDAL_WINDOW; k <= (long)s + CHORD_PEDAL_WINDOW; k++)
			if (k >= 0 && k < (long)ns) {
				all++;
				same += notes[(size_t)k * SEG_COLS + (size_t)dom] >= 1.0f;
			}
		double share = (double)same / (double)all;
		double pedal = share > CHORD_PEDAL_SHARE
		                       ? (share - CHORD_PEDAL_SHARE) / (1.0 - CHORD_PEDAL_SHARE)
		                       : 0.0;
		bs[SEG_WEIGHT] = (float)((w < 1.0 ? w : 1.0) * (1.0 - pedal));
	}
}

size_t dsp_chords(const float *low, size_t n_low, const float *mid, size_t n_mid, double tuning,
                  const float *rms, size_t T, double duration_s, const int *beats, size_t nb,
                  int key, int notes_ready, void *work, struct dsp_chord *out)
{
	if (T == 0)
		return 0;
	size_t cap = dsp_chords_cap(T, nb);
	unsigned char *p = work;
	int *seg = (int *)(void *)p;
	p += align8(cap * sizeof(int));
	float *score = (float *)(void *)p;
	p += align8(cap * N_STATES * sizeof(float));
	uint8_t *back = p;
	p += align8(cap * N_STATES);
	float *iv = (float *)(void *)p;
	p += align8((nb + 1) * sizeof(float));
	uint8_t *path = p;
	p += align8(cap * sizeof(uint8_t));
	float *notes = (float *)(void *)p; /* [ns][SEG_COLS] */
	p += align8(cap * SEG_COLS * sizeof(float));
	float *tmp = (float *)(void *)p;
	p += align8(cap * sizeof(float));
	double *xw = (double *)(void *)p;

	size_t ns = segments(beats, nb, T, iv, seg);

	if (!notes_ready)
		take_notes(low, n_low, mid, n_mid, tuning, seg, ns, T, notes, tmp, xw);

	/* the silence threshold: the loudest segment's mean RMS less CHORD_SILENCE_DB */
	double loudest = 0.0;
	for (size_t s = 0; rms && s < ns; s++) {
		size_t a = (size_t)seg[s], b = s + 1 < ns ? (size_t)seg[s + 1] : T;
		double e = 0.0;
		for (size_t t = a; t < b; t++)
			e += rms[t];
		e /= (double)(b - a);
		if (e > loudest)
			loudest = e;
	}
	double quiet = loudest * pow(10.0, -CHORD_SILENCE_DB / 20.0);

	/* the templates, centred and normalised: 1 on the triad's notes, the seventh at
	 * CHORD_SEVENTH_WEIGHT */
	double tmpl[N_QUAL * 12][12];
	for (int q = 0; q < N_QUAL; q++)
		for (int r = 0; r < 12; r++) {
			double *tv = tmpl[q * 12 + r], m = 0.0, nn = 0.0;
			memset(tv, 0, sizeof tmpl[0]);
			for (int j = 0; j < QUAL[q].n; j++)
				tv[(r + QUAL[q].iv[j]) % 12] = j == 3 ? CHORD_SEVENTH_WEIGHT : 1.0;
			for (int c = 0; c < 12; c++)
				m += tv[c] / 12.0;
			for (int c = 0; c < 12; c++) {
				tv[c] -= m;
				nn += tv[c] * tv[c];
			}
			for (int c = 0; c < 12; c++)
				tv[c] /= sqrt(nn);
		}

	for (size_t s = 0; s < ns; s++) {
		size_t a = (size_t)seg[s], b = s + 1 < ns ? (size_t)seg[s + 1] : T;
		const float *bs = notes + s * SEG_COLS;
		double x[12], mean = 0.0, e = 0.0;
		/* the notes less each one's fifth harmonic, two octaves and a major third up */
		for (int c = 0; c < 12; c++) {
			x[c] = bs[SEG_MID + c] - CHORD_HARMONIC5 * bs[SEG_MID + (c + 8) % 12];
			x[c] = x[c] > 0.0 ? x[c] : 0.0;
		}
		for (int c = 0; c < 12; c++)
			mean += x[c];
		mean /= 12.0;
		double norm2 = 0.0;
		for (int c = 0; c < 12; c++) {
			x[c] -= mean;
			norm2 += x[c] * x[c];
		}
		for (size_t t = a; rms && t < b; t++)
			e += rms[t];
		e /= (double)(b - a);
		double bc[12], bmean = 0.0, bw = bs[SEG_WEIGHT];
		for (int c = 0; c < 12; c++) {
			bc[c] = bs[c];
			bmean += bc[c] / 12.0;
		}
		float *sc = score + s * N_STATES;
		int silent = (rms && (e <= quiet || e < 1e-5)) || !(norm2 > 1e-12 * mean * mean) ||
		             !(mean > 0.0);
		for (int q = 0; q < N_QUAL; q++)
			for (int r = 0; r < 12; r++) {
				double v = 0.0;
				for (int c = 0; !silent && c < 12; c++)
					v += x[c] * tmpl[q * 12 + r][c];
				v = silent ? 0.0 : v / sqrt(norm2);
				if (QUAL[q].n == 4)
					v -= CHORD_SEVENTH_COST;
				if (!silent && bw > 0.0) {
					/* the bass on the root, or on the third or fifth (an
					 * inversion) for CHORD_BASS_INV of it */
					double third = bc[(r + QUAL[q].iv[1]) % 12],
					       fifth = bc[(r + 7) % 12];
					double bb = bc[r] + CHORD_BASS_INV *
					                            (third > fifth ? third : fifth);
					v += CHORD_BASS_WEIGHT * bw * (bb - bmean);
				}
				if (key >= 0 && !silent)
					v += CHORD_KEY_WEIGHT *
					     dsp_key_chord_weight(r, q, key / 2, key % 2);
				sc[q * 12 + r] = (float)v;
			}
		sc[STATE_N] = silent ? 1.0f : (float)CHORD_N_SCORE;
	}

	viterbi(score, ns, N_STATES, CHORD_P_SELF, CHORD_BETA, back, path);

	/* runs of one state -> segments */
	size_t n = 0;
	for (size_t s = 0; s < ns;) {
		size_t e = s;
		double conf = 0.0;
		int j = path[s];
		for (; e < ns && path[e] == j; e++) {
			const float *sc = score + e * N_STATES;
			double mx = sc[0], z = 0.0;
			for (int k = 1; k < N_STATES; k++)
				if (sc[k] > mx)
					mx = sc[k];
			for (int k = 0; k < N_STATES; k++)
				z += exp(CHORD_BETA * (sc[k] - mx));
			conf += exp(CHORD_BETA * (sc[j] - mx)) / z;
		}
		struct dsp_chord *c = &out[n++];
		c->start_s = s == 0 ? 0.0 : (double)seg[s] * DSP_HOP / DSP_SR_HZ;
		c->end_s = e < ns ? (double)seg[e] * DSP_HOP / DSP_SR_HZ : duration_s;
		c->confidence = conf / (double)(e - s);
		if (j == STATE_N) {
			c->root_pc = -1;
			c->quality = DSP_CHORD_NONE;
			memcpy(c->label, "N", 2);
		} else {
			c->root_pc = j % 12;
			c->quality = j / 12;
			size_t k = 0;
			for (const char *q = dsp_pitch_name(c->root_pc);
			     *q && k < sizeof c->label - 1;)
				c->label[k++] = *q++;
			for (const char *q = QUAL[c->quality].suffix;
			     *q && k < sizeof c->label - 1;)
				c->label[k++] = *q++;
			c->label[k] = '\0';
		}
		s = e;
	}
	return n;
}

/* ---- key changes --------------------------------------------------------------------
 * The same segments (beats, or half-seconds); each one's key evidence is the chords' vote
 * (key.c, the song's key rule) over the KEY_WINDOW segments on each side of it, each chord
 * counted for the time it overlaps them, or without chords the Krumhansl-Kessler
 * correlation (key.c) of the mean chroma of those segments. The song's own key (the caller's
 * `home`, the key it reports) gets KEY_HOME more: a window must lean clearly elsewhere to leave it
 * (on the corpus of bench/analysis-accuracy, the labelled key's share of the time rises
 * from 63 % without it to 83 %, where one key for the whole song would give 84 % but
 * no modulation). A 24-state HMM (self-transition KEY_P_SELF, emissions
 * exp(KEY_BETA * evidence)) decoded with Viterbi gives a key per segment, and a key that lasts
 * less than KEY_MIN_S is given to the one before it (the first to the one after), so a
 * borrowed chord or a passing tonicisation is not a key change. */
enum { KEY_WINDOW = 16, KEY_STATES = 24 };
_Static_assert((int)KEY_STATES <= (int)VITERBI_MAX_STATES, "the key states fit viterbi()");
#define KEY_BETA   10.0
#define KEY_P_SELF 0.998
#define KEY_MIN_S  16.0
#define KEY_HOME   0.25

size_t dsp_key_changes_work_bytes(size_t T, size_t nb)
{
	size_t cap = dsp_chords_cap(T, nb);
	return align8(cap * sizeof(int)) + align8(cap * 12 * sizeof(double)) +
	       align8(cap * KEY_STATES * sizeof(float)) + align8(cap * KEY_STATES) +
	       align8((nb + 1) * sizeof(float)) + align8(cap) + 64;
}

/* The chords' vote for every key over [a, b) seconds, per second of chord (no chord: 0). */
static void chord_vote(const struct dsp_chord *c, size_t n, double a, double b, double *sc)
{
	double total = 0.0;
	for (int k = 0; k < KEY_STATES; k++)
		sc[k] = 0.0;
	for (size_t i = 0; i < n; i++) {
		double lo = c[i].start_s > a ? c[i].start_s : a;
		double hi = c[i].end_s < b ? c[i].end_s : b;
		if (c[i].root_pc < 0 || !(hi > lo))
			continue;
		total += hi - lo;
		for (int k = 0; k < KEY_STATES; k++)
			sc[k] += (hi - lo) *
			         dsp_key_chord_weight(c[i].root_pc, c[i].quality, k / 2, k % 2);
	}
	for (int k = 0; total > 0.0 && k < KEY_STATES; k++)
		sc[k] /= total;
}

size_t dsp_key_changes(const float *chroma, size_t T, double duration_s, const int *beats,
                       size_t nb, const struct dsp_chord *chords, size_t n_chords, int home,
                       void *work, struct dsp_key_segment *out)
{
	if (T == 0)
		return 0;
	size_t cap = dsp_chords_cap(T, nb);
	unsigned char *p = work;
	int *seg = (int *)(void *)p;
	p += align8(cap * sizeof(int));
	double *x = (double *)(void *)p;
	p += align8(cap * 12 * sizeof(double));
	float *score = (float *)(void *)p;
	p += align8(cap * KEY_STATES * sizeof(float));
	uint8_t *back = p;
	p += align8(cap * KEY_STATES);
	float *iv = (float *)(void *)p;
	p += align8((nb + 1) * sizeof(float));
	uint8_t *path = p;

	size_t ns = segments(beats, nb, T, iv, seg);
	for (size_t s = 0; s < ns; s++) {
		size_t a = (size_t)seg[s], b = s + 1 < ns ? (size_t)seg[s + 1] : T;
		for (int c = 0; c < 12; c++) {
			double sum = 0.0;
			for (size_t t = a; t < b; t++)
				sum += chroma[(size_t)c * T + t];
			x[s * 12 + (size_t)c] = sum / (double)(b - a);
		}
	}
	int any = 0;
	for (size_t s = 0; s < ns; s++) {
		size_t lo = s > KEY_WINDOW ? s - KEY_WINDOW : 0,
		       hi = s + KEY_WINDOW + 1 < ns ? s + KEY_WINDOW + 1 : ns;
		double mean[12] = {0}, sc[KEY_STATES];
		int best = 0;
		if (n_chords > 0) {
			double a = (double)seg[lo] * DSP_HOP / DSP_SR_HZ;
			double b = hi < ns ? (double)seg[hi] * DSP_HOP / DSP_SR_HZ : duration_s;
			chord_vote(chords, n_chords, a, b, sc);
			if (home >= 0)
				sc[home] += KEY_HOME;
		} else {
			for (size_t k = lo; k < hi; k++)
				for (int c = 0; c < 12; c++)
					mean[c] += x[k * 12 + (size_t)c];
			best = dsp_key_kk(mean, sc);
		}
		any |= best >= 0;
		for (int j = 0; j < KEY_STATES; j++)
			score[s * KEY_STATES + (size_t)j] = best >= 0 ? (float)sc[j] : 0.0f;
	}
	if (!any)
		return 0;

	viterbi(score, ns, KEY_STATES, KEY_P_SELF, KEY_BETA, back, path);

	/* runs -> segments, the short ones given to a neighbour until none is left */
	size_t n = 0;
	for (size_t s = 0; s < ns;) {
		size_t e = s;
		while (e < ns && path[e] == path[s])
			e++;
		out[n].start_s = s == 0 ? 0.0 : (double)seg[s] * DSP_HOP / DSP_SR_HZ;
		out[n].end_s = e < ns ? (double)seg[e] * DSP_HOP / DSP_SR_HZ : duration_s;
		out[n].pc = path[s] / 2;
		out[n].minor = path[s] % 2;
		n++;
		s = e;
	}
	for (;;) {
		size_t shortest = n;
		for (size_t i = 0; n > 1 && i < n; i++)
			if (out[i].end_s - out[i].start_s < KEY_MIN_S &&
			    (shortest == n || out[i].end_s - out[i].start_s <
			                              out[shortest].end_s - out[shortest].start_s))
				shortest = i;
		if (shortest == n)
			break;
		if (shortest > 0)
			out[shortest - 1].end_s = out[shortest].end_s;
		else
			out[1].start_s = out[0].start_s;
		memmove(out + shortest, out + shortest + 1, (n - shortest - 1) * sizeof *out);
		n--;
		/* neighbours now in one key become one segment */
		size_t m = 0;
		for (size_t i = 0; i < n; i++) {
			if (m > 0 && out[m - 1].pc == out[i].pc && out[m - 1].minor == out[i].minor)
				out[m - 1].end_s = out[i].end_s;
			else
				out[m++] = out[i];
		}
		n = m;
	}
	for (size_t i = 0; i < n; i++) {
		snprintf(out[i].key_name, sizeof out[i].key_name, "%s %s",
		         dsp_pitch_name(out[i].pc), out[i].minor ? "minor" : "major");
		dsp_camelot(out[i].pc, out[i].minor, out[i].camelot);
	}
	return n;
}
