/* storage.c - see storage.h: the local-folder backend. */
#include "util/storage.h"

#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "util/fs.h"

int storage_init(struct storage *s, const char *data_dir)
{
	/* The folder's real path, so a symlinked uploads/ (a mount elsewhere) works; before
	 * the first file is stored it may not exist yet, and fs_publish makes it. */
	char path[PATH_MAX];
	if ((size_t)snprintf(path, sizeof path, "%s/uploads", data_dir) >= sizeof path)
		return SFA_EIO;
	if (realpath(path, s->root))
		return 0;
	char real[PATH_MAX];
	if (errno != ENOENT || !realpath(data_dir, real) ||
	    (size_t)snprintf(s->root, sizeof s->root, "%s/uploads", real) >= sizeof s->root)
		return SFA_EIO;
	return 0;
}

/* root/key into out; false for an unsafe key or one too long. */
static bool key_path(const struct storage *s, const char *key, char *out, size_t n_out)
{
	return fs_rel_path_safe(key, STORAGE_KEY_MAX) &&
	       (size_t)snprintf(out, n_out, "%s/%s", s->root, key) < n_out;
}

static void fill_stat(const struct stat *st, struct storage_stat *out)
{
	out->size_bytes = (int64_t)st->st_size;
	out->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* Whether path, once its symlinks are resolved, still lies under the root: a key may not
 * leave the store through a linked folder. */
static bool inside(const struct storage *s, const char *path)
{
	char real[PATH_MAX];
	size_t n_root = strlen(s->root);
	return realpath(path, real) && strncmp(real, s->root, n_root) == 0 && real[n_root] == '/';
}

int storage_open_read(const struct storage *s, const char *key, int *fd, struct storage_stat *st)
{
	char path[PATH_MAX * 2];
	if (!key_path(s, key, path, sizeof path))
		return SFA_ENOTFOUND;
	int f = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat sb;
	if (f < 0 || fstat(f, &sb) != 0 || !S_ISREG(sb.st_mode) || !inside(s, path)) {
		if (f >= 0)
			close(f);
		return SFA_ENOTFOUND;
	}
	fill_stat(&sb, st);
	*fd = f;
	return 0;
}

int storage_stat(const struct storage *s, const char *key, struct storage_stat *out)
{
	int fd;
	int rc = storage_open_read(s, key, &fd, out);
	if (rc == 0)
		close(fd);
	return rc;
}

int storage_remove(const struct storage *s, const char *key)
{
	char path[PATH_MAX * 2];
	if (!key_path(s, key, path, sizeof path))
		return SFA_EINVAL;
	return fs_remove_tree(path) == 0 ? 0 : SFA_EIO;
}

struct walk {
	const struct storage *s;
	int (*fn)(void *, const char *, const struct storage_stat *);
	void *arg;
	char path[PATH_MAX * 2]; /* root/key of the folder being read, grown and cut back */
};

static int walk_dir(struct walk *w, size_t n_path)
{
	DIR *d = opendir(w->path);
	if (!d)
		return errno == ENOENT || errno == ENOTDIR ? 0 : SFA_EIO;
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		size_t n = n_path + 1 + strlen(e->d_name);
		if (n >= sizeof w->path) {
			rc = SFA_EIO;
			break;
		}
		w->path[n_path] = '/';
		memcpy(w->path + n_path + 1, e->d_name, strlen(e->d_name) + 1);
		struct stat sb;
		if (lstat(w->path, &sb) != 0) {
			rc = errno == ENOENT ? 0 : SFA_EIO; /* removed meanwhile */
		} else if (S_ISDIR(sb.st_mode)) {
			rc = walk_dir(w, n);
		} else if (S_ISREG(sb.st_mode)) {
			struct storage_stat st;
			fill_stat(&sb, &st);
			rc = w->fn(w->arg, w->path + strlen(w->s->root) + 1, &st);
		} /* symlinks and the rest are not stored files */
		w->path[n_path] = '\0';
	}
	closedir(d);
	return rc;
}

int storage_list(const struct storage *s, const char *prefix,
                 int (*fn)(void *arg, const char *key, const struct storage_stat *st), void *arg)
{
	struct walk w = {.s = s, .fn = fn, .arg = arg};
	if (prefix[0] ? !key_path(s, prefix, w.path, sizeof w.path)
	              : (size_t)snprintf(w.path, sizeof w.path, "%s", s->root) >= sizeof w.path)
		return SFA_EINVAL;
	struct stat sb;
	if (lstat(w.path, &sb) != 0)
		return errno == ENOENT ? 0 : SFA_EIO;
	if (S_ISREG(sb.st_mode)) {
		struct storage_stat st;
		fill_stat(&sb, &st);
		return fn(arg, prefix, &st);
	}
	return S_ISDIR(sb.st_mode) ? walk_dir(&w, strlen(w.path)) : 0;
}

int storage_local_path(const struct storage *s, const char *key, char *out, size_t n_out)
{
	return key_path(s, key, out, n_out) ? 0 : SFA_EINVAL;
}

int storage_publish(const struct storage *s, const char *from, const char *key)
{
	char path[PATH_MAX * 2];
	if (!key_path(s, key, path, sizeof path))
		return SFA_EINVAL;
	return fs_publish(from, path) == 0 ? 0 : SFA_EIO;
}
