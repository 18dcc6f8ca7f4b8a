/* mixer_cli.c - `sfa daw-render` (see mixer_cli.h for the command and its protocol).
 *
 * Memory: the decoder hands over a few thousand frames at a time, written straight to the
 * source's temporary file; rendering reads one block per stem with pread. So the process
 * stays at a few MiB whatever the length of the stems or of the mix, and the decoded
 * stems live in the page cache, not in this process.
 */
#include "audio/mixer_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audio/audio.h"
#include "audio/mixer.h"
#include "audio/mixer_manifest.h"
#include "util/err.h"
#include "util/fs.h"

enum { MIXER_CLI_MAX_SOURCES = MIXER_MAX_STEMS, MIXER_CLI_CHUNK = 32768 };
/* The decoded stems of one export may take this much scratch disk in all: 16 stems of
 * 10 minutes at 48 kHz take 2.5 GiB, and a request cannot make the server write without
 * bound by asking for 192 kHz. */
#define MIXER_CLI_MAX_DECODED_BYTES ((int64_t)8 << 30) /* --max-decoded-mb lowers it */

struct mixer_cli_source {
	const char *path;
	int fd; /* the decoded stereo float frames, -1 until decoded */
	int64_t n_frames;
	int first_stem; /* the first manifest stem that uses it, for error messages */
};

struct mixer_cli {
	struct mixer_cli_source src[MIXER_CLI_MAX_SOURCES];
	int n_src;
	int stem_src[MIXER_MAX_STEMS]; /* manifest stem -> source */
	const char *work_dir;
	int out_fd;
	/* the decode sink's interleaving buffer */
	int sink_fd;
	int64_t sink_frames;
	int64_t n_decoded_bytes; /* of every source so far, against max_decoded_bytes */
	int64_t max_decoded_bytes;
	bool over_budget;
	size_t n_chunk;
	float chunk[2 * MIXER_CLI_CHUNK];
};

