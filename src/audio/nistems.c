/* nistems.c - see nistems.h. */
#include "audio/nistems.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "audio/audio.h"
#include "util/err.h"
#include "util/fs.h"

const char *const nistems_names[NISTEMS_N_STEMS] = {"drums", "bass", "other", "vocals"};

char *nistems_metadata_json(void)
{
	static const char *const LABEL[NISTEMS_N_STEMS] = {"Drums", "Bass", "Other", "Vocals"};
	static const char *const COLOR[NISTEMS_N_STEMS] = {"#009E73", "#D55E00", "#CC79A7",
	                                                   "#56B4E9"};
	json_t *stems = json_array();
	for (int i = 0; stems && i < NISTEMS_N_STEMS; i++)
		json_array_append_new(stems,
		                      json_pack("{s:s, s:s}", "name", LABEL[i], "color", COLOR[i]));
	json_t *j = json_pack(
		"{s:i, s:{s:{s:b, s:f, s:f, s:f, s:i, s:f, s:f, s:f, s:i}, s:{s:b, s:f, s:f, s:f}}, "
		"s:o}",
		"version", 1, "mastering_dsp", "compressor", "enabled", 0, "input_gain", 0.5,
		"output_gain", 0.5, "threshold", 0.0, "dry_wet", 50, "attack", 0.003, "release",
		0.3, "ratio", 3.0, "hp_cutoff", 300, "limiter", "enabled", 0, "threshold", 0.0,
		"ceiling", -0.35, "release", 0.05, "stems", stems);
	char *text = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
	json_decref(j);
	return text;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Walks the boxes of buf[0..n); each must have an 8-byte header and a 32-bit size that
 * fits. Calls fn for each (offset, size, type); returns SFA_EFORMAT at the first bad one. */
static int boxes(const uint8_t *buf, size_t n,
                 int (*fn)(void *arg, size_t at, size_t size, const uint8_t *type), void *arg)
{
	size_t at = 0;
	while (at < n) {
		if (n - at < 8)
			return SFA_EFORMAT;
		uint32_t size = be32(buf + at);
		if (size < 8 || size > n - at) /* 0 (to the end) and 1 (64-bit) are not in a moov */
			return SFA_EFORMAT;
		int rc = fn(arg, at, size, buf + at + 4);
		if (rc)
			return rc;
		at += size;
	}
	return 0;
}

struct find {
	const char *type;
	size_t at, size;
	int count;
};

static int find_cb(void *arg, size_t at, size_t size, const uint8_t *type)
{
	struct find *f = arg;
	if (memcmp(type, f->type, 4) == 0) {
		f->at = at;
		f->size = size;
		f->count++;
	}
	return 0;
}

/* Appends the children of udta (body b, n bytes) but any 'stem' box, to out at *o. */
struct copy {
	const uint8_t *src;
	uint8_t *out;
	size_t o;
};

static int copy_cb(void *arg, size_t at, size_t size, const uint8_t *type)
{
	struct copy *c = arg;
	if (memcmp(type, "stem", 4) != 0) {
		memcpy(c->out + c->o, c->src + at, size);
		c->o += size;
	}
	return 0;
}

int nistems_insert_box(const uint8_t *moov, size_t n, const char *json, uint8_t **out,
                       size_t *n_out)
{
	size_t n_json = json ? strlen(json) : 0;
	if (n > NISTEMS_MAX_MOOV || n_json > NISTEMS_MAX_JSON)
		return SFA_ETOOBIG;
	if (n < 8 || be32(moov) != n || memcmp(moov + 4, "moov", 4) != 0)
		return SFA_EFORMAT;
	const uint8_t *body = moov + 8;
	size_t n_body = n - 8;
	struct find udta = {.type = "udta"};
	int rc = boxes(body, n_body, find_cb, &udta);
	if (rc)
		return rc;
	if (udta.count > 1)
		return SFA_EFORMAT;
	const uint8_t *ub = udta.count ? body + udta.at + 8 : NULL;
	size_t n_ub = udta.count ? udta.size - 8 : 0;
	/* new moov: header, children before udta, udta (its children but stem, then stem),
	 * children after udta */
	size_t cap = n + 16 + n_json;
	uint8_t *o = malloc(cap);
	if (!o)
		return SFA_ENOMEM;
	size_t w = 8;
	size_t before = udta.count ? udta.at : n_body;
	memcpy(o + w, body, before);
	w += before;
	size_t udta_at = w;
	w += 8;
	if (ub) { /* also checks udta's children */
		struct copy c = {.src = ub, .out = o, .o = w};
		if ((rc = boxes(ub, n_ub, copy_cb, &c)) != 0) {
			free(o);
			return rc;
		}
		w = c.o;
	}
	put_be32(o + w, (uint32_t)(8 + n_json));
	memcpy(o + w + 4, "stem", 4);
	if (n_json)
		memcpy(o + w + 8, json, n_json);
	w += 8 + n_json;
	put_be32(o + udta_at, (uint32_t)(w - udta_at));
	memcpy(o + udta_at + 4, "udta", 4);
	if (udta.count) {
		size_t after = udta.at + udta.size;
		memcpy(o + w, body + after, n_body - after);
		w += n_body - after;
	}
	put_be32(o, (uint32_t)w);
	memcpy(o + 4, "moov", 4);
	*out = o;
	*n_out = w;
	return 0;
}

int nistems_insert_box_fd(int fd, const char *json, char *err, size_t n_err)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return sfa_err(err, n_err, SFA_EIO, "cannot read the stems file: %s",
		               strerror(errno));
	/* find the last top-level box */
	off_t at = 0, last = -1;
	uint32_t last_size = 0;
	uint8_t h[16];
	while (at < st.st_size) {
		if (fs_pread_all(fd, h, 8, at) != 0)
			return sfa_err(err, n_err, SFA_EFORMAT, "the MP4 file is cut short");
		uint64_t size = be32(h);
		if (size == 1) {
			if (fs_pread_all(fd, h + 8, 8, at + 8) != 0)
				return sfa_err(err, n_err, SFA_EFORMAT,
				               "the MP4 file is cut short");
			size = (uint64_t)be32(h + 8) << 32 | be32(h + 12);
		} else if (size == 0) {
			size = (uint64_t)(st.st_size - at);
		}
		if (size < 8 || size > (uint64_t)(st.st_size - at))
			return sfa_err(err, n_err, SFA_EFORMAT, "the MP4 file has a bad box size");
		last = at;
		last_size = memcmp(h + 4, "moov", 4) == 0 && size <= NISTEMS_MAX_MOOV
		                    ? (uint32_t)size
		                    : 0;
		at += (off_t)size;
	}
	if (last < 0 || last_size == 0)
		return sfa_err(err, n_err, SFA_EFORMAT,
		               "the MP4 file does not end with its moov box");
	uint8_t *moov = malloc(last_size), *out = NULL;
	size_t n_out = 0;
	int rc = moov && fs_pread_all(fd, moov, last_size, last) == 0 ? 0 : SFA_EIO;
	if (!rc)
		rc = nistems_insert_box(moov, last_size, json, &out, &n_out);
	free(moov);
	if (!rc &&
	    (fs_pwrite_all(fd, out, n_out, last) != 0 || ftruncate(fd, last + (off_t)n_out) != 0))
		rc = SFA_EIO;
	free(out);
	if (rc)
		return sfa_err(err, n_err, rc,
		               "the stems metadata could not be added to the MP4 file");
	return 0;
}

