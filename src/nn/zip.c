/* zip.c - see zip.h.
 *
 * Layout reminders (APPNOTE 6.3): the end of central directory record (EOCD, 22 bytes +
 * comment) sits at the end; a zip64 locator (20 bytes) may sit right before it and points
 * to the zip64 EOCD (56+ bytes). The central directory is a run of 46-byte headers, each
 * followed by its name, extra fields and comment. Each member's data follows its local
 * header (30 bytes + name + extra), whose lengths may differ from the central copy.
 */
#include "nn/zip.h"

#include <stdlib.h>
#include <string.h>

#include "util/err.h"

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

/* True when [off, off+len) lies inside a buffer of n bytes. */
static int in_bounds(uint64_t off, uint64_t len, size_t n) { return off <= n && len <= n - off; }

static int cmp_entry(const void *a, const void *b)
{
	const struct nn_zip_entry *x = a, *y = b;
	size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
	int c = memcmp(x->name, y->name, n);
	if (c)
		return c;
	return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/* Finds the EOCD: the last signature whose comment length ends exactly at the end. */
static int find_eocd(const uint8_t *d, size_t n, size_t *pos)
{
	if (n < 22)
		return -1;
	size_t lo = n > 22 + 65535 ? n - 22 - 65535 : 0;
	for (size_t p = n - 22 + 1; p-- > lo;) {
		if (rd32(d + p) == 0x06054b50 && p + 22 + rd16(d + p + 20) == n) {
			*pos = p;
			return 0;
		}
	}
	return -1;
}

/* Reads the zip64 extended-information extra field of a central header, replacing the
 * saturated 32-bit values in the order the spec gives them. */
static int read_zip64_extra(const uint8_t *x, size_t n_x, uint64_t *usize, uint64_t *csize,
                            uint64_t *lho, int need_u, int need_c, int need_o)
{
	size_t p = 0;
	while (p + 4 <= n_x) {
		uint16_t id = rd16(x + p), len = rd16(x + p + 2);
		if (p + 4 + len > n_x)
			return -1;
		if (id == 0x0001) {
			const uint8_t *f = x + p + 4;
			size_t q = 0;
			if (need_u) {
				if (q + 8 > len)
					return -1;
				*usize = rd64(f + q);
				q += 8;
			}
			if (need_c) {
				if (q + 8 > len)
					return -1;
				*csize = rd64(f + q);
				q += 8;
			}
			if (need_o) {
				if (q + 8 > len)
					return -1;
				*lho = rd64(f + q);
			}
			return 0;
		}
		p += 4 + (size_t)len;
	}
	return (need_u || need_c || need_o) ? -1 : 0;
}

int nn_zip_parse(const uint8_t *d, size_t n, struct nn_zip *z, char *err, size_t n_err)
{
	size_t eocd;
	if (find_eocd(d, n, &eocd) != 0)
		return sfa_err(err, n_err, SFA_EFORMAT,
		               "not a zip archive (no end-of-central-directory record)");
	uint64_t n_ent = rd16(d + eocd + 10);
	uint64_t cd_size = rd32(d + eocd + 12);
	uint64_t cd_off = rd32(d + eocd + 16);
	if (rd16(d + eocd + 4) != 0 || rd16(d + eocd + 6) != 0)
		return sfa_err(err, n_err, SFA_EUNSUPP,
		               "multi-disk zip archives are not supported");

	/* zip64: the locator sits right before the EOCD when present. */
	if (eocd >= 20 && rd32(d + eocd - 20) == 0x07064b50) {
		uint64_t z64 = rd64(d + eocd - 20 + 8);
		if (!in_bounds(z64, 56, n) || rd32(d + z64) != 0x06064b50)
			return sfa_err(err, n_err, SFA_EFORMAT,
			               "corrupt zip: the zip64 end record is out of place");
		n_ent = rd64(d + z64 + 32);
		cd_size = rd64(d + z64 + 40);
		cd_off = rd64(d + z64 + 48);
	} else if (n_ent == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
		return sfa_err(err, n_err, SFA_EFORMAT,
		               "corrupt zip: zip64 values without a zip64 locator");
	}
	if (n_ent > NN_ZIP_MAX_ENTRIES)
		return sfa_err(err, n_err, SFA_ETOOBIG, "zip archive has too many entries (%llu)",
		               (unsigned long long)n_ent);
	if (!in_bounds(cd_off, cd_size, n))
		return sfa_err(err, n_err, SFA_EFORMAT,
		               "corrupt zip: the central directory lies outside the file");

	struct nn_zip_entry *ents = calloc(n_ent ? n_ent : 1, sizeof *ents);
	if (!ents)
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory reading the zip directory");
	int rc = 0;
	uint64_t p = cd_off, cd_end = cd_off + cd_size;
	for (uint64_t i = 0; i < n_ent; i++) {
		if (!in_bounds(p, 46, n) || p + 46 > cd_end || rd32(d + p) != 0x02014b50) {
			rc = sfa_err(err, n_err, SFA_EFORMAT,
			             "corrupt zip: central directory entry %llu is damaged",
			             (unsigned long long)i);
			goto out;
		}
		const uint8_t *h = d + p;
		uint16_t flags = rd16(h + 8), method = rd16(h + 10);
		uint64_t csize = rd32(h + 20), usize = rd32(h + 24);
		uint16_t nlen = rd16(h + 28), xlen = rd16(h + 30), clen = rd16(h + 32);
		uint64_t lho = rd32(h + 42);
		uint64_t var = (uint64_t)nlen + xlen + clen;
		if (p + 46 + var > cd_end) {
			rc = sfa_err(
				err, n_err, SFA_EFORMAT,
				"corrupt zip: central directory entry %llu runs past the directory",
				(unsigned long long)i);
			goto out;
		}
		if (nlen == 0 || nlen > NN_ZIP_MAX_NAME_BYTES) {
			rc = sfa_err(err, n_err, SFA_EFORMAT,
			             "corrupt zip: entry %llu has a name of %u bytes",
			             (unsigned long long)i, (unsigned)nlen);
			goto out;
		}
		const char *name = (const char *)h + 46;
		if (read_zip64_extra(h + 46 + nlen, xlen, &usize, &csize, &lho,
		                     usize == 0xFFFFFFFFu, csize == 0xFFFFFFFFu,
		                     lho == 0xFFFFFFFFu) != 0) {
			rc = sfa_err(err, n_err, SFA_EFORMAT,
			             "corrupt zip: entry '%.*s' has a damaged zip64 field",
			             (int)nlen, name);
			goto out;
		}
		if (flags & 1) {
			rc = sfa_err(err, n_err, SFA_EUNSUPP, "zip entry '%.*s' is encrypted",
			             (int)nlen, name);
			goto out;
		}
		if (method != 0) {
			rc = sfa_err(
				err, n_err, SFA_EUNSUPP,
				"zip entry '%.*s' is compressed (method %u); only stored entries "
				"are supported",
				(int)nlen, name, (unsigned)method);
			goto out;
		}
		if (csize != usize) {
			rc = sfa_err(err, n_err, SFA_EFORMAT,
			             "corrupt zip: stored entry '%.*s' has different sizes",
			             (int)nlen, name);
			goto out;
		}
		if (!in_bounds(lho, 30, n) || rd32(d + lho) != 0x04034b50) {
			rc = sfa_err(err, n_err, SFA_EFORMAT,
			             "corrupt zip: the local header of '%.*s' is missing",
			             (int)nlen, name);
			goto out;
		}
		uint64_t data_off = lho + 30 + (uint64_t)rd16(d + lho + 26) + rd16(d + lho + 28);
		if (!in_bounds(data_off, usize, n)) {
			rc = sfa_err(
				err, n_err, SFA_EFORMAT,
				"corrupt zip: the data of '%.*s' lies outside the file (truncated?)",
				(int)nlen, name);
			goto out;
		}
		ents[i].name = name;
		ents[i].name_len = nlen;
		ents[i].data = d + data_off;
		ents[i].size_bytes = usize;
		p += 46 + var;
	}
	qsort(ents, n_ent, sizeof *ents, cmp_entry);
	for (uint64_t i = 1; i < n_ent; i++) {
		if (cmp_entry(&ents[i - 1], &ents[i]) == 0) {
			rc = sfa_err(err, n_err, SFA_EFORMAT,
			             "corrupt zip: entry '%.*s' appears twice",
			             (int)ents[i].name_len, ents[i].name);
			goto out;
		}
	}
	z->entries = ents;
	z->n_entries = n_ent;
	return 0;
out:
	free(ents);
	return rc;
}

void nn_zip_free(struct nn_zip *z)
{
	free(z->entries);
	z->entries = NULL;
	z->n_entries = 0;
}

const struct nn_zip_entry *nn_zip_find(const struct nn_zip *z, const char *name, size_t name_len)
{
	struct nn_zip_entry key = {.name = name, .name_len = name_len};
	return bsearch(&key, z->entries, z->n_entries, sizeof key, cmp_entry);
}
