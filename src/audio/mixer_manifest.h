/* mixer_manifest.h - the DAW manifest as JSON, read into struct mixer_manifest (mixer.h)
 * at the edges that receive it: POST /api/daw/export (api/daw.c) and `sfa daw-render`
 * (mixer_cli.c), one parser for both, fuzzed by fuzz/fuzz_daw_manifest.c.
 *
 * The manifest (API.md §5) is JSON:
 *   {"sample_rate": 44100, "bit_depth": 16|24|32, "normalize": false,
 *    "stems": [{"file": 0 | "stem_id": "<uuid>", "volume": 1, "pan": 0, "mute": false,
 *               "solo": false, "edits": [{"type": "trim", ...}, ...]}, ...]}
 * mixer_manifest_parse checks all of it and reports EVERY problem at once, each under the
 * JSON path of the value at fault ("stems[1].edits[0].type") with a sentence a user can act
 * on. Unknown members are ignored; wrong types, out-of-range numbers, unknown edit types,
 * negative or reversed ranges, file indexes past the uploads and unsupported bit depths
 * are errors. Whether a stem_id names one of the caller's stems is the caller's check
 * (it has the database); it adds its findings with mixer_errors_add.
 *
 * Threading: no shared state; an error list belongs to the caller.
 */
#ifndef SFA_AUDIO_MIXER_MANIFEST_H
#define SFA_AUDIO_MIXER_MANIFEST_H

#include <stddef.h>

#include "audio/mixer.h"

struct mixer_error {
	char path[MIXER_PATH_MAX]; /* JSON path, e.g. "stems[1].edits[0].type"; "" for the whole */
	char msg[MIXER_MSG_MAX];
};

struct mixer_errors {
	int n;
	int n_dropped; /* errors past MIXER_MAX_ERRORS, not kept */
	struct mixer_error e[MIXER_MAX_ERRORS];
};

/* Records one error (printf-style message) under path. Never fails: past
 * MIXER_MAX_ERRORS it only counts. */
void mixer_errors_add(struct mixer_errors *errs, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Checks a well-formed stem_id of manifest stem `stem` (one that gives no file as well):
 * returns NULL when it may be used, else the message for stems[stem].stem_id (e.g. "is
 * not one of your stems"; a static or otherwise long-lived string). */
typedef const char *(*mixer_stem_check_fn)(void *arg, int stem, const char *stem_id);

/* Parses and validates n bytes of manifest JSON; n_files is the number of uploaded files
 * `file` may index; check (may be NULL: every id is accepted) vets stem ids, so that
 * their errors come in the same list as the rest. errs must be zeroed by the caller
 * (errors are appended to it). Returns 0 with *out filled (free it with
 * mixer_manifest_free), SFA_EINVAL when errs got at least one error (*out is then left
 * alone, nothing to free), SFA_ENOMEM. */
int mixer_manifest_parse(const char *text, size_t n, int n_files, mixer_stem_check_fn check,
                         void *check_arg, struct mixer_manifest *out, struct mixer_errors *errs);

#endif