/* ---- sfa nistems-render -------------------------------------------------------------- */

int nistems_cli(int argc, char **argv)
{
	const char *pos[1 + 1 + NISTEMS_N_STEMS];
	int n_pos = 0;
	const char *title = "", *artist = "";
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--title") && i + 1 < argc)
			title = argv[++i];
		else if (!strcmp(argv[i], "--artist") && i + 1 < argc)
			artist = argv[++i];
		else if (argv[i][0] != '-' && n_pos < (int)(sizeof pos / sizeof pos[0]))
			pos[n_pos++] = argv[i];
		else
			n_pos = -100;
	}
	if (n_pos != (int)(sizeof pos / sizeof pos[0])) {
		fprintf(stderr, "usage: sfa nistems-render OUT MASTER DRUMS BASS OTHER VOCALS "
		                "[--title T] [--artist A]\n");
		return 2;
	}
	char err[512];
	double seconds = 0;
	int rc = audio_write_nistems(pos[0], pos + 1, title, artist, &seconds, err, sizeof err);
	if (rc) {
		json_t *j = json_pack("{s:s}", "error", err);
		char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
		printf("%s\n", text ? text : "{\"error\":\"out of memory\"}");
		free(text);
		json_decref(j);
		return 1;
	}
	printf("{\"duration\":%.6f,\"tracks\":%d}\n", seconds, 1 + NISTEMS_N_STEMS);
	return 0;
}
