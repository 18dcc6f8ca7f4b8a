/* uuid.h - random UUIDv4 strings from libsodium's CSPRNG. Thread-safe after sodium_init. */
#ifndef SFA_UTIL_UUID_H
#define SFA_UTIL_UUID_H

#include <stdbool.h>

enum { UUID_STR_LEN = 37 }; /* 36 characters + NUL */

void uuid_v4(char out[UUID_STR_LEN]);
/* True when s is a canonical lower- or upper-case 8-4-4-4-12 hex UUID. */
bool uuid_valid(const char *s);

#endif
