/* config.c - see config.h. */
#include "core/config.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "util/str.h"

static int env_int(const char *name, long min, long max, int *out, char *err, size_t n_err)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return 0;
	long x;
	if (str_to_long(v, min, max, &x))
		return sfa_err(err, n_err, SFA_EINVAL, "%s must be a whole number from %ld to %ld.",
		               name, min, max);
	*out = (int)x;
	return 0;
}

/* Copies a string variable into dst; too long is an error naming the variable. */
static int env_str(const char *name, char *dst, size_t n_dst, char *err, size_t n_err)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return 0;
	if (strlen(v) >= n_dst)
		return sfa_err(err, n_err, SFA_EINVAL, "%s is longer than %zu characters.", name,
		               n_dst - 1);
	str_copy(dst, n_dst, v);
	return 0;
}

/* SFA_DOWNLOAD_QUERY is either an http(s) URL template holding {spotify_id} or a yt-dlp
 * search prefix ("ytsearch5", "scsearch3"): letters, then "search", then a count. */
static bool download_query_valid(const char *q)
{
	if (strstr(q, "{spotify_id}"))
		return str_starts_with(q, "http://") || str_starts_with(q, "https://");
	const char *s = strstr(q, "search");
	if (!s || s == q)
		return false;
	for (const char *p = q; p < s; p++)
		if (!(*p >= 'a' && *p <= 'z'))
			return false;
	const char *n = s + 6;
	if (!*n)
		return true;
	long count;
	return str_to_long(n, 1, 50, &count) == 0;
}

static int spotify_from_env(struct config *c, char *err, size_t n_err)
{
	int rc;
	if ((rc = env_str("SFA_SPOTIFY_CLIENT_ID", c->spotify_client_id,
	                  sizeof c->spotify_client_id, err, n_err)) ||
	    (rc = env_str("SFA_SPOTIFY_CLIENT_SECRET", c->spotify_client_secret,
	                  sizeof c->spotify_client_secret, err, n_err)) ||
	    (rc = env_str("SFA_SPOTIFY_ACCOUNTS_URL", c->spotify_accounts_url,
	                  sizeof c->spotify_accounts_url, err, n_err)) ||
	    (rc = env_str("SFA_SPOTIFY_API_URL", c->spotify_api_url, sizeof c->spotify_api_url, err,
	                  n_err)) ||
	    (rc = env_str("SFA_SPOTIFY_MARKET", c->spotify_market, sizeof c->spotify_market, err,
	                  n_err)) ||
	    (rc = env_str("SFA_SPOTIFY_REDIRECT_URI", c->spotify_redirect_uri,
	                  sizeof c->spotify_redirect_uri, err, n_err)) ||
	    (rc = env_str("SFA_YTDLP", c->ytdlp, sizeof c->ytdlp, err, n_err)) ||
	    (rc = env_str("SFA_DOWNLOAD_QUERY", c->download_query, sizeof c->download_query, err,
	                  n_err)) ||
	    (rc = env_int("SFA_DOWNLOAD_TIMEOUT_S", 5, 86400, &c->download_timeout_s, err,
	                  n_err)) ||
	    (rc = env_int("SFA_DOWNLOAD_MAX_TRACKS", 1, 100000, &c->download_max_tracks, err,
	                  n_err)) ||
	    (rc = env_str("SFA_LALALAI_URL", c->lalalai_url, sizeof c->lalalai_url, err, n_err)) ||
	    (rc = env_str("SFA_LALALAI_LICENSE_KEY", c->lalalai_license_key,
	                  sizeof c->lalalai_license_key, err, n_err)) ||
	    (rc = env_int("SFA_LALALAI_CHECK_INTERVAL_MS", 50, 60000, &c->lalalai_check_interval_ms,
	                  err, n_err)) ||
	    (rc = env_int("SFA_LALALAI_DEADLINE_S", 10, 7 * 86400, &c->lalalai_deadline_s, err,
	                  n_err)))
		return rc;
	if (c->lalalai_url[0] && !str_starts_with(c->lalalai_url, "http://") &&
	    !str_starts_with(c->lalalai_url, "https://"))
		return sfa_err(err, n_err, SFA_EINVAL,
		               "SFA_LALALAI_URL must be an http:// or https:// URL.");
	const char *urls[] = {c->spotify_accounts_url, c->spotify_api_url, c->spotify_redirect_uri};
	const char *names[] = {"SFA_SPOTIFY_ACCOUNTS_URL", "SFA_SPOTIFY_API_URL",
	                       "SFA_SPOTIFY_REDIRECT_URI"};
	for (int i = 0; i < 3; i++)
		if (*urls[i] && !str_starts_with(urls[i], "http://") &&
		    !str_starts_with(urls[i], "https://"))
			return sfa_err(err, n_err, SFA_EINVAL,
			               "%s must be an http:// or https:// URL.", names[i]);
	const char *m = c->spotify_market;
	if (strlen(m) != 2 || m[0] < 'A' || m[0] > 'Z' || m[1] < 'A' || m[1] > 'Z')
		return sfa_err(err, n_err, SFA_EINVAL,
		               "SFA_SPOTIFY_MARKET must be a two-letter country code such as US.");
	if (!download_query_valid(c->download_query))
		return sfa_err(
			err, n_err, SFA_EINVAL,
			"SFA_DOWNLOAD_QUERY must be an http(s) URL holding {spotify_id} or a "
			"yt-dlp search prefix such as ytsearch5.");
	return 0;
}

