/* dsp.h - the audio analysis engine: tempo, beats, key, energy, spectral features, MFCC
 * and chroma of a mono 22050 Hz signal.
 *
 * The definitions are librosa 0.10.2's at its defaults (n_fft 2048, hop 512, centred
 * frames, periodic Hann), reproduced in float32 C: per-frame values agree with librosa
 * within the tolerances of tests/fixtures/dsp/README.md, tempo and beat frames exactly.
 * On top of librosa the engine reports an octave-corrected tempo refined off librosa's lag
 * grid (librosa halves back-beat patterns; see tempo.c), beats tracked at that tempo, and
 * the key from the chord timeline with a Camelot code (see key.c). librosa's own tempo,
 * beats and Krumhansl-Kessler key stay available in the result.
 *
 * `energy` is the mean of the per-frame RMS (librosa.feature.rms, frames of 2048), i.e.
 * the signal's typical RMS level on a 0..1 full-scale: 0.354 for a sine of amplitude 0.5,
 * 0.289 for uniform noise in +-0.5, 0 for silence. It is the reference project's "energy".
 *
 * Inputs of any length are accepted up to DSP_MAX_SECONDS. Silence, and inputs shorter
 * than DSP_MIN_TEMPO_KEY_SECONDS, give tempo 0 with no beats and no key (key_pc -1, null
 * in JSON); no output is ever NaN or infinite.
 *
 * Memory: one analysis allocates its working memory once (one arena, sized from the input
 * length, freed before dsp_analyze returns) and its results in the result's own arena,
 * released by dsp_result_free. Time and memory are O(N). Nothing is allocated per frame.
 *
 * The engine speaks C: results are struct dsp_result. Its JSON form (the API's analysis
 * object) is built at the edges that answer in JSON with result_json.h.
 *
 * Threading: dsp_analyze is reentrant; concurrent analyses share only the FFTW plans,
 * which are created once under a mutex. A dsp_result belongs to one thread at a time.
 */
#ifndef SFA_DSP_DSP_H
#define SFA_DSP_DSP_H

#include <stddef.h>

#include "util/arena.h"

enum dsp_feature {
	DSP_FEAT_TEMPO = 1u << 0,    /* tempo, tempo_confidence, beats */
	DSP_FEAT_KEY = 1u << 1,      /* key, key_confidence, camelot */
	DSP_FEAT_ENERGY = 1u << 2,   /* energy */
	DSP_FEAT_SPECTRAL = 1u << 3, /* spectral_centroid, spectral_rolloff, zero_crossing_rate */
	DSP_FEAT_MFCC = 1u << 4,     /* features.mfcc */
	DSP_FEAT_CHROMA = 1u << 5,   /* features.chroma */
	DSP_FEAT_LOUDNESS = 1u << 6, /* loudness (dsp_analyze_file only: it needs the file) */
	DSP_FEAT_SECTIONS = 1u << 7, /* sections (with the tempo's beats and downbeats) */
	DSP_FEAT_CHORDS = 1u << 8,   /* chords (on the tempo's beats) */
	DSP_FEAT_KEY_CHANGES = 1u << 9, /* key_changes (on the tempo's beats) */
	DSP_FEAT_ALL = (1u << 10) - 1,
};
/* The name of pitch class pc (0 = C .. 11 = B: "C", "C#", ...), as key_name spells it; a
 * static string. */
const char *dsp_pitch_name(int pc);

/* The names dsp_feature_bit knows, for error messages. */
#define DSP_FEATURE_NAMES \
	"tempo, key, energy, spectral, mfcc, chroma, loudness, sections, chords, key_changes or all"

/* EBU R128 / ITU-R BS.1770 loudness: integrated (LUFS; -inf for digital silence), loudness
 * range (LU) and true peak (dBTP; -inf for silence). */
struct dsp_loudness {
	double integrated_lufs;
	double range_lu;
	double true_peak_dbtp;
};

/* A part of the song between two changes, starting on a bar (structure.c). */
struct dsp_section {
	double start_s, end_s;
	int bar;         /* the bar it starts on, 1 = the first */
	char label[12];  /* "intro", "build", "drop", "breakdown" or "outro" */
	double level_db; /* its mean RMS level, dBFS */
	double rise_db;  /* its second half's level minus its first half's */
};

/* A chord segment (chords.c): the chord that sounds from start_s to end_s. */
enum dsp_chord_quality {
	DSP_CHORD_MAJ,
	DSP_CHORD_MIN,
	DSP_CHORD_DOM7,
	DSP_CHORD_MAJ7,
	DSP_CHORD_MIN7,
	DSP_CHORD_NONE = -1,
};
struct dsp_chord {
	double start_s, end_s;
	char label[8];     /* "C", "Am", "G7", "Fmaj7", "Em7" (sharps as dsp_pitch_name), "N" */
	int root_pc;       /* 0 = C .. 11 = B; -1 for N */
	int quality;       /* enum dsp_chord_quality */
	double confidence; /* 0..1: how clearly the chroma shows this chord, on average */
};
/* A stretch of the song in one key (chords.c): a change lasts at least 16 s. */
struct dsp_key_segment {
	double start_s, end_s;
	int pc, minor;     /* 0 = C .. 11 = B */
	char key_name[12]; /* "A minor" */
	char camelot[4];   /* "8A" */
};
/* Reads a chord label as struct dsp_chord spells it: the number of its notes (3 or 4),
 * with the root into *root_pc and the notes' semitones above the root into iv; 0 for "N";
 * -1 for anything else (nothing written then). */
int dsp_chord_parse(const char *label, int *root_pc, int iv[4]);

