/* nn.h - the public face of the Demucs engine: load a model, separate a mix.
 *
 *   struct nn_model *m;
 *   nn_model_open("htdemucs", NULL, &m, err, sizeof err);      // name, .th or .yaml
 *   struct nn_separate_opts o;
 *   nn_separate_opts_init(&o);                                 // Demucs defaults
 *   float *stems;                                              // [source][channel][frame]
 *   nn_separate(m, mix, n_frames, &o, &stems, err, sizeof err);
 *   ... free(stems); nn_model_free(m);
 *
 * A model is a bag of one or more networks with per-source weights (htdemucs_ft is four
 * HTDemucs, each owning one stem). nn_separate() is what Demucs' `separate` command does:
 * standardise the whole track by its mono mix, apply_model (segments with overlap and
 * triangle weights, random shifts, the bag), undo the standardisation. Segments run in
 * parallel, one per worker thread, each worker with its own preallocated workspace; their
 * results are overlap-added in a fixed order, so the output does not depend on the number
 * of threads.
 *
 * When fewer segments are left than threads (a short clip, the last wave), the idle threads
 * join the running network as its team (they share its tiles and products), with the same
 * bits.
 *
 * Bags of several networks (htdemucs_ft, mdx_extra) are the exception, for memory: their
 * members are checked at open time and then kept only as file paths; nn_separate() loads
 * one member, runs it over the whole track (mdx_extra: one 44 s segment at a time, the
 * threads sharing its matrix products), adds its weighted output, frees it and loads the
 * next. The peak is then one member's weights (mdx_extra 335 MB, htdemucs_ft 168 MB) and
 * its activations (~0.4 GB at 44 s for mdx_extra, nn/hdemucs.c), plus the input; summed
 * outputs go to a temporary file when streamed. The output is the same bit for bit as with
 * every member resident (nn_model_keep_resident); each separation re-reads the member
 * files.
 *
 * Threading: a loaded model is read-only and may be used by several nn_separate() calls
 * at once. The progress callback is called from worker threads, one call at a time, in
 * increasing order of `done`. Engines never print; errors come back as SFA_* codes with a
 * sentence in err.
 */
#ifndef SFA_NN_NN_H
#define SFA_NN_NN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	NN_MAX_MEMBERS = 8,
	NN_MAX_STEMS = 16,
	NN_MAX_SEGMENT_S = 600, /* longest chunk for networks that take any length (HDemucs) */
};

struct nn_model;

struct nn_model_info {
	int n_sources;
	const char *sources[NN_MAX_STEMS]; /* owned by the model */
	int audio_channels;                /* 2 for every release model */
	int samplerate;                    /* 44100 */
	int n_members;
	double segment_s;     /* default chunk length in seconds */
	double max_segment_s; /* longest chunk the networks accept */
	size_t n_params;      /* all members */
};

/* Opens `spec`: a path to a .th checkpoint or a bag .yaml (members are looked up next to
 * it), or a model name resolved in models_dir (NULL = $SFA_MODELS_DIR or data/models):
 * <name>.yaml there if present, else the built-in definition of htdemucs, htdemucs_ft,
 * htdemucs_6s or mdx_extra. A missing member file gives SFA_ENOTFOUND saying which file
 * and how to fetch it. On success *out is the caller's (nn_model_free). */
int nn_model_open(const char *spec, const char *models_dir, struct nn_model **out, char *err,
                  size_t n_err);
/* Loads one checkpoint as a one-member bag; *out as nn_model_open's. */
int nn_model_load(const char *path, struct nn_model **out, char *err, size_t n_err);
/* Bags of several members are loaded one member at a time by every nn_separate() (the
 * peak holds one member's weights, and each separation re-reads the member files); this
 * loads every member now and keeps them for the model's life instead: faster repeated
 * separations, all the members' memory, the same output bit for bit. Call it before any
 * nn_separate() on m. 0, or the error of loading a member (naming its file). */
int nn_model_keep_resident(struct nn_model *m, char *err, size_t n_err);
void nn_model_free(struct nn_model *m);
/* Points into m: valid until nn_model_free. */
const struct nn_model_info *nn_model_info(const struct nn_model *m);

/* Precision of the matrix products (every convolution, linear and attention product). */
enum nn_precision {
	NN_PRECISION_FP32 = 0, /* OpenBLAS sgemm: the reference results */
	NN_PRECISION_BF16 = 1, /* operands rounded to bfloat16, fp32 sums: needs AVX512-BF16 */
};

