/* accounts.c - see accounts.h. */
#include "core/accounts.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util/err.h"
#include "util/log.h"
#include "util/str.h"
#include "util/timeutil.h"
#include "util/uuid.h"

void field_errors_add(struct field_errors *fe, const char *field, const char *message)
{
	if (fe->n >= ACCOUNTS_MAX_FIELD_ERRORS)
		return;
	str_copy(fe->e[fe->n].field, sizeof fe->e[fe->n].field, field);
	str_copy(fe->e[fe->n].message, sizeof fe->e[fe->n].message, message);
	fe->n++;
}

const char *field_errors_get(const struct field_errors *fe, const char *field)
{
	for (int i = 0; i < fe->n; i++)
		if (strcmp(fe->e[i].field, field) == 0)
			return fe->e[i].message;
	return NULL;
}

void accounts_check_email(const char *email, struct field_errors *fe, const char *field)
{
	size_t n = strlen(email);
	if (n == 0) {
		field_errors_add(fe, field, "can't be blank");
		return;
	}
	if (n > DB_EMAIL_MAX) {
		field_errors_add(fe, field, "should be at most 254 characters");
		return;
	}
	const char *at = strchr(email, '@');
	bool ok = at && at != email && strchr(at + 1, '@') == NULL;
	for (size_t i = 0; ok && i < n; i++) {
		unsigned char c = (unsigned char)email[i];
		if (c <= ' ' || c == 0x7f || c == ',' || c == '<' || c == '>' || c == '"')
			ok = false;
	}
	if (ok) {
		const char *dot = strrchr(at + 1, '.');
		ok = dot && dot != at + 1 && dot[1] != '\0';
	}
	if (!ok)
		field_errors_add(fe, field, "must have the @ sign, a domain and no spaces");
}

