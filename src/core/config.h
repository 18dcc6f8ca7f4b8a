/* config.h - every setting of the service, from defaults, environment and flags.
 *
 * Precedence: command-line flag > environment variable > default. config_prepare_data
 * creates the data directory, proves it writable and loads or generates the server secret
 * (SFA_SECRET_KEY_BASE, else data/secret.key, created 0600 on first start). Subkeys for
 * CSRF and encryption are derived from that secret, never the secret itself.
 * A struct config is filled once at start-up and read-only afterwards (any thread).
 */
#ifndef SFA_CORE_CONFIG_H
#define SFA_CORE_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { CONFIG_MAX_PROXIES = 16 };

struct config {
	char bind[64];
	int port; /* 0: pick a free port (tests) */
	char data_dir[PATH_MAX];
	char db_path[PATH_MAX + 16];    /* the SQLite file, <data_dir>/sfa.db */
	char database_url[1024];        /* SFA_DATABASE_URL (postgresql://...): PostgreSQL
	                                 instead of db_path; "" = SQLite */
	int db_pool;                    /* SFA_DB_POOL: most PostgreSQL connections at once */
	char models_dir[PATH_MAX + 16]; /* SFA_MODELS_DIR, else <data_dir>/models */
	bool https;                     /* SFA_HTTPS=1 behind a TLS proxy: cookies get Secure */
	int rate_api;                   /* requests per minute per caller */
	int rate_heavy;
	int rate_auth;
	int n_trusted_proxies;
	char trusted_proxies[CONFIG_MAX_PROXIES][64];
	int shutdown_grace_s;
	int header_timeout_s; /* SFA_HEADER_TIMEOUT_S: a request's headers must be in by then */
	int body_timeout_s;   /* SFA_BODY_TIMEOUT_S: and its whole body by then */
	int n_http_threads;
	/* SFA_ACCESS_LOG: which request lines are logged: "all" (1, the default), "errors" (0:
	 * statuses >= 400 and aborted requests only), "sample:N" (N: those plus one success in
	 * N) or "off" (-1) */
	int access_log_every;
	int jobs_download; /* concurrency per job type */
	int jobs_processing;
	int jobs_analysis;
	int jobs_lalalai;     /* lal.ai separations: they mostly wait on the network */
	int job_retry_base_s; /* first retry delay; doubles each attempt */
	int job_timeout_s;    /* 0: the type's default */
	int job_memory_mb;    /* address-space limit of a job process */
	int job_nice;         /* job processes' niceness: requests go first (0-19) */
	int job_lease_s;      /* SFA_JOB_LEASE_S: a running job's claim lasts this long unless
	                          its node renews it (every third of it) */
	bool run_jobs;        /* SFA_RUN_JOBS (default 1); `serve --no-jobs` clears it */
	char node_id[128];    /* SFA_NODE_ID: this process's name in the job table; "": made
	                          up at start (host, pid, random) */
	int64_t max_upload_bytes;
	int max_duration_s;         /* SFA_MAX_DURATION_S: the longest audio a track may have */
	unsigned char csrf_key[32]; /* derived from the secret */
	unsigned char box_key[32];  /* for secretbox-encrypted columns */

	/* Spotify (metadata, log-in) and the audio download. Empty strings: not set. */
	char spotify_client_id[256];
	char spotify_client_secret[256];
	char spotify_accounts_url[512]; /* "" = https://accounts.spotify.com */
	char spotify_api_url[512];      /* "" = https://api.spotify.com */
	char spotify_market[3];         /* ISO 3166-1 alpha-2, default "US" */
	char spotify_redirect_uri[512]; /* "" = derived from the request's Host */
	char ytdlp[PATH_MAX];           /* yt-dlp program: a path or a name on PATH */
	char download_query[1024];      /* URL template with {spotify_id}, or a yt-dlp search
	                                   prefix such as "ytsearch5" (the default) */
	int download_timeout_s;         /* wall-clock limit of one download attempt */
	int download_max_tracks;        /* most jobs one album/playlist request may queue */

	/* lal.ai cloud separation. */
	char lalalai_url[512];         /* SFA_LALALAI_URL, "" = https://www.lalal.ai */
	char lalalai_license_key[256]; /* SFA_LALALAI_LICENSE_KEY: fallback for users without
	                                   their own key; "" = none */
	int lalalai_check_interval_ms; /* between check calls (default 3000: lal.ai allows
	                                   20 a minute); lower only against a test fake */
	int lalalai_deadline_s;        /* a lal.ai task's overall limit (default 3600) */
};

/* Fills c with defaults and the SFA_* environment. Errors name the variable. */
int config_from_env(struct config *c, char *err, size_t n_err);
/* Applies `serve` flags (--port N --bind ADDR --data DIR --no-jobs). Errors name the flag. */
int config_parse_serve_args(struct config *c, int argc, char **argv, char *err, size_t n_err);
/* Applies --data DIR only (the admin subcommands). Other flags are left in argv for the
 * caller: returns the new argc with --data removed. Negative code on error. */
int config_take_data_flag(struct config *c, int *argc, char **argv, char *err, size_t n_err);
/* Creates the data dir, checks it is writable, loads/creates the secret. */
int config_prepare_data(struct config *c, char *err, size_t n_err);
bool config_is_trusted_proxy(const struct config *c, const char *ip);
/* What db_open opens: SFA_DATABASE_URL when set, else the SQLite file in the data dir
 * (points into c). */
const char *config_db_target(const struct config *c);

#endif
