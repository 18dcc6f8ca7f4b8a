/* spotify_url.c - parse pasted Spotify links and URIs (see spotify_url.h).
 *
 * The grammar is small, so it is written out by hand rather than with a regex engine:
 *   input   := ws* (uri | web) ws*
 *   uri     := "spotify:" (kind ":" ID | "user:" U ":playlist:" ID) [("?" | "#") any]
 *   web     := [("https" | "http") "://"] "open.spotify.com" path [("?" | "#") any]
 *   path    := "/" [intl "/"] ["embed/"] (kind "/" ID | "user/" U "/playlist/" ID) ["/"]
 *   intl    := "intl-" ALPHA ALPHA ["-" ALPHA+]
 *   kind    := "track" | "album" | "playlist"
 *   ID      := 22 x [0-9A-Za-z]
 * The scheme and host compare case-insensitively (RFC 3986); the path does not. The
 * whole input is percent-decoded once before parsing, which handles URL-encoded URIs
 * ("spotify%3Atrack%3A...") and links pasted from another link's query string. A bad
 * escape, a control byte or white space inside the link rejects it: nothing here guesses.
 *
 * Everything works on a stack buffer of SPOTIFY_URL_MAX_BYTES: no allocation, no state,
 * thread-safe.
 */
#include "clients/spotify_url.h"

#include <stdio.h>
#include <string.h>

#include "util/err.h"
#include "util/str.h"

enum { MAX_SEGMENTS = 8 };

struct seg {
	const char *p;
	size_t n;
};

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

static bool is_base62(char c) { return is_alpha(c) || (c >= '0' && c <= '9'); }

bool spotify_id_valid(const char *s, size_t n)
{
	if (n != SPOTIFY_ID_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_base62(s[i]))
			return false;
	return true;
}

const char *spotify_kind_name(enum spotify_kind kind)
{
	switch (kind) {
	case SPOTIFY_TRACK:
		return "track";
	case SPOTIFY_ALBUM:
		return "album";
	case SPOTIFY_PLAYLIST:
		return "playlist";
	}
	return "unknown";
}

void spotify_canonical_url(const struct spotify_ref *ref, char *out, size_t n_out)
{
	snprintf(out, n_out, "https://open.spotify.com/%s/%s", spotify_kind_name(ref->kind),
	         ref->id);
}

/* Trims white space; sets *start and *n. */
static void trim(const char *input, const char **start, size_t *n)
{
	const char *s = input;
	while (*s && is_ws(*s))
		s++;
	size_t len = strlen(s);
	while (len > 0 && is_ws(s[len - 1]))
		len--;
	*start = s;
	*n = len;
}

static bool seg_is(struct seg s, const char *word)
{
	size_t n = strlen(word);
	return s.n == n && memcmp(s.p, word, n) == 0;
}

static bool kind_of(struct seg s, enum spotify_kind *kind)
{
	if (seg_is(s, "track"))
		*kind = SPOTIFY_TRACK;
	else if (seg_is(s, "album"))
		*kind = SPOTIFY_ALBUM;
	else if (seg_is(s, "playlist"))
		*kind = SPOTIFY_PLAYLIST;
	else
		return false;
	return true;
}

/* intl-[A-Za-z]{2}(-[A-Za-z]+)? */
static bool is_intl(struct seg s)
{
	if (s.n < 7 || memcmp(s.p, "intl-", 5) != 0 || !is_alpha(s.p[5]) || !is_alpha(s.p[6]))
		return false;
	if (s.n == 7)
		return true;
	if (s.p[7] != '-' || s.n == 8)
		return false;
	for (size_t i = 8; i < s.n; i++)
		if (!is_alpha(s.p[i]))
			return false;
	return true;
}

/* Splits p[0..n) at sep into at most MAX_SEGMENTS pieces. Returns the count, or -1 when
 * there are more. */
