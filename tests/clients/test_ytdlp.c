/* Unit tests for src/clients/ytdlp.c: progress lines, search-result picking and the
 * sentences made from yt-dlp's error output (samples as yt-dlp 2023 prints them). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "clients/ytdlp.h"

static void progress_lines(void **state)
{
	(void)state;
	int64_t done = -1, total = -1;
	assert_true(ytdlp_parse_progress("PROG 100 1000 NA", &done, &total));
	assert_int_equal(done, 100);
	assert_int_equal(total, 1000);
	assert_true(ytdlp_parse_progress("PROG 1024 NA 2048.7", &done, &total));
	assert_int_equal(total, 2048); /* the estimate when the total is unknown */
	assert_true(ytdlp_parse_progress("PROG 5 NA NA", &done, &total));
	assert_int_equal(total, 0);
	assert_true(ytdlp_parse_progress("PROG 0 None 10", &done, &total));
	assert_int_equal(total, 10);
	static const char *const bad[] = {
		"[download]  45.0% of 3.00MiB",
		"PROG",
		"PROG 1 2",
		"PROG 1 2 3 4",
		"PROG x 2 3",
		"PROG -5 10 10",
		"PROG 1e300 10 10",
		"PROG nan 1 1",
		"PROG 1 2 3trailing",
		"prog 1 2 3",
		"",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		done = total = -7;
		if (ytdlp_parse_progress(bad[i], &done, &total))
			fail_msg("accepted \"%s\"", bad[i]);
		assert_int_equal(done, -7); /* untouched */
	}
}

static void search_picks_closest_within_tolerance(void **state)
{
	(void)state;
	struct ytdlp_pick p;
	ytdlp_pick_init(&p, 213);
	ytdlp_pick_feed(&p, "{\"url\": \"https://www.youtube.com/watch?v=aaaaaaaaaaa\", "
	                    "\"duration\": 150, \"title\": \"short\"}");
	ytdlp_pick_feed(&p, "not json at all");
	ytdlp_pick_feed(&p, "{\"url\": \"https://www.youtube.com/watch?v=bbbbbbbbbbb\", "
	                    "\"duration\": 205.0, \"title\": \"close\"}");
	ytdlp_pick_feed(&p, "{\"id\": \"ddddddddddd\", \"ie_key\": \"Youtube\", \"duration\": 216, "
	                    "\"title\": \"closest\"}");
	ytdlp_pick_feed(&p, "{\"url\": \"file:///etc/passwd\", \"duration\": 213}");
	ytdlp_pick_feed(&p, "{\"url\": \"https://x/y\", \"duration\": \"213\"}");
	ytdlp_pick_feed(&p, "[1, 2, 3]");
	assert_true(p.found);
	assert_string_equal(p.best_url, "https://www.youtube.com/watch?v=ddddddddddd");
	assert_string_equal(p.best_title, "closest");
	assert_int_equal(p.n_results, 5);       /* JSON objects */
	assert_int_equal(p.n_with_duration, 4); /* a numeric duration */

	/* Exactly 10 s away still fits; 10.5 does not; the first of equals wins. */
	ytdlp_pick_init(&p, 100);
	ytdlp_pick_feed(&p, "{\"url\": \"https://a/1\", \"duration\": 110.5}");
	assert_false(p.found);
	ytdlp_pick_feed(&p, "{\"url\": \"https://a/2\", \"duration\": 90}");
	ytdlp_pick_feed(&p, "{\"url\": \"https://a/3\", \"duration\": 110}");
	assert_true(p.found);
	assert_string_equal(p.best_url, "https://a/2");

	/* Unknown wanted duration: the first usable result. */
	ytdlp_pick_init(&p, 0);
	ytdlp_pick_feed(&p, "{\"title\": \"no url\"}");
	ytdlp_pick_feed(&p, "{\"webpage_url\": \"http://b/1\"}");
	ytdlp_pick_feed(&p, "{\"webpage_url\": \"http://b/2\"}");
	assert_string_equal(p.best_url, "http://b/1");

	/* Duplicate keys, a URL with spaces and a non-YouTube id are refused. */
	ytdlp_pick_init(&p, 50);
	ytdlp_pick_feed(&p,
	                "{\"url\": \"https://a/1\", \"url\": \"https://a/2\", \"duration\": 50}");
	ytdlp_pick_feed(&p, "{\"url\": \"https://a/ b\", \"duration\": 50}");
	ytdlp_pick_feed(&p, "{\"id\": \"ddddddddddd\", \"ie_key\": \"Vimeo\", \"duration\": 50}");
	assert_false(p.found);
}

