/* ckpt.c - see ckpt.h.
 *
 * Page faults: a bag loads every member twice per use (checked at open, loaded again by
 * each separation), and on a virtual machine a fault is dear (mdx_extra: ~125,000 faults
 * per member load, 80 % of the process's faults, from reading the file and filling the
 * weights 4 KB at a time). So the file is mapped with MAP_POPULATE (its pages are mapped in
 * one call) and the fp32 block is its own mapping that asks for transparent huge pages (a
 * fault per 2 MB where the kernel offers them on request; 4 KB faults as before where not).
 *
 * Conversion: a member is loaded while the separation's workers wait (bags run one member at
 * a time), so it is on the critical path. Views laid out back to back (every tensor of
 * htdemucs, the test fixtures and the bench's mdx_extra members) are converted by a loop the
 * compiler vectorises, and a block of more than GATHER_SPLIT floats is converted by two
 * threads, each faulting in its own half of the fp32 block (an mdx_extra-shaped member, 84 M
 * fp16 weights, 2 cores: median 0.52 -> 0.21 s, README). */
#include "nn/ckpt.h"

#include <errno.h>
#include <endian.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/zip.h"
#include "util/err.h"

enum { CKPT_ARENA_BYTES = 256 << 20, GATHER_SPLIT = 1 << 18 };

float nn_half_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t man = h & 0x3ffu;
	uint32_t bits;
	if (exp == 0) {
		if (man == 0) {
			bits = sign;
		} else { /* subnormal: renormalise */
			int e = -1;
			do {
				e++;
				man <<= 1;
			} while (!(man & 0x400u));
			bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
		}
	} else if (exp == 31) {
		bits = sign | 0x7f800000u | (man << 13);
	} else {
		bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
	}
	float f;
	memcpy(&f, &bits, sizeof f);
	return f;
}

static int has_bytes(const uint8_t *d, size_t n, const char *needle)
{
	size_t k = strlen(needle);
	if (n < k)
		return 0;
	for (size_t i = 0; i + k <= n; i++)
		if (d[i] == (uint8_t)needle[0] && memcmp(d + i, needle, k) == 0)
			return 1;
	return 0;
}

/* nn_half_to_float without branches, for the vectorised loop: a subnormal is man * 2^-24
 * (exact in single precision); inf and nan take the exponent bias twice (31 + 2 * 112 = 255). */
static inline uint32_t half_bits(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16, em = h & 0x7fffu;
	uint32_t sub = 0u - (em < 0x400u), infnan = 0u - (em >= 0x7c00u);
	float f = (float)(int32_t)em * 0x1p-24f;
	uint32_t sub_bits;
	memcpy(&sub_bits, &f, sizeof sub_bits);
	uint32_t bits = (em << 13) + (112u << 23) + (infnan & (112u << 23));
	return sign | (sub & sub_bits) | (~sub & bits);
}

/* Whether the view's elements lie back to back in C order. */
static bool contiguous(const struct nn_pk *v)
{
	int64_t want = 1;
	for (int k = v->u.tensor.ndim - 1; k >= 0; k--) {
		if (v->u.tensor.size[k] != 1 && v->u.tensor.stride[k] != want)
			return false;
		want *= v->u.tensor.size[k];
	}
	return true;
}

