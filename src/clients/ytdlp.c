/* ytdlp.c - see ytdlp.h. */
#include "clients/ytdlp.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/str.h"

/* A whole non-negative number, possibly written as a float ("1234.0"); "NA" is unknown. */
static bool parse_count(const char *s, size_t n, int64_t *out)
{
	if (n == 0 || n > 24)
		return false;
	char tmp[32];
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	if (strcmp(tmp, "NA") == 0 || strcmp(tmp, "None") == 0) {
		*out = 0;
		return true;
	}
	double v;
	if (str_to_double(tmp, 0, 1e15, &v) != 0)
		return false;
	*out = (int64_t)v;
	return true;
}

bool ytdlp_parse_progress(const char *line, int64_t *done, int64_t *total)
{
	if (strncmp(line, "PROG ", 5) != 0)
		return false;
	int64_t v[3];
	const char *p = line + 5;
	for (int i = 0; i < 3; i++) {
		while (*p == ' ')
			p++;
		size_t n = strcspn(p, " ");
		if (!parse_count(p, n, &v[i]))
			return false;
		p += n;
	}
	while (*p == ' ')
		p++;
	if (*p)
		return false;
	*done = v[0];
	*total = v[1] ? v[1] : v[2];
	return true;
}

void ytdlp_pick_init(struct ytdlp_pick *p, double want_s)
{
	memset(p, 0, sizeof *p);
	p->want_s = want_s;
}

static bool http_url(const char *s)
{
	return s && (str_starts_with(s, "https://") || str_starts_with(s, "http://")) &&
	       strlen(s) < YTDLP_URL_MAX && !strpbrk(s, " \t\r\n");
}

static bool youtube_id(const char *s)
{
	if (!s || strlen(s) != 11)
		return false;
	for (const char *c = s; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '-' || *c == '_'))
			return false;
	return true;
}

void ytdlp_pick_feed(struct ytdlp_pick *p, const char *line)
{
	if (*line != '{' || strlen(line) > YTDLP_JSON_LINE_MAX_BYTES)
		return;
	json_error_t je;
	json_t *j = json_loads(line, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(j)) {
		json_decref(j);
		return;
	}
	p->n_results++;
	char url[YTDLP_URL_MAX];
	url[0] = '\0';
	const char *u = json_string_value(json_object_get(j, "url"));
	if (!http_url(u))
		u = json_string_value(json_object_get(j, "webpage_url"));
	if (http_url(u)) {
		str_copy(url, sizeof url, u);
	} else {
		const char *id = json_string_value(json_object_get(j, "id"));
		const char *ie = json_string_value(json_object_get(j, "ie_key"));
		if (youtube_id(id) && (!ie || strcmp(ie, "Youtube") == 0))
			snprintf(url, sizeof url, "https://www.youtube.com/watch?v=%s", id);
	}
	json_t *d = json_object_get(j, "duration");
	double dur = json_is_number(d) ? json_number_value(d) : -1;
	if (!isfinite(dur) || dur <= 0 || dur > 86400)
		dur = -1;
	if (dur > 0)
		p->n_with_duration++;
	if (url[0]) {
		double diff = p->want_s > 0 ? (dur > 0 ? fabs(dur - p->want_s) : INFINITY) : 0;
		bool fits = p->want_s <= 0 || diff <= YTDLP_MATCH_TOLERANCE_S;
		if (fits && (!p->found || diff < p->best_diff_s)) {
			p->found = true;
			p->best_diff_s = diff;
			p->best_duration_s = dur;
			str_copy(p->best_url, sizeof p->best_url, url);
			const char *t = json_string_value(json_object_get(j, "title"));
			str_copy(p->best_title, sizeof p->best_title, t ? t : "");
		}
	}
	json_decref(j);
}

/* The message of the last "ERROR:" line of text (without the prefix), or NULL. */
static const char *last_error_line(const char *text, size_t *n_out)
{
	const char *best = NULL;
	for (const char *p = text; (p = strstr(p, "ERROR:")) != NULL; p += 6)
		if (p == text || p[-1] == '\n' || p[-1] == '\r')
			best = p;
	if (!best)
		return NULL;
	best += 6;
	while (*best == ' ')
		best++;
	size_t n = strcspn(best, "\r\n");
	/* "[generic] None: " names the extractor and the video id: noise for a user. */
	if (*best == '[') {
		const char *close = memchr(best, ']', n);
		if (close && close[1] == ' ') {
			n -= (size_t)(close + 2 - best);
			best = close + 2;
			const char *colon = memchr(best, ':', n);
			if (colon && colon[1] == ' ' &&
			    !memchr(best, ' ', (size_t)(colon - best))) {
				n -= (size_t)(colon + 2 - best);
				best = colon + 2;
			}
		}
	}
	/* yt-dlp's boilerplate after the reason. */
	static const char *const tails[] = {" (caused by ", "; please report this issue",
	                                    ". Confirm you are on the latest"};
	for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
		size_t m = strlen(tails[i]);
		for (size_t k = 0; k + m <= n; k++) {
			if (memcmp(best + k, tails[i], m) == 0) {
				n = k;
				break;
			}
		}
	}
	*n_out = n;
	return best;
}

