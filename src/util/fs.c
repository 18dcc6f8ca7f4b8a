/* fs.c - see fs.h. */
#include "util/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"

int fs_mkdirs(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof tmp)
		return SFA_EIO;
	memcpy(tmp, path, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) != 0 && errno != EEXIST)
			return SFA_EIO;
		*p = '/';
	}
	if (mkdir(tmp, mode) != 0 && errno != EEXIST)
		return SFA_EIO;
	return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)ftw;
	int rc = flag == FTW_DP ? rmdir(path) : unlink(path);
	return rc != 0 && errno != ENOENT ? -1 : 0;
}

int fs_remove_tree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : SFA_EIO;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) == 0 ? 0 : SFA_EIO;
	return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : SFA_EIO;
}

/* write(2) (off < 0) or pwrite(2) at off until all n bytes are out. */
static int write_all_at(int fd, const void *p, size_t n, off_t off)
{
	const unsigned char *c = p;
	while (n > 0) {
		ssize_t w = off < 0 ? write(fd, c, n) : pwrite(fd, c, n, off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		n -= (size_t)w;
		if (off >= 0)
			off += (off_t)w;
	}
	return 0;
}

int fs_write_all(int fd, const void *p, size_t n) { return write_all_at(fd, p, n, -1); }

int fs_pwrite_all(int fd, const void *p, size_t n, off_t off)
{
	if (off < 0) {
		errno = EINVAL;
		return -1;
	}
	return write_all_at(fd, p, n, off);
}

int fs_pread_all(int fd, void *p, size_t n, off_t off)
{
	unsigned char *c = p;
	while (n > 0) {
		ssize_t r = pread(fd, c, n, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = EIO;
			return -1;
		}
		c += r;
		n -= (size_t)r;
		off += (off_t)r;
	}
	return 0;
}

/* Copies src to a new file dst (mode 0600) and syncs it. 0, or -1 with errno set. */
static int copy_file(const char *src, const char *dst)
{
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -1;
	int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0) {
		int e = errno;
		close(in);
		errno = e;
		return -1;
	}
	char chunk[65536];
	int rc = 0;
	for (;;) {
		ssize_t n = read(in, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -1 : 0;
			break;
		}
		if (fs_write_all(out, chunk, (size_t)n) != 0) {
			rc = -1;
			break;
		}
	}
	if (rc == 0 && fsync(out) != 0)
		rc = -1;
	int e = errno;
	close(out);
	close(in);
	if (rc)
		unlink(dst);
	errno = e;
	return rc;
}

int fs_publish(const char *from, const char *to)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(to, '/');
	if (slash && slash != to) {
		size_t n = (size_t)(slash - to);
		if (n >= sizeof dir) {
			errno = ENAMETOOLONG;
			return -1;
		}
		memcpy(dir, to, n);
		dir[n] = '\0';
		if (fs_mkdirs(dir, 0700) != 0) {
			errno = EIO;
			return -1;
		}
	}
	if (rename(from, to) == 0)
		return 0;
	if (errno != EXDEV)
		return -1;
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof tmp, "%s.incoming-%ld", to, (long)getpid()) >= (int)sizeof tmp) {
		errno = ENAMETOOLONG;
		return -1;
	}
	unlink(tmp); /* left by a process of this id that died mid-copy */
	if (copy_file(from, tmp) != 0)
		return -1;
	if (rename(tmp, to) != 0) {
		int e = errno;
		unlink(tmp);
		errno = e;
		return -1;
	}
	unlink(from);
	return 0;
}

int fs_tmpfile(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	char path[PATH_MAX];
	if (snprintf(path, sizeof path, "%s/tmp-XXXXXX", dir) >= (int)sizeof path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	return fd;
}

bool fs_rel_path_safe(const char *rel, size_t max)
{
	if (!rel || !*rel || rel[0] == '/' || strchr(rel, '\\') || strlen(rel) >= max)
		return false;
	for (const char *p = rel; *p;) {
		size_t n = strcspn(p, "/");
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n;
		if (*p == '/')
			p++;
	}
	return true;
}
