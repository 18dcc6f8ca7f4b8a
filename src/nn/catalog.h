/* catalog.h - where model files live and what the official names mean.
 *
 * Models live in a folder (SFA_MODELS_DIR, default data/models) as the official files
 * <sig>-<sha256 prefix>.th (<sig>.th is accepted too), plus optional bag files
 * <name>.yaml in the official format. The four official names are built in as the text
 * of Meta's yaml files together with the download paths of their members; a <name>.yaml
 * in the folder takes precedence, so a deployment (or a test) can redefine a name.
 *
 * fetch downloads from https://dl.fbaipublicfiles.com/demucs/ (or $SFA_MODELS_URL, a
 * mirror with the same layout) with resume, then checks the sha256 prefix in the file
 * name before moving the file into place. verify re-checks installed files. Loading does
 * not hash (84 MB per load would be wasted time), so a test may install any checkpoint
 * under a signature.
 *
 * Threading: the built-in table is constant; lookups run on any thread. A fetch writes only
 * its own .part files, so two fetches of the same model at once would collide: the CLI
 * runs one at a time. Paths and names are written into the caller's buffers.
 */
#ifndef SFA_NN_CATALOG_H
#define SFA_NN_CATALOG_H

#include <stdbool.h>
#include <stddef.h>

#include "nn/nn.h"

#define NN_MODELS_URL_DEFAULT "https://dl.fbaipublicfiles.com/demucs/"

struct nn_builtin {
	const char *name;
	const char *description;
	const char *stems;                 /* comma-separated, for listings */
	const char *yaml;                  /* the official bag file */
	const char *files[NN_MAX_MEMBERS]; /* download paths under the base URL, NULL-ended */
	bool supported;                    /* false: the engine cannot run it (all built-ins can) */
};

int nn_builtin_count(void);
/* The built-in definitions, in static storage: the i-th (NULL out of range), or the one
 * named name (NULL when none). */
const struct nn_builtin *nn_builtin_at(int i);
const struct nn_builtin *nn_builtin_find(const char *name);

/* $SFA_MODELS_DIR or "data/models". Never NULL. */
const char *nn_models_dir(void);

/* Finds the checkpoint of member `sig` in dir: <sig>-<8 hex>.th, else <sig>.th.
 * Writes the path; SFA_ENOTFOUND if neither exists. */
int nn_models_find_member(const char *dir, const char *sig, char *path, size_t n_path);

/* Loads a bag whose members live in dir. `what` names it in messages. On success *out is
 * the caller's (nn_model_free). */
struct nn_bag_spec;
int nn_model_load_bag(const char *dir, const struct nn_bag_spec *spec, const char *what,
                      struct nn_model **out, char *err, size_t n_err);

/* sha256 of a file as 64 lowercase hex digits (+ NUL). */
int nn_models_sha256_file(const char *path, char hex[65], char *err, size_t n_err);

/* For the CLI: download every member of a built-in model that is not installed yet.
 * progress(user, file, done_bytes, total_bytes) is called as bytes arrive (total may be
 * 0 when unknown). */
int nn_models_fetch(const char *name, const char *dir,
                    void (*progress)(void *user, const char *file, long long done, long long total),
                    void *user, char *err, size_t n_err);
/* What nn_models_fetch does for each file: files are paths under the base URL whose last
 * part is <sig>-<first 8 hex digits of its sha256>.th; an installed file is skipped, a
 * <file>.part left by an interrupted download is resumed (from zero if the server cannot
 * resume), and the hash is checked before the file is moved into place. */
int nn_models_fetch_files(const char *const *files, int n_files, const char *dir,
                          void (*progress)(void *user, const char *file, long long done,
                                           long long total),
                          void *user, char *err, size_t n_err);

#endif