/* Copies n bytes of s into out with control characters dropped, then redact replaced by
 * "…" (in that order, so a control character cannot hide the path from the redaction), and
 * the length capped at a UTF-8 character boundary. */
static void clean_quote(const char *s, size_t n, const char *redact, char *out, size_t n_out)
{
	char clean[1024];
	size_t m = 0;
	for (size_t i = 0; i < n && m < sizeof clean - 1; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x20 && ch != 0x7f)
			clean[m++] = (char)ch;
	}
	size_t cap = n_out > 300 ? 300 : n_out - 1;
	size_t k = 0, n_redact = redact ? strlen(redact) : 0;
	bool cut = false;
	for (size_t i = 0; i < m;) {
		if (n_redact && m - i >= n_redact && memcmp(clean + i, redact, n_redact) == 0) {
			if (k + 3 > cap) {
				cut = true;
				break;
			}
			memcpy(out + k, "\xe2\x80\xa6", 3);
			k += 3;
			i += n_redact;
			continue;
		}
		if (k == cap) {
			cut = true;
			break;
		}
		out[k++] = clean[i++];
	}
	if (cut) {
		/* Drop a partly copied UTF-8 character, then mark the cut if there is room. */
		size_t j = k;
		while (j > 0 && ((unsigned char)out[j - 1] & 0xC0) == 0x80)
			j--;
		if (j > 0 && ((unsigned char)out[j - 1] & 0xC0) == 0xC0) {
			unsigned char lead = (unsigned char)out[j - 1];
			size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
			if (k - (j - 1) < want)
				k = j - 1;
		}
		if (k + 3 <= cap) {
			memcpy(out + k, "\xe2\x80\xa6", 3);
			k += 3;
		}
	}
	out[k] = '\0';
}

static bool has(const char *s, size_t n, const char *needle)
{
	size_t m = strlen(needle);
	for (size_t i = 0; i + m <= n; i++)
		if (memcmp(s + i, needle, m) == 0)
			return true;
	return false;
}

void ytdlp_explain_failure(const char *stderr_text, int exit_code, const char *redact, char *msg,
                           size_t n_msg, bool *retry)
{
	static const char upgrade[] =
		"install a current yt-dlp (python3 -m pip install -U yt-dlp, or the binary from "
		"github.com/yt-dlp/yt-dlp/releases) and point SFA_YTDLP at it";
	size_t n = 0;
	const char *line = last_error_line(stderr_text ? stderr_text : "", &n);
	char quote[320];
	if (line)
		clean_quote(line, n, redact, quote, sizeof quote);
	else
		quote[0] = '\0';
	*retry = false;
	if (exit_code == 2) {
		snprintf(msg, n_msg,
		         "yt-dlp rejected the options it was given, so it is probably too "
		         "old: %s.",
		         upgrade);
		return;
	}
	if (!line) {
		*retry = true;
		snprintf(msg, n_msg,
		         "yt-dlp failed (exit status %d) without saying why; the server "
		         "log of the job may help.",
		         exit_code);
		return;
	}
	if (has(line, n, "ffprobe and ffmpeg not found") || has(line, n, "ffmpeg not found")) {
		snprintf(msg, n_msg,
		         "ffmpeg is not installed on the server; install it (apt-get "
		         "install ffmpeg) so downloads can be converted.");
	} else if (has(line, n, "Requested format is not available")) {
		snprintf(msg, n_msg, "The source offers no audio format yt-dlp can fetch: %s",
		         quote);
	} else if (has(line, n, "HTTP Error 404") || has(line, n, "HTTP Error 410")) {
		snprintf(msg, n_msg, "The audio source is unavailable: %s", quote);
	} else if (has(line, n, "Video unavailable") || has(line, n, "Private video") ||
	           has(line, n, "is not available") || has(line, n, "has been removed") ||
	           has(line, n, "has been terminated") || has(line, n, "copyright")) {
		snprintf(msg, n_msg, "The video is unavailable: %s", quote);
	} else if (has(line, n, "Sign in to confirm your age") || has(line, n, "age-restricted") ||
	           has(line, n, "inappropriate for some users")) {
		snprintf(msg, n_msg,
		         "The video is age-restricted and cannot be downloaded without "
		         "signing in: %s",
		         quote);
	} else if (has(line, n, "Unsupported URL")) {
		snprintf(msg, n_msg,
		         "The source is not audio or video that yt-dlp can download: %s", quote);
	} else if (has(line, n, "Sign in to confirm you") || has(line, n, "HTTP Error 403")) {
		*retry = true;
		snprintf(msg, n_msg,
		         "The site refused the download (%s); it will be tried again, and "
		         "if this keeps happening, %s.",
		         quote, upgrade);
	} else {
		/* Network trouble, throttling (429), a site hiccup: worth another attempt. */
		*retry = true;
		snprintf(msg, n_msg, "yt-dlp could not download the audio: %s", quote);
	}
}
