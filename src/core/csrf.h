/* csrf.h - cross-site request forgery tokens.
 *
 * Every browser gets a random `_sfa_csrf` cookie (HttpOnly, SameSite=Lax). The token put
 * in forms and the csrf-token meta tag is base64url(HMAC-SHA256(csrf_key, cookie)): a
 * page on another site can neither read the cookie nor compute the token, and the server
 * keeps no state. A state-changing request made with cookies must present the token that
 * matches its cookie (form field _csrf_token or header x-csrf-token). Thread-safe.
 */
#ifndef SFA_CORE_CSRF_H
#define SFA_CORE_CSRF_H

#include <stdbool.h>

enum { CSRF_TOKEN_LEN = 48 }; /* 43 base64url + NUL, rounded */

void csrf_token_for(const unsigned char key[32], const char *cookie, char out[CSRF_TOKEN_LEN]);
/* Constant-time check; false when either input is NULL or empty. */
bool csrf_valid(const unsigned char key[32], const char *cookie, const char *presented);

#endif
