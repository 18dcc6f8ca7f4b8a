/* djxml.c - see djxml.h.
 *
 * Rekordbox (DJ_PLAYLISTS 1.0.0): COLLECTION of TRACK elements (times in seconds, Location
 * a file://localhost URI with the path percent-encoded), each with one TEMPO mark (Inizio =
 * the first beat, Metro 4/4, Battito 1: a downbeat), then PLAYLISTS with a ROOT node
 * holding one playlist of every TrackID.
 *
 * Traktor (NML 19): COLLECTION of ENTRY elements with LOCATION split as Traktor does
 * (VOLUME, DIR as "/:a/:b/:", FILE), INFO, TEMPO, MUSICAL_KEY and the beat grid as a
 * CUE_V2 of TYPE 4 (AutoGrid, START in milliseconds); the playlist lists PRIMARYKEYs
 * (VOLUME + DIR + FILE). A POSIX path under /Volumes/<name>/ is on that volume; any other
 * POSIX path on "Macintosh HD" (Traktor runs on macOS and Windows; it finds a file again
 * by name when the volume differs); "C:/..." on volume "C:".
 */
#include "core/djxml.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libxml/xmlwriter.h>

#include "util/err.h"
#include "util/utf8.h"

static const char *const RB_MAJOR[12] = {"C",  "Db", "D",  "Eb", "E",  "F",
                                         "F#", "G",  "Ab", "A",  "Bb", "B"};
static const char *const RB_MINOR[12] = {"Cm",  "C#m", "Dm",  "Ebm", "Em",  "Fm",
                                         "F#m", "Gm",  "G#m", "Am",  "Bbm", "Bm"};

const char *dj_rekordbox_key(int key_pc, int key_minor)
{
	if (key_pc < 0 || key_pc > 11)
		return "";
	return key_minor ? RB_MINOR[key_pc] : RB_MAJOR[key_pc];
}

int dj_traktor_key(int key_pc, int key_minor)
{
	if (key_pc < 0 || key_pc > 11)
		return -1;
	return key_pc + (key_minor ? 12 : 0);
}

static bool is_windows_path(const char *p)
{
	return ((p[0] >= 'A' && p[0] <= 'Z') || (p[0] >= 'a' && p[0] <= 'z')) && p[1] == ':' &&
	       (p[2] == '/' || p[2] == '\\');
}

int dj_path_valid(const char *path)
{
	if (!path || (path[0] != '/' && !is_windows_path(path)))
		return 0;
	size_t n = strlen(path);
	if (n >= DJ_PATH_MAX || !utf8_valid(path, n))
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)path[i] < 0x20 || path[i] == 0x7f)
			return 0;
	return 1;
}

/* ---- text as XML can carry it ------------------------------------------------------ */

/* s as text XML 1.0 can carry, malloced: read as UTF-8 (or, when it is not, as ISO-8859-1),
 * every control character (C0 and DEL; none belongs in a title) as a space, and the
 * non-characters U+FFFE and U+FFFF as U+FFFD. NULL when out of memory. */
static char *clean(const char *s)
{
	size_t n = 2 * strlen(s) + 1; /* ISO-8859-1 at most doubles */
	char *out = malloc(n);
	if (!out)
		return NULL;
	utf8_or_latin1(s, out, n);
	for (unsigned char *p = (unsigned char *)out; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			*p = ' ';
		else if (p[0] == 0xEF && p[1] == 0xBF && (p[2] == 0xBE || p[2] == 0xBF))
			p[2] = 0xBD;
	}
	return out;
}

struct w {
	xmlTextWriterPtr x;
	bool bad;
};

static void start(struct w *w, const char *name)
{
	w->bad |= xmlTextWriterStartElement(w->x, BAD_CAST name) < 0;
}

static void end(struct w *w) { w->bad |= xmlTextWriterEndElement(w->x) < 0; }

static void attr(struct w *w, const char *name, const char *value)
{
	char *text = clean(value);
	w->bad |= !text || xmlTextWriterWriteAttribute(w->x, BAD_CAST name, BAD_CAST text) < 0;
	free(text);
}