struct failure_case {
	const char *stderr_text;
	int exit_code;
	bool retry;
	const char *must_say;
};

static void failures_become_sentences(void **state)
{
	(void)state;
	static const struct failure_case cases[] = {
		{"ERROR: [generic] None: Unable to download webpage: HTTP Error 404: Not Found (caused "
	         "by <HTTPError 404: 'Not Found'>); please report this issue on  https://github.com/"
	         "yt-dlp/yt-dlp/issues?q= , filling out the appropriate issue template.\n",
	         1, false,
	         "The audio source is unavailable: Unable to download webpage: HTTP Error 404: "
	         "Not Found"},
		{"[youtube] abc: Downloading webpage\nERROR: [youtube] dQw4w9WgXcQ: Video unavailable\n",
	         1, false, "The video is unavailable: Video unavailable"},
		{"ERROR: [youtube] x: Sign in to confirm your age. This video may be inappropriate for "
	         "some users.\n",
	         1, false, "age-restricted"},
		{"ERROR: Unsupported URL: http://127.0.0.1:1/page.html\n", 1, false,
	         "not audio or video"},
		{"ERROR: [youtube] x: Requested format is not available. Use --list-formats for a list "
	         "of available formats\n",
	         1, false, "no audio format"},
		{"ERROR: Postprocessing: ffprobe and ffmpeg not found. Please install or provide the "
	         "path using --ffmpeg-location\n",
	         1, false, "apt-get install ffmpeg"},
		{"ERROR: unable to download video data: HTTP Error 403: Forbidden\n", 1, true,
	         "pip install -U yt-dlp"},
		{"ERROR: [generic] None: Unable to download webpage: <urlopen error [Errno 111] "
	         "Connection refused>\n",
	         1, true, "Connection refused"},
		{"Usage: yt-dlp [OPTIONS] URL\nyt-dlp: error: no such option: --frobnicate\n", 2,
	         false, "too old"},
		{"", 1, true, "exit status 1"},
		{"WARNING: x\n", 101, true, "exit status 101"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char msg[1024];
		bool retry = !cases[i].retry;
		ytdlp_explain_failure(cases[i].stderr_text, cases[i].exit_code, NULL, msg,
		                      sizeof msg, &retry);
		if (!strstr(msg, cases[i].must_say) || retry != cases[i].retry)
			fail_msg("case %zu: \"%s\" (retry %d), wanted \"%s\" (retry %d)", i, msg,
			         retry, cases[i].must_say, cases[i].retry);
		assert_null(strstr(msg, "please report"));
		assert_null(strstr(msg, "caused by"));
	}
}

static void paths_are_redacted_and_quotes_capped(void **state)
{
	(void)state;
	char msg[1024];
	bool retry;
	ytdlp_explain_failure(
		"ERROR: unable to open for writing: [Errno 28] No space left on device: "
		"'/srv/sfa-data/tmp/jobs/1234/dl/source.webm.part'\n",
		1, "/srv/sfa-data", msg, sizeof msg, &retry);
	assert_null(strstr(msg, "/srv/sfa-data"));
	assert_non_null(strstr(msg, "No space left on device"));
	assert_true(retry);
	char big[4000];
	memcpy(big, "ERROR: ", 7);
	memset(big + 7, 'z', sizeof big - 9);
	big[sizeof big - 2] = '\n';
	big[sizeof big - 1] = '\0';
	ytdlp_explain_failure(big, 1, NULL, msg, sizeof msg, &retry);
	assert_true(strlen(msg) < 400);
	/* Control characters in the message never reach the user. */
	ytdlp_explain_failure("ERROR: bad\x1b[31m red\x07\n", 1, NULL, msg, sizeof msg, &retry);
	assert_null(strchr(msg, '\x1b'));
	assert_null(strchr(msg, '\x07'));
	/* A small output buffer is still NUL-terminated. */
	char tiny[16];
	ytdlp_explain_failure("ERROR: Video unavailable\n", 1, NULL, tiny, sizeof tiny, &retry);
	assert_true(strlen(tiny) < sizeof tiny);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(progress_lines),
		cmocka_unit_test(search_picks_closest_within_tolerance),
		cmocka_unit_test(failures_become_sentences),
		cmocka_unit_test(paths_are_redacted_and_quotes_capped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
