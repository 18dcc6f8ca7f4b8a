/* sealed.c - see sealed.h. */
#include "core/sealed.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

enum {
	NONCE = crypto_secretbox_NONCEBYTES,
	MAC = crypto_secretbox_MACBYTES,
	MAX_PLAIN = 64 * 1024
};

static void subkey(const unsigned char key[32], const char *context, unsigned char out[32])
{
	crypto_generichash(out, 32, (const unsigned char *)context, strlen(context), key, 32);
}

int sealed_seal(const unsigned char key[32], const char *context, const char *plaintext, char *out,
                size_t n_out)
{
	size_t n = strlen(plaintext);
	if (n > MAX_PLAIN || n_out < SEALED_TEXT_LEN(n))
		return SFA_ETOOBIG;
	size_t n_box = NONCE + MAC + n;
	unsigned char *box = malloc(n_box);
	if (!box)
		return SFA_ENOMEM;
	unsigned char k[32];
	subkey(key, context, k);
	randombytes_buf(box, NONCE);
	crypto_secretbox_easy(box + NONCE, (const unsigned char *)plaintext, n, box, k);
	sodium_memzero(k, sizeof k);
	memcpy(out, "v1.", 3);
	sodium_bin2base64(out + 3, n_out - 3, box, n_box, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	free(box);
	return 0;
}

int sealed_open(const unsigned char key[32], const char *context, const char *sealed, char *out,
                size_t n_out)
{
	if (n_out)
		out[0] = '\0';
	if (strncmp(sealed, "v1.", 3) != 0)
		return SFA_EAUTH;
	const char *b64 = sealed + 3;
	size_t n_b64 = strlen(b64);
	if (n_b64 > (size_t)MAX_PLAIN * 2)
		return SFA_EAUTH;
	size_t cap = n_b64 * 3 / 4 + 3;
	unsigned char *box = malloc(cap);
	if (!box)
		return SFA_ENOMEM;
	size_t n_box = 0;
	int rc = SFA_EAUTH;
	if (sodium_base642bin(box, cap, b64, n_b64, NULL, &n_box, NULL,
	                      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    n_box < NONCE + MAC)
		goto out;
	size_t n = n_box - NONCE - MAC;
	if (n + 1 > n_out) {
		rc = SFA_ETOOBIG;
		goto out;
	}
	unsigned char k[32];
	subkey(key, context, k);
	int bad = crypto_secretbox_open_easy((unsigned char *)out, box + NONCE, n_box - NONCE, box,
	                                     k);
	sodium_memzero(k, sizeof k);
	if (bad) {
		sodium_memzero(out, n_out);
		goto out;
	}
	if (memchr(out, '\0', n)) { /* a sealed C string never holds a NUL */
		sodium_memzero(out, n_out);
		goto out;
	}
	out[n] = '\0';
	rc = 0;
out:
	free(box);
	return rc;
}
