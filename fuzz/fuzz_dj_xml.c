/* libFuzzer harness: the DJ collection writers (core/djxml.c), fed text from outside.
 *
 * Input layout: fields separated by 0x1F - title, artist, album, location, kind - then
 * bytes for the numbers (BPM, first beat, key). Titles and tags come from users, uploads
 * and Spotify, so any bytes may arrive. Checks: the writers either refuse (an invalid
 * location) or produce a document that libxml2's own parser reads back as well-formed XML,
 * both for Rekordbox and for Traktor, with the track's title intact when it was valid
 * UTF-8 without control characters.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>

#include "core/djxml.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
	if (!ok)
		__builtin_trap();
}

static void silent(void *ctx, const char *msg, ...)
{
	(void)ctx;
	(void)msg;
}

static void read_back(const char *doc, size_t n)
{
	xmlDocPtr d = xmlReadMemory(doc, (int)n, "collection.xml", NULL,
	                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	check(d != NULL);
	xmlFreeDoc(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 64 * 1024)
		return 0;
	xmlSetGenericErrorFunc(NULL, silent);
	char *buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	char *field[6] = {0};
	int n_fields = 0;
	char *p = buf;
	while (n_fields < 6) {
		field[n_fields++] = p;
		char *sep = memchr(p, 0x1F, strlen(p));
		if (!sep)
			break;
		*sep = '\0';
		p = sep + 1;
	}
	const char *tail = n_fields == 6 ? field[5] : "";
	size_t nt = strlen(tail);
	struct dj_track t = {
		.title = field[0],
		.artist = field[1] ? field[1] : "",
		.album = field[2] ? field[2] : "",
		.location = field[3] ? field[3] : "/Music/a.wav",
		.kind = field[4] ? field[4] : "WAV File",
		.size_bytes = (int64_t)size * 1000,
		.duration_s = nt > 0 ? (double)(unsigned char)tail[0] * 1.7 : 0,
		.sample_rate_hz = 44100,
		.bit_rate_kbps = 1411,
		.bpm = nt > 1 ? (double)(unsigned char)tail[1] * 0.9 : 0,
		.first_beat_s = nt > 2 ? (double)(signed char)tail[2] / 50.0 : -1,
		.key_pc = nt > 3 ? (unsigned char)tail[3] % 13 - 1 : -1,
		.key_minor = nt > 4 ? tail[4] & 1 : 0,
		.added_at = nt > 5 ? (int64_t)(unsigned char)tail[5] * 86400 * 200 : 0,
	};
	/* a cue named by outside text too */
	struct dj_cue cue = {nt > 6 ? (double)(unsigned char)tail[6] * 0.5 : 0, t.album};
	t.cues = nt > 6 ? &cue : NULL;
	t.n_cues = nt > 6;
	bool valid_location = dj_path_valid(t.location) != 0;
	struct dj_track two[2] = {t, t};
	char *doc = NULL;
	size_t n = 0;
	int rc = dj_rekordbox_xml(two, 2, t.artist, &doc, &n);
	check(valid_location ? rc == 0 : rc != 0);
	if (rc == 0) {
		read_back(doc, n);
		bool plain = utf8_valid(t.title, strlen(t.title));
		for (const char *c = t.title; plain && *c; c++)
			plain = (unsigned char)*c >= 0x20 && *c != 0x7f;
		/* a plain title without markup characters appears verbatim */
		if (plain && !strpbrk(t.title, "&<>\"'") && !strstr(t.title, "\xEF\xBF\xBE") &&
		    !strstr(t.title, "\xEF\xBF\xBF"))
			check(strstr(doc, t.title) != NULL);
		free(doc);
	}
	rc = dj_traktor_nml(two, 2, t.album, &doc, &n);
	check(valid_location ? rc == 0 : rc != 0);
	if (rc == 0) {
		read_back(doc, n);
		free(doc);
	}
	free(buf);
	return 0;
}
