/* Tests of src/clients/lalalai against tests/fakes/fake_lalalai.py.
 *
 * The group setup starts the fake with /usr/bin/python3 (argv[1] is the script), reads the
 * port it prints and points every client at http://127.0.0.1:PORT. The fake's stdin is a
 * pipe held here, so it exits on its own if this process dies. Behaviours are picked by
 * magic words in the uploaded file's name; the fake's /_fake/stats tells how many requests
 * the client made (retries, resumed downloads, one task per idempotency key).
 *
 * Clients use tiny backoffs and a 1 s low-speed limit, so the suite takes a few seconds;
 * the only real waits are the stalled download (two stalls of about 2 s).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake_server.h"
#include "clients/lalalai.h"
#include "util/err.h"

static const char *fake_script;
static pid_t fake_pid = -1;
static int fake_stdin = -1;
static char base[64];
static char tmp_dir[64] = "/tmp/sfa-lalalai-XXXXXX";
static char wav_path[128];
static long wav_size;

/* ---- The fake and the input file -------------------------------------------------------- */

static void write_wav(const char *path, int frames)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	uint32_t data = (uint32_t)frames * 4;
	uint32_t riff = 36 + data;
	uint16_t pcm = 1, ch = 2, bits = 16, block = 4;
	uint32_t fmt_len = 16, rate = 44100, bps = 44100 * 4;
	fwrite("RIFF", 1, 4, f);
	fwrite(&riff, 4, 1, f);
	fwrite("WAVEfmt ", 1, 8, f);
	fwrite(&fmt_len, 4, 1, f);
	fwrite(&pcm, 2, 1, f);
	fwrite(&ch, 2, 1, f);
	fwrite(&rate, 4, 1, f);
	fwrite(&bps, 4, 1, f);
	fwrite(&block, 2, 1, f);
	fwrite(&bits, 2, 1, f);
	fwrite("data", 1, 4, f);
	fwrite(&data, 4, 1, f);
	for (int i = 0; i < frames; i++) {
		int16_t s[2] = {(int16_t)((i * 37) % 2000 - 1000),
		                (int16_t)((i * 53) % 2000 - 1000)};
		fwrite(s, 2, 2, f);
	}
	fclose(f);
}

static int start_fake(void **state)
{
	(void)state;
	if (access("/usr/bin/python3", X_OK) != 0) {
		fprintf(stderr, "# missing /usr/bin/python3 (apt-get install python3): the fake "
		                "lal.ai cannot run\n");
		return -1;
	}
	if (!fake_script || access(fake_script, R_OK) != 0) {
		fprintf(stderr, "# missing the fake lal.ai script (argv[1]): %s\n",
		        fake_script ? fake_script : "(none)");
		return -1;
	}
	if (!mkdtemp(tmp_dir))
		return -1;
	snprintf(wav_path, sizeof wav_path, "%s/in.wav", tmp_dir);
	write_wav(wav_path, 44100); /* 1 s */
	struct stat st;
	stat(wav_path, &st);
	wav_size = (long)st.st_size;
	return fake_server_start(fake_script, "lal.ai", &fake_pid, &fake_stdin, base, sizeof base);
}

static int stop_fake(void **state)
{
	(void)state;
	fake_server_stop(fake_pid, fake_stdin);
	char cmd_path[160];
	snprintf(cmd_path, sizeof cmd_path, "%s/in.wav", tmp_dir);
	unlink(cmd_path);
	rmdir(tmp_dir);
	return 0;
}

static size_t collect(char *p, size_t size, size_t nmemb, void *ud)
{
	size_t n = size * nmemb;
	char *buf = ud;
	size_t have = strlen(buf);
	size_t room = 65535 - have;
	memcpy(buf + have, p, n < room ? n : room);
	buf[have + (n < room ? n : room)] = '\0';
	return n;
}

/* A plain request to the fake, not through the client. body: 64 KiB. */
static long fake_call(const char *method, const char *path, const char *post, const char *header,
                      char *body)
{
	CURL *h = curl_easy_init();
	assert_non_null(h);
	char url[256];
	snprintf(url, sizeof url, "%s%s", base, path);
	body[0] = '\0';
	struct curl_slist *hdrs = header ? curl_slist_append(NULL, header) : NULL;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
	if (strcmp(method, "POST") == 0)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, post ? post : "");
	assert_int_equal(curl_easy_perform(h), CURLE_OK);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	return status;
}

