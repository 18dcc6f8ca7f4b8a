/* lalalai.c - the lal.ai API v1.1 client (see lalalai.h for the contract).
 *
 * Layers, bottom up:
 *  1. la_attempt: one libcurl request. API calls have connect and total timeouts; the
 *     upload (a file streamed as the raw body) has a low-speed abort instead. A progress
 *     callback reports upload bytes and aborts the transfer when the abort flag is set.
 *  2. la_request: the retry policy, clients/http.c's http_perform shared with every
 *     client (network errors, 408, 429, 5xx; Retry-After up to a cap; at most two
 *     time-outs; the abort flag ends the waits), then turns any non-2xx answer into a code and a
 *     sentence (401/403: the key; 400 {"detail","code"}; 422 {"detail": [...]}).
 *  3. The public calls build JSON with jansson and read the answers into plain structs.
 * Downloads have their own small loop (la_download_attempt), since they append to a file
 * and resume with Range.
 *
 * The license key lives only in the client and in the header list of a request, which
 * is wiped before it is freed; no sentence or log line ever contains it. Text that lal.ai
 * sends back (details, error strings) is made printable before it reaches a sentence.
 */
#include "clients/http.h"
#include "clients/lalalai.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/json.h"
#include "util/log.h"
#include "util/str.h"

enum {
	KEY_MAX_BYTES = 512,
	MAX_TIMEOUT_TRIES = 2,
};

static const char KEY_REJECTED[] = "lal.ai rejected the license key; check it in Settings.";

struct lalalai_client {
	char *base_url;
	char *key;
	long connect_timeout_ms;
	long timeout_ms;
	long low_speed_time_s;
	long low_speed_bytes;
	int max_tries;
	long backoff_base_ms;
	long backoff_max_ms;
	long retry_after_cap_s;
	int64_t max_download_bytes;
	const volatile sig_atomic_t *abort_flag;
};

/* ---- Small helpers ------------------------------------------------------------------ */

static bool aborted(const struct lalalai_client *c) { return c->abort_flag && *c->abort_flag; }

static long backoff_ms(const struct lalalai_client *c, int attempt)
{
	return http_backoff_ms(c->backoff_base_ms, c->backoff_max_ms, attempt);
}

/* Copies s into out (n_out bytes), replacing control characters with spaces. */
static void printable_copy(char *out, size_t n_out, const char *s)
{
	str_copy(out, n_out, s ? s : "");
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
}

static bool is_http_url(const char *u)
{
	return str_starts_with(u, "https://") || str_starts_with(u, "http://");
}

/* ---- Client ------------------------------------------------------------------------- */

int lalalai_client_new(const struct lalalai_config *cfg, struct lalalai_client **out, char *err,
                       size_t n_err)
{
	if (http_global_init() != CURLE_OK)
		return sfa_err(err, n_err, SFA_EUPSTREAM, "libcurl could not be initialised.");
	if (sodium_init() < 0)
		return sfa_err(err, n_err, SFA_EUPSTREAM, "libsodium could not be initialised.");
	const char *key = cfg->license_key;
	if (!key || !*key)
		return sfa_err(err, n_err, SFA_EINVAL, "No lal.ai license key is configured.");
	if (strlen(key) >= KEY_MAX_BYTES || strpbrk(key, "\r\n"))
		return sfa_err(err, n_err, SFA_EINVAL, "The lal.ai license key is malformed.");
	const char *base = (cfg->base_url && *cfg->base_url) ? cfg->base_url
	                                                     : "https://www.lalal.ai";
	if (!is_http_url(base) || strlen(base) > 1024)
		return sfa_err(err, n_err, SFA_EINVAL,
		               "The lal.ai base URL must start with https:// or http://.");
	if (cfg->max_tries < 0 || cfg->max_tries > 10)
		return sfa_err(err, n_err, SFA_EINVAL, "max_tries must be between 1 and 10.");
	struct lalalai_client *c = calloc(1, sizeof *c);
	if (!c)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
	size_t n = strlen(base);
	while (n > 0 && base[n - 1] == '/')
		n--;
	c->base_url = strndup(base, n);
	c->key = strdup(key);
	if (!c->base_url || !c->key) {
		lalalai_client_free(c);
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
	}
	c->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 10000;
	c->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
	c->low_speed_time_s = cfg->low_speed_time_s > 0 ? cfg->low_speed_time_s : 30;
	c->low_speed_bytes = cfg->low_speed_bytes > 0 ? cfg->low_speed_bytes : 1024;
	c->max_tries = cfg->max_tries > 0 ? cfg->max_tries : 5;
	c->backoff_base_ms = cfg->backoff_base_ms > 0 ? cfg->backoff_base_ms : 1000;
	c->backoff_max_ms = cfg->backoff_max_ms > 0 ? cfg->backoff_max_ms : 60000;
	c->retry_after_cap_s = cfg->retry_after_cap_s > 0 ? cfg->retry_after_cap_s : 60;
	c->max_download_bytes = cfg->max_download_bytes > 0 ? cfg->max_download_bytes
	                                                    : (int64_t)2 << 30;
	c->abort_flag = cfg->abort_flag;
	*out = c;
	return 0;
}