/* Number of UTF-8 code points; invalid sequences count byte by byte. */
static size_t utf8_len(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

void accounts_check_password(const char *password, struct field_errors *fe, const char *field)
{
	size_t n = utf8_len(password);
	if (n < ACCOUNTS_PASSWORD_MIN)
		field_errors_add(fe, field, "should be at least 12 characters");
	else if (n > ACCOUNTS_PASSWORD_MAX)
		field_errors_add(fe, field, "should be at most 72 characters");
}

int accounts_hash_password(const char *password, char out[DB_HASH_MAX])
{
	_Static_assert(crypto_pwhash_STRBYTES <= DB_HASH_MAX, "hash buffer too small");
	if (crypto_pwhash_str(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
	                      crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
		return SFA_ENOMEM;
	return 0;
}

bool accounts_password_matches(const struct db_user *u, const char *password)
{
	return crypto_pwhash_str_verify(u->password_hash, password, strlen(password)) == 0;
}

int accounts_register(struct db *db, const char *email, const char *password, int64_t now,
                      struct db_user *out, struct field_errors *fe)
{
	accounts_check_email(email, fe, "email");
	accounts_check_password(password, fe, "password");
	if (fe->n)
		return SFA_EINVAL;
	struct db_user u;
	memset(&u, 0, sizeof u);
	uuid_v4(u.id);
	str_copy(u.email, sizeof u.email, email);
	str_copy(u.status, sizeof u.status, "active");
	str_copy(u.role, sizeof u.role, "user");
	u.created_at = now;
	u.password_set = true;
	int rc = accounts_hash_password(password, u.password_hash);
	if (rc)
		return rc;
	rc = db_user_insert(db, &u);
	if (rc == SFA_ECONFLICT) {
		field_errors_add(fe, "email", "has already been taken");
		return SFA_EINVAL;
	}
	if (rc)
		return rc;
	*out = u;
	return 0;
}

/* A real argon2id hash of a throw-away password, made once, so that a log-in attempt
 * for an unknown email costs one verification too. */
static char g_dummy_hash[crypto_pwhash_STRBYTES];
static pthread_once_t g_dummy_once = PTHREAD_ONCE_INIT;

static void make_dummy_hash(void)
{
	char pw[TOKEN_STR_LEN];
	token_new("", pw);
	if (accounts_hash_password(pw, g_dummy_hash))
		g_dummy_hash[0] = '\0';
}

int accounts_authenticate(struct db *db, const char *email, const char *password,
                          struct db_user *out)
{
	pthread_once(&g_dummy_once, make_dummy_hash);
	struct db_user u;
	int rc = db_user_by_email(db, email, &u);
	if (rc == SFA_ENOTFOUND) {
		int burn = crypto_pwhash_str_verify(g_dummy_hash, password, strlen(password));
		(void)burn;
		return SFA_EAUTH;
	}
	if (rc)
		return rc;
	if (!accounts_password_matches(&u, password) || strcmp(u.status, "active") != 0)
		return SFA_EAUTH;
	*out = u;
	return 0;
}

int accounts_session_start(struct db *db, const char *user_id, bool remember, int64_t now,
                           char token[TOKEN_STR_LEN])
{
	char t[TOKEN_STR_LEN], h[TOKEN_HASH_LEN];
	token_new("", t);
	token_hash(t, h);
	int64_t ttl = remember ? ACCOUNTS_REMEMBER_S : ACCOUNTS_SESSION_S;
	int rc = db_session_insert(db, h, user_id, now + ttl, remember);
	if (rc)
		return rc;
	memcpy(token, t, TOKEN_STR_LEN);
	return 0;
}

int accounts_session_user(struct db *db, const char *token, int64_t now, struct db_user *out)
{
	if (!token_plausible(token))
		return SFA_EAUTH;
	char h[TOKEN_HASH_LEN];
	token_hash(token, h);
	int rc = db_session_user(db, h, now, out);
	return rc == SFA_ENOTFOUND ? SFA_EAUTH : rc;
}

int accounts_session_end(struct db *db, const char *token)
{
	char h[TOKEN_HASH_LEN];
	token_hash(token, h);
	return db_session_delete(db, h);
}

int accounts_change_password(struct db *db, const struct db_user *u, const char *current,
                             const char *next, const char *keep_token, struct field_errors *fe)
{
	/* An account made by Spotify log-in sets its first password without one. */
	if (u->password_set && !accounts_password_matches(u, current))
		field_errors_add(fe, "current_password", "is not valid");
	accounts_check_password(next, fe, "password");
	if (fe->n)
		return SFA_EINVAL;
	char hash[DB_HASH_MAX];
	int rc = accounts_hash_password(next, hash);
	if (!rc)
		rc = db_user_set_password(db, u->id, hash);
	if (rc)
		return rc;
	char keep[TOKEN_HASH_LEN];
	if (keep_token)
		token_hash(keep_token, keep);
	return db_session_delete_others(db, u->id, keep_token ? keep : NULL);
}

int accounts_change_email(struct db *db, const struct db_user *u, const char *current,
                          const char *email, struct field_errors *fe)
{
	if (!accounts_password_matches(u, current))
		field_errors_add(fe, "current_password", "is not valid");
	accounts_check_email(email, fe, "email");
	if (!fe->n && strcasecmp(email, u->email) == 0)
		field_errors_add(fe, "email", "did not change");
	if (fe->n)
		return SFA_EINVAL;
	int rc = db_user_set_email(db, u->id, email);
	if (rc == SFA_ECONFLICT) {
		field_errors_add(fe, "email", "has already been taken");
		return SFA_EINVAL;
	}
	return rc;
}

int accounts_api_key_create(struct db *db, const char *user_id, const char *name, int64_t now,
                            char key[TOKEN_STR_LEN], struct db_api_key *rec,
                            struct field_errors *fe)
{
	size_t n = utf8_len(name);
	if (n == 0)
		field_errors_add(fe, "name", "can't be blank");
	else if (strlen(name) > DB_NAME_MAX)
		field_errors_add(fe, "name", "should be at most 100 characters");
	struct db_api_key existing[ACCOUNTS_MAX_API_KEYS];
	size_t n_existing = 0;
	int rc = db_api_key_list(db, user_id, existing, ACCOUNTS_MAX_API_KEYS, &n_existing);
	if (rc)
		return rc;
	size_t n_active = 0;
	for (size_t i = 0; i < n_existing; i++)
		n_active += existing[i].revoked_at == 0;
	if (n_active >= 50)
		field_errors_add(fe, "name", "you already have 50 active keys; revoke one first");
	if (fe->n)
		return SFA_EINVAL;
	struct db_api_key k;
	memset(&k, 0, sizeof k);
	char t[TOKEN_STR_LEN], h[TOKEN_HASH_LEN];
	token_new("sfa_", t);
	token_hash(t, h);
	uuid_v4(k.id);
	str_copy(k.name, sizeof k.name, name);
	token_display_prefix(t, k.prefix);
	k.created_at = now;
	rc = db_api_key_insert(db, user_id, &k, h);
	if (rc)
		return rc;
	memcpy(key, t, TOKEN_STR_LEN);
	*rec = k;
	return 0;
}

int accounts_api_key_user(struct db *db, struct keycache *kc, const char *key, int64_t now,
                          struct db_user *out)
{
	if (!str_starts_with(key, "sfa_") || !token_plausible(key))
		return SFA_EAUTH;
	char h[TOKEN_HASH_LEN];
	token_hash(key, h);
	int64_t now_ms = time_mono_ms();
	if (kc && keycache_get(kc, h, now_ms, out))
		return 0;
	int rc = db_api_key_user(db, h, now, out);
	if (rc == 0 && kc)
		keycache_put(kc, h, now_ms, out);
	return rc == SFA_ENOTFOUND ? SFA_EAUTH : rc;
}