static json_t *fake_stats(void)
{
	static char body[65536];
	assert_int_equal(fake_call("GET", "/_fake/stats", NULL, NULL, body), 200);
	json_t *j = json_loads(body, 0, NULL);
	assert_non_null(j);
	return j;
}

static long stat_hits(const char *path)
{
	json_t *j = fake_stats();
	long n = (long)json_integer_value(json_object_get(json_object_get(j, "hits"), path));
	json_decref(j);
	return n;
}

static struct lalalai_client *client_with(const char *key, int max_tries,
                                          const volatile sig_atomic_t *flag)
{
	struct lalalai_config cfg = {.base_url = base,
	                             .license_key = key,
	                             .max_tries = max_tries,
	                             .backoff_base_ms = 10,
	                             .backoff_max_ms = 40,
	                             .timeout_ms = 10000,
	                             .low_speed_time_s = 1,
	                             .low_speed_bytes = 1000,
	                             .abort_flag = flag};
	struct lalalai_client *c = NULL;
	char err[256];
	assert_int_equal(lalalai_client_new(&cfg, &c, err, sizeof err), 0);
	return c;
}

static struct lalalai_client *client(void) { return client_with("key-main", 3, NULL); }

static const char *const FOUR[] = {"vocals", "drum", "bass"};

/* Uploads the test file as name and starts a 3-stem split; fills task. */
static void start_task(struct lalalai_client *c, const char *name, char task[LALALAI_ID_MAX])
{
	struct lalalai_source src;
	char err[256], key[40];
	assert_int_equal(lalalai_upload(c, wav_path, name, NULL, NULL, &src, err, sizeof err), 0);
	snprintf(key, sizeof key, "idem-%s-%d", name, rand());
	assert_int_equal(lalalai_split(c, src.id, FOUR, 3, key, task, err, sizeof err), 0);
}

static void check_one(struct lalalai_client *c, const char *task, struct lalalai_status *st)
{
	char err[256];
	const char *ids[] = {task};
	int rc = lalalai_check(c, ids, 1, st, err, sizeof err);
	if (rc)
		fail_msg("check failed: %s", err);
}

/* ---- Cases ---------------------------------------------------------------------------------- */

static void config_is_checked(void **state)
{
	(void)state;
	struct lalalai_client *c = NULL;
	char err[256];
	struct lalalai_config cfg = {.base_url = base};
	assert_int_equal(lalalai_client_new(&cfg, &c, err, sizeof err), SFA_EINVAL);
	cfg.license_key = "key-x";
	cfg.base_url = "ftp://example.com";
	assert_int_equal(lalalai_client_new(&cfg, &c, err, sizeof err), SFA_EINVAL);
	cfg.base_url = NULL;
	assert_int_equal(lalalai_client_new(&cfg, &c, err, sizeof err), 0);
	lalalai_client_free(c);
}

static void bad_key_rejected(void **state)
{
	(void)state;
	struct lalalai_client *c = client_with("wrong", 3, NULL);
	char err[256];
	double m = -1;
	assert_int_equal(lalalai_minutes_left(c, &m, err, sizeof err), SFA_EAUTH);
	assert_non_null(strstr(err, "lal.ai rejected the license key"));
	assert_null(strstr(err, "wrong"));
	struct lalalai_source src;
	assert_int_equal(lalalai_upload(c, wav_path, "a.wav", NULL, NULL, &src, err, sizeof err),
	                 SFA_EAUTH);
	lalalai_client_free(c);
}

static void upload_names_and_progress_cb(void *user, int64_t done, int64_t total)
{
	int64_t *seen = user;
	if (total > 0 && done > seen[0])
		seen[0] = done;
	seen[1] = total;
}

static void upload_names(void **state)
{
	(void)state;
	struct lalalai_client *c = client();
	char err[256], body[65536];
	/* The fake refuses an upload without a file name, as lal.ai does. */
	assert_int_equal(
		fake_call("POST", "/api/v1/upload/", "abc", "X-License-Key: key-main", body), 400);
	struct lalalai_source src;
	int64_t seen[2] = {0, 0};
	assert_int_equal(lalalai_upload(c, wav_path, "Sigur Rós – Hoppípolla.wav",
	                                upload_names_and_progress_cb, seen, &src, err, sizeof err),
	                 0);
	assert_true(src.id[0] != '\0');
	assert_true(src.duration_s > 0.99 && src.duration_s < 1.01);
	assert_int_equal(seen[0], wav_size);
	assert_int_equal(lalalai_upload(c, wav_path, "plain \"quoted\".wav", NULL, NULL, &src, err,
	                                sizeof err),
	                 0);
	json_t *j = fake_stats();
	json_t *ups = json_object_get(j, "uploads");
	size_t n = json_array_size(ups);
	assert_true(n >= 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(ups, n - 2), "name")),
	                    "Sigur Rós – Hoppípolla.wav");
	assert_string_equal(json_string_value(json_object_get(json_array_get(ups, n - 1), "name")),
	                    "plain \"quoted\".wav");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(ups, n - 1), "size")),
	                 wav_size);
	json_decref(j);
	assert_int_equal(
		lalalai_upload(c, "/nonexistent/x.wav", "x.wav", NULL, NULL, &src, err, sizeof err),
		SFA_EIO);
	lalalai_client_free(c);
}

