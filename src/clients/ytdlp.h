/* ytdlp.h - reading what yt-dlp says: progress lines, search results, error messages.
 *
 * yt-dlp runs as a child process (util/proc.h runs it; jobs/job_download.c decides the
 * arguments). Everything it prints is outside data: these parsers take one line or one
 * stderr tail at a time, never trust lengths or types, and never allocate. Pure functions
 * over caller memory, thread-safe.
 *
 * Progress: yt-dlp is run with --newline and YTDLP_PROGRESS_TEMPLATE, so each progress
 * update is one stdout line "PROG <downloaded> <total> <estimate>" where unknown values
 * are "NA" and the estimate may be fractional.
 *
 * Search: `--flat-playlist --dump-json ytsearchN:<query>` prints one JSON object per
 * result; the result whose "duration" is closest to the wanted one, within
 * YTDLP_MATCH_TOLERANCE_S, wins (the first such result on a tie).
 */
#ifndef SFA_CLIENTS_YTDLP_H
#define SFA_CLIENTS_YTDLP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define YTDLP_PROGRESS_TEMPLATE                                                 \
	"download:PROG %(progress.downloaded_bytes)s %(progress.total_bytes)s " \
	"%(progress.total_bytes_estimate)s"

enum {
	YTDLP_MATCH_TOLERANCE_S = 10,
	YTDLP_URL_MAX = 2048,
	YTDLP_JSON_LINE_MAX_BYTES = 256 * 1024,
};

/* Parses one progress line. Returns true with *done and *total (0 when unknown: neither
 * the total nor the estimate is known) for a PROG line, false for any other line. */
bool ytdlp_parse_progress(const char *line, int64_t *done, int64_t *total);

struct ytdlp_pick {
	double want_s;       /* the duration to match; <= 0 takes the first result */
	int n_results;       /* JSON objects seen */
	int n_with_duration; /* of which had a usable duration */
	bool found;
	double best_diff_s;
	double best_duration_s;
	char best_url[YTDLP_URL_MAX];
	char best_title[256];
};

void ytdlp_pick_init(struct ytdlp_pick *p, double want_s);
/* Considers one stdout line of a flat search. Lines that are not a JSON object with an
 * http(s) "url" or "webpage_url" (or a YouTube "id") are ignored. */
void ytdlp_pick_feed(struct ytdlp_pick *p, const char *line);

/* Turns a failed run into a sentence for the user. stderr_text is the tail of yt-dlp's
 * stderr, exit_code its exit status; every occurrence of redact (the server's data
 * directory; may be NULL) in the quoted message is replaced by "…", so no server path is
 * shown. *retry says whether trying again later may help (network trouble, throttling)
 * or not (the video is gone, the URL is unsupported, the tool needs an upgrade). */
void ytdlp_explain_failure(const char *stderr_text, int exit_code, const char *redact, char *msg,
                           size_t n_msg, bool *retry);

#endif