void nn_ckpt_gather(const uint8_t *src, const struct nn_pk *v, float *dst, size_t first, size_t n)
{
	enum nn_pk_dtype dt = v->u.tensor.storage->u.storage.dtype;
	int nd = v->u.tensor.ndim;
	int64_t off = v->u.tensor.offset;
	if (contiguous(v)) {
		src += (size_t)(off + (int64_t)first) * (dt == NN_PK_F16 ? 2 : 4);
		uint32_t b;
		if (dt == NN_PK_F16) {
			for (size_t i = 0; i < n; i++) {
				uint16_t h;
				memcpy(&h, src + 2 * i, sizeof h);
				b = half_bits(le16toh(h));
				memcpy(&dst[i], &b, sizeof b);
			}
		} else {
			for (size_t i = 0; i < n; i++) {
				memcpy(&b, src + 4 * i, sizeof b);
				b = le32toh(b);
				memcpy(&dst[i], &b, sizeof b);
			}
		}
		return;
	}
	/* An odometer over the dimensions, last fastest, started at element first. */
	int64_t idx[NN_PK_MAX_DIMS] = {0};
	size_t rest = first;
	for (int k = nd - 1; k >= 0; k--) {
		idx[k] = (int64_t)(rest % (size_t)v->u.tensor.size[k]);
		rest /= (size_t)v->u.tensor.size[k];
		off += idx[k] * v->u.tensor.stride[k];
	}
	for (size_t i = 0; i < n; i++) {
		if (dt == NN_PK_F16) {
			uint16_t h = (uint16_t)(src[2 * off] | (src[2 * off + 1] << 8));
			dst[i] = nn_half_to_float(h);
		} else {
			uint32_t b = (uint32_t)src[4 * off] | ((uint32_t)src[4 * off + 1] << 8) |
			             ((uint32_t)src[4 * off + 2] << 16) |
			             ((uint32_t)src[4 * off + 3] << 24);
			memcpy(&dst[i], &b, sizeof b);
		}
		for (int k = nd - 1; k >= 0; k--) {
			idx[k]++;
			off += v->u.tensor.stride[k];
			if (idx[k] < v->u.tensor.size[k])
				break;
			off -= idx[k] * v->u.tensor.stride[k];
			idx[k] = 0;
		}
	}
}

/* Floats [lo, hi) of the fp32 block, whichever tensors hold them. */
struct gather_job {
	const struct nn_ckpt *c;
	const uint8_t **srcs; /* per tensor, its storage member */
	size_t lo, hi;
};

static void *gather_range(void *arg)
{
	const struct gather_job *j = arg;
	for (size_t i = 0; i < j->c->n_tensors; i++) {
		const struct nn_tensor *t = &j->c->tensors[i];
		size_t at = (size_t)(t->data - j->c->weights), end = at + t->numel;
		size_t lo = at > j->lo ? at : j->lo, hi = end < j->hi ? end : j->hi;
		if (lo < hi)
			nn_ckpt_gather(j->srcs[i], t->src, t->data + (lo - at), lo - at, hi - lo);
	}
	return NULL;
}

/* Fills the fp32 block, in two threads when it is large (one if the second cannot start). */
static void gather_all(const struct nn_ckpt *c, const uint8_t **srcs)
{
	size_t total = c->n_weight_floats;
	struct gather_job a = {c, srcs, 0, total}, b = a;
	pthread_t th;
	bool two = total > GATHER_SPLIT;
	if (two) {
		a.hi = b.lo = total / 2;
		two = pthread_create(&th, NULL, gather_range, &b) == 0;
		if (!two)
			a.hi = total;
	}
	gather_range(&a);
	if (two)
		pthread_join(th, NULL);
}

static int cmp_tensor(const void *a, const void *b)
{
	return strcmp(((const struct nn_tensor *)a)->name, ((const struct nn_tensor *)b)->name);
}

static int valid_name(const struct nn_pk *k)
{
	if (k->type != NN_PK_STR || k->u.str.n == 0 || k->u.str.n > NN_CKPT_MAX_NAME_BYTES)
		return 0;
	for (size_t i = 0; i < k->u.str.n; i++) {
		unsigned char ch = (unsigned char)k->u.str.p[i];
		if (ch < 0x21 || ch > 0x7e)
			return 0;
	}
	return 1;
}

/* The fp32 block: n floats (at least one) in a mapping of its own, asking for huge pages.
 * Freed with munmap(p, weights_bytes(n)). NULL without memory. */
static size_t weights_bytes(size_t n) { return (n ? n : 1) * sizeof(float); }

