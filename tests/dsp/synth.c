/* synth.c - see synth.h. Instruments:
 *   kick   a sine sweeping 160 -> 45 Hz with a 0.25 s decay and a short click on top
 *   snare  white noise, 0.12 s decay, plus a 190 Hz body tone
 *   clap   three 8 ms noise bursts then a 0.1 s tail
 *   hat    first difference of white noise (a high-pass), 30 ms (closed) / 120 ms (open)
 *   chord  each note: 4 harmonics at 1/k amplitude, 20 ms attack, gentle decay
 */
#include "synth.h"

#include <math.h>
#include <stdlib.h>

struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
	/* xorshift64* */
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 2685821657736338717ull;
}

/* uniform in [-1, 1) */
static double rng_uniform(struct rng *r)
{
	return (double)(rng_next(r) >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

static void seed_rng(struct rng *r, uint64_t seed) { r->s = seed * 0x9E3779B97F4A7C15ull + 1; }

const char *synth_pattern_name(enum synth_pattern p)
{
	static const char *const names[SYNTH_N_PATTERNS] = {
		"fourfloor", "backbeat", "hiphop", "dnb", "halfstep", "shuffle", "snare24",
	};
	return (p >= 0 && p < SYNTH_N_PATTERNS) ? names[p] : "?";
}

float *synth_alloc(double seconds, size_t *n)
{
	*n = (size_t)(seconds * SYNTH_SR);
	return calloc(*n ? *n : 1, sizeof(float));
}

static void add_kick(float *x, size_t n, size_t at, double amp)
{
	double phase = 0.0;
	for (size_t i = 0; i < (size_t)(0.5 * SYNTH_SR) && at + i < n; i++) {
		double t = (double)i / SYNTH_SR;
		double f = 45.0 + 115.0 * exp(-t / 0.04);
		phase += 2.0 * M_PI * f / SYNTH_SR;
		double env = exp(-t / 0.25);
		double click = (i < 40) ? 0.3 * (1.0 - (double)i / 40) : 0.0;
		x[at + i] += (float)(amp * (env * sin(phase) + click));
	}
}

static void add_snare(float *x, size_t n, size_t at, double amp, struct rng *r)
{
	for (size_t i = 0; i < (size_t)(0.4 * SYNTH_SR) && at + i < n; i++) {
		double t = (double)i / SYNTH_SR;
		double noise = rng_uniform(r) * exp(-t / 0.12);
		double body = 0.5 * sin(2.0 * M_PI * 190.0 * t) * exp(-t / 0.06);
		x[at + i] += (float)(amp * 0.7 * (noise + body));
	}
}

static void add_clap(float *x, size_t n, size_t at, double amp, struct rng *r)
{
	for (size_t i = 0; i < (size_t)(0.35 * SYNTH_SR) && at + i < n; i++) {
		double t = (double)i / SYNTH_SR;
		double env = (t < 0.024) ? exp(-fmod(t, 0.008) / 0.002) : exp(-(t - 0.024) / 0.1);
		x[at + i] += (float)(amp * 0.6 * rng_uniform(r) * env);
	}
}

static void add_hat(float *x, size_t n, size_t at, double amp, double decay_s, struct rng *r)
{
	double prev = 0.0;
	for (size_t i = 0; i < (size_t)(6 * decay_s * SYNTH_SR) && at + i < n; i++) {
		double t = (double)i / SYNTH_SR;
		double w = rng_uniform(r);
		x[at + i] += (float)(amp * 0.35 * (w - prev) * exp(-t / decay_s));
		prev = w;
	}
}

void synth_clicks(float *x, size_t n, double bpm, double amp, uint64_t seed)
{
	struct rng r;
	seed_rng(&r, seed);
	double period = 60.0 / bpm * SYNTH_SR;
	for (double pos = 0.0; pos < (double)n; pos += period) {
		size_t at = (size_t)llround(pos);
		for (size_t i = 0; i < (size_t)(0.004 * SYNTH_SR) && at + i < n; i++)
			x[at + i] += (float)(amp * rng_uniform(&r) * exp(-(double)i / 22.0));
	}
}

/* One bar's events: which instruments play on each sixteenth step. */
enum { K = 1, S = 2, H = 4, O = 8, C = 16, T3 = 32 };
static const uint8_t PATTERNS[SYNTH_N_PATTERNS][16] = {
	/* fourfloor: kick every beat, clap on 2 and 4, open hat off-beats */
	{K, 0, O, 0, K | C, 0, O, 0, K, 0, O, 0, K | C, 0, O, 0},
	/* backbeat */
	{K | H, 0, H, 0, S | H, 0, H, 0, K | H, 0, H, 0, S | H, 0, H, 0},
	/* hiphop boom-bap: kick on 1, the "a" of 2 and the "and" of 3; snare 2, 4 */
	{K | H, 0, H, 0, S | H, 0, H, K, H, 0, K | H, 0, S | H, 0, H, 0},
	/* dnb two-step: kick 1, 3-and; snare 2, 4 */
	{K | H, 0, H, 0, S | H, 0, H, 0, H, 0, K | H, 0, S | H, 0, H, 0},
	/* halfstep: kick 1, snare 3 */
	{K | H, 0, H, 0, H, 0, H, 0, S | H, 0, H, 0, H, 0, H, 0},
	/* shuffle: hats on the last triplet of each beat (T3 = step + 2/3 beat) */
	{K | T3, 0, 0, 0, S | T3, 0, 0, 0, K | T3, 0, 0, 0, S | T3, 0, 0, 0},
	/* snare24 */
	{K, 0, 0, 0, K | S, 0, 0, 0, K, 0, 0, 0, K | S, 0, 0, 0},
};

void synth_drums(float *x, size_t n, double bpm, enum synth_pattern p, double amp, uint64_t seed)
{
	struct rng r;
	seed_rng(&r, seed);
	double step = 60.0 / bpm / 4.0 * SYNTH_SR;
	const uint8_t *pat = PATTERNS[p];
	for (size_t s = 0;; s++) {
		double pos = (double)s * step;
		if (pos >= (double)n)
			break;
		size_t at = (size_t)llround(pos);
		uint8_t ev = pat[s % 16];
		double vel = 0.9 + 0.1 * rng_uniform(&r);
		if (ev & K)
			add_kick(x, n, at, amp * vel);
		if (ev & S)
			add_snare(x, n, at, amp * vel, &r);
		if (ev & C)
			add_clap(x, n, at, amp * vel, &r);
		if (ev & H)
			add_hat(x, n, at, amp * 0.8 * vel, 0.03, &r);
		if (ev & O)
			add_hat(x, n, at, amp * 0.8 * vel, 0.12, &r);
		if (ev & T3)
			add_hat(x, n, (size_t)llround(pos + 4.0 * step * 2.0 / 3.0),
			        amp * 0.8 * vel, 0.03, &r);
	}
}

static const int MAJOR_STEPS[7] = {0, 2, 4, 5, 7, 9, 11};
static const int MINOR_STEPS[7] = {0, 2, 3, 5, 7, 8, 10};

static void add_note(float *x, size_t n, size_t at, size_t len, double hz, double amp)
{
	/* harmonics by the sine recurrence s[i+1] = 2 cos(w) s[i] - s[i-1] (exact enough in
	 * double over a few seconds, and ten times cheaper than sin() per sample) */
	double c2[4], s0[4], s1[4];
	int nh = 0;
	for (int k = 1; k <= 4 && hz * k < 0.45 * SYNTH_SR; k++, nh++) {
		double w = 2.0 * M_PI * hz * k / SYNTH_SR;
		c2[nh] = 2.0 * cos(w);
		s0[nh] = 0.0;     /* sin(0) */
		s1[nh] = -sin(w); /* sin(-w) */
	}
	for (size_t i = 0; i < len && at + i < n; i++) {
		double t = (double)i / SYNTH_SR;
		double env = fmin(1.0, t / 0.02) * exp(-t / 3.0);
		double rel = (double)(len - i) / (0.03 * SYNTH_SR); /* release, avoids clicks */
		if (rel < 1.0)
			env *= rel;
		double v = 0.0;
		for (int k = 0; k < nh; k++) {
			v += s0[k] / (k + 1);
			double next = c2[k] * s0[k] - s1[k];
			s1[k] = s0[k];
			s0[k] = next;
		}
		x[at + i] += (float)(amp * env * v);
	}
}

void synth_chords(float *x, size_t n, int tonic_pc, int minor, const int *degrees, int n_degrees,
                  double chord_s, int harmonic_v, double amp)
{
	const int *steps = minor ? MINOR_STEPS : MAJOR_STEPS;
	size_t len = (size_t)(chord_s * SYNTH_SR);
	for (size_t c = 0; c * len < n; c++) {
		int deg = degrees[c % (size_t)n_degrees] - 1;
		/* semitones above the tonic of the triad's notes */
		int notes[3];
		for (int j = 0; j < 3; j++) {
			int idx = deg + 2 * j;
			notes[j] = steps[idx % 7] + 12 * (idx / 7);
		}
		if (minor && harmonic_v && deg == 4)
			notes[1] += 1; /* raised leading tone: major V */
		/* tonic pitch class placed in the octave from C4 (MIDI 60) */
		int base = 60 + tonic_pc;
		if (base > 66)
			base -= 12;
		for (int j = 0; j < 3; j++) {
			double hz = 440.0 * pow(2.0, (base + notes[j] - 69) / 12.0);
			add_note(x, n, c * len, len, hz, amp * 0.3);
		}
		double bass = 440.0 * pow(2.0, (base + notes[0] - 12 - 69) / 12.0);
		add_note(x, n, c * len, len, bass, amp * 0.35);
	}
}

void synth_chord(float *x, size_t n, int root_pc, const int *iv, int n_iv, double amp)
{
	int base = 60 + root_pc;
	for (int j = 0; j < n_iv; j++)
		add_note(x, n, 0, n, 440.0 * pow(2.0, (base + iv[j] - 69) / 12.0), amp * 0.3);
	add_note(x, n, 0, n, 440.0 * pow(2.0, (base - 12 - 69) / 12.0), amp * 0.35);
}

void synth_tone(float *x, size_t n, double hz, double amp)
{
	for (size_t i = 0; i < n; i++)
		x[i] += (float)(amp * sin(2.0 * M_PI * hz * (double)i / SYNTH_SR));
}

void synth_noise(float *x, size_t n, double amp, uint64_t seed)
{
	struct rng r;
	seed_rng(&r, seed);
	for (size_t i = 0; i < n; i++)
		x[i] += (float)(amp * rng_uniform(&r));
}
