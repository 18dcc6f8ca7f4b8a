/* storage.h - the stored files (uploads, downloads, stems, rendered tracks) behind one small
 * interface, so that an object store can take the local folder's place later.
 *
 * A store has keys: paths relative to its root ("stems/<job id>/vocals.wav"), which
 * fs_rel_path_safe accepts (no "..", not absolute); a key that is not is refused as not
 * found. A "folder" is a key prefix; removing or listing one covers every key under it.
 * Today's only backend is the local (or shared, mounted) folder <data dir>/uploads; writes
 * come in through storage_publish (fs_publish: whole or not at all, on any node).
 *
 * What an object-store backend would implement, call for call: storage_publish = PUT
 * (multipart above a size), storage_stat = HEAD (size, last modified), storage_open_read =
 * GET, ranged by the caller (here a descriptor it may pread and sendfile; an object store
 * would hand back a stream instead, which is why readers take the size and time from
 * here rather than from fstat), storage_remove = DELETE of the key or LIST + DELETE of
 * every key under the prefix, storage_list = LIST with the prefix, storage_local_path = GET
 * into a temporary file. Nothing here renames,
 * appends or locks: an object store has none of those.
 *
 * Threads: a struct storage is read-only once made; any thread may use it.
 */
#ifndef SFA_UTIL_STORAGE_H
#define SFA_UTIL_STORAGE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

enum { STORAGE_KEY_MAX = 1024 };

struct storage {
	char root[PATH_MAX]; /* the folder's real path (symlinks resolved) */
};

struct storage_stat {
	int64_t size_bytes;
	int64_t mtime_ns; /* last modified, nanoseconds since the epoch */
};

/* The store of data_dir: its uploads/ folder, which need not exist yet (the first
 * storage_publish makes it). Cheap: no I/O beyond resolving the path. 0 or SFA_EIO. */
int storage_init(struct storage *s, const char *data_dir);

/* A stored file's size and time. 0, SFA_ENOTFOUND (no such file, a folder, an unsafe key,
 * or a key whose path leaves the root through a symlink). */
int storage_stat(const struct storage *s, const char *key, struct storage_stat *out);

/* Opens a stored file for reading: *fd (the caller closes it) and its stat. 0 or
 * SFA_ENOTFOUND as storage_stat. */
int storage_open_read(const struct storage *s, const char *key, int *fd, struct storage_stat *st);

/* Removes the file or every file under the folder key; a missing key is fine. 0, SFA_EINVAL
 * for an unsafe key, SFA_EIO when something stayed. */
int storage_remove(const struct storage *s, const char *key);

/* Calls fn for each stored file under the folder prefix ("" for all), in no set order,
 * with its key and stat; stops early when fn returns nonzero and returns that. 0 when all
 * were seen (also for a missing prefix), SFA_EINVAL for an unsafe prefix, SFA_EIO. */
int storage_list(const struct storage *s, const char *prefix,
                 int (*fn)(void *arg, const char *key, const struct storage_stat *st), void *arg);

/* The local file of a key, for what can only read a path (the decoders, ffmpeg, the NI
 * Stems renderer): out gets the file's path under the root (existing or not). 0, or
 * SFA_EINVAL for an unsafe key or one too long for out. An object-store backend would fetch
 * the object into a temporary file here, and a call to give it back would remove it. */
int storage_local_path(const struct storage *s, const char *key, char *out, size_t n_out);

/* Stores the finished local file `from` under key, whole or not at all (fs_publish); from
 * is consumed on success. 0, SFA_EINVAL for an unsafe key, SFA_EIO. */
int storage_publish(const struct storage *s, const char *from, const char *key);

#endif
