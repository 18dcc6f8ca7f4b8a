/* token.h - random secrets handed to clients, and how they are stored.
 *
 * Session cookies and API keys are 32 random bytes from libsodium, base64url without
 * padding (43 characters); API keys carry the "sfa_" prefix so they are recognisable in
 * configs and leaks. The database stores only the hex SHA-256 of a token: the tokens
 * have 256 bits of entropy, so a plain hash is enough and lookups stay indexable.
 * Thread-safe.
 */
#ifndef SFA_CORE_TOKEN_H
#define SFA_CORE_TOKEN_H

#include <stdbool.h>
#include <stddef.h>

enum {
	TOKEN_STR_LEN = 48,  /* "sfa_" + 43 + NUL, rounded up */
	TOKEN_HASH_LEN = 65, /* 64 hex + NUL */
	TOKEN_PREFIX_LEN = 12,
};

/* Writes prefix followed by 43 random base64url characters into out. */
void token_new(const char *prefix, char out[TOKEN_STR_LEN]);
/* Hex SHA-256 of token. */
void token_hash(const char *token, char out[TOKEN_HASH_LEN]);
/* The shown part of an API key ("sfa_AbCdEfGh"), for listings. */
void token_display_prefix(const char *token, char out[TOKEN_PREFIX_LEN + 1]);
/* True if s has the shape of a token: only base64url characters and '_' and 8..200 long. */
bool token_plausible(const char *s);

#endif