static void attrf(struct w *w, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void attrf(struct w *w, const char *name, const char *fmt, ...)
{
	char buf[128]; /* numbers and dates: plain ASCII, nothing to clean */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	w->bad |= xmlTextWriterWriteAttribute(w->x, BAD_CAST name, BAD_CAST buf) < 0;
}

static int begin(struct w *w, xmlBufferPtr *buf)
{
	*buf = xmlBufferCreate();
	w->x = *buf ? xmlNewTextWriterMemory(*buf, 0) : NULL;
	w->bad = !w->x;
	if (!w->bad) {
		w->bad |= xmlTextWriterSetIndent(w->x, 1) < 0;
		w->bad |= xmlTextWriterSetIndentString(w->x, BAD_CAST "  ") < 0;
		w->bad |= xmlTextWriterStartDocument(w->x, "1.0", "UTF-8", NULL) < 0;
	}
	return w->bad ? SFA_ENOMEM : 0;
}

static int finish(struct w *w, xmlBufferPtr buf, char **out, size_t *n_out)
{
	if (w->x) {
		w->bad |= xmlTextWriterEndDocument(w->x) < 0;
		xmlFreeTextWriter(w->x); /* flushes into buf */
	}
	int rc = w->bad ? SFA_ENOMEM : 0;
	if (!rc) {
		size_t n = (size_t)xmlBufferLength(buf);
		*out = malloc(n + 1);
		if (!*out) {
			rc = SFA_ENOMEM;
		} else {
			memcpy(*out, xmlBufferContent(buf), n);
			(*out)[n] = '\0';
			*n_out = n;
		}
	}
	if (buf)
		xmlBufferFree(buf);
	return rc;
}

static int check_tracks(const struct dj_track *tracks, size_t n)
{
	if (n > DJ_MAX_TRACKS || (n && !tracks))
		return SFA_EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!dj_path_valid(tracks[i].location))
			return SFA_EINVAL;
	return 0;
}

static void date_of(int64_t t, const char *fmt, char *out, size_t n)
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (!gmtime_r(&tt, &tm))
		memset(&tm, 0, sizeof tm);
	strftime(out, n, fmt, &tm);
}

/* ---- Rekordbox ---------------------------------------------------------------------- */

/* file://localhost/<path>, the path with '\' as '/' and every byte but unreserved ones,
 * '/' and a drive's ':' percent-encoded. */
static void file_uri(const char *path, char *out, size_t n)
{
	static const char HEX[] = "0123456789ABCDEF";
	size_t o = (size_t)snprintf(out, n, "file://localhost%s", path[0] == '/' ? "" : "/");
	for (const unsigned char *p = (const unsigned char *)path; *p && o + 4 < n; p++) {
		unsigned char c = *p == '\\' ? '/' : *p;
		bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
		            c == '~' || c == '/' ||
		            (c == ':' && p == (const unsigned char *)path + 1);
		if (keep) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = HEX[c >> 4];
			out[o++] = HEX[c & 15];
		}
	}
	out[o] = '\0';
}