void lalalai_client_free(struct lalalai_client *c)
{
	if (!c)
		return;
	if (c->key)
		sodium_memzero(c->key, strlen(c->key));
	free(c->key);
	free(c->base_url);
	free(c);
}

/* ---- HTTP: one attempt ---------------------------------------------------------------- */

struct la_req {
	const char *url;
	const char *json; /* POST body, or NULL (with upload NULL: an empty POST) */
	FILE *upload;     /* POST this file as the raw body */
	int64_t upload_size;
	const char *disposition; /* Content-Disposition header value, or NULL */
	size_t max_body_bytes;
	lalalai_progress_fn progress;
	void *user;
};

struct xfer {
	const struct lalalai_client *c;
	lalalai_progress_fn progress;
	void *user;
	bool upload;
	int64_t offset; /* downloads: bytes already in the file before this attempt */
};

static int on_xfer(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                   curl_off_t ulnow)
{
	struct xfer *x = ud;
	if (aborted(x->c))
		return 1; /* CURLE_ABORTED_BY_CALLBACK */
	if (x->progress) {
		if (x->upload)
			x->progress(x->user, (int64_t)ulnow, (int64_t)ultotal);
		else
			x->progress(x->user, x->offset + (int64_t)dlnow,
			            dltotal > 0 ? x->offset + (int64_t)dltotal : 0);
	}
	return 0;
}

static size_t on_read(char *p, size_t size, size_t nmemb, void *ud)
{
	FILE *f = ud;
	size_t n = fread(p, 1, size * nmemb, f);
	if (n == 0 && ferror(f))
		return CURL_READFUNC_ABORT;
	return n;
}

/* Appends a header; false when out of memory. */
static bool add_header(struct curl_slist **h, const char *line)
{
	struct curl_slist *t = curl_slist_append(*h, line);
	if (!t)
		return false;
	*h = t;
	return true;
}

static void common_opts(const struct lalalai_client *c, CURL *h, const char *url, bool transfer)
{
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, http_protocols_for(url));
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
	if (transfer) {
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, c->low_speed_bytes);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, c->low_speed_time_s);
	} else {
		curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
	}
	curl_easy_setopt(h, CURLOPT_USERAGENT, "sound-forge-alchemy/0.1");
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_xfer);
}

/* One attempt's arguments for la_attempt. */
struct la_call {
	const struct lalalai_client *c;
	const struct la_req *rq;
};

static CURLcode la_attempt(void *arg, CURL *h, struct http_resp *rs)
{
	const struct la_call *call = arg;
	const struct lalalai_client *c = call->c;
	const struct la_req *rq = call->rq;
	char line[KEY_MAX_BYTES + 2200];
	struct curl_slist *hdrs = NULL;
	CURLcode cc = CURLE_OUT_OF_MEMORY;
	struct xfer x = {.c = c, .progress = rq->progress, .user = rq->user, .upload = true};

	curl_easy_reset(h);
	snprintf(line, sizeof line, "X-License-Key: %s", c->key);
	bool ok = add_header(&hdrs, "Accept: application/json") && add_header(&hdrs, line) &&
	          add_header(&hdrs, "Expect:");
	sodium_memzero(line, sizeof line);
	if (ok && rq->json)
		ok = add_header(&hdrs, "Content-Type: application/json");
	if (ok && rq->disposition) {
		snprintf(line, sizeof line, "Content-Disposition: %s", rq->disposition);
		ok = add_header(&hdrs, line);
	}
	if (ok && rq->upload)
		ok = add_header(&hdrs, "Content-Type: application/octet-stream");
	if (!ok)
		goto out;
	common_opts(c, h, rq->url, rq->upload != NULL);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, &x);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, http_body_sink);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, rs);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	if (rq->upload) {
		if (fseeko(rq->upload, 0, SEEK_SET) != 0) {
			cc = CURLE_READ_ERROR;
			goto out;
		}
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, rq->upload);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->upload_size);
	} else {
		const char *body = rq->json ? rq->json : "";
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	}
	cc = curl_easy_perform(h);
