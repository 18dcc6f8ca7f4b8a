/* lalalai_key.h - which lal.ai license key a user's calls use, and the user's own key.
 *
 * A user may store their own key on the settings page; it is sealed (core/sealed.h) under
 * the context "lalalai-key:<user id>", so the database never holds a usable key and a row
 * copied to another user does not open. Only a masked hint ("****" + the last four
 * characters) is ever shown again. Users without a key of their own use the server's
 * SFA_LALALAI_LICENSE_KEY, when one is configured. Thread-safe (no state).
 */
#ifndef SFA_CORE_LALALAI_KEY_H
#define SFA_CORE_LALALAI_KEY_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clients/lalalai.h"
#include "core/config.h"
#include "db/db.h"

enum { LALALAI_KEY_MAX = 200, LALALAI_KEY_MIN = 8, LALALAI_HINT_MAX = 16 };

/* Validates key (8..200 printable ASCII characters without spaces, surrounding blanks
 * trimmed) and stores it sealed with its hint. SFA_EINVAL with a sentence for a bad key. */
int lalalai_key_save(struct db *db, const unsigned char box_key[32], const char *user_id,
                     const char *key, int64_t now, char *err, size_t n_err);

/* The key for user_id's calls into out (LALALAI_KEY_MAX + 1 bytes): their own, else the
 * server's. *own tells which (may be NULL). SFA_ENOTFOUND when there is none; SFA_EAUTH
 * when the stored key cannot be opened (the server secret changed: store it again). */
int lalalai_key_resolve(struct db *db, const struct config *cfg, const char *user_id, char *out,
                        bool *own, char *err, size_t n_err);
/* The server's key (SFA_LALALAI_LICENSE_KEY) alone, as lalalai_key_resolve falls back to. */
int lalalai_server_key(const struct config *cfg, char *out, bool *own, char *err, size_t n_err);

/* A client for user_id's key and the configured base URL (abort_flag may be NULL); the
 * caller frees *out with lalalai_client_free. Same errors as lalalai_key_resolve, plus
 * lalalai_client_new's. */
int lalalai_client_for_user(struct db *db, const struct config *cfg, const char *user_id,
                            const volatile sig_atomic_t *abort_flag, struct lalalai_client **out,
                            char *err, size_t n_err);

#endif