static float *weights_new(size_t n)
{
	void *p = mmap(NULL, weights_bytes(n), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
	               -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	madvise(p, weights_bytes(n), MADV_HUGEPAGE);
	return p;
}

int nn_ckpt_load_mem(const uint8_t *data, size_t n, struct nn_ckpt *c, char *err, size_t n_err)
{
	memset(c, 0, sizeof *c);
	arena_init(&c->arena, CKPT_ARENA_BYTES);
	struct nn_zip z = {0};
	const uint8_t **srcs = NULL;
	int rc;
	if (n >= 2 && data[0] == 0x80 && data[1] <= 5) {
		rc = sfa_err(err, n_err, SFA_EUNSUPP,
		             "legacy (pre-1.6, non-zip) torch checkpoints are not supported");
		goto fail;
	}
	if ((rc = nn_zip_parse(data, n, &z, err, n_err)) != 0)
		goto fail;

	/* The package lives under one top-level folder: find its data.pkl. */
	const struct nn_zip_entry *pkl = NULL;
	for (size_t i = 0; i < z.n_entries; i++) {
		const struct nn_zip_entry *e = &z.entries[i];
		static const char suffix[] = "/data.pkl";
		size_t k = sizeof suffix - 1;
		if (e->name_len > k && memcmp(e->name + e->name_len - k, suffix, k) == 0 &&
		    !memchr(e->name, '/', e->name_len - k)) {
			if (pkl) {
				rc = sfa_err(
					err, n_err, SFA_EFORMAT,
					"not a Demucs checkpoint: the archive holds several data.pkl");
				goto fail;
			}
			pkl = e;
		}
	}
	if (!pkl) {
		rc = sfa_err(err, n_err, SFA_EFORMAT,
		             "not a torch checkpoint: no <name>/data.pkl in the archive");
		goto fail;
	}
	size_t prefix_len = pkl->name_len - (sizeof "data.pkl" - 1);
	if (has_bytes(pkl->data, pkl->size_bytes, "__quantized") ||
	    has_bytes(pkl->data, pkl->size_bytes, "diffq")) {
		rc = sfa_err(err, n_err, SFA_EUNSUPP,
		             "this is a diffq-quantised checkpoint (a *_q model); only the "
		             "full-precision models are supported");
		goto fail;
	}
	const struct nn_pk *root;
	if ((rc = nn_pickle_load(pkl->data, pkl->size_bytes, &c->arena, &root, err, n_err)) != 0)
		goto fail;
	if (root->type != NN_PK_DICT) {
		rc = sfa_err(err, n_err, SFA_EFORMAT,
		             "not a Demucs package: the pickle is not a dict (a bare state_dict?)");
		goto fail;
	}
	const struct nn_pk *klass = nn_pk_get(root, "klass");
	const struct nn_pk *state = nn_pk_get(root, "state");
	c->kwargs = nn_pk_get(root, "kwargs");
	c->args = nn_pk_get(root, "args");
	if (!klass || klass->type != NN_PK_GLOBAL || !state || state->type != NN_PK_DICT ||
	    !c->kwargs || c->kwargs->type != NN_PK_DICT) {
		rc = sfa_err(err, n_err, SFA_EFORMAT,
		             "not a Demucs package: expected klass, kwargs and state entries");
		goto fail;
	}
	if (klass->u.global != NN_PKG_HTDEMUCS && klass->u.global != NN_PKG_HDEMUCS &&
	    klass->u.global != NN_PKG_DEMUCS) {
		rc = sfa_err(err, n_err, SFA_EFORMAT, "not a Demucs package: klass is %s",
		             nn_pk_global_name(klass->u.global));
		goto fail;
	}
	if (c->args && c->args->type != NN_PK_TUPLE && c->args->type != NN_PK_LIST) {
		rc = sfa_err(err, n_err, SFA_EFORMAT, "not a Demucs package: args is not a tuple");
		goto fail;
	}
	c->klass = klass->u.global;

	size_t nt = state->u.dict.n;
	c->tensors = calloc(nt ? nt : 1, sizeof *c->tensors);
	if (!c->tensors) {
		rc = sfa_err(err, n_err, SFA_ENOMEM, "out of memory loading the checkpoint");
		goto fail;
	}
	for (size_t i = 0; i < nt; i++) {
		const struct nn_pk *k = state->u.dict.keys[i], *v = state->u.dict.vals[i];
		if (!valid_name(k)) {
			rc = sfa_err(err, n_err, SFA_EFORMAT,
			             "checkpoint state has a malformed name");
			goto fail;
		}
		if (v->type != NN_PK_TENSOR) {
			rc = sfa_err(err, n_err, SFA_EFORMAT,
			             "checkpoint state '%s' is not a tensor", k->u.str.p);
			goto fail;
		}
		c->tensors[i].name = k->u.str.p;
		c->tensors[i].src = v;
	}
	c->n_tensors = nt;
	qsort(c->tensors, nt, sizeof *c->tensors, cmp_tensor);
	size_t total = 0;
	for (size_t i = 0; i < nt; i++) {
		struct nn_tensor *t = &c->tensors[i];
		if (i > 0 && strcmp(c->tensors[i - 1].name, t->name) == 0) {
			rc = sfa_err(err, n_err, SFA_EFORMAT, "checkpoint state '%s' appears twice",
			             t->name);
			goto fail;
		}
		const struct nn_pk *v = t->src;
		t->ndim = v->u.tensor.ndim;
		size_t numel = 1;
		for (int d = 0; d < t->ndim; d++) {
			t->shape[d] = v->u.tensor.size[d];
			numel *= (size_t)t->shape[d]; /* bounded by the storage check in pickle.c */
		}
		t->numel = numel;
		total += numel;
		if (total > (size_t)NN_CKPT_MAX_FILE_BYTES) {
			rc = sfa_err(err, n_err, SFA_ETOOBIG, "checkpoint tensors are too large");
			goto fail;
		}
	}
	c->weights = weights_new(total);
	if (!c->weights) {
		rc = sfa_err(err, n_err, SFA_ENOMEM, "out of memory for %zu weights", total);
		goto fail;
	}
	c->n_weight_floats = total;

	srcs = malloc((nt ? nt : 1) * sizeof *srcs);
	if (!srcs) {
		rc = sfa_err(err, n_err, SFA_ENOMEM, "out of memory loading the checkpoint");
		goto fail;
	}
	char member[NN_ZIP_MAX_NAME_BYTES + 80];
	size_t at = 0;
	for (size_t i = 0; i < nt; i++) {
		struct nn_tensor *t = &c->tensors[i];
		const struct nn_pk *v = t->src;
		const struct nn_pk *st = v->u.tensor.storage;
		int len = snprintf(member, sizeof member, "%.*sdata/%s", (int)prefix_len, pkl->name,
		                   st->u.storage.key);
		const struct nn_zip_entry *e = len > 0 && (size_t)len < sizeof member
		                                       ? nn_zip_find(&z, member, (size_t)len)
		                                       : NULL;
		if (!e) {
			rc = sfa_err(err, n_err, SFA_EFORMAT,
			             "corrupt checkpoint: the storage of '%s' (data/%s) is missing",
			             t->name, st->u.storage.key);
			goto fail;
		}
		size_t el = st->u.storage.dtype == NN_PK_F16 ? 2 : 4;
		if (e->size_bytes != (uint64_t)st->u.storage.numel * el) {
			rc = sfa_err(
				err, n_err, SFA_EFORMAT,
				"corrupt checkpoint: the storage of '%s' has %llu bytes, expected %llu",
				t->name, (unsigned long long)e->size_bytes,
				(unsigned long long)st->u.storage.numel * el);
			goto fail;
		}
		t->data = c->weights + at;
		srcs[i] = e->data;
		at += t->numel;
	}
	gather_all(c, srcs);
	free(srcs);
	nn_zip_free(&z);
	return 0;
fail:
	free(srcs);
	nn_zip_free(&z);
	nn_ckpt_free(c);
	return rc;
}

int nn_ckpt_load(const char *path, struct nn_ckpt *c, char *err, size_t n_err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sfa_err(err, n_err, errno == ENOENT ? SFA_ENOTFOUND : SFA_EIO,
		               "cannot open %s: %s", path, strerror(errno));
	struct stat sb;
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return sfa_err(err, n_err, SFA_EIO, "%s is not a regular file", path);
	}
	if (sb.st_size > NN_CKPT_MAX_FILE_BYTES) {
		close(fd);
		return sfa_err(err, n_err, SFA_ETOOBIG, "%s is larger than %d bytes", path,
		               NN_CKPT_MAX_FILE_BYTES);
	}
	if (sb.st_size == 0) {
		close(fd);
		return sfa_err(err, n_err, SFA_EFORMAT, "%s is empty", path);
	}
	size_t n = (size_t)sb.st_size;
	void *m = mmap(NULL, n, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return sfa_err(err, n_err, SFA_EIO, "cannot map %s: %s", path, strerror(errno));
	char sub[512];
	int rc = nn_ckpt_load_mem(m, n, c, sub, sizeof sub);
	munmap(m, n);
	if (rc != 0)
		return sfa_err(err, n_err, rc, "%s: %s", path, sub);
	return 0;
}

void nn_ckpt_free(struct nn_ckpt *c)
{
	free(c->tensors);
	if (c->weights)
		munmap(c->weights, weights_bytes(c->n_weight_floats));
	arena_free(&c->arena);
	c->tensors = NULL;
	c->weights = NULL;
	c->n_tensors = 0;
}

struct nn_tensor *nn_ckpt_find(struct nn_ckpt *c, const char *name)
{
	struct nn_tensor key = {.name = name};
	return bsearch(&key, c->tensors, c->n_tensors, sizeof key, cmp_tensor);
}

const struct nn_pk *nn_kw(const struct nn_ckpt *c, const char *key)
{
	return nn_pk_get(c->kwargs, key);
}

int nn_kw_int(const struct nn_ckpt *c, const char *key, long def, long *out, char *err,
              size_t n_err)
{
	const struct nn_pk *v = nn_kw(c, key);
	if (!v) {
		*out = def;
		return 0;
	}
	if (v->type == NN_PK_INT) {
		*out = (long)v->u.i;
		return 0;
	}
	if (v->type == NN_PK_BOOL) {
		*out = v->u.b;
		return 0;
	}
	return sfa_err(err, n_err, SFA_EFORMAT, "checkpoint kwarg '%s' is not an integer", key);
}

int nn_kw_bool(const struct nn_ckpt *c, const char *key, bool def, bool *out, char *err,
               size_t n_err)
{
	const struct nn_pk *v = nn_kw(c, key);
	if (!v) {
		*out = def;
		return 0;
	}
	if (v->type == NN_PK_BOOL) {
		*out = v->u.b;
		return 0;
	}
	if (v->type == NN_PK_INT) {
		*out = v->u.i != 0;
		return 0;
	}
	if (v->type == NN_PK_NONE) {
		*out = false;
		return 0;
	}
	return sfa_err(err, n_err, SFA_EFORMAT, "checkpoint kwarg '%s' is not a boolean", key);
}

int nn_kw_double(const struct nn_ckpt *c, const char *key, double def, double *out, char *err,
                 size_t n_err)
{
	const struct nn_pk *v = nn_kw(c, key);
	if (!v) {
		*out = def;
		return 0;
	}
	switch (v->type) {
	case NN_PK_INT:
		*out = (double)v->u.i;
		return 0;
	case NN_PK_FLOAT:
		*out = v->u.f;
		return 0;
	case NN_PK_BOOL:
		*out = v->u.b;
		return 0;
	case NN_PK_FRACTION:
		*out = (double)v->u.frac.num / (double)v->u.frac.den;
		return 0;
	default:
		return sfa_err(err, n_err, SFA_EFORMAT, "checkpoint kwarg '%s' is not a number",
		               key);
	}
}

int nn_kw_str(const struct nn_ckpt *c, const char *key, const char *def, const char **out,
              char *err, size_t n_err)
{
	const struct nn_pk *v = nn_kw(c, key);
	if (!v) {
		*out = def;
		return 0;
	}
	if (v->type == NN_PK_STR) {
		*out = v->u.str.p;
		return 0;
	}
	if (v->type == NN_PK_NONE) {
		*out = NULL;
		return 0;
	}
	return sfa_err(err, n_err, SFA_EFORMAT, "checkpoint kwarg '%s' is not a string", key);
}