out:
	http_headers_free(hdrs);
	return cc;
}

/* ---- HTTP: retries and error answers ------------------------------------------------------ */

/* The sentence and code for a 4xx answer that is not retried. */
static int answer_error(const struct http_resp *rs, char *err, size_t n_err)
{
	if (rs->status == 401 || rs->status == 403)
		return sfa_err(err, n_err, SFA_EAUTH, "%s", KEY_REJECTED);
	char detail[300] = "", code[64] = "";
	json_t *j = json_loadb(rs->body.data ? rs->body.data : "", rs->body.len, 0, NULL);
	if (json_is_object(j)) {
		const json_t *d = json_object_get(j, "detail");
		if (json_is_string(d)) {
			printable_copy(detail, sizeof detail, json_string_value(d));
		} else if (json_is_array(d) && json_array_size(d) > 0) {
			/* 422: [{"loc": [...], "msg", "type"}]: name the first problem. */
			const json_t *e = json_array_get(d, 0);
			const json_t *loc = json_object_get(e, "loc");
			char where[120] = "";
			size_t i;
			const json_t *part;
			json_array_foreach(loc, i, part)
			{
				char piece[48];
				if (json_is_string(part))
					snprintf(piece, sizeof piece, "%s%s", where[0] ? "." : "",
					         json_string_value(part));
				else if (json_is_integer(part))
					snprintf(piece, sizeof piece, "[%lld]",
					         (long long)json_integer_value(part));
				else
					continue;
				size_t have = strlen(where);
				str_copy(where + have, sizeof where - have, piece);
			}
			char msg[200];
			printable_copy(msg, sizeof msg, json_str(e, "msg"));
			char tmp[sizeof detail];
			snprintf(tmp, sizeof tmp, "%s%s%s", where, where[0] ? ": " : "",
			         msg[0] ? msg : "invalid value");
			printable_copy(detail, sizeof detail, tmp);
		}
		printable_copy(code, sizeof code, json_str(j, "code"));
	}
	json_decref(j);
	if (strcmp(code, "idempotency_key_used") == 0)
		return sfa_err(err, n_err, LALALAI_EIDEMPOTENT,
		               "lal.ai already received this split request (its idempotency key "
		               "was used).");
	if (strcmp(code, "exceeded_duration") == 0 || strcmp(code, "max_duration") == 0 ||
	    strcmp(code, "exceeded_size") == 0)
		return sfa_err(err, n_err, SFA_ETOOBIG, "lal.ai refused the file: %s (%s).",
		               detail[0] ? detail : "too long or too large", code);
	if (rs->status == 400 || rs->status == 422)
		return sfa_err(err, n_err, SFA_EINVAL, "lal.ai refused the request%s%s%s%s%s.",
		               detail[0] ? ": " : "", detail, code[0] ? " (" : "", code,
		               code[0] ? ")" : "");
	return sfa_err(err, n_err, SFA_EUPSTREAM, "lal.ai answered HTTP %ld%s%s.", rs->status,
	               detail[0] ? ": " : "", detail);
}

/* Performs rq under the shared retry policy. Returns 0 with a 2xx answer in rs, or a
 * negative code with a sentence; the caller frees rs with http_resp_free in every case. */
static int la_request(const struct lalalai_client *c, const struct la_req *rq, struct http_resp *rs,
                      char *err, size_t n_err)
{
	CURL *h = curl_easy_init();
	if (!h)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
	struct http_policy p = {
		.service = "lal.ai",
		.caller = "this server",
		.max_tries = c->max_tries,
		.max_timeouts = MAX_TIMEOUT_TRIES,
		.backoff_base_ms = c->backoff_base_ms,
		.backoff_max_ms = c->backoff_max_ms,
		.retry_after_cap_s = c->retry_after_cap_s,
		.idempotent = true, /* splits carry an idempotency key; the rest are reads */
		.abort_flag = c->abort_flag,
	};
	struct la_call call = {c, rq};
	int rc = http_perform(&p, h, la_attempt, &call, rq->max_body_bytes, rs, err, n_err);
	if (rc == 0 && (rs->status < 200 || rs->status >= 300))
		rc = answer_error(rs, err, n_err);
	curl_easy_cleanup(h);
	return rc;
}