#define DSP_SAMPLE_RATE_HZ     22050
#define DSP_DEFAULT_FRAME_RATE 2.0
/* features.frame_rate may not exceed the analysis frame rate, 22050 / 512 per second */
#define DSP_MAX_FRAME_RATE        (22050.0 / 512.0)
#define DSP_MAX_SECONDS           (2.0 * 3600.0)
#define DSP_MIN_TEMPO_KEY_SECONDS 2.0
/* samples must be finite and within +-DSP_MAX_SAMPLE_ABS (full scale is 1) */
#define DSP_MAX_SAMPLE_ABS 1e6f

struct dsp_options {
	unsigned features; /* DSP_FEAT_* bits; 0 means DSP_FEAT_ALL */
	double frame_rate; /* columns per second of features.mfcc/chroma; 0 means 2 */
};

struct dsp_result {
	unsigned features; /* what was computed */
	double frame_rate; /* columns per second for pooled rows (result_json.h) */
	size_t n_samples;
	double duration_s;
	size_t n_frames; /* T = 1 + n_samples / 512 */

	/* DSP_FEAT_TEMPO */
	double tempo_bpm;         /* octave-corrected, refined tempo; 0 when there is none */
	double tempo_confidence;  /* 0..1 (tempo.c), 0 when there is no tempo */
	double tempo_librosa_bpm; /* librosa.beat.beat_track's tempo (a lag-grid value), or 0 */
	int tempo_librosa_lag;    /* its lag in frames, 0 when none */
	int tempo_doubled;        /* 1 when the octave rule doubled librosa's tempo (before the
	                             metrical level is chosen, tempo.c) */
	int *beats;               /* beat frames at tempo_bpm, ascending */
	size_t n_beats;
	int *beats_librosa; /* librosa's beat frames (at tempo_librosa_bpm) */
	size_t n_beats_librosa;
	int *downbeats; /* frames of the beats that start bars, ascending */
	size_t n_downbeats;
	int beats_per_bar;      /* 4 or 3 (time signature 4/4 or 3/4); 0 with no downbeats */
	float *onset_env;       /* [n_frames], median-aggregated onset strength */
	double *tempogram_mean; /* [344], mean autocorrelation per lag */

	/* DSP_FEAT_KEY (and the chroma, the beats and the chords it needs): the key of the
	 * chords (key.c), or where a song has no chord timeline librosa's rule below */
	int key_pc; /* 0 = C .. 11 = B; -1 when there is no key */
	int key_minor;
	double key_confidence; /* 0..1 (key.c), 0 when no key */
	char key_name[12];     /* "A minor"; "" when no key */
	char camelot[4];       /* "8A"; "" when no key */
	/* librosa's rule: Krumhansl-Kessler on the mean chroma (ANALYSIS.md) */
	int key_kk_pc; /* -1 when there is no key */
	int key_kk_minor;
	double key_kk_r; /* Pearson r of the best profile */
	char key_kk_name[12];
	double tuning; /* estimated tuning, fractions of a semitone */
	double chroma_mean[12];

	/* DSP_FEAT_ENERGY */
	double energy; /* mean RMS */
	float *rms;    /* [n_frames] */

	/* DSP_FEAT_SPECTRAL */
	double spectral_centroid_hz;
	double spectral_rolloff_hz;
	double zero_crossing_rate;
	float *zcr;       /* [n_frames] */
	double *centroid; /* [n_frames], Hz */
	double *rolloff;  /* [n_frames], Hz */

	float *mfcc;                  /* DSP_FEAT_MFCC: [13 * n_frames], row c at c * n_frames */
	float *chroma;                /* DSP_FEAT_CHROMA or KEY: [12 * n_frames], rows C..B */
	struct dsp_loudness loudness; /* DSP_FEAT_LOUDNESS */
	struct dsp_section *sections; /* DSP_FEAT_SECTIONS, in order */
	size_t n_sections;
	struct dsp_chord *chords; /* DSP_FEAT_CHORDS: in order, covering 0 .. duration_s */
	size_t n_chords;
	struct dsp_key_segment *key_changes; /* DSP_FEAT_KEY_CHANGES: in order, covering the
	                                        song; none when it has no key */
	size_t n_key_changes;

	struct arena mem; /* owns every array above */
};

/* Bit for one feature name ("tempo", "key", "energy", "spectral", "mfcc", "chroma",
 * "loudness", "sections", "chords", "key_changes", "all"), or 0 for an unknown name. */
unsigned dsp_feature_bit(const char *name);

/* Parses a comma-separated list of feature names ("tempo,key", blanks around names
 * ignored) into a DSP_FEAT_* mask. Fails with SFA_EINVAL naming the first unknown or empty
 * name; *mask is written only on success. */
int dsp_features_parse(const char *csv, unsigned *mask, char *err, size_t n_err);

/* Analyses n samples of mono audio at 22050 Hz (every feature but DSP_FEAT_LOUDNESS, which
 * needs the file: it is left out of out->features). On success *out holds the results and
 * must be released with dsp_result_free. Fails with SFA_EINVAL (bad options or a
 * non-finite or out-of-range sample), SFA_ETOOBIG (longer than DSP_MAX_SECONDS) or SFA_ENOMEM. */
int dsp_analyze(const float *mono_22050, size_t n, const struct dsp_options *opt,
                struct dsp_result *out, char *err, size_t n_err);

/* Decodes path with the audio module (mono, 22050 Hz, soxr) and analyses it. */
int dsp_analyze_file(const char *path, const struct dsp_options *opt, struct dsp_result *out,
                     char *err, size_t n_err);

void dsp_result_free(struct dsp_result *r);

#endif