static int mixer_cli_write_all(int fd, const void *data, size_t n)
{
	const char *p = data;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return SFA_EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int mixer_cli_write(void *arg, const void *data, size_t n)
{
	return mixer_cli_write_all(*(int *)arg, data, n);
}

/* Prints the protocol's first line (obj is consumed). */
static void mixer_cli_line(json_t *obj)
{
	char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	json_decref(obj);
	if (!text) {
		static const char oom[] = "{\"error\":\"out of memory\",\"code\":\"internal\"}\n";
		mixer_cli_write_all(1, oom, sizeof oom - 1);
		return;
	}
	mixer_cli_write_all(1, text, strlen(text));
	mixer_cli_write_all(1, "\n", 1);
	free(text);
}

static int mixer_cli_fail(const char *code, int stem, const char *msg)
{
	json_t *o = json_pack("{s:s, s:s}", "error", msg, "code", code);
	if (o && stem >= 0)
		json_object_set_new(o, "stem", json_integer(stem));
	mixer_cli_line(o);
	return 1;
}

/* Writes the interleaved frames gathered so far to sink_fd. */
static int mixer_cli_flush(struct mixer_cli *c)
{
	int64_t bytes = (int64_t)(c->n_chunk * 2 * sizeof(float));
	if (c->n_decoded_bytes + bytes > c->max_decoded_bytes) {
		c->over_budget = true;
		return SFA_ETOOBIG;
	}
	c->n_decoded_bytes += bytes;
	if (c->n_chunk && mixer_cli_write_all(c->sink_fd, c->chunk, (size_t)bytes))
		return SFA_EIO;
	c->sink_frames += (int64_t)c->n_chunk;
	c->n_chunk = 0;
	return 0;
}

/* The decoder's sink: interleaves, replaces non-finite values with 0, and appends to
 * sink_fd in large writes (decoders hand over a few hundred frames at a time). */
static int mixer_cli_sink(void *arg, const float *const *planes, size_t n)
{
	struct mixer_cli *c = arg;
	for (size_t i = 0; i < n; i++) {
		int rc;
		if (c->n_chunk == MIXER_CLI_CHUNK && (rc = mixer_cli_flush(c)) != 0)
			return rc;
		float l = planes[0][i], r = planes[1][i];
		c->chunk[2 * c->n_chunk] = isfinite(l) ? l : 0.0f;
		c->chunk[2 * c->n_chunk + 1] = isfinite(r) ? r : 0.0f;
		c->n_chunk++;
	}
	return 0;
}

/* Decodes source s to stereo float at rate (0: its own rate, returned in *rate). */
static int mixer_cli_decode(struct mixer_cli *c, struct mixer_cli_source *s, int *rate, char *err,
                            size_t n_err)
{
	int in = open(s->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (in < 0)
		return sfa_err(err, n_err, SFA_ENOTFOUND, "the file could not be opened");
	int fd = fs_tmpfile(c->work_dir);
	if (fd < 0) {
		close(in);
		return sfa_err(err, n_err, SFA_EIO, "no room for the decoded audio: %s",
		               strerror(errno));
	}
	c->sink_fd = fd;
	c->sink_frames = 0;
	c->n_chunk = 0;
	struct audio_stream_info info;
	int rc = audio_decode_stream_fd(in, *rate, 2, 0, mixer_cli_sink, c, &info, err, n_err);
	close(in);
	if (rc == 0 && mixer_cli_flush(c) != 0)
		rc = sfa_err(err, n_err, SFA_EIO, "no room for the decoded audio");
	if (c->over_budget)
		rc = sfa_err(
			err, n_err, SFA_ETOOBIG,
			"the stems are too long together: one export may decode at most %lld MiB "
			"of audio (about %.0f minutes of stereo at %d Hz)",
			(long long)(c->max_decoded_bytes >> 20),
			(double)c->max_decoded_bytes / 8.0 / (*rate ? *rate : 44100) / 60.0,
			*rate ? *rate : 44100);
	if (rc) {
		close(fd);
		return rc;
	}
	s->fd = fd;
	s->n_frames = c->sink_frames;
	*rate = info.sample_rate_hz;
	return 0;
}

/* mixer_read_fn over the decoded files. */
static int mixer_cli_read(void *arg, int stem, int64_t frame, size_t n, float *lr)
{
	struct mixer_cli *c = arg;
	const struct mixer_cli_source *s = &c->src[c->stem_src[stem]];
	size_t want = 0;
	if (frame >= 0 && frame < s->n_frames)
		want = (size_t)(s->n_frames - frame < (int64_t)n ? s->n_frames - frame
		                                                 : (int64_t)n);
	off_t off = (off_t)frame * 2 * (off_t)sizeof(float);
	if (want && fs_pread_all(s->fd, lr, want * 2 * sizeof(float), off) != 0)
		return SFA_EIO;
	memset(lr + 2 * want, 0, (n - want) * 2 * sizeof(float));
	return 0;
}

static int mixer_cli_usage(const char *why)
{
	fprintf(stderr,
	        "sfa: %s\nusage: sfa daw-render --manifest FILE --work DIR [--file PATH]... "
	        "[--stem ID=PATH]... [--out PATH] [--max-decoded-mb N]\n",
	        why);
	return 2;
}

static int mixer_cli_read_manifest(const char *path, char **text, size_t *n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return SFA_EIO;
	char *buf = malloc(MIXER_MANIFEST_MAX_BYTES + 1);
	size_t len = 0;
	int rc = buf ? 0 : SFA_ENOMEM;
	while (rc == 0) {
		ssize_t r = read(fd, buf + len, MIXER_MANIFEST_MAX_BYTES + 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			rc = SFA_EIO;
		if (r <= 0)
			break;
		len += (size_t)r;
		if (len > MIXER_MANIFEST_MAX_BYTES)
			rc = SFA_ETOOBIG;
	}
	close(fd);
	if (rc) {
		free(buf);
		return rc;
	}
	*text = buf;
	*n = len;
	return 0;
}

int mixer_cli_render(int argc, char **argv)
{
	const char *manifest_path = NULL, *work = NULL, *out_path = NULL;
	int64_t max_decoded = MIXER_CLI_MAX_DECODED_BYTES;
	const char *files[MIXER_MAX_FILES];
	const char *stem_ids[MIXER_MAX_STEMS], *stem_paths[MIXER_MAX_STEMS];
	int n_files = 0, n_stem_ids = 0;
	for (int i = 0; i < argc; i += 2) {
		if (i + 1 >= argc)
			return mixer_cli_usage("every option takes a value");
		const char *k = argv[i], *v = argv[i + 1];
		if (strcmp(k, "--manifest") == 0) {
			manifest_path = v;
		} else if (strcmp(k, "--work") == 0) {
			work = v;
		} else if (strcmp(k, "--out") == 0) {
			out_path = v;
		} else if (strcmp(k, "--max-decoded-mb") == 0) {
			char *end;
			long long mb = strtoll(v, &end, 10);
			if (*end || mb < 1 || mb > (MIXER_CLI_MAX_DECODED_BYTES >> 20))
				return mixer_cli_usage("--max-decoded-mb takes 1 to 8192");
			max_decoded = (int64_t)mb << 20;
		} else if (strcmp(k, "--file") == 0) {
			if (n_files == MIXER_MAX_FILES)
				return mixer_cli_usage("too many --file options");
			files[n_files++] = v;
		} else if (strcmp(k, "--stem") == 0) {
			const char *eq = strchr(v, '=');
			if (!eq || eq - v != MIXER_STEM_ID_LEN - 1 || n_stem_ids == MIXER_MAX_STEMS)
				return mixer_cli_usage("--stem takes ID=PATH (at most 32)");
			stem_ids[n_stem_ids] = v;
			stem_paths[n_stem_ids++] = eq + 1;
		} else {
			return mixer_cli_usage("unknown option");
		}
	}
	if (!manifest_path || !work)
		return mixer_cli_usage("--manifest and --work are required");

	int status = 1;
	char err[512];
	char *text = NULL;
	size_t n_text = 0;
	struct mixer_manifest m;
	memset(&m, 0, sizeof m);
	struct mixer_plan *plan = NULL;
	struct mixer_cli *c = calloc(1, sizeof *c);
	struct mixer_errors *errs = calloc(1, sizeof *errs);
	if (!c || !errs) {
		mixer_cli_fail("internal", -1, "out of memory");
		goto out;
	}
	c->work_dir = work;
	c->out_fd = 1;
	c->max_decoded_bytes = max_decoded;
	if (mixer_cli_read_manifest(manifest_path, &text, &n_text) != 0) {
		mixer_cli_fail("internal", -1, "the manifest could not be read");
		goto out;
	}
	int rc = mixer_manifest_parse(text, n_text, n_files, NULL, NULL, &m, errs);
	if (rc) {
		snprintf(err, sizeof err, "the manifest is not valid: %s %s",
		         errs->n ? errs->e[0].path : "",
		         errs->n ? errs->e[0].msg : "out of memory");
		mixer_cli_fail("validation_failed", -1, err);
		goto out;
	}
	/* Sources: one per distinct file, in the order the stems first use them. */
	for (int i = 0; i < m.n_stems; i++) {
		const char *path = NULL;
		if (m.stems[i].file >= 0) {
			path = files[m.stems[i].file];
		} else {
			for (int k = 0; k < n_stem_ids && !path; k++)
				if (strncmp(stem_ids[k], m.stems[i].stem_id,
				            MIXER_STEM_ID_LEN - 1) == 0)
					path = stem_paths[k];
		}
		if (!path) {
			mixer_cli_fail("internal", i, "no file was given for this stem");
			goto out;
		}
		int s = 0;
		while (s < c->n_src && strcmp(c->src[s].path, path) != 0)
			s++;
		if (s == c->n_src) {
			c->src[s].path = path;
			c->src[s].fd = -1;
			c->src[s].first_stem = i;
			c->n_src++;
		}
		c->stem_src[i] = s;
	}
	int rate = m.sample_rate_hz; /* 0: the first stem's source decides */
	for (int s = 0; s < c->n_src; s++) {
		if ((rc = mixer_cli_decode(c, &c->src[s], &rate, err, sizeof err)) != 0) {
			mixer_cli_fail(c->over_budget                      ? "too_long"
			               : rc == SFA_EIO || rc == SFA_ENOMEM ? "internal"
			                                                   : "invalid_audio",
			               c->src[s].first_stem, err);
			goto out;
		}
	}
	int64_t lengths[MIXER_MAX_STEMS];
	for (int i = 0; i < m.n_stems; i++)
		lengths[i] = c->src[c->stem_src[i]].n_frames;
	if ((rc = mixer_plan_new(&m, rate, lengths, &plan, err, sizeof err)) != 0) {
		mixer_cli_fail(rc == SFA_ETOOBIG ? "too_long" : "internal", -1, err);
		goto out;
	}
	struct mixer_stats st;
	if (mixer_scan(plan, mixer_cli_read, c, &st) != 0) {
		mixer_cli_fail("internal", -1, "the decoded audio could not be read back");
		goto out;
	}
	if (out_path) {
		c->out_fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (c->out_fd < 0) {
			c->out_fd = 1;
			mixer_cli_fail("internal", -1, "the output file could not be created");
			goto out;
		}
	}
	mixer_cli_line(json_pack("{s:i, s:i, s:i, s:I, s:I, s:f, s:f, s:I}", "sample_rate", rate,
	                         "bit_depth", m.bit_depth, "channels", 2, "frames",
	                         (json_int_t)mixer_plan_frames(plan), "bytes",
	                         (json_int_t)mixer_plan_wav_bytes(plan), "peak", st.peak, "gain",
	                         st.gain, "clipped", (json_int_t)st.n_clipped));
	uint64_t clipped = 0;
	rc = mixer_write_wav(plan, mixer_cli_read, c, &st, mixer_cli_write, &c->out_fd, &clipped);
	if (rc) {
		fprintf(stderr, "sfa daw-render: the mix could not be written (%d)\n", rc);
		goto out;
	}
	if (clipped != st.n_clipped)
		fprintf(stderr,
		        "sfa daw-render: the scan counted %llu clipped samples, the output %llu\n",
		        (unsigned long long)st.n_clipped, (unsigned long long)clipped);
	status = 0;
out:
	if (c) {
		for (int s = 0; s < c->n_src; s++)
			if (c->src[s].fd >= 0)
				close(c->src[s].fd);
		if (c->out_fd > 1)
			close(c->out_fd);
	}
	mixer_plan_free(plan);
	mixer_manifest_free(&m);
	free(text);
	free(errs);
	free(c);
	return status;
}