/* POSTs a JSON object (consumed) to base + path and parses the answer as an object. */
static int post_json(struct lalalai_client *c, const char *path, json_t *body, json_t **out,
                     char *err, size_t n_err)
{
	char url[1200];
	snprintf(url, sizeof url, "%s%s", c->base_url, path);
	char *text = NULL;
	if (body) {
		text = json_encode(body);
		json_decref(body);
		if (!text)
			return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
	}
	struct la_req rq = {.url = url,
	                    .json = text ? text : "{}",
	                    .max_body_bytes = LALALAI_RESPONSE_MAX_BYTES};
	struct http_resp rs = {0};
	int rc = la_request(c, &rq, &rs, err, n_err);
	free(text);
	if (rc == 0)
		rc = json_parse_object(rs.body.data ? rs.body.data : "", rs.body.len, out, NULL, 0)
		             ? sfa_err(err, n_err, SFA_EUPSTREAM,
		                       "lal.ai sent an answer that is not a JSON object.")
		             : 0;
	http_resp_free(&rs);
	return rc;
}

/* Copies an id string from lal.ai: 1..LALALAI_ID_MAX-1 printable characters. */
static int take_id(const json_t *v, char out[LALALAI_ID_MAX], const char *what, char *err,
                   size_t n_err)
{
	const char *s = json_is_string(v) ? json_string_value(v) : NULL;
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n >= LALALAI_ID_MAX)
		return sfa_err(err, n_err, SFA_EUPSTREAM, "lal.ai's answer has no valid %s.", what);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f || s[i] == '"' || s[i] == '\\')
			return sfa_err(err, n_err, SFA_EUPSTREAM, "lal.ai's %s has odd characters.",
			               what);
	memcpy(out, s, n + 1);
	return 0;
}

/* ---- Upload ----------------------------------------------------------------------- */

/* Content-Disposition for a file name: the plain form for simple ASCII names, else the
 * RFC 5987 form with the UTF-8 name percent-encoded. */
static void disposition_for(const char *name, char *out, size_t n_out)
{
	bool simple = *name != '\0';
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p >= 0x7f || *p == '"' || *p == '\\' || *p == '%')
			simple = false;
	if (simple && strlen(name) < 512) {
		snprintf(out, n_out, "attachment; filename=\"%s\"", name);
		return;
	}
	static const char hex[] = "0123456789ABCDEF";
	size_t k = (size_t)snprintf(out, n_out, "attachment; filename*=utf-8''");
	for (const unsigned char *p = (const unsigned char *)name; *p && k + 4 < n_out; p++) {
		bool keep = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		            (*p >= '0' && *p <= '9') || strchr("!#$&+-.^_`|~", *p);
		if (keep) {
			out[k++] = (char)*p;
		} else {
			out[k++] = '%';
			out[k++] = hex[*p >> 4];
			out[k++] = hex[*p & 15];
		}
	}
	out[k < n_out ? k : n_out - 1] = '\0';
}

int lalalai_upload(struct lalalai_client *c, const char *path, const char *file_name,
                   lalalai_progress_fn progress, void *user, struct lalalai_source *out, char *err,
                   size_t n_err)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		if (f)
			fclose(f);
		return sfa_err(err, n_err, SFA_EIO,
		               "The audio file to upload could not be opened.");
	}
	char disp[2048];
	disposition_for(file_name && *file_name ? file_name : "audio", disp, sizeof disp);
	char url[1200];
	snprintf(url, sizeof url, "%s/api/v1/upload/", c->base_url);
	struct la_req rq = {.url = url,
	                    .upload = f,
	                    .upload_size = (int64_t)st.st_size,
	                    .disposition = disp,
	                    .max_body_bytes = 64 << 10,
	                    .progress = progress,
	                    .user = user};
	struct http_resp rs = {0};
	int rc = la_request(c, &rq, &rs, err, n_err);
	fclose(f);
	json_t *j = NULL;
	if (rc == 0 &&
	    json_parse_object(rs.body.data ? rs.body.data : "", rs.body.len, &j, NULL, 0))
		rc = sfa_err(err, n_err, SFA_EUPSTREAM,
		             "lal.ai's upload answer is not a JSON object.");
	http_resp_free(&rs);
	if (rc)
		return rc;
	struct lalalai_source s = {.size = (int64_t)st.st_size};
	rc = take_id(json_object_get(j, "id"), s.id, "source id", err, n_err);
	const json_t *d = json_object_get(j, "duration");
	if (json_is_number(d) && json_number_value(d) > 0 && json_number_value(d) < 1e7)
		s.duration_s = json_number_value(d);
	json_decref(j);
	if (rc == 0)
		*out = s;
	return rc;
}

