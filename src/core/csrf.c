/* csrf.c - see csrf.h. */
#include "core/csrf.h"

#include <sodium.h>
#include <string.h>

#include "util/str.h"

void csrf_token_for(const unsigned char key[32], const char *cookie, char out[CSRF_TOKEN_LEN])
{
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, key, 32);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)cookie, strlen(cookie));
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_bin2base64(out, CSRF_TOKEN_LEN, mac, sizeof mac,
	                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

bool csrf_valid(const unsigned char key[32], const char *cookie, const char *presented)
{
	if (!cookie || !*cookie || !presented || !*presented)
		return false;
	char want[CSRF_TOKEN_LEN];
	csrf_token_for(key, cookie, want);
	return str_secure_eq(want, presented);
}
