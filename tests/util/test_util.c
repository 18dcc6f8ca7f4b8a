/* Unit tests for src/util: arena caps, buffer caps, string helpers, UUIDs, JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/arena.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/storage.h"
#include "util/str.h"
#include "util/utf8.h"
#include "util/uuid.h"

static void arena_respects_cap(void **state)
{
	(void)state;
	struct arena a;
	arena_init(&a, 64 * 1024);
	void *p = arena_alloc(&a, 100);
	assert_non_null(p);
	assert_int_equal((uintptr_t)p % 16, 0);
	assert_non_null(arena_alloc(&a, 40000));
	assert_null(arena_alloc(&a, 40000)); /* would pass the 64 KiB cap */
	char *s = arena_printf(&a, "%s-%d", "x", 42);
	assert_string_equal(s, "x-42");
	assert_string_equal(arena_strndup(&a, "abcdef", 3), "abc");
	arena_free(&a);
	assert_null(a.head);
}

static void buf_caps_and_grows(void **state)
{
	(void)state;
	struct buf b;
	buf_init(&b, 10);
	assert_int_equal(buf_puts(&b, "hello"), 0);
	assert_int_equal(buf_printf(&b, "%d", 1234), 0);
	assert_string_equal(b.data, "hello1234");
	assert_int_equal(buf_puts(&b, "xy"), SFA_ETOOBIG);
	assert_string_equal(b.data, "hello1234"); /* unchanged after a refused append */
	char *p = buf_steal(&b);
	assert_string_equal(p, "hello1234");
	free(p);
	assert_null(b.data);
}