int dj_rekordbox_xml(const struct dj_track *tracks, size_t n, const char *playlist, char **out,
                     size_t *n_out)
{
	int rc = check_tracks(tracks, n);
	if (rc)
		return rc;
	struct w w;
	xmlBufferPtr buf = NULL;
	rc = begin(&w, &buf);
	start(&w, "DJ_PLAYLISTS");
	attr(&w, "Version", "1.0.0");
	start(&w, "PRODUCT");
	attr(&w, "Name", "Sound Forge Alchemy");
	attr(&w, "Version", "1.0");
	attr(&w, "Company", "Sound Forge Alchemy");
	end(&w);
	start(&w, "COLLECTION");
	attrf(&w, "Entries", "%zu", n);
	for (size_t i = 0; i < n && !w.bad; i++) {
		const struct dj_track *t = &tracks[i];
		char uri[DJ_PATH_MAX * 3 + 32], date[16];
		file_uri(t->location, uri, sizeof uri);
		date_of(t->added_at, "%Y-%m-%d", date, sizeof date);
		start(&w, "TRACK");
		attrf(&w, "TrackID", "%zu", i + 1);
		attr(&w, "Name", t->title);
		attr(&w, "Artist", t->artist);
		attr(&w, "Album", t->album);
		attr(&w, "Kind", t->kind);
		attrf(&w, "Size", "%lld", (long long)t->size_bytes);
		attrf(&w, "TotalTime", "%lld", (long long)llround(t->duration_s));
		attr(&w, "DateAdded", date);
		attrf(&w, "BitRate", "%d", t->bit_rate_kbps);
		attrf(&w, "SampleRate", "%d", t->sample_rate_hz);
		attrf(&w, "AverageBpm", "%.2f", t->bpm);
		attr(&w, "Tonality", dj_rekordbox_key(t->key_pc, t->key_minor));
		attr(&w, "Location", uri);
		if (t->bpm > 0 && t->first_beat_s >= 0) {
			start(&w, "TEMPO");
			attrf(&w, "Inizio", "%.3f", t->first_beat_s);
			attrf(&w, "Bpm", "%.2f", t->bpm);
			attr(&w, "Metro", "4/4");
			attr(&w, "Battito", "1");
			end(&w);
		}
		for (size_t c = 0; c < t->n_cues; c++) { /* memory cues: Num -1 */
			start(&w, "POSITION_MARK");
			attr(&w, "Name", t->cues[c].name);
			attr(&w, "Type", "0");
			attrf(&w, "Start", "%.3f", t->cues[c].start_s);
			attr(&w, "Num", "-1");
			end(&w);
		}
		end(&w);
	}
	end(&w); /* COLLECTION */
	start(&w, "PLAYLISTS");
	start(&w, "NODE");
	attr(&w, "Type", "0");
	attr(&w, "Name", "ROOT");
	attr(&w, "Count", "1");
	start(&w, "NODE");
	attr(&w, "Name", playlist);
	attr(&w, "Type", "1");
	attr(&w, "KeyType", "0");
	attrf(&w, "Entries", "%zu", n);
	for (size_t i = 0; i < n && !w.bad; i++) {
		start(&w, "TRACK");
		attrf(&w, "Key", "%zu", i + 1);
		end(&w);
	}
	end(&w);
	end(&w);
	end(&w); /* PLAYLISTS */
	end(&w); /* DJ_PLAYLISTS */
	int rc2 = finish(&w, buf, out, n_out);
	return rc ? rc : rc2;
}

/* ---- Traktor ------------------------------------------------------------------------ */

struct tk_location {
	char volume[256];
	char dir[DJ_PATH_MAX * 2];
	char file[DJ_PATH_MAX];
};

static void tk_split(const char *path, struct tk_location *l)
{
	char p[DJ_PATH_MAX];
	snprintf(p, sizeof p, "%s", path);
	for (char *c = p; *c; c++)
		if (*c == '\\')
			*c = '/';
	const char *rest = p;
	if (is_windows_path(p)) {
		snprintf(l->volume, sizeof l->volume, "%c:", p[0]);
		rest = p + 2;
	} else if (strncmp(p, "/Volumes/", 9) == 0 && strchr(p + 9, '/')) {
		const char *slash = strchr(p + 9, '/');
		snprintf(l->volume, sizeof l->volume, "%.*s", (int)(slash - (p + 9)), p + 9);
		rest = slash;
	} else {
		snprintf(l->volume, sizeof l->volume, "Macintosh HD");
	}
	const char *last = strrchr(rest, '/');
	snprintf(l->file, sizeof l->file, "%s", last ? last + 1 : rest);
	size_t o = 0;
	l->dir[0] = '\0';
	for (const char *c = rest; last && c <= last && o + 3 < sizeof l->dir; c++) {
		if (*c == '/') {
			if (o == 0 || l->dir[o - 1] != ':') { /* "//" counts once */
				l->dir[o++] = '/';
				l->dir[o++] = ':';
			}
		} else {
			l->dir[o++] = *c;
		}
	}
	l->dir[o] = '\0';
}