/* ---- Split, check, cancel, delete, quota ----------------------------------------------- */

int lalalai_split(struct lalalai_client *c, const char *source_id, const char *const *stems,
                  size_t n_stems, const char *idempotency_key, char task_id[LALALAI_ID_MAX],
                  char *err, size_t n_err)
{
	if (n_stems < 1 || n_stems > 6 || !source_id || !*source_id || !idempotency_key ||
	    !*idempotency_key)
		return sfa_err(err, n_err, SFA_EINVAL,
		               "A split needs a source, 1 to 6 stems and an "
		               "idempotency key.");
	json_t *list = json_array();
	/* The stem names are lal.ai's to check (422 names the bad one). */
	for (size_t i = 0; i < n_stems; i++)
		json_array_append_new(list, json_string(stems[i] ? stems[i] : ""));
	json_t *body = json_pack("{s:s, s:{s:o, s:n, s:s}, s:s}", "source_id", source_id, "presets",
	                         "stem_list", list, "splitter", "encoder_format", "wav",
	                         "idempotency_key", idempotency_key);
	if (!body)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
	json_t *j = NULL;
	int rc = post_json(c, "/api/v1/split/multistem/", body, &j, err, n_err);
	if (rc)
		return rc;
	char id[LALALAI_ID_MAX];
	rc = take_id(json_object_get(j, "task_id"), id, "task id", err, n_err);
	json_decref(j);
	if (rc == 0)
		memcpy(task_id, id, sizeof id);
	return rc;
}

static int parse_track(const json_t *t, struct lalalai_track *out, char *err, size_t n_err)
{
	const char *type = json_str(t, "type"), *label = json_str(t, "label");
	const char *url = json_str(t, "url");
	if (!type || !label || !url || strlen(type) >= sizeof out->type ||
	    strlen(label) >= sizeof out->label || strlen(url) >= sizeof out->url ||
	    !is_http_url(url))
		return sfa_err(err, n_err, SFA_EUPSTREAM,
		               "lal.ai sent a result track without a "
		               "usable type, label or URL.");
	memset(out, 0, sizeof *out);
	printable_copy(out->type, sizeof out->type, type);
	printable_copy(out->label, sizeof out->label, label);
	printable_copy(out->url, sizeof out->url, url);
	const json_t *sz = json_object_get(t, "size");
	out->size = json_is_integer(sz) && json_integer_value(sz) >= 0 ? json_integer_value(sz)
	                                                               : -1;
	return 0;
}

