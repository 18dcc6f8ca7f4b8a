/* fs.h - small filesystem helpers (scratch space, stored files). Thread-safe. */
#ifndef SFA_UTIL_FS_H
#define SFA_UTIL_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Whether rel stays inside the folder it is relative to: not absolute, no backslash, no
 * empty, "." or ".." component, shorter than max bytes. */
bool fs_rel_path_safe(const char *rel, size_t max);

/* mkdir -p (mode for created directories). 0 or SFA_EIO. */
int fs_mkdirs(const char *path, mode_t mode);
/* rm -rf without following symlinks; missing paths are fine. 0 or SFA_EIO. */
int fs_remove_tree(const char *path);

/* Puts the finished file `from` in place at `to`, whole or not at all: creates to's folder
 * (mode 0700) and renames; when from is on another filesystem (a local scratch disk beside
 * shared storage), copies it to a temporary name beside `to`, syncs it, renames that and
 * removes from. A reader of `to` on any node sharing the folder sees no file or the whole
 * one, never a part. Every stored file of the data dir comes in through here or through a
 * temporary name beside its place. 0, or -1 with errno set (from is left as it was). */
int fs_publish(const char *from, const char *to);

/* write(2) until all n bytes are out, retrying on EINTR. 0, or -1 with errno set. */
int fs_write_all(int fd, const void *p, size_t n);
/* pwrite(2) / pread(2) of exactly n bytes at off, retrying on EINTR and short transfers.
 * 0, or -1 with errno set (EIO for a read that meets the end of the file). */
int fs_pwrite_all(int fd, const void *p, size_t n, off_t off);
int fs_pread_all(int fd, void *p, size_t n, off_t off);
/* An anonymous read-write file in dir (O_TMPFILE, else a named one unlinked at once), for
 * scratch data that must not stay in memory; it is gone when closed. fd, or -1 (errno). */
int fs_tmpfile(const char *dir);

#endif