static int set_data_dir(struct config *c, const char *dir, char *err, size_t n_err)
{
	if (!*dir || strlen(dir) >= sizeof c->data_dir)
		return sfa_err(err, n_err, SFA_EINVAL,
		               "The data directory path is empty or too long.");
	str_copy(c->data_dir, sizeof c->data_dir, dir);
	snprintf(c->db_path, sizeof c->db_path, "%s/sfa.db", c->data_dir);
	const char *models = getenv("SFA_MODELS_DIR");
	if (models && *models)
		str_copy(c->models_dir, sizeof c->models_dir, models);
	else
		snprintf(c->models_dir, sizeof c->models_dir, "%s/models", c->data_dir);
	return 0;
}

static int parse_proxies(struct config *c, const char *list, char *err, size_t n_err)
{
	c->n_trusted_proxies = 0;
	const char *p = list;
	while (*p) {
		while (*p == ',' || *p == ' ')
			p++;
		size_t n = strcspn(p, ", ");
		if (n == 0)
			break;
		if (c->n_trusted_proxies == CONFIG_MAX_PROXIES || n >= sizeof c->trusted_proxies[0])
			return sfa_err(err, n_err, SFA_EINVAL,
			               "SFA_TRUSTED_PROXIES holds at most %d addresses.",
			               CONFIG_MAX_PROXIES);
		memcpy(c->trusted_proxies[c->n_trusted_proxies], p, n);
		c->trusted_proxies[c->n_trusted_proxies][n] = '\0';
		c->n_trusted_proxies++;
		p += n;
	}
	return 0;
}

/* Where jobs run (scale-out, README "Several machines"): the lease of a running job, whether
 * `serve` runs jobs, and this node's name in the job table. */
static int cluster_from_env(struct config *c, char *err, size_t n_err)
{
	c->job_lease_s = 30;
	c->run_jobs = true;
	int rc = env_int("SFA_JOB_LEASE_S", 1, 3600, &c->job_lease_s, err, n_err);
	if (rc)
		return rc;
	const char *v = getenv("SFA_RUN_JOBS");
	if (v && *v) {
		if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
			return sfa_err(
				err, n_err, SFA_EINVAL,
				"SFA_RUN_JOBS must be 1 (serve runs jobs) or 0 (it runs none).");
		c->run_jobs = strcmp(v, "1") == 0;
	}
	if ((v = getenv("SFA_NODE_ID")) && *v) {
		if (strlen(v) >= sizeof c->node_id)
			return sfa_err(err, n_err, SFA_EINVAL,
			               "SFA_NODE_ID is longer than %zu characters.",
			               sizeof c->node_id - 1);
		str_copy(c->node_id, sizeof c->node_id, v);
	}
	return 0;
}