static void str_helpers(void **state)
{
	(void)state;
	char small[4];
	assert_int_equal(str_copy(small, sizeof small, "abcdef"), 6);
	assert_string_equal(small, "abc");
	long v;
	assert_int_equal(str_to_long("42", 0, 100, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(str_to_long("101", 0, 100, &v), SFA_EINVAL);
	assert_int_equal(str_to_long("4x", 0, 100, &v), SFA_EINVAL);
	assert_int_equal(str_to_long("", 0, 100, &v), SFA_EINVAL);
	double d = -1;
	assert_int_equal(str_to_double("1.05", 0.5, 2, &d), 0);
	assert_true(d == 1.05);
	assert_int_equal(str_to_double("-2.5e0", -12, 12, &d), 0);
	assert_true(d == -2.5);
	assert_int_equal(str_to_double("2.5", 0.5, 2, &d), SFA_EINVAL);
	assert_int_equal(str_to_double("nan", -1e9, 1e9, &d), SFA_EINVAL);
	assert_int_equal(str_to_double("inf", -1e308, 1e308, &d), SFA_EINVAL);
	assert_int_equal(str_to_double("1x", 0, 2, &d), SFA_EINVAL);
	assert_int_equal(str_to_double("", 0, 2, &d), SFA_EINVAL);
	assert_int_equal(str_to_double("1e999", 0, 1e308, &d), SFA_EINVAL);
	assert_true(d == -2.5); /* untouched on failure */
	assert_true(str_secure_eq("abc", "abc"));
	assert_false(str_secure_eq("abc", "abd"));
	assert_false(str_secure_eq("abc", "abcd"));
	assert_true(str_ieq_n("GET", "get", 3));
	char hex[5];
	str_hex((const unsigned char *)"\x01\xab", 2, hex);
	assert_string_equal(hex, "01ab");
}

static void uuid_format(void **state)
{
	(void)state;
	char a[UUID_STR_LEN], b[UUID_STR_LEN];
	uuid_v4(a);
	uuid_v4(b);
	assert_true(uuid_valid(a));
	assert_string_not_equal(a, b);
	assert_int_equal(a[14], '4');
	assert_true(strchr("89ab", a[19]) != NULL);
	assert_false(uuid_valid("not-a-uuid"));
	assert_false(uuid_valid("123e4567-e89b-12d3-a456-42661417400g"));
}

static void json_parse_rules(void **state)
{
	(void)state;
	json_t *j = NULL;
	char err[200];
	assert_int_equal(json_parse_object("{\"a\":\"b\"}", 9, &j, err, sizeof err), 0);
	assert_string_equal(json_str(j, "a"), "b");
	assert_null(json_str(j, "missing"));
	char *enc = json_encode(j);
	assert_string_equal(enc, "{\"a\":\"b\"}");
	free(enc);
	json_decref(j);
	j = NULL;
	assert_int_equal(json_parse_object("[1]", 3, &j, err, sizeof err), SFA_EINVAL);
	assert_string_equal(err, "The JSON body must be an object.");
	assert_int_equal(json_parse_object("{\"a\":", 5, &j, err, sizeof err), SFA_EINVAL);
	assert_non_null(strstr(err, "not valid JSON"));
	assert_int_equal(json_parse_object("{\"a\":1,\"a\":2}", 13, &j, err, sizeof err),
	                 SFA_EINVAL);
	assert_null(j);
}

static void slugs(void **state)
{
	(void)state;
	char out[32];
	static const struct {
		const char *in, *want;
	} cases[] = {
		{"The Weeknd", "the-weeknd"},
		{"Blinding Lights", "blinding-lights"},
		{"  AC/DC -- Back in Black!  ", "ac-dc-back-in-black"},
		{"Beyonc\xc3\xa9 & Jay-Z", "beyonce-jay-z"},
		{"\xc3\x85ngstr\xc3\xb6m \xc3\x9f", "angstrom-s"},
		{"\xe6\x9d\xb1\xe4\xba\xac", ""}, /* no Latin letters at all */
		{"../../etc/passwd", "etc-passwd"},
		{"a\xc3", "a"},        /* a cut UTF-8 sequence */
		{"x\xc3\x97y", "x-y"}, /* the multiplication sign */
		{"0123456789012345678901234567890123456789", "0123456789012345678901234567890"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t n = str_slug(cases[i].in, out, sizeof out);
		assert_string_equal(out, cases[i].want);
		assert_int_equal(n, strlen(cases[i].want));
	}
	/* Never ends with '-' even when cut. */
	assert_int_equal(str_slug("abc def", out, 5), 3);
	assert_string_equal(out, "abc");
}

/* The scratch-file helpers: an anonymous file leaves no name behind, positioned writes
 * and reads move exact byte counts, a read past the end is an error. */
static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_true(fputs(text, f) >= 0);
	assert_int_equal(fclose(f), 0);
}

static void read_text(const char *path, char *out, size_t n)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t k = fread(out, 1, n - 1, f);
	out[k] = '\0';
	fclose(f);
}

/* fs_publish: a finished file goes into place in a folder it makes, and from another
 * filesystem (/dev/shm, a tmpfs, to /tmp) through a copy beside its place; nothing else is
 * left behind, and a missing source is an error that touches nothing. */
static void publish_files(void **state)
{
	(void)state;
	char a[] = "/tmp/sfa-pub-XXXXXX", shm[] = "/dev/shm/sfa-pub-XXXXXX";
	assert_non_null(mkdtemp(a));
	assert_non_null(mkdtemp(shm));
	struct stat sa, ss;
	assert_int_equal(stat(a, &sa), 0);
	assert_int_equal(stat(shm, &ss), 0);
	if (sa.st_dev == ss.st_dev)
		fail_msg("/tmp and /dev/shm are one filesystem here: the copy path needs two");
	char from[128], to[160], got[64];
	snprintf(from, sizeof from, "%s/part", a);
	snprintf(to, sizeof to, "%s/deep/er/final.flac", a);
	write_text(from, "same filesystem");
	assert_int_equal(fs_publish(from, to), 0);
	read_text(to, got, sizeof got);
	assert_string_equal(got, "same filesystem");
	assert_int_equal(access(from, F_OK), -1);
	snprintf(from, sizeof from, "%s/part", shm);
	write_text(from, "another filesystem");
	assert_int_equal(fs_publish(from, to), 0); /* replaces the file */
	read_text(to, got, sizeof got);
	assert_string_equal(got, "another filesystem");
	assert_int_equal(access(from, F_OK), -1);
	char dir[160];
	snprintf(dir, sizeof dir, "%s/deep/er", a);
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	assert_int_equal(n, 1); /* no temporary copy left beside it */
	assert_int_equal(fs_publish(from, to), -1);
	assert_int_equal(errno, ENOENT);
	read_text(to, got, sizeof got);
	assert_string_equal(got, "another filesystem");
	assert_int_equal(fs_remove_tree(a), 0);
	assert_int_equal(fs_remove_tree(shm), 0);
}

static void scratch_files(void **state)
{
	(void)state;
	char dir[] = "/tmp/sfa-util-fs-XXXXXX";
	assert_non_null(mkdtemp(dir));
	int fd = fs_tmpfile(dir);
	assert_true(fd >= 0);
	DIR *d = opendir(dir);
	assert_non_null(d);
	int names = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		names += e->d_name[0] != '.';
	closedir(d);
	assert_int_equal(names, 0);
	float w[1000], r[1000];
	for (int i = 0; i < 1000; i++)
		w[i] = (float)i * 0.5f;
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	assert_int_equal(fs_pwrite_all(fd, w, sizeof w, 4096), 0);
	assert_int_equal(fs_pread_all(fd, r, sizeof r, 4096), 0);
	assert_memory_equal(w, r, sizeof w);
	assert_int_equal(fs_pread_all(fd, r, sizeof r, 0), 0); /* the sparse start reads zeros */
	assert_true(r[0] == 0.0f && r[999] == 0.0f);
	assert_int_equal(fs_pread_all(fd, r, sizeof r, (1 << 20) - 8), -1);
	assert_int_equal(errno, EIO);
	assert_int_equal(fs_pwrite_all(fd, w, 4, -1), -1);
	close(fd);
	assert_true(fs_tmpfile("/nonexistent/sfa") < 0);
	/* paths that stay inside their folder */
	assert_true(fs_rel_path_safe("stems/job/drums.wav", 64));
	assert_true(fs_rel_path_safe("a..b/c", 64));
	static const char *const escaping[] = {"",     "/etc/passwd", "../x", "a/../b", "a/./b",
	                                       "a//b", "a\\b",        "..",   "."};
	for (size_t i = 0; i < sizeof escaping / sizeof escaping[0]; i++)
		assert_false(fs_rel_path_safe(escaping[i], 64));
	assert_false(fs_rel_path_safe("stems/job/drums.wav", 8)); /* too long */
	assert_int_equal(fs_remove_tree(dir), 0);
}

struct seen {
	char keys[8][64];
	int64_t sizes[8];
	int n, stop_at;
};

static int see(void *arg, const char *key, const struct storage_stat *st)
{
	struct seen *v = arg;
	if (v->n == 8)
		return -1;
	snprintf(v->keys[v->n], sizeof v->keys[v->n], "%s", key);
	v->sizes[v->n++] = st->size_bytes;
	return v->n == v->stop_at ? 7 : 0;
}

static bool seen_has(const struct seen *v, const char *key, int64_t size)
{
	for (int i = 0; i < v->n; i++)
		if (strcmp(v->keys[i], key) == 0 && v->sizes[i] == size)
			return true;
	return false;
}

/* storage.h's local backend: stored files come in by key, are read, stat'ed, listed under a
 * folder and removed with it; keys never reach outside the store, not with "..", not as an
 * absolute path, and not through a symlink inside it. */
static void storage_local(void **state)
{
	(void)state;
	char dir[] = "/tmp/sfa-store-XXXXXX", out[] = "/tmp/sfa-outside-XXXXXX";
	assert_non_null(mkdtemp(dir));
	assert_non_null(mkdtemp(out));
	struct storage s;
	assert_int_equal(storage_init(&s, dir), 0);
	char from[128], path[PATH_MAX + 64], buf[32];
	snprintf(from, sizeof from, "%s/scratch", dir);
	write_text(from, "vocals!");
	assert_int_equal(storage_publish(&s, from, "stems/j1/vocals.wav"), 0);
	write_text(from, "drums");
	assert_int_equal(storage_publish(&s, from, "stems/j1/drums.wav"), 0);
	write_text(from, "song");
	assert_int_equal(storage_publish(&s, from, "song.flac"), 0);
	write_text(from, "x");
	assert_int_equal(storage_publish(&s, from, "../escaped.wav"), SFA_EINVAL);

	struct storage_stat st;
	assert_int_equal(storage_stat(&s, "stems/j1/vocals.wav", &st), 0);
	assert_int_equal(st.size_bytes, 7);
	assert_true(st.mtime_ns > 0);
	int fd = -1;
	assert_int_equal(storage_open_read(&s, "stems/j1/drums.wav", &fd, &st), 0);
	assert_int_equal(st.size_bytes, 5);
	assert_int_equal(read(fd, buf, sizeof buf), 5);
	assert_memory_equal(buf, "drums", 5);
	close(fd);
	/* the local file of a key, for decoders: the same bytes; an unsafe key has none */
	char local[PATH_MAX * 2], tiny[8];
	assert_int_equal(storage_local_path(&s, "stems/j1/drums.wav", local, sizeof local), 0);
	fd = open(local, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof buf), 5);
	assert_memory_equal(buf, "drums", 5);
	close(fd);
	assert_int_equal(storage_local_path(&s, "../uploads/song.flac", local, sizeof local),
	                 SFA_EINVAL);
	assert_int_equal(storage_local_path(&s, "/etc/passwd", local, sizeof local), SFA_EINVAL);
	assert_int_equal(storage_local_path(&s, "song.flac", tiny, sizeof tiny), SFA_EINVAL);
	assert_int_equal(storage_stat(&s, "stems/j1", &st), SFA_ENOTFOUND); /* a folder */
	assert_int_equal(storage_stat(&s, "stems/j1/none.wav", &st), SFA_ENOTFOUND);
	assert_int_equal(storage_stat(&s, "../uploads/song.flac", &st), SFA_ENOTFOUND);
	assert_int_equal(storage_stat(&s, "/etc/passwd", &st), SFA_ENOTFOUND);
	/* A symlinked folder inside the store that leads out of it. */
	snprintf(path, sizeof path, "%s/secret", out);
	write_text(path, "secret");
	snprintf(path, sizeof path, "%s/link", s.root);
	assert_int_equal(symlink(out, path), 0);
	assert_int_equal(storage_open_read(&s, "link/secret", &fd, &st), SFA_ENOTFOUND);

	struct seen v = {0};
	assert_int_equal(storage_list(&s, "", see, &v), 0);
	assert_int_equal(v.n, 3); /* not what the symlink leads to */
	assert_true(seen_has(&v, "stems/j1/vocals.wav", 7));
	assert_true(seen_has(&v, "stems/j1/drums.wav", 5));
	assert_true(seen_has(&v, "song.flac", 4));
	memset(&v, 0, sizeof v);
	assert_int_equal(storage_list(&s, "stems", see, &v), 0);
	assert_int_equal(v.n, 2);
	memset(&v, 0, sizeof v);
	v.stop_at = 1;
	assert_int_equal(storage_list(&s, "stems", see, &v), 7); /* fn's nonzero stops it */
	assert_int_equal(v.n, 1);
	memset(&v, 0, sizeof v);
	assert_int_equal(storage_list(&s, "stems/none", see, &v), 0);
	assert_int_equal(v.n, 0);
	assert_int_equal(storage_list(&s, "../", see, &v), SFA_EINVAL);

	assert_int_equal(storage_remove(&s, "stems/j1"), 0);
	assert_int_equal(storage_stat(&s, "stems/j1/vocals.wav", &st), SFA_ENOTFOUND);
	assert_int_equal(storage_remove(&s, "stems/j1"), 0); /* missing is fine */
	assert_int_equal(storage_remove(&s, ".."), SFA_EINVAL);
	assert_int_equal(storage_remove(&s, "link"), 0); /* the link, not what it leads to */
	snprintf(path, sizeof path, "%s/secret", out);
	assert_int_equal(access(path, F_OK), 0);
	memset(&v, 0, sizeof v);
	assert_int_equal(storage_list(&s, "", see, &v), 0);
	assert_int_equal(v.n, 1);
	assert_int_equal(fs_remove_tree(dir), 0);
	assert_int_equal(fs_remove_tree(out), 0);
}