static void split_validation_and_idempotency(void **state)
{
	(void)state;
	struct lalalai_client *c = client();
	struct lalalai_source src;
	char err[256], task[LALALAI_ID_MAX], task2[LALALAI_ID_MAX];
	assert_int_equal(lalalai_upload(c, wav_path, "idem.wav", NULL, NULL, &src, err, sizeof err),
	                 0);
	const char *bad[] = {"vocals", "kazoo"};
	long before = stat_hits("/api/v1/split/multistem/");
	assert_int_equal(lalalai_split(c, src.id, bad, 2, "idem-bad", task, err, sizeof err),
	                 SFA_EINVAL);
	assert_non_null(strstr(err, "stem_list[1]"));
	assert_non_null(strstr(err, "kazoo"));
	assert_int_equal(stat_hits("/api/v1/split/multistem/"), before + 1); /* 422: no retry */
	assert_int_equal(lalalai_split(c, "src-unknown", FOUR, 3, "idem-x", task, err, sizeof err),
	                 SFA_EINVAL);
	assert_int_equal(lalalai_split(c, src.id, FOUR, 3, "idem-once", task, err, sizeof err), 0);
	assert_int_equal(lalalai_split(c, src.id, FOUR, 3, "idem-once", task2, err, sizeof err),
	                 LALALAI_EIDEMPOTENT);
	assert_non_null(strstr(err, "idempotency"));
	json_t *j = fake_stats();
	int with_key = 0;
	const char *k;
	json_t *t;
	json_object_foreach(json_object_get(j, "tasks"), k, t)
		with_key += strcmp(json_string_value(json_object_get(t, "idempotency_key")),
	                           "idem-once") == 0;
	assert_int_equal(with_key, 1);
	json_decref(j);
	assert_int_equal(lalalai_split(c, src.id, FOUR, 0, "idem-y", task, err, sizeof err),
	                 SFA_EINVAL);
	lalalai_client_free(c);
}

static void progress_then_success(void **state)
{
	(void)state;
	struct lalalai_client *c = client();
	char task[LALALAI_ID_MAX];
	start_task(c, "song.wav", task);
	struct lalalai_status st;
	check_one(c, task, &st);
	assert_int_equal(st.state, LALALAI_PROGRESS);
	assert_int_equal(st.progress, 0);
	check_one(c, task, &st);
	assert_int_equal(st.state, LALALAI_PROGRESS);
	assert_int_equal(st.progress, 42);
	check_one(c, task, &st);
	assert_int_equal(st.state, LALALAI_SUCCESS);
	assert_int_equal(st.n_tracks, 4);
	assert_string_equal(st.tracks[1].label, "drum");
	assert_string_equal(st.tracks[3].type, "back");
	assert_string_equal(st.tracks[3].label, "no_multistem");
	assert_int_equal(st.tracks[0].size, wav_size);
	assert_true(st.duration_s > 0.99);
	/* A batched check: a finished task stays finished, an unknown one is UNKNOWN. */
	const char *ids[] = {task, "task-nope"};
	struct lalalai_status two[2];
	char err[256];
	assert_int_equal(lalalai_check(c, ids, 2, two, err, sizeof err), 0);
	assert_int_equal(two[0].state, LALALAI_SUCCESS);
	assert_int_equal(two[1].state, LALALAI_UNKNOWN);
	/* Download a track and compare with the input. */
	char dest[160];
	snprintf(dest, sizeof dest, "%s/vocals.wav", tmp_dir);
	assert_int_equal(lalalai_download(c, st.tracks[0].url, dest, st.tracks[0].size, NULL, NULL,
	                                  err, sizeof err),
	                 0);
	struct stat sb;
	assert_int_equal(stat(dest, &sb), 0);
	assert_int_equal(sb.st_size, wav_size);
	unlink(dest);
	lalalai_client_free(c);
}