static int parse_status(const json_t *s, struct lalalai_status *out, char *err, size_t n_err)
{
	memset(out, 0, sizeof *out);
	if (!json_is_object(s)) {
		out->state = LALALAI_UNKNOWN;
		return 0;
	}
	const char *status = json_str(s, "status");
	if (!status)
		return sfa_err(err, n_err, SFA_EUPSTREAM,
		               "lal.ai sent a task state without a status.");
	if (strcmp(status, "progress") == 0) {
		out->state = LALALAI_PROGRESS;
		const json_t *p = json_object_get(s, "progress");
		double v = json_is_number(p) ? json_number_value(p) : 0;
		out->progress = v < 0 ? 0 : v > 100 ? 100 : (int)v;
		return 0;
	}
	if (strcmp(status, "success") == 0) {
		out->state = LALALAI_SUCCESS;
		out->progress = 100;
		const json_t *r = json_object_get(s, "result");
		const json_t *tracks = json_object_get(r, "tracks");
		if (!json_is_array(tracks) || json_array_size(tracks) == 0)
			return sfa_err(err, n_err, SFA_EUPSTREAM,
			               "lal.ai reported success without result tracks.");
		if (json_array_size(tracks) > LALALAI_MAX_TRACKS)
			return sfa_err(err, n_err, SFA_EUPSTREAM,
			               "lal.ai sent more than %d tracks.", LALALAI_MAX_TRACKS);
		const json_t *d = json_object_get(r, "duration");
		if (json_is_number(d) && json_number_value(d) > 0 && json_number_value(d) < 1e7)
			out->duration_s = json_number_value(d);
		size_t i;
		const json_t *t;
		json_array_foreach(tracks, i, t)
		{
			int rc = parse_track(t, &out->tracks[i], err, n_err);
			if (rc)
				return rc;
		}
		out->n_tracks = json_array_size(tracks);
		return 0;
	}
	if (strcmp(status, "error") == 0) {
		out->state = LALALAI_ERROR;
		const json_t *e = json_object_get(s, "error");
		char tmp[sizeof out->error];
		if (json_is_object(e))
			snprintf(tmp, sizeof tmp, "%s%s%s%s",
			         json_str(e, "detail") ? json_str(e, "detail") : "the task failed",
			         json_str(e, "code") ? " (" : "",
			         json_str(e, "code") ? json_str(e, "code") : "",
			         json_str(e, "code") ? ")" : "");
		else
			snprintf(tmp, sizeof tmp, "%s",
			         json_is_string(e) ? json_string_value(e) : "the task failed");
		printable_copy(out->error, sizeof out->error, tmp);
		return 0;
	}
	if (strcmp(status, "cancelled") == 0) {
		out->state = LALALAI_CANCELLED;
		return 0;
	}
	if (strcmp(status, "server_error") == 0) {
		out->state = LALALAI_SERVER_ERROR;
		const json_t *e = json_object_get(s, "error");
		printable_copy(out->error, sizeof out->error,
		               json_is_string(e) ? json_string_value(e)
		                                 : "lal.ai had a server error");
		return 0;
	}
	return sfa_err(err, n_err, SFA_EUPSTREAM, "lal.ai sent an unknown task status.");
}

int lalalai_parse_check(const char *body, size_t n_body, const char *const *ids, size_t n,
                        struct lalalai_status *out, char *err, size_t n_err)
{
	json_t *j = NULL;
	if (json_parse_object(body, n_body, &j, NULL, 0))
		return sfa_err(err, n_err, SFA_EUPSTREAM,
		               "lal.ai's check answer is not a JSON object.");
	const json_t *res = json_object_get(j, "result");
	int rc = 0;
	if (!json_is_object(res))
		rc = sfa_err(err, n_err, SFA_EUPSTREAM,
		             "lal.ai's check answer has no result object.");
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = parse_status(json_object_get(res, ids[i]), &out[i], err, n_err);
	json_decref(j);
	return rc;
}

static json_t *id_array(const char *const *ids, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(ids[i]));
	return a;
}

int lalalai_check(struct lalalai_client *c, const char *const *ids, size_t n,
                  struct lalalai_status *out, char *err, size_t n_err)
{
	if (n < 1 || n > LALALAI_MAX_TASKS)
		return sfa_err(err, n_err, SFA_EINVAL, "A check covers 1 to %d tasks.",
		               LALALAI_MAX_TASKS);
	json_t *j = NULL;
	int rc = post_json(c, "/api/v1/check/", json_pack("{s:o}", "task_ids", id_array(ids, n)),
	                   &j, err, n_err);
	if (rc)
		return rc;
	char *text = json_encode(j);
	json_decref(j);
	if (!text)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
	rc = lalalai_parse_check(text, strlen(text), ids, n, out, err, n_err);
	free(text);
	return rc;
}

int lalalai_cancel(struct lalalai_client *c, const char *const *ids, size_t n, bool *ok, char *err,
                   size_t n_err)
{
	if (n < 1 || n > LALALAI_MAX_TASKS)
		return sfa_err(err, n_err, SFA_EINVAL, "A cancel covers 1 to %d tasks.",
		               LALALAI_MAX_TASKS);
	json_t *j = NULL;
	int rc = post_json(c, "/api/v1/cancel/", json_pack("{s:o}", "task_ids", id_array(ids, n)),
	                   &j, err, n_err);
	if (rc)
		return rc;
	const json_t *res = json_object_get(j, "result");
	for (size_t i = 0; i < n; i++) {
		const char *st = json_str(json_object_get(res, ids[i]), "status");
		/* An answer without per-task results counts as done for every task. */
		ok[i] = json_is_object(res) ? (st && strcmp(st, "success") == 0) : true;
	}
	json_decref(j);
	return 0;
}

