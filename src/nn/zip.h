/* zip.h - a read-only view of a zip archive held in memory (the torch.save container).
 *
 * torch.save writes a zip whose members are *stored* (never compressed), 64-byte aligned,
 * with sizes only in the central directory (local headers carry data descriptors) and
 * always a zip64 end record. This reader accepts exactly that family: stored, unencrypted
 * members, plain or zip64 directories. It never trusts an offset: every header, name and
 * data range is checked against the buffer size before use, entry counts and name lengths
 * are capped, and duplicate names are refused so that a lookup is never ambiguous.
 *
 * Entries point into the caller's buffer (typically an mmap of the file), which must
 * outlive the nn_zip. Not thread-safe while parsing; read-only afterwards.
 */
#ifndef SFA_NN_ZIP_H
#define SFA_NN_ZIP_H

#include <stddef.h>
#include <stdint.h>

enum {
	NN_ZIP_MAX_ENTRIES = 200000,
	NN_ZIP_MAX_NAME_BYTES = 1024,
};

struct nn_zip_entry {
	const char *name; /* into the buffer, not NUL-terminated */
	size_t name_len;
	const uint8_t *data; /* into the buffer */
	uint64_t size_bytes;
};

struct nn_zip {
	struct nn_zip_entry *entries; /* malloced, sorted by name */
	size_t n_entries;
};

/* Parses the archive in data[0..n_bytes). On success z owns a malloced entry table
 * (free with nn_zip_free). Errors: SFA_EFORMAT (not a zip / corrupt, with the reason),
 * SFA_EUNSUPP (compressed or encrypted member), SFA_ETOOBIG (caps), SFA_ENOMEM. */
int nn_zip_parse(const uint8_t *data, size_t n_bytes, struct nn_zip *z, char *err, size_t n_err);
void nn_zip_free(struct nn_zip *z);
/* Looks up an exact member name (the entry belongs to z); NULL if absent. */
const struct nn_zip_entry *nn_zip_find(const struct nn_zip *z, const char *name, size_t name_len);

#endif
