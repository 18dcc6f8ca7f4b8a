/* djexport.h - the user's library as it goes to DJ software: which tracks, what each
 * carries (core/djxml.h) and where its audio lies on the DJ's machine.
 *
 * Without a root the locations are the server's own files (absolute paths under the data
 * directory: right when the DJ software runs on the machine that serves). With a root they
 * are root/<bundle name>, the names the audio has in /export/library.zip, which unpacked
 * into root puts every file where the collection says.
 *
 * Threading: no shared state; a call belongs to its caller's thread, and everything it
 * returns lives in the caller's arena.
 */
#ifndef SFA_CORE_DJEXPORT_H
#define SFA_CORE_DJEXPORT_H

#include <stddef.h>

#include "core/djxml.h"
#include "db/db.h"
#include "util/arena.h"

/* Where track i's audio is on this server and in the bundle. */
struct dj_file {
	const char *track_id;
	const char *audio_path;  /* the audio, absolute, on this server */
	const char *audio_key;   /* the same as a stored file's key (util/storage.h) */
	const char *bundle_name; /* "<artist> - <title>.<ext>", unique within the export */
};

/* n tracks, as the collection writers take them, and their files (parallel arrays). */
struct dj_export {
	struct dj_track *tracks;
	struct dj_file *files;
	size_t n;
};

/* The tracks to export: the user's tracks that have audio, newest first, or with ids_csv
 * ("id,id,...") exactly those, in that order. root: NULL, or where the bundle is unpacked
 * on the DJ's machine (dj_path_valid). Everything is allocated from a.
 * SFA_EINVAL: ids_csv or root malformed, or more than DJ_MAX_TRACKS; SFA_ENOTFOUND: an id
 * is not one of the user's tracks; SFA_ECONFLICT: a listed track has no audio yet. err
 * says which in a sentence. */
int dj_export_collect(struct db *db, const char *data_dir, const char *user_id, const char *ids_csv,
                      const char *root, struct arena *a, struct dj_export *out, char *err,
                      size_t n_err);

#endif