int lalalai_delete_source(struct lalalai_client *c, const char *source_id, char *err, size_t n_err)
{
	json_t *j = NULL;
	int rc = post_json(c, "/api/v1/delete/", json_pack("{s:s}", "source_id", source_id), &j,
	                   err, n_err);
	json_decref(j);
	return rc;
}

int lalalai_minutes_left(struct lalalai_client *c, double *minutes, char *err, size_t n_err)
{
	json_t *j = NULL;
	int rc = post_json(c, "/api/v1/limits/minutes_left/", NULL, &j, err, n_err);
	if (rc)
		return rc;
	const json_t *m = json_object_get(j, "minutes_left");
	if (!json_is_number(m) || json_number_value(m) < 0 || json_number_value(m) > 1e9)
		rc = sfa_err(err, n_err, SFA_EUPSTREAM,
		             "lal.ai's quota answer has no minutes_left.");
	else
		*minutes = json_number_value(m);
	json_decref(j);
	return rc;
}

/* ---- Downloads --------------------------------------------------------------------------- */

struct dl_state {
	CURL *h;
	FILE *f;
	int64_t have; /* bytes in the file */
	int64_t cap;
	bool checked; /* the status of this attempt was looked at */
	bool keep;    /* this attempt's body goes into the file */
	bool too_big;
	bool io_error;
};

static size_t on_dl(char *p, size_t size, size_t nmemb, void *ud)
{
	struct dl_state *d = ud;
	size_t n = size * nmemb;
	if (!d->checked) {
		d->checked = true;
		long code = 0;
		curl_easy_getinfo(d->h, CURLINFO_RESPONSE_CODE, &code);
		d->keep = code == 200 || code == 206;
		if (code == 200 && d->have > 0) { /* the server ignored the Range: start over */
			if (fflush(d->f) != 0 || ftruncate(fileno(d->f), 0) != 0 ||
			    fseeko(d->f, 0, SEEK_SET) != 0) {
				d->io_error = true;
				return 0;
			}
			d->have = 0;
		}
	}
	if (!d->keep)
		return n; /* an error page: read and drop */
	if (d->have + (int64_t)n > d->cap) {
		d->too_big = true;
		return 0;
	}
	if (fwrite(p, 1, n, d->f) != n) {
		d->io_error = true;
		return 0;
	}
	d->have += (int64_t)n;
	return n;
}

