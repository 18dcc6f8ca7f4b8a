/* catalog.c - the built-in model table, the models folder, sha256 checks and downloads.
 * See catalog.h. */
#include "nn/catalog.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "util/fs.h"
#include "util/str.h"

/* The official bag files (the yaml files of demucs/remote) and their members' download paths. */
static const struct nn_builtin builtins[] = {
	{
		.name = "htdemucs",
		.description = "Hybrid Transformer Demucs v4 (default)",
		.stems = "drums,bass,other,vocals",
		.yaml = "models: ['955717e8']\n",
		.files = {"hybrid_transformer/955717e8-8726e21a.th"},
		.supported = true,
	},
	{
		.name = "htdemucs_ft",
		.description = "htdemucs fine-tuned per source (4 models, 4x slower, a bit better)",
		.stems = "drums,bass,other,vocals",
		.yaml = "models: ['f7e0c4bc', 'd12395a8', '92cfc3b6', '04573f0d']\n"
			"weights: [\n"
			"  [1., 0., 0., 0.],\n"
			"  [0., 1., 0., 0.],\n"
			"  [0., 0., 1., 0.],\n"
			"  [0., 0., 0., 1.],\n"
			"]\n",
		.files = {"hybrid_transformer/f7e0c4bc-ba3fe64a.th",
                          "hybrid_transformer/d12395a8-e57c48e6.th",
                          "hybrid_transformer/92cfc3b6-ef3bcb9c.th",
                          "hybrid_transformer/04573f0d-f3cf25b2.th"},
		.supported = true,
	},
	{
		.name = "htdemucs_6s",
		.description = "Hybrid Transformer Demucs with guitar and piano stems",
		.stems = "drums,bass,other,vocals,guitar,piano",
		.yaml = "models: ['5c90dfd2']\n",
		.files = {"hybrid_transformer/5c90dfd2-34c22ccb.th"},
		.supported = true,
	},
	{
		.name = "mdx_extra",
		.description = "Hybrid Demucs v3 bag trained with extra data",
		.stems = "drums,bass,other,vocals",
		.yaml = "models: ['e51eebcc', 'a1d90b5c', '5d2d6c55', 'cfa93e08']\n"
			"segment: 44\n",
		.files = {"mdx_final/e51eebcc-c1b80bdd.th", "mdx_final/a1d90b5c-ae9d2452.th",
                          "mdx_final/5d2d6c55-db83574e.th", "mdx_final/cfa93e08-61801ae1.th"},
		.supported = true,
	},
};

int nn_builtin_count(void) { return (int)(sizeof builtins / sizeof builtins[0]); }

const struct nn_builtin *nn_builtin_at(int i)
{
	return i >= 0 && i < nn_builtin_count() ? &builtins[i] : NULL;
}

const struct nn_builtin *nn_builtin_find(const char *name)
{
	for (int i = 0; i < nn_builtin_count(); i++)
		if (strcmp(builtins[i].name, name) == 0)
			return &builtins[i];
	return NULL;
}

const char *nn_models_dir(void)
{
	const char *d = getenv("SFA_MODELS_DIR");
	return d && *d ? d : "data/models";
}

static int is_hex8(const char *s)
{
	for (int i = 0; i < 8; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

int nn_models_find_member(const char *dir, const char *sig, char *path, size_t n_path)
{
	size_t ns = strlen(sig);
	DIR *d = opendir(dir);
	int found_plain = 0;
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			const char *n = e->d_name;
			/* <sig>-<8 hex>.th */
			if (strlen(n) == ns + 12 && strncmp(n, sig, ns) == 0 && n[ns] == '-' &&
			    is_hex8(n + ns + 1) && strcmp(n + ns + 9, ".th") == 0) {
				int k = snprintf(path, n_path, "%s/%s", dir, n);
				closedir(d);
				return k > 0 && (size_t)k < n_path ? 0 : SFA_ENOTFOUND;
			}
			if (strlen(n) == ns + 3 && strncmp(n, sig, ns) == 0 &&
			    strcmp(n + ns, ".th") == 0)
				found_plain = 1;
		}
		closedir(d);
	}
	if (!found_plain)
		return SFA_ENOTFOUND;
	int k = snprintf(path, n_path, "%s/%s.th", dir, sig);
	return k > 0 && (size_t)k < n_path ? 0 : SFA_ENOTFOUND;
}

int nn_models_sha256_file(const char *path, char hex[65], char *err, size_t n_err)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return sfa_err(err, n_err, errno == ENOENT ? SFA_ENOTFOUND : SFA_EIO,
		               "cannot open %s: %s", path, strerror(errno));
	crypto_hash_sha256_state st;
	crypto_hash_sha256_init(&st);
	unsigned char buf[1 << 16];
	size_t got;
	while ((got = fread(buf, 1, sizeof buf, f)) > 0)
		crypto_hash_sha256_update(&st, buf, got);
	int bad = ferror(f);
	fclose(f);
	if (bad)
		return sfa_err(err, n_err, SFA_EIO, "read error on %s", path);
	unsigned char digest[crypto_hash_sha256_BYTES];
	crypto_hash_sha256_final(&st, digest);
	str_hex(digest, sizeof digest, hex);
	return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Downloads.                                                                         */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

struct dl {
	FILE *f;
	const char *file;
	long long base; /* bytes already on disk when this transfer started */
	void (*progress)(void *, const char *, long long, long long);
	void *user;
	int write_failed;
};

static size_t dl_write(char *p, size_t size, size_t n, void *user)
{
	struct dl *d = user;
	size_t k = size * n;
	if (fwrite(p, 1, k, d->f) != k) {
		d->write_failed = 1;
		return 0;
	}
	return k;
}

