/* synth.h - synthetic test signals with known ground truth, for the analysis engine.
 *
 * Every generator adds into a caller-owned float buffer at 22050 Hz (so signals can be
 * layered: drums + chords = a "song"), is deterministic (a seeded xorshift generator, no
 * rand()), and keeps its output in [-1, 1] for the amplitudes used by the tests.
 *
 * Drum patterns are written on a 16-step grid per 4/4 bar (step = a sixteenth note):
 *   fourfloor  kick on every beat, clap/snare on 2 and 4, open hat on the off-beats
 *   backbeat   rock: kick on 1 and 3, snare on 2 and 4, closed hats on eighths
 *   hiphop     boom-bap: kick on 1, the "a" of 2 and the "and" of 3, snare on 2 and 4,
 *              hats on eighths
 *   dnb        two-step: kick on 1 and 3-and, snare on 2 and 4, hats on eighths
 *   halfstep   snare only on 3, kick on 1, hats on eighths (felt at half tempo)
 *   shuffle    kick 1 and 3, snare 2 and 4, hats on the triplet "and"
 *   snare24    kick on every beat, snare on 2 and 4, nothing else (the ANALYSIS.md case)
 */
#ifndef SFA_TESTS_DSP_SYNTH_H
#define SFA_TESTS_DSP_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#define SYNTH_SR 22050

enum synth_pattern {
	SYNTH_FOURFLOOR,
	SYNTH_BACKBEAT,
	SYNTH_HIPHOP,
	SYNTH_DNB,
	SYNTH_HALFSTEP,
	SYNTH_SHUFFLE,
	SYNTH_SNARE24,
	SYNTH_N_PATTERNS,
};

const char *synth_pattern_name(enum synth_pattern p);

/* Malloced zeroed buffer of seconds * 22050 samples; *n gets the count. Caller frees. */
float *synth_alloc(double seconds, size_t *n);

/* Broadband clicks (1 ms decaying noise bursts) on every beat. */
void synth_clicks(float *x, size_t n, double bpm, double amp, uint64_t seed);
/* A drum pattern at bpm, starting at time 0, with slight velocity variation. */
void synth_drums(float *x, size_t n, double bpm, enum synth_pattern p, double amp, uint64_t seed);
/* A chord progression in a key: degrees are 1-based scale degrees (1 = tonic), each chord
 * lasting chord_s seconds, looped to fill the buffer. Triads of harmonic tones over a bass
 * note. In minor, degree 5 is a major triad (harmonic minor) when harmonic_v is set. */
void synth_chords(float *x, size_t n, int tonic_pc, int minor, const int *degrees, int n_degrees,
                  double chord_s, int harmonic_v, double amp);
/* One chord over the whole buffer: notes root_pc + iv[k] in the octave from C4, with the
 * root an octave below as its bass (add it at x + offset for a chord from offset on). */
void synth_chord(float *x, size_t n, int root_pc, const int *iv, int n_iv, double amp);
/* A sine. */
void synth_tone(float *x, size_t n, double hz, double amp);
/* Uniform white noise in [-amp, amp). */
void synth_noise(float *x, size_t n, double amp, uint64_t seed);

#endif
