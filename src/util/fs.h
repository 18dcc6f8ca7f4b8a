/* fs.h - small filesystem helpers (scratch space, stored files). Thread-safe. */
#ifndef SFA_UTIL_FS_H
#define SFA_UTIL_FS_H

#include <stddef.h>
#include <sys/types.h>

/* mkdir -p (mode for created directories). 0 or SFA_EIO. */
int fs_mkdirs(const char *path, mode_t mode);
/* rm -rf without following symlinks; missing paths are fine. 0 or SFA_EIO. */
int fs_remove_tree(const char *path);

/* write(2) until all n bytes are out, retrying on EINTR. 0, or -1 with errno set. */
int fs_write_all(int fd, const void *p, size_t n);

#endif