static int dl_progress(void *user, curl_off_t total, curl_off_t now, curl_off_t ut, curl_off_t un)
{
	(void)ut;
	(void)un;
	struct dl *d = user;
	if (d->progress)
		d->progress(d->user, d->file, d->base + (long long)now,
		            total > 0 ? d->base + (long long)total : 0);
	return 0;
}

enum { MAX_MODEL_BYTES = 1 << 30 };

/* One GET into part_path, resuming from its current size. Returns 0, or an SFA code;
 * *http receives the status. */
static int fetch_once(const char *url, const char *part_path, const char *file, int resume,
                      void (*progress)(void *, const char *, long long, long long), void *user,
                      long *http, char *err, size_t n_err)
{
	struct stat sb;
	long long have = (resume && stat(part_path, &sb) == 0) ? (long long)sb.st_size : 0;
	struct dl d = {.file = file, .base = have, .progress = progress, .user = user};
	d.f = fopen(part_path, have ? "ab" : "wb");
	if (!d.f)
		return sfa_err(err, n_err, SFA_EIO, "cannot write %s: %s", part_path,
		               strerror(errno));
	CURL *c = curl_easy_init();
	if (!c) {
		fclose(d.f);
		return sfa_err(err, n_err, SFA_ENOMEM, "cannot start a download");
	}
	char cerr[CURL_ERROR_SIZE] = "";
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https,file"); /* file: local mirrors */
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, dl_write);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, dl_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, &d);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L); /* abort stalls: < 1 KB/s ... */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);    /* ... for a minute */
	curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)MAX_MODEL_BYTES);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "sfa-models/1");
	if (have)
		curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)have);
	CURLcode cc = curl_easy_perform(c);
	*http = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, http);
	curl_easy_cleanup(c);
	int bad_close = fclose(d.f) != 0;
	if (d.write_failed || bad_close)
		return sfa_err(err, n_err, SFA_EIO, "cannot write %s (disk full?)", part_path);
	if (cc == CURLE_RANGE_ERROR || cc == CURLE_BAD_DOWNLOAD_RESUME ||
	    (cc == CURLE_HTTP_RETURNED_ERROR && *http == 416))
		return SFA_ECONFLICT; /* resume refused: the caller restarts from zero */
	if (cc != CURLE_OK)
		return sfa_err(err, n_err, SFA_EUPSTREAM, "download of %s failed: %s", url,
		               cerr[0] ? cerr : curl_easy_strerror(cc));
	return 0;
}

int nn_models_fetch_files(const char *const *files, int n_files, const char *dir,
                          void (*progress)(void *user, const char *file, long long done,
                                           long long total),
                          void *user, char *err, size_t n_err)
{
	if (fs_mkdirs(dir, 0755) != 0)
		return sfa_err(err, n_err, SFA_EIO, "cannot create %s: %s", dir, strerror(errno));
	pthread_once(&curl_once, curl_init_once);
	const char *base = getenv("SFA_MODELS_URL");
	if (!base || !*base)
		base = NN_MODELS_URL_DEFAULT;
	size_t nb = strlen(base);
	for (int i = 0; i < n_files; i++) {
		const char *rel = files[i];
		const char *file = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;
		char want[9], final_path[4096], part[4200], url[4096];
		const char *dash = strchr(file, '-');
		if (!dash || dash == file || strlen(dash + 1) < 8)
			return sfa_err(err, n_err, SFA_EINVAL, "bad model file name %s", file);
		memcpy(want, dash + 1, 8);
		want[8] = 0;
		snprintf(final_path, sizeof final_path, "%s/%s", dir, file);
		struct stat sb;
		if (stat(final_path, &sb) == 0)
			continue; /* installed; `verify` checks it */
		snprintf(part, sizeof part, "%s.part", final_path);
		snprintf(url, sizeof url, "%s%s%s", base, nb && base[nb - 1] == '/' ? "" : "/",
		         rel);
		long http = 0;
		int rc = fetch_once(url, part, file, 1, progress, user, &http, err, n_err);
		if (rc == SFA_ECONFLICT) /* the server would not resume: start over */
			rc = fetch_once(url, part, file, 0, progress, user, &http, err, n_err);
		if (rc)
			return rc;
		char hex[65];
		if ((rc = nn_models_sha256_file(part, hex, err, n_err)))
			return rc;
		if (strncmp(hex, want, 8) != 0) {
			unlink(part);
			return sfa_err(
				err, n_err, SFA_EFORMAT,
				"%s: sha256 starts with %.8s, the file name says %s (corrupt or "
				"wrong download; removed)",
				file, hex, want);
		}
		if (rename(part, final_path) != 0)
			return sfa_err(err, n_err, SFA_EIO, "cannot move %s into place: %s", part,
			               strerror(errno));
	}
	return 0;
}

int nn_models_fetch(const char *name, const char *dir,
                    void (*progress)(void *user, const char *file, long long done, long long total),
                    void *user, char *err, size_t n_err)
{
	const struct nn_builtin *b = nn_builtin_find(name);
	if (!b)
		return sfa_err(err, n_err, SFA_ENOTFOUND,
		               "'%s' is not a built-in model (htdemucs, htdemucs_ft, htdemucs_6s, "
		               "mdx_extra)",
		               name);
	int n = 0;
	while (n < NN_MAX_MEMBERS && b->files[n])
		n++;
	return nn_models_fetch_files(b->files, n, dir, progress, user, err, n_err);
}
