/* mixer.h - the DAW mixer: an edit manifest (a C struct) turned into a plan, rendered to a
 * WAV stream block by block. No HTTP, no database: the server, the `sfa daw-render` child,
 * the tests, the fuzzer and the benchmark all drive it through this header.
 *
 * The manifest is struct mixer_manifest, a plain C value: the mixer never sees JSON. The
 * edges that receive it as JSON (the API, the CLI) read and validate it with
 * mixer_manifest_parse (mixer_manifest.h).
 *
 * Mixing rules (what the tests' independent reference implements too):
 *  - Every source is decoded to stereo at the output rate (mono is duplicated to both
 *    channels; of more than two channels the first two are kept). The output rate is
 *    sample_rate, else the native rate of the file of stems[0].
 *  - Times in ms become frames rounded to nearest (halves up): round(ms * rate / 1000).
 *  - A stem is a clip: a window [start, end) of its source placed at a mix position
 *    (0 by default). Edits apply in order; times are relative to the clip as it is when the
 *    edit applies (so after a trim, to the trimmed clip), and what an edit does stays
 *    attached to the source samples it touched:
 *      trim      {start_ms = 0, end_ms = clip end}  keeps that part of the clip
 *      offset    {position_ms}                      sets where the clip starts in the mix
 *      gain      {start_ms = 0, end_ms = clip end, level 0..4}  multiplies that region
 *      silence   {start_ms = 0, end_ms = clip end}  multiplies that region by 0
 *      fade_in   {duration_ms}  D frames: clip frame i < D is multiplied by i / D
 *      fade_out  {duration_ms}  the mirror image: the clip's last frame by 0, the frame
 *                               D-1 before it by (D-1) / D
 *    Ranges past the clip's end are cut at the end; a trim past it leaves an empty clip.
 *  - Then volume (0..4) and balance pan p in [-1, 1]: L *= 1 - max(p, 0),
 *    R *= 1 + min(p, 0). A muted stem is silent; if any stem is solo, every stem that is
 *    not solo is silent (a stem both muted and solo is silent, and its solo still
 *    silences the stems that are not solo).
 *  - The stems are summed in float; the mix lasts until the end of the last clip (muted
 *    stems included: muting does not shorten the timeline).
 *  - normalize scales the mix by 10^(-1/20) / peak so its peak is -1 dBFS (a silent mix is
 *    left alone); it needs the peak first, so the renderer runs twice (mixer_scan, then the
 *    output pass) instead of buffering the mix.
 *  - Output: 16- or 24-bit PCM, x * 2^(bits-1) rounded to nearest (ties to even) and
 *    clipped to the integer range, each clipped sample counted (per channel sample); or
 *    32-bit float, unclipped (nothing is counted). Non-finite values become 0.
 *
 * Memory: a plan holds the manifest's edits in source-frame form and one block of scratch;
 * rendering reads the sources through a callback block by block, so memory does not grow
 * with the length of the mix. Threading: a plan is used by one thread at a time.
 */
#ifndef SFA_AUDIO_MIXER_H
#define SFA_AUDIO_MIXER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	MIXER_MAX_STEMS = 32,   /* entries of manifest.stems */
	MIXER_MAX_FILES = 16,   /* uploaded stems[] files */
	MIXER_MAX_EDITS = 256,  /* per stem */
	MIXER_MAX_ERRORS = 100, /* kept; more are counted in n_dropped */
	MIXER_MANIFEST_MAX_BYTES = 256 * 1024,
	MIXER_MIN_RATE_HZ = 8000,
	MIXER_MAX_RATE_HZ = 192000,
	MIXER_BLOCK_FRAMES = 4096, /* frames rendered per mixer_render_block call at most */
	MIXER_WAV_HEADER_MAX = 64,
	MIXER_STEM_ID_LEN = 37, /* a UUID and its NUL */
	MIXER_PATH_MAX = 48,
	MIXER_MSG_MAX = 200,
};
#define MIXER_MAX_MS   3600000.0 /* any time or duration: one hour */
#define MIXER_MAX_GAIN 4.0       /* volume and region gain levels */

enum mixer_edit_type {
	MIXER_TRIM,
	MIXER_OFFSET,
	MIXER_GAIN,
	MIXER_FADE_IN,
	MIXER_FADE_OUT,
	MIXER_SILENCE,
};

struct mixer_edit {
	enum mixer_edit_type type;
	double start_ms; /* trim, gain, silence (0 when absent) */
	double end_ms;   /* trim, gain, silence; has_end false: the clip's end */
	bool has_end;
	double position_ms; /* offset */
	double duration_ms; /* fade_in, fade_out */
	double level;       /* gain */
};