/* "fp32" / "bf16" -> *out; -1 for anything else. */
int nn_precision_parse(const char *s, enum nn_precision *out);
const char *nn_precision_name(enum nn_precision p);
/* Whether this CPU runs bf16 products (AVX512F and AVX512-BF16, as cpuid says). When it
 * does not, or the environment sets SFA_CPU_NO_BF16 (to anything but 0: to test the
 * refusal on any CPU), false with a sentence for the user in why. Thread-safe. */
bool nn_bf16_supported(char *why, size_t n_why);

/* OpenBLAS picks its kernels by CPU model when it loads (before main) and falls back to
 * the SSE3 "Prescott" ones on models newer than it knows: Debian 12's 0.3.21 on family 6
 * model 207 (Emerald Rapids) runs sgemm at 31 GFLOP/s a core instead of the 150 its
 * AVX-512 kernels give. It reads OPENBLAS_CORETYPE only then, so a program calls this first
 * thing in main: when OpenBLAS fell back to Prescott on a CPU with AVX-512 (or AVX2 and
 * FMA), it sets OPENBLAS_CORETYPE to SkylakeX (or Haswell) and re-executes itself, same
 * pid and arguments; children inherit the setting. Otherwise (a known CPU, the variable
 * already set, no /proc) it returns and nothing changes. */
void nn_blas_pick_core(char **argv);

struct nn_separate_opts {
	int shifts;       /* random time shifts averaged (Demucs default 1; 0 = none) */
	double overlap;   /* between segments, in [0, 1) (default 0.25) */
	double segment_s; /* chunk length in seconds; 0 = the model's */
	bool split;       /* false: one forward over the whole input (must fit a segment) */
	bool normalize;   /* standardise by the mono mix first (default true, as `separate`) */
	uint64_t seed;    /* for the shift offsets */
	int n_threads;    /* 0 = one per available core */
	/* Progress: done of total forward passes. May be NULL. */
	void (*progress)(void *user, int done, int total);
	void *progress_user;
	const volatile int *cancel; /* non-zero asks to stop (SFA_ECANCELED); may be NULL */
	/* Streaming output (optional). When set, the stems are handed over as they become
	 * final instead of being returned: frames [frame0, frame0 + n_frames) of every plane
	 * ([source][channel] order), plane p starting at data + p * stride. Calls come in
	 * order, cover the track exactly once, one at a time (from a worker thread). A
	 * non-zero return aborts the separation (SFA_EIO). With one network and shifts <= 1
	 * only one segment of output is held in memory; otherwise (bags, shifts) the passes
	 * are summed in an anonymous temporary file in scratch_dir, one segment at a time,
	 * and handed over at the end: the memory does not grow with the track either way. */
	int (*sink)(void *user, const float *data, size_t stride, size_t frame0, size_t n_frames);
	void *sink_user;
	const char *scratch_dir; /* for that file; NULL = $TMPDIR, else /tmp */
	/* NN_PRECISION_FP32 (default) or NN_PRECISION_BF16: weights and activations rounded
	 * to bfloat16 as each product packs them, sums in fp32; about 2x the product
	 * throughput where the CPU has AVX512-BF16, refused (SFA_EUNSUPP) where it has not.
	 * The cost in quality is measured in bench/separate (per-stem SNR against fp32). */
	enum nn_precision precision;
};

void nn_separate_opts_init(struct nn_separate_opts *o);

/* Separates mix: audio_channels planes of n_frames samples at the model's samplerate
 * (planar, channel c at mix + c*n_frames). On success *out is a malloced array of
 * n_sources * audio_channels planes of n_frames samples ([source][channel][frame], in the
 * model's source order); the caller frees it. With o->sink set, nothing is returned
 * (out may be NULL) and the stems go to the sink. Errors: SFA_EINVAL (bad options), SFA_EUNSUPP (bf16 on a CPU without
 * AVX512-BF16),
 * SFA_ENOMEM, SFA_ECANCELED, SFA_EIO (the sink failed), and for an HDemucs bag whatever
 * loading a member file gives (SFA_EIO, SFA_EFORMAT, ... naming the file). */
int nn_separate(const struct nn_model *m, const float *mix, size_t n_frames,
                const struct nn_separate_opts *o, float **out, char *err, size_t n_err);

/* Floating-point operations done by the engine so far (all threads): for benchmarks. */
unsigned long long nn_flop_count(void);

#endif