int dj_traktor_nml(const struct dj_track *tracks, size_t n, const char *playlist, char **out,
                   size_t *n_out)
{
	int rc = check_tracks(tracks, n);
	if (rc)
		return rc;
	struct tk_location *locs = n ? malloc(n * sizeof *locs) : NULL;
	if (n && !locs)
		return SFA_ENOMEM;
	for (size_t i = 0; i < n; i++)
		tk_split(tracks[i].location, &locs[i]);
	struct w w;
	xmlBufferPtr buf = NULL;
	rc = begin(&w, &buf);
	start(&w, "NML");
	attr(&w, "VERSION", "19");
	start(&w, "HEAD");
	attr(&w, "COMPANY", "www.native-instruments.com");
	attr(&w, "PROGRAM", "Traktor");
	end(&w);
	start(&w, "MUSICFOLDERS");
	end(&w);
	start(&w, "COLLECTION");
	attrf(&w, "ENTRIES", "%zu", n);
	for (size_t i = 0; i < n && !w.bad; i++) {
		const struct dj_track *t = &tracks[i];
		char date[16];
		date_of(t->added_at, "%Y/%-m/%-d", date, sizeof date);
		start(&w, "ENTRY");
		attr(&w, "MODIFIED_DATE", date);
		attr(&w, "TITLE", t->title);
		attr(&w, "ARTIST", t->artist);
		start(&w, "LOCATION");
		attr(&w, "DIR", locs[i].dir);
		attr(&w, "FILE", locs[i].file);
		attr(&w, "VOLUME", locs[i].volume);
		attr(&w, "VOLUMEID", locs[i].volume);
		end(&w);
		if (t->album[0]) {
			start(&w, "ALBUM");
			attr(&w, "TITLE", t->album);
			end(&w);
		}
		start(&w, "INFO");
		attrf(&w, "BITRATE", "%d", t->bit_rate_kbps * 1000);
		if (t->key_pc >= 0)
			attr(&w, "KEY", dj_rekordbox_key(t->key_pc, t->key_minor));
		attrf(&w, "PLAYTIME", "%lld", (long long)llround(t->duration_s));
		attrf(&w, "PLAYTIME_FLOAT", "%.6f", t->duration_s);
		attr(&w, "IMPORT_DATE", date);
		attrf(&w, "FILESIZE", "%lld", (long long)((t->size_bytes + 1023) / 1024));
		end(&w);
		if (t->bpm > 0) {
			start(&w, "TEMPO");
			attrf(&w, "BPM", "%.6f", t->bpm);
			attr(&w, "BPM_QUALITY", "100.000000");
			end(&w);
		}
		if (t->key_pc >= 0) {
			start(&w, "MUSICAL_KEY");
			attrf(&w, "VALUE", "%d", dj_traktor_key(t->key_pc, t->key_minor));
			end(&w);
		}
		if (t->bpm > 0 && t->first_beat_s >= 0) {
			start(&w, "CUE_V2");
			attr(&w, "NAME", "AutoGrid");
			attr(&w, "DISPL_ORDER", "0");
			attr(&w, "TYPE", "4");
			attrf(&w, "START", "%.6f", t->first_beat_s * 1000.0);
			attr(&w, "LEN", "0.000000");
			attr(&w, "REPEATS", "-1");
			attr(&w, "HOTCUE", "0");
			end(&w);
		}
		for (size_t c = 0; c < t->n_cues; c++) { /* stored cues (type 0), no hot cue */
			start(&w, "CUE_V2");
			attr(&w, "NAME", t->cues[c].name);
			attrf(&w, "DISPL_ORDER", "%zu", c + 1);
			attr(&w, "TYPE", "0");
			attrf(&w, "START", "%.6f", t->cues[c].start_s * 1000.0);
			attr(&w, "LEN", "0.000000");
			attr(&w, "REPEATS", "-1");
			attr(&w, "HOTCUE", "-1");
			end(&w);
		}
		end(&w); /* ENTRY */
	}
	end(&w); /* COLLECTION */
	start(&w, "PLAYLISTS");
	start(&w, "NODE");
	attr(&w, "TYPE", "FOLDER");
	attr(&w, "NAME", "$ROOT");
	start(&w, "SUBNODES");
	attr(&w, "COUNT", "1");
	start(&w, "NODE");
	attr(&w, "TYPE", "PLAYLIST");
	attr(&w, "NAME", playlist);
	start(&w, "PLAYLIST");
	attrf(&w, "ENTRIES", "%zu", n);
	attr(&w, "TYPE", "LIST");
	for (size_t i = 0; i < n && !w.bad; i++) {
		char key[sizeof locs[i].volume + sizeof locs[i].dir + sizeof locs[i].file];
		snprintf(key, sizeof key, "%s%s%s", locs[i].volume, locs[i].dir, locs[i].file);
		start(&w, "ENTRY");
		start(&w, "PRIMARYKEY");
		attr(&w, "TYPE", "TRACK");
		attr(&w, "KEY", key);
		end(&w);
		end(&w);
	}
	end(&w); /* PLAYLIST */
	end(&w); /* NODE */
	end(&w); /* SUBNODES */
	end(&w); /* NODE */
	end(&w); /* PLAYLISTS */
	end(&w); /* NML */
	free(locs);
	int rc2 = finish(&w, buf, out, n_out);
	return rc ? rc : rc2;
}