int config_from_env(struct config *c, char *err, size_t n_err)
{
	memset(c, 0, sizeof *c);
	str_copy(c->bind, sizeof c->bind, "127.0.0.1");
	c->port = 4000;
	c->rate_api = 60;
	c->rate_heavy = 10;
	c->rate_auth = 10;
	c->shutdown_grace_s = 10;
	c->max_duration_s = 1800;
	c->header_timeout_s = 10;
	c->access_log_every = 1;
	c->body_timeout_s = 3600;
	c->n_http_threads = 8;
	c->db_pool = 16;
	c->jobs_download = 3;
	c->jobs_processing = 1;
	c->jobs_analysis = 2;
	c->jobs_lalalai = 4;
	c->job_retry_base_s = 10;
	c->job_memory_mb = 32768; /* address space: the Demucs workspaces reserve 4+ GiB each */
	c->job_nice = 10;
	str_copy(c->spotify_market, sizeof c->spotify_market, "US");
	str_copy(c->ytdlp, sizeof c->ytdlp, "yt-dlp");
	str_copy(c->download_query, sizeof c->download_query, "ytsearch5");
	c->download_timeout_s = 600;
	c->download_max_tracks = 500;
	c->lalalai_check_interval_ms = 3000;
	c->lalalai_deadline_s = 3600;
	int max_upload_mb = 500;
	int rc = set_data_dir(c, "data", err, n_err);
	if (rc)
		return rc;
	const char *v;
	if ((v = getenv("SFA_BIND")) && *v) {
		if (strlen(v) >= sizeof c->bind)
			return sfa_err(err, n_err, SFA_EINVAL, "SFA_BIND is too long.");
		str_copy(c->bind, sizeof c->bind, v);
	}
	if ((v = getenv("SFA_DATA_DIR")) && *v && (rc = set_data_dir(c, v, err, n_err)))
		return rc;
	if ((v = getenv("SFA_DATABASE_URL")) && *v) {
		if (strncmp(v, "postgresql://", 13) != 0 && strncmp(v, "postgres://", 11) != 0)
			return sfa_err(
				err, n_err, SFA_EINVAL,
				"SFA_DATABASE_URL must be a postgresql:// URL (unset it to use SQLite "
				"in the data directory).");
		if (strlen(v) >= sizeof c->database_url)
			return sfa_err(err, n_err, SFA_EINVAL, "SFA_DATABASE_URL is too long.");
		str_copy(c->database_url, sizeof c->database_url, v);
	}
	if ((v = getenv("SFA_HTTPS")))
		c->https = strcmp(v, "1") == 0 || strcmp(v, "true") == 0;
	if ((v = getenv("SFA_TRUSTED_PROXIES")) && (rc = parse_proxies(c, v, err, n_err)))
		return rc;
	if ((v = getenv("SFA_ACCESS_LOG")) && *v) {
		long every = 0;
		if (strcmp(v, "all") == 0)
			c->access_log_every = 1;
		else if (strcmp(v, "errors") == 0)
			c->access_log_every = 0;
		else if (strcmp(v, "off") == 0)
			c->access_log_every = -1;
		else if (strncmp(v, "sample:", 7) == 0 && !str_to_long(v + 7, 1, 1000000, &every))
			c->access_log_every = (int)every;
		else
			return sfa_err(
				err, n_err, SFA_EINVAL,
				"SFA_ACCESS_LOG must be all, errors, off or sample:N (N from 1 to "
				"1000000: one successful request in N is logged).");
	}
	if ((rc = env_int("SFA_PORT", 0, 65535, &c->port, err, n_err)) ||
	    (rc = env_int("SFA_RATE_API", 1, 1000000000, &c->rate_api, err, n_err)) ||
	    (rc = env_int("SFA_RATE_HEAVY", 1, 1000000000, &c->rate_heavy, err, n_err)) ||
	    (rc = env_int("SFA_RATE_AUTH", 1, 1000000, &c->rate_auth, err, n_err)) ||
	    (rc = env_int("SFA_SHUTDOWN_GRACE_S", 0, 3600, &c->shutdown_grace_s, err, n_err)) ||
	    (rc = env_int("SFA_HEADER_TIMEOUT_S", 1, 600, &c->header_timeout_s, err, n_err)) ||
	    (rc = env_int("SFA_BODY_TIMEOUT_S", 1, 86400, &c->body_timeout_s, err, n_err)) ||
	    (rc = env_int("SFA_HTTP_THREADS", 1, 256, &c->n_http_threads, err, n_err)) ||
	    (rc = env_int("SFA_DB_POOL", 1, 1024, &c->db_pool, err, n_err)) ||
	    (rc = env_int("SFA_JOBS_DOWNLOAD", 1, 64, &c->jobs_download, err, n_err)) ||
	    (rc = env_int("SFA_JOBS_PROCESSING", 1, 64, &c->jobs_processing, err, n_err)) ||
	    (rc = env_int("SFA_JOBS_ANALYSIS", 1, 64, &c->jobs_analysis, err, n_err)) ||
	    (rc = env_int("SFA_JOBS_LALALAI", 1, 64, &c->jobs_lalalai, err, n_err)) ||
	    (rc = env_int("SFA_JOB_RETRY_BASE_S", 0, 86400, &c->job_retry_base_s, err, n_err)) ||
	    (rc = env_int("SFA_JOB_TIMEOUT_S", 0, 7 * 86400, &c->job_timeout_s, err, n_err)) ||
	    (rc = env_int("SFA_JOB_MEMORY_MB", 64, 1 << 20, &c->job_memory_mb, err, n_err)) ||
	    (rc = env_int("SFA_JOB_NICE", 0, 19, &c->job_nice, err, n_err)) ||
	    (rc = env_int("SFA_MAX_UPLOAD_MB", 1, 1 << 20, &max_upload_mb, err, n_err)) ||
	    (rc = env_int("SFA_MAX_DURATION_S", 1, 24 * 3600, &c->max_duration_s, err, n_err)))
		return rc;
	c->max_upload_bytes = (int64_t)max_upload_mb << 20;
	if ((rc = cluster_from_env(c, err, n_err)))
		return rc;
	return spotify_from_env(c, err, n_err);
}