static void final_states(void **state)
{
	(void)state;
	struct lalalai_client *c = client_with("key-final", 3, NULL);
	const char *names[] = {"x task-error.wav", "x task-cancelled.wav",
	                       "x task-server-error.wav"};
	enum lalalai_state want[] = {LALALAI_ERROR, LALALAI_CANCELLED, LALALAI_SERVER_ERROR};
	for (int i = 0; i < 3; i++) {
		char task[LALALAI_ID_MAX];
		start_task(c, names[i], task);
		struct lalalai_status st;
		for (int k = 0; k < 3; k++)
			check_one(c, task, &st);
		assert_int_equal(st.state, want[i]);
		if (i == 0)
			assert_non_null(strstr(st.error, "could not be processed"));
		if (i == 2)
			assert_non_null(strstr(st.error, "Processing node failed"));
	}
	lalalai_client_free(c);
}

static void check_rate_limit(void **state)
{
	(void)state;
	struct lalalai_client *c = client_with("key-rate", 1, NULL);
	char err[256];
	const char *ids[] = {"task-none"};
	struct lalalai_status st;
	for (int i = 0; i < 20; i++)
		assert_int_equal(lalalai_check(c, ids, 1, &st, err, sizeof err), 0);
	assert_int_equal(lalalai_check(c, ids, 1, &st, err, sizeof err), SFA_EUPSTREAM);
	assert_non_null(strstr(err, "rate-limiting"));
	lalalai_client_free(c);
}

static void quota_and_cancel(void **state)
{
	(void)state;
	struct lalalai_client *c = client_with("key-quota", 3, NULL);
	char err[256];
	double m = 0;
	assert_int_equal(lalalai_minutes_left(c, &m, err, sizeof err), 0);
	assert_true(m > 999.99 && m < 1000.01);
	char done[LALALAI_ID_MAX], stuck[LALALAI_ID_MAX];
	start_task(c, "done.wav", done);
	start_task(c, "task-stuck.wav", stuck);
	struct lalalai_status st;
	for (int k = 0; k < 3; k++)
		check_one(c, done, &st);
	assert_int_equal(st.state, LALALAI_SUCCESS);
	assert_int_equal(lalalai_minutes_left(c, &m, err, sizeof err), 0);
	assert_true(m < 999.99); /* one second of audio was used */
	for (int k = 0; k < 3; k++)
		check_one(c, stuck, &st);
	assert_int_equal(st.state, LALALAI_PROGRESS);
	const char *ids[] = {done, stuck};
	bool ok[2] = {true, false};
	assert_int_equal(lalalai_cancel(c, ids, 2, ok, err, sizeof err), 0);
	assert_false(ok[0]); /* finished: "Task is not in progress state" */
	assert_true(ok[1]);
	check_one(c, stuck, &st);
	assert_int_equal(st.state, LALALAI_CANCELLED);
	lalalai_client_free(c);
}

/* Finishes a task for a file name and returns its first track. */
static void finished_track(struct lalalai_client *c, const char *name, struct lalalai_track *t)
{
	char task[LALALAI_ID_MAX];
	start_task(c, name, task);
	struct lalalai_status st;
	for (int k = 0; k < 3; k++)
		check_one(c, task, &st);
	assert_int_equal(st.state, LALALAI_SUCCESS);
	*t = st.tracks[0];
}

static void downloads_resume_and_fail_cleanly(void **state)
{
	(void)state;
	struct lalalai_client *c = client_with("key-dl", 3, NULL);
	char err[256], dest[160], part[170];
	snprintf(dest, sizeof dest, "%s/out.wav", tmp_dir);
	snprintf(part, sizeof part, "%s.part", dest);
	struct lalalai_track t;
	struct stat sb;
	/* Closed mid-body once: resumed with Range, complete. */
	finished_track(c, "dl-cut-once.wav", &t);
	assert_int_equal(lalalai_download(c, t.url, dest, t.size, NULL, NULL, err, sizeof err), 0);
	assert_int_equal(stat(dest, &sb), 0);
	assert_int_equal(sb.st_size, wav_size);
	unlink(dest);
	/* Always cut: fails after the tries, leaves neither file. */
	finished_track(c, "dl-cut-always.wav", &t);
	assert_int_equal(lalalai_download(c, t.url, dest, t.size, NULL, NULL, err, sizeof err),
	                 SFA_EUPSTREAM);
	assert_int_not_equal(stat(dest, &sb), 0);
	assert_int_not_equal(stat(part, &sb), 0);
	/* 404: an expired link, not retried. */
	finished_track(c, "dl-404.wav", &t);
	assert_int_equal(lalalai_download(c, t.url, dest, t.size, NULL, NULL, err, sizeof err),
	                 SFA_ENOTFOUND);
	assert_int_not_equal(stat(part, &sb), 0);
	/* Announced size differs from what arrives. */
	finished_track(c, "size-lie.wav", &t);
	assert_int_equal(lalalai_download(c, t.url, dest, t.size, NULL, NULL, err, sizeof err),
	                 SFA_EUPSTREAM);
	assert_non_null(strstr(err, "announced"));
	assert_int_not_equal(stat(dest, &sb), 0);
	/* Stalled: the low-speed limit (1 s here) ends it. */
	finished_track(c, "dl-stall.wav", &t);
	assert_int_equal(lalalai_download(c, t.url, dest, t.size, NULL, NULL, err, sizeof err),
	                 SFA_ETIMEOUT);
	assert_int_not_equal(stat(part, &sb), 0);
	lalalai_client_free(c);
}