static int split(const char *p, size_t n, char sep, struct seg *segs)
{
	int n_segs = 0;
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && p[i] != sep)
			continue;
		if (n_segs == MAX_SEGMENTS)
			return -1;
		segs[n_segs].p = p + start;
		segs[n_segs].n = i - start;
		n_segs++;
		start = i + 1;
	}
	return n_segs;
}

/* Reads "kind ID" or "user U playlist ID" from segs[0..n_segs). */
static int parse_segments(const struct seg *segs, int n_segs, const char *what,
                          struct spotify_ref *out, char *err, size_t n_err)
{
	enum spotify_kind kind;
	struct seg id;
	if (n_segs >= 1 && seg_is(segs[0], "user")) {
		if (n_segs != 4 || segs[1].n == 0 || !seg_is(segs[2], "playlist"))
			return sfa_err(err, n_err, SFA_EINVAL,
			               "This %s does not point to a track, album or playlist.",
			               what);
		kind = SPOTIFY_PLAYLIST;
		id = segs[3];
	} else {
		if (n_segs < 1 || !kind_of(segs[0], &kind))
			return sfa_err(
				err, n_err, SFA_EINVAL,
				"Only Spotify track, album and playlist links are supported.");
		if (n_segs != 2)
			return sfa_err(err, n_err, SFA_EINVAL,
			               "This %s does not end with a Spotify id.", what);
		id = segs[1];
	}
	if (!spotify_id_valid(id.p, id.n))
		return sfa_err(err, n_err, SFA_EINVAL,
		               "The Spotify id in this %s is not 22 letters and digits.", what);
	out->kind = kind;
	memcpy(out->id, id.p, SPOTIFY_ID_LEN);
	out->id[SPOTIFY_ID_LEN] = '\0';
	return 0;
}

/* Length of the part before the first '?' or '#'. */
static size_t locator_len(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] == '?' || p[i] == '#')
			return i;
	return n;
}

static int parse_uri(const char *p, size_t n, struct spotify_ref *out, char *err, size_t n_err)
{
	struct seg segs[MAX_SEGMENTS];
	int n_segs = split(p, locator_len(p, n), ':', segs);
	if (n_segs < 0)
		return sfa_err(err, n_err, SFA_EINVAL, "This Spotify URI has too many parts.");
	return parse_segments(segs, n_segs, "Spotify URI", out, err, n_err);
}

static int parse_web(const char *p, size_t n, struct spotify_ref *out, char *err, size_t n_err)
{
	if (n >= 8 && str_ieq_n("https://", p, 8)) {
		p += 8;
		n -= 8;
	} else if (n >= 7 && str_ieq_n("http://", p, 7)) {
		p += 7;
		n -= 7;
	}
	size_t n_host = 0;
	while (n_host < n && p[n_host] != '/' && p[n_host] != '?' && p[n_host] != '#')
		n_host++;
	if (n_host == 12 && str_ieq_n("spotify.link", p, 12))
		return sfa_err(err, n_err, SFA_EINVAL,
		               "This is a spotify.link short link; it has to be followed first.");
	if (n_host != 16 || !str_ieq_n("open.spotify.com", p, 16))
		return sfa_err(err, n_err, SFA_EINVAL,
		               "This is not a Spotify link (open.spotify.com/... or spotify:...).");
	p += n_host;
	n -= n_host;
	size_t n_path = locator_len(p, n);
	if (n_path < 2 || p[0] != '/')
		return sfa_err(err, n_err, SFA_EINVAL,
		               "This Spotify link does not point to a track, album or playlist.");
	/* Drop the leading slash and one trailing slash. */
	p++;
	n_path--;
	if (p[n_path - 1] == '/')
		n_path--;
	struct seg segs[MAX_SEGMENTS];
	int n_segs = split(p, n_path, '/', segs);
	if (n_segs < 0)
		return sfa_err(err, n_err, SFA_EINVAL, "This Spotify link has too many parts.");
	int first = 0;
	if (first < n_segs && is_intl(segs[first]))
		first++;
	if (first < n_segs && seg_is(segs[first], "embed"))
		first++;
	return parse_segments(segs + first, n_segs - first, "link", out, err, n_err);
}