/* Text from outside: valid UTF-8 kept (and never cut inside a character), anything else
 * read as ISO-8859-1, so a Latin-1 tag keeps its letters. */
static void utf8_lenient_text(void **state)
{
	(void)state;
	char out[16];
	assert_true(utf8_or_latin1("Caf\xc3\xa9", out, sizeof out));
	assert_string_equal(out, "Caf\xc3\xa9");
	assert_false(utf8_or_latin1("Caf\xe9", out, sizeof out));
	assert_string_equal(out, "Caf\xc3\xa9");
	assert_true(utf8_valid(out, strlen(out)));
	/* Cut to fit: 6 bytes of room, "Bj\xc3\xb6rk!" must not end inside the o-umlaut. */
	char small[4];
	assert_true(utf8_or_latin1("Bj\xc3\xb6rk", small, sizeof small));
	assert_string_equal(small, "Bj");
	assert_false(utf8_or_latin1("\xff\xfe\xfd", small, sizeof small));
	assert_string_equal(small, "\xc3\xbf");
	assert_true(utf8_valid(small, strlen(small)));
	/* Strictness: overlong forms, surrogates, past U+10FFFF, truncated sequences. */
	assert_false(utf8_valid("\xc0\xaf", 2));
	assert_false(utf8_valid("\xed\xa0\x80", 3));
	assert_false(utf8_valid("\xf4\x90\x80\x80", 4));
	assert_false(utf8_valid("\xe2\x82", 2));
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(arena_respects_cap), cmocka_unit_test(buf_caps_and_grows),
		cmocka_unit_test(str_helpers),        cmocka_unit_test(uuid_format),
		cmocka_unit_test(json_parse_rules),   cmocka_unit_test(slugs),
		cmocka_unit_test(utf8_lenient_text),  cmocka_unit_test(scratch_files),
		cmocka_unit_test(publish_files),      cmocka_unit_test(storage_local),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