static void abort_flag_stops_calls(void **state)
{
	(void)state;
	static volatile sig_atomic_t flag = 1;
	struct lalalai_client *c = client_with("key-main", 3, &flag);
	char err[256];
	double m;
	assert_int_equal(lalalai_minutes_left(c, &m, err, sizeof err), SFA_ECANCELED);
	lalalai_client_free(c);
}

static void delete_source(void **state)
{
	(void)state;
	struct lalalai_client *c = client();
	struct lalalai_source src;
	char err[256];
	assert_int_equal(lalalai_upload(c, wav_path, "del.wav", NULL, NULL, &src, err, sizeof err),
	                 0);
	long before = stat_hits("deleted");
	assert_int_equal(lalalai_delete_source(c, src.id, err, sizeof err), 0);
	assert_int_equal(stat_hits("deleted"), before + 1);
	lalalai_client_free(c);
}

static void parse_check_rejects_bad_answers(void **state)
{
	(void)state;
	const char *ids[] = {"t1"};
	struct lalalai_status st;
	char err[256];
	const char *bad[] = {
		"",
		"[]",
		"{}",
		"{\"result\": []}",
		"{\"result\": {\"t1\": {}}}",
		"{\"result\": {\"t1\": {\"status\": \"weird\"}}}",
		"{\"result\": {\"t1\": {\"status\": \"success\"}}}",
		("{\"result\": {\"t1\": {\"status\": \"success\", \"result\": {\"tracks\": "
	         "[{\"type\": \"stem\", \"label\": \"vocals\", \"url\": \"file:///etc/passwd\"}]}}}}"),
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(
			lalalai_parse_check(bad[i], strlen(bad[i]), ids, 1, &st, err, sizeof err),
			SFA_EUPSTREAM);
	const char *good =
		"{\"result\": {\"t1\": {\"status\": \"progress\", \"progress\": 142.5}}}";
	assert_int_equal(lalalai_parse_check(good, strlen(good), ids, 1, &st, err, sizeof err), 0);
	assert_int_equal(st.progress, 100);
	const char *err_state = "{\"result\": {\"t1\": {\"status\": \"error\", \"error\": "
				"{\"code\": \"c\", \"detail\": \"bad\\nthing\"}}}}";
	assert_int_equal(
		lalalai_parse_check(err_state, strlen(err_state), ids, 1, &st, err, sizeof err), 0);
	assert_int_equal(st.state, LALALAI_ERROR);
	assert_string_equal(st.error, "bad thing (c)");
}

int main(int argc, char **argv)
{
	fake_script = argc > 1 ? argv[1] : getenv("SFA_FAKE_LALALAI");
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(config_is_checked),
		cmocka_unit_test(bad_key_rejected),
		cmocka_unit_test(upload_names),
		cmocka_unit_test(split_validation_and_idempotency),
		cmocka_unit_test(progress_then_success),
		cmocka_unit_test(final_states),
		cmocka_unit_test(check_rate_limit),
		cmocka_unit_test(quota_and_cancel),
		cmocka_unit_test(downloads_resume_and_fail_cleanly),
		cmocka_unit_test(abort_flag_stops_calls),
		cmocka_unit_test(delete_source),
		cmocka_unit_test(parse_check_rejects_bad_answers),
	};
	int rc = cmocka_run_group_tests(tests, start_fake, stop_fake);
	curl_global_cleanup();
	return rc;
}
