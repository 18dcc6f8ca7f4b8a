/* sealed.h - secrets stored encrypted in the database (Spotify tokens, lal.ai keys).
 *
 * libsodium secretbox (XSalsa20-Poly1305) under a subkey derived from the server's
 * box_key (config.h) and a context string, so a value sealed for one purpose or one user
 * ("spotify-token:<user id>") cannot be opened as another: a row copied between users or
 * columns fails to open instead of being used. Each seal has a fresh random nonce. The
 * stored text is "v1." + base64url(nonce || mac || ciphertext), without padding.
 * Thread-safe; no state.
 */
#ifndef SFA_CORE_SEALED_H
#define SFA_CORE_SEALED_H

#include <stddef.h>

/* The stored text of a plaintext of n bytes (with its NUL). */
#define SEALED_TEXT_LEN(n) (3 + ((24 + 16 + (n)) * 4 + 2) / 3 + 1)

/* Seals plaintext into out (n_out bytes, at least SEALED_TEXT_LEN(strlen(plaintext))).
 * Returns 0, or SFA_ETOOBIG when out is too small. */
int sealed_seal(const unsigned char key[32], const char *context, const char *plaintext, char *out,
                size_t n_out);

/* Opens a sealed text into out (n_out bytes incl. the NUL). Returns 0, SFA_ETOOBIG when
 * out is too small, or SFA_EAUTH when the text is malformed, was sealed under another key
 * or context, or was tampered with. out is wiped on failure. */
int sealed_open(const unsigned char key[32], const char *context, const char *sealed, char *out,
                size_t n_out);

#endif