int config_parse_serve_args(struct config *c, int argc, char **argv, char *err, size_t n_err)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--port") == 0 || strcmp(a, "--bind") == 0 ||
		    strcmp(a, "--data") == 0) {
			if (!val)
				return sfa_err(err, n_err, SFA_EINVAL, "%s needs a value.", a);
			i++;
			if (a[2] == 'p') {
				long p;
				if (str_to_long(val, 0, 65535, &p))
					return sfa_err(
						err, n_err, SFA_EINVAL,
						"--port must be a number from 0 to 65535, not \"%s\".",
						val);
				c->port = (int)p;
			} else if (a[2] == 'b') {
				if (strlen(val) >= sizeof c->bind)
					return sfa_err(err, n_err, SFA_EINVAL,
					               "--bind is too long.");
				str_copy(c->bind, sizeof c->bind, val);
			} else {
				int rc = set_data_dir(c, val, err, n_err);
				if (rc)
					return rc;
			}
		} else if (strcmp(a, "--no-jobs") == 0) {
			c->run_jobs = false;
		} else {
			return sfa_err(err, n_err, SFA_EINVAL,
			               "Unknown option \"%s\" (serve takes --port, --bind, --data, "
			               "--no-jobs).",
			               a);
		}
	}
	return 0;
}

