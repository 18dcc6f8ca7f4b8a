/* token.c - see token.h. */
#include "core/token.h"

#include <sodium.h>
#include <string.h>

#include "util/str.h"

void token_new(const char *prefix, char out[TOKEN_STR_LEN])
{
	unsigned char raw[32];
	randombytes_buf(raw, sizeof raw);
	size_t n = str_copy(out, TOKEN_STR_LEN, prefix);
	sodium_bin2base64(out + n, TOKEN_STR_LEN - n, raw, sizeof raw,
	                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof raw);
}

void token_hash(const char *token, char out[TOKEN_HASH_LEN])
{
	unsigned char h[crypto_hash_sha256_BYTES];
	crypto_hash_sha256(h, (const unsigned char *)token, strlen(token));
	str_hex(h, sizeof h, out);
}

void token_display_prefix(const char *token, char out[TOKEN_PREFIX_LEN + 1])
{
	size_t n = strlen(token);
	if (n > TOKEN_PREFIX_LEN)
		n = TOKEN_PREFIX_LEN;
	memcpy(out, token, n);
	out[n] = '\0';
}

bool token_plausible(const char *s)
{
	size_t n = strlen(s);
	if (n < 8 || n > 200)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
	}
	return true;
}