int lalalai_download(struct lalalai_client *c, const char *url, const char *dest,
                     int64_t expect_size, lalalai_progress_fn progress, void *user, char *err,
                     size_t n_err)
{
	if (!is_http_url(url))
		return sfa_err(err, n_err, SFA_EINVAL, "A lal.ai result link must be http(s).");
	char part[4200];
	if (snprintf(part, sizeof part, "%s.part", dest) >= (int)sizeof part)
		return sfa_err(err, n_err, SFA_EINVAL, "The download path is too long.");
	struct dl_state d = {.cap = c->max_download_bytes};
	d.f = fopen(part, "wb");
	d.h = curl_easy_init();
	if (!d.f || !d.h) {
		if (d.f)
			fclose(d.f);
		curl_easy_cleanup(d.h);
		return sfa_err(err, n_err, SFA_EIO, "The download file could not be created.");
	}
	int rc = 0, n_timeouts = 0;
	for (int attempt = 1;; attempt++) {
		if (aborted(c)) {
			rc = sfa_err(err, n_err, SFA_ECANCELED, "Cancelled.");
			break;
		}
		struct xfer x = {.c = c, .progress = progress, .user = user, .offset = d.have};
		struct curl_slist *hdrs = NULL;
		char range[64];
		if (d.have > 0) {
			snprintf(range, sizeof range, "Range: bytes=%lld-", (long long)d.have);
			if (!add_header(&hdrs, range)) {
				rc = sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
				break;
			}
		}
		curl_easy_reset(d.h);
		common_opts(c, d.h, url, true);
		curl_easy_setopt(d.h, CURLOPT_XFERINFODATA, &x);
		curl_easy_setopt(d.h, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(d.h, CURLOPT_WRITEFUNCTION, on_dl);
		curl_easy_setopt(d.h, CURLOPT_WRITEDATA, &d);
		d.checked = d.keep = false;
		int64_t start = d.have;
		CURLcode cc = curl_easy_perform(d.h);
		curl_slist_free_all(hdrs);
		long st = 0;
		curl_easy_getinfo(d.h, CURLINFO_RESPONSE_CODE, &st);
		curl_off_t clen = -1;
		curl_easy_getinfo(d.h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
		bool last = attempt >= c->max_tries;
		if (d.too_big) {
			rc = sfa_err(err, n_err, SFA_ETOOBIG,
			             "A lal.ai result track is larger than the %lld MiB allowed.",
			             (long long)(c->max_download_bytes >> 20));
			break;
		}
		if (d.io_error || fflush(d.f) != 0) {
			rc = sfa_err(err, n_err, SFA_EIO,
			             "A lal.ai result track could not be written.");
			break;
		}
		if (cc == CURLE_ABORTED_BY_CALLBACK) {
			rc = sfa_err(err, n_err, SFA_ECANCELED, "Cancelled.");
			break;
		}
		if (cc == CURLE_OK && (st == 200 || st == 206)) {
			int64_t total = st == 206 ? start + (int64_t)clen : (int64_t)clen;
			if (clen >= 0 && d.have != total) {
				cc = CURLE_PARTIAL_FILE; /* cannot happen with curl; be safe */
			} else if (expect_size >= 0 && d.have != expect_size) {
				rc = sfa_err(
					err, n_err, SFA_EUPSTREAM,
					"A lal.ai result track has %lld bytes, not the %lld announced.",
					(long long)d.have, (long long)expect_size);
				break;
			} else {
				break; /* complete */
			}
		}
		if (cc == CURLE_OK) {
			if (st == 404 || st == 410) {
				rc = sfa_err(
					err, n_err, SFA_ENOTFOUND,
					"A lal.ai result link expired or does not exist (HTTP %ld).",
					st);
				break;
			}
			if (st == 416) { /* the resume point is past the end: start over once */
				if (fflush(d.f) != 0 || ftruncate(fileno(d.f), 0) != 0 ||
				    fseeko(d.f, 0, SEEK_SET) != 0) {
					rc = sfa_err(err, n_err, SFA_EIO,
					             "A download could not be restarted.");
					break;
				}
				d.have = 0;
			} else if (!(st == 408 || st == 429 || st >= 500)) {
				rc = sfa_err(
					err, n_err, SFA_EUPSTREAM,
					"Downloading a lal.ai result track failed with HTTP %ld.",
					st);
				break;
			}
		} else {
			bool timeout = cc == CURLE_OPERATION_TIMEDOUT;
			n_timeouts += timeout;
			if (!http_curl_retryable(cc) || n_timeouts >= MAX_TIMEOUT_TRIES) {
				rc = sfa_err(err, n_err, timeout ? SFA_ETIMEOUT : SFA_EUPSTREAM,
				             "Downloading a lal.ai result track failed: %s%s.",
				             timeout ? "the transfer stalled"
				                     : curl_easy_strerror(cc),
				             attempt > 1 ? " (after retries)" : "");
				break;
			}
		}
		if (last) {
			rc = sfa_err(
				err, n_err, SFA_EUPSTREAM,
				"Downloading a lal.ai result track still failed after %d tries "
				"(%lld bytes received).",
				attempt, (long long)d.have);
			break;
		}
		log_warn("lal.ai: download interrupted at %lld bytes, retrying (try %d of %d)",
		         (long long)d.have, attempt, c->max_tries);
		http_sleep_ms(backoff_ms(c, attempt), c->abort_flag);
	}
	curl_easy_cleanup(d.h);
	if (fclose(d.f) != 0 && rc == 0)
		rc = sfa_err(err, n_err, SFA_EIO, "A lal.ai result track could not be written.");
	if (rc == 0 && rename(part, dest) != 0)
		rc = sfa_err(err, n_err, SFA_EIO,
		             "A lal.ai result track could not be moved into place.");
	if (rc)
		unlink(part);
	return rc;
}