int config_take_data_flag(struct config *c, int *argc, char **argv, char *err, size_t n_err)
{
	int out = 0;
	for (int i = 0; i < *argc; i++) {
		if (strcmp(argv[i], "--data") == 0) {
			if (i + 1 >= *argc)
				return sfa_err(err, n_err, SFA_EINVAL, "--data needs a value.");
			int rc = set_data_dir(c, argv[++i], err, n_err);
			if (rc)
				return rc;
			continue;
		}
		argv[out++] = argv[i];
	}
	*argc = out;
	return 0;
}

static int read_or_create_secret(const char *path, char *hex, size_t n_hex, char *err, size_t n_err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, hex, n_hex - 1);
		close(fd);
		if (n < 32)
			return sfa_err(err, n_err, SFA_EFORMAT,
			               "The server secret in the data directory is shorter than 32 "
			               "characters; delete secret.key to generate a new one.");
		hex[n] = '\0';
		hex[strcspn(hex, "\r\n")] = '\0';
		return 0;
	}
	unsigned char raw[48];
	randombytes_buf(raw, sizeof raw);
	str_hex(raw, sizeof raw, hex);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return sfa_err(err, n_err, SFA_EIO, "Cannot create the server secret file: %s.",
		               strerror(errno));
	size_t len = strlen(hex);
	ssize_t w = write(fd, hex, len);
	int ok = w == (ssize_t)len && fsync(fd) == 0;
	close(fd);
	if (!ok)
		return sfa_err(err, n_err, SFA_EIO, "Cannot write the server secret file.");
	return 0;
}

int config_prepare_data(struct config *c, char *err, size_t n_err)
{
	if (mkdir(c->data_dir, 0700) != 0 && errno != EEXIST)
		return sfa_err(err, n_err, SFA_EIO, "Cannot create the data directory \"%s\": %s.",
		               c->data_dir, strerror(errno));
	char probe[PATH_MAX + 32];
	snprintf(probe, sizeof probe, "%s/.write-test", c->data_dir);
	int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return sfa_err(err, n_err, SFA_EIO,
		               "The data directory \"%s\" is not writable: %s.", c->data_dir,
		               strerror(errno));
	close(fd);
	unlink(probe);

	char secret[257];
	const char *env = getenv("SFA_SECRET_KEY_BASE");
	if (env && *env) {
		if (strlen(env) < 32 || strlen(env) >= sizeof secret)
			return sfa_err(err, n_err, SFA_EINVAL,
			               "SFA_SECRET_KEY_BASE must be 32 to 256 characters long.");
		str_copy(secret, sizeof secret, env);
	} else {
		char path[PATH_MAX + 16];
		snprintf(path, sizeof path, "%s/secret.key", c->data_dir);
		int rc = read_or_create_secret(path, secret, sizeof secret, err, n_err);
		if (rc)
			return rc;
	}
	/* Independent subkeys: a leak of one never reveals the other or the secret. */
	unsigned char master[32];
	crypto_generichash(master, sizeof master, (const unsigned char *)secret, strlen(secret),
	                   NULL, 0);
	crypto_generichash(c->csrf_key, sizeof c->csrf_key, (const unsigned char *)"sfa csrf v1",
	                   11, master, sizeof master);
	crypto_generichash(c->box_key, sizeof c->box_key, (const unsigned char *)"sfa box v1", 10,
	                   master, sizeof master);
	sodium_memzero(master, sizeof master);
	sodium_memzero(secret, sizeof secret);
	return 0;
}

bool config_is_trusted_proxy(const struct config *c, const char *ip)
{
	for (int i = 0; i < c->n_trusted_proxies; i++)
		if (strcmp(c->trusted_proxies[i], ip) == 0)
			return true;
	return false;
}

const char *config_db_target(const struct config *c)
{
	return c->database_url[0] ? c->database_url : c->db_path;
}