int spotify_url_parse(const char *input, struct spotify_ref *out, char *err, size_t n_err)
{
	if (!input)
		return sfa_err(err, n_err, SFA_EINVAL, "No Spotify link was given.");
	const char *s;
	size_t n;
	trim(input, &s, &n);
	if (n == 0)
		return sfa_err(err, n_err, SFA_EINVAL, "No Spotify link was given.");
	if (n > SPOTIFY_URL_MAX_BYTES)
		return sfa_err(err, n_err, SFA_EINVAL, "This link is longer than %d bytes.",
		               SPOTIFY_URL_MAX_BYTES);
	char dec[SPOTIFY_URL_MAX_BYTES + 1];
	size_t n_dec = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '%') {
			int hi = i + 2 < n ? str_hex_value(s[i + 1]) : -1;
			int lo = i + 2 < n ? str_hex_value(s[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				return sfa_err(err, n_err, SFA_EINVAL,
				               "This link has a broken %%-escape.");
			c = (char)(hi * 16 + lo);
			i += 2;
		}
		unsigned char u = (unsigned char)c;
		if (u <= 0x20 || u == 0x7f)
			return sfa_err(err, n_err, SFA_EINVAL,
			               "This link contains spaces or control characters.");
		dec[n_dec++] = c;
	}
	dec[n_dec] = '\0';
	if (n_dec >= 8 && str_ieq_n("spotify:", dec, 8))
		return parse_uri(dec + 8, n_dec - 8, out, err, n_err);
	return parse_web(dec, n_dec, out, err, n_err);
}

/* host[:port] of a loopback address, for tests. */
static bool is_loopback_host(const char *p, size_t n)
{
	if (n < 9 || memcmp(p, "127.0.0.1", 9) != 0)
		return false;
	if (n == 9)
		return true;
	if (p[9] != ':' || n == 10 || n > 15)
		return false;
	for (size_t i = 10; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;
	return true;
}

bool spotify_url_short_link(const char *input, bool allow_http_loopback, char *url_out,
                            size_t n_url_out)
{
	if (!input)
		return false;
	const char *s;
	size_t n;
	trim(input, &s, &n);
	if (n == 0 || n > SPOTIFY_URL_MAX_BYTES)
		return false;
	bool https = false, http = false;
	const char *p = s;
	size_t rest = n;
	if (rest >= 8 && str_ieq_n("https://", p, 8)) {
		https = true;
		p += 8;
		rest -= 8;
	} else if (rest >= 7 && str_ieq_n("http://", p, 7)) {
		http = true;
		p += 7;
		rest -= 7;
	} else {
		for (size_t i = 0; i + 2 < rest; i++)
			if (p[i] == ':' && p[i + 1] == '/' && p[i + 2] == '/')
				return false; /* some other scheme */
	}
	size_t n_host = 0;
	while (n_host < rest && p[n_host] != '/' && p[n_host] != '?' && p[n_host] != '#')
		n_host++;
	bool spotify_host = (n_host == 12 && str_ieq_n("spotify.link", p, 12)) ||
	                    (n_host == 16 && str_ieq_n("spotify.app.link", p, 16));
	bool ok;
	if (spotify_host)
		ok = !http;
	else
		ok = allow_http_loopback && (http || https) && is_loopback_host(p, n_host);
	/* A path with at least one character after the slash. */
	if (!ok || n_host + 2 > rest || p[n_host] != '/')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char u = (unsigned char)s[i];
		if (u <= 0x20 || u == 0x7f)
			return false;
	}
	if (url_out) {
		/* The scheme is written in lower case; scheme-less input gets https. */
		int w = snprintf(url_out, n_url_out, "%s%.*s", http ? "http://" : "https://",
		                 (int)rest, p);
		if (w < 0 || (size_t)w >= n_url_out)
			return false;
	}
	return true;
}