struct mixer_stem {
	int file;                        /* index into the uploads, -1 when stem_id is used */
	char stem_id[MIXER_STEM_ID_LEN]; /* "" when file is used */
	double volume, pan;
	bool mute, solo;
	int n_edits;
	struct mixer_edit *edits; /* malloced, n_edits long; mixer_manifest_free */
};

struct mixer_manifest {
	int sample_rate_hz; /* 0: the native rate of stems[0]'s source */
	int bit_depth;      /* 16, 24 or 32 (float) */
	bool normalize;
	int n_stems;
	struct mixer_stem stems[MIXER_MAX_STEMS];
};

/* Releases the edits; safe on a zeroed or already freed manifest. */
void mixer_manifest_free(struct mixer_manifest *m);

/* ---- plans and rendering ----------------------------------------------------------- */

struct mixer_plan;

/* Reads frames [frame, frame + n) of manifest stem `stem`'s source as interleaved stereo
 * float into lr (2 * n floats); frames past the source's end must read as 0. Returns 0 or
 * a negative SFA_E* code (rendering stops with it). */
typedef int (*mixer_read_fn)(void *arg, int stem, int64_t frame, size_t n, float *lr);

/* Builds the plan for m at rate_hz (> 0), given the length in frames of each manifest
 * stem's source at that rate (n_source_frames[i] for m->stems[i]). Fails with SFA_ETOOBIG
 * when the WAV would pass 4 GiB, SFA_EINVAL for bad arguments, SFA_ENOMEM.
 * *out is malloced; mixer_plan_free releases it. m may be freed afterwards. */
int mixer_plan_new(const struct mixer_manifest *m, int rate_hz, const int64_t *n_source_frames,
                   struct mixer_plan **out, char *err, size_t n_err);
void mixer_plan_free(struct mixer_plan *p);

/* The mix's length in frames, its rate and bit depth. */
int64_t mixer_plan_frames(const struct mixer_plan *p);
int mixer_plan_rate(const struct mixer_plan *p);
int mixer_plan_bit_depth(const struct mixer_plan *p);
/* The size of the whole WAV file (header included) the plan renders. */
uint64_t mixer_plan_wav_bytes(const struct mixer_plan *p);

/* Renders mix frames [frame, frame + n), n <= MIXER_BLOCK_FRAMES, as interleaved stereo
 * float into lr (before normalisation). Frames past the mix's end are 0. Returns 0 or the
 * read callback's error. */
int mixer_render_block(struct mixer_plan *p, int64_t frame, size_t n, mixer_read_fn read, void *arg,
                       float *lr);

struct mixer_stats {
	double peak;        /* max |sample| of the mix before normalisation */
	double gain;        /* what the output pass multiplies by: 1, or normalisation's */
	uint64_t n_clipped; /* samples (per channel) the output clips */
};

/* The first pass: renders the whole mix once, without output, to find the peak, the
 * output gain and how many samples the output will clip. */
int mixer_scan(struct mixer_plan *p, mixer_read_fn read, void *arg, struct mixer_stats *st);

/* Receives output bytes; returns 0 or a negative code that stops the output. */
typedef int (*mixer_write_fn)(void *arg, const void *data, size_t n);

/* The output pass: writes the WAV header and the mix scaled by st->gain, in blocks.
 * *n_clipped (may be NULL) counts the samples clipped (equal to st->n_clipped). */
int mixer_write_wav(struct mixer_plan *p, mixer_read_fn read, void *arg,
                    const struct mixer_stats *st, mixer_write_fn write, void *warg,
                    uint64_t *n_clipped);

/* Writes the WAV header for n_frames of stereo at rate_hz and bit_depth (16, 24, 32 =
 * float) into hdr (MIXER_WAV_HEADER_MAX bytes); returns its length (44, or 58 for float
 * with its fact chunk). */
size_t mixer_wav_header(int rate_hz, int bit_depth, int64_t n_frames, unsigned char *hdr);

/* Encodes n interleaved stereo frames scaled by gain at bit_depth into out
 * (n * 2 * bit_depth / 8 bytes), adding the samples it clips to *n_clipped. */
void mixer_encode(const float *lr, size_t n, float gain, int bit_depth, unsigned char *out,
                  uint64_t *n_clipped);

/* ms -> frames at rate_hz, rounded to nearest, halves up (ms >= 0). */
int64_t mixer_ms_to_frames(double ms, int rate_hz);

#endif
