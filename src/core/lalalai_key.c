/* lalalai_key.c - see lalalai_key.h. */
#include "core/lalalai_key.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/sealed.h"
#include "util/err.h"
#include "util/str.h"

static void context_for(const char *user_id, char *out, size_t n)
{
	snprintf(out, n, "lalalai-key:%s", user_id);
}

int lalalai_key_save(struct db *db, const unsigned char box_key[32], const char *user_id,
                     const char *key, int64_t now, char *err, size_t n_err)
{
	while (*key == ' ' || *key == '\t')
		key++;
	size_t n = strlen(key);
	while (n && (key[n - 1] == ' ' || key[n - 1] == '\t' || key[n - 1] == '\r' ||
	             key[n - 1] == '\n'))
		n--;
	if (n < LALALAI_KEY_MIN || n > LALALAI_KEY_MAX)
		return sfa_err(err, n_err, SFA_EINVAL,
		               "A lal.ai license key has %d to %d characters; paste it as lal.ai "
		               "shows it.",
		               LALALAI_KEY_MIN, LALALAI_KEY_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)key[i] <= 0x20 || (unsigned char)key[i] >= 0x7f)
			return sfa_err(err, n_err, SFA_EINVAL,
			               "A lal.ai license key has no spaces or special characters.");
	char plain[LALALAI_KEY_MAX + 1];
	memcpy(plain, key, n);
	plain[n] = '\0';
	char ctx[96], sealed[SEALED_TEXT_LEN(LALALAI_KEY_MAX)], hint[LALALAI_HINT_MAX];
	context_for(user_id, ctx, sizeof ctx);
	snprintf(hint, sizeof hint, "****%s", plain + n - 4);
	int rc = sealed_seal(box_key, ctx, plain, sealed, sizeof sealed);
	sodium_memzero(plain, sizeof plain);
	if (rc)
		return sfa_err(err, n_err, rc, "The key could not be sealed.");
	rc = db_lalalai_key_set(db, user_id, sealed, hint, now);
	return rc ? sfa_err(err, n_err, rc, "The key could not be saved.") : 0;
}

int lalalai_key_resolve(struct db *db, const struct config *cfg, const char *user_id, char *out,
                        bool *own, char *err, size_t n_err)
{
	char sealed[SEALED_TEXT_LEN(LALALAI_KEY_MAX) + 64];
	int rc = db_lalalai_key_get(db, user_id, sealed, sizeof sealed, NULL, 0);
	if (rc == 0) {
		char ctx[96];
		context_for(user_id, ctx, sizeof ctx);
		if (sealed_open(cfg->box_key, ctx, sealed, out, LALALAI_KEY_MAX + 1) != 0)
			return sfa_err(
				err, n_err, SFA_EAUTH,
				"Your stored lal.ai license key cannot be read any more (the "
				"server's secret changed); enter it again in Settings.");
		if (own)
			*own = true;
		return 0;
	}
	if (rc != SFA_ENOTFOUND)
		return sfa_err(err, n_err, rc, "The lal.ai key could not be read.");
	return lalalai_server_key(cfg, out, own, err, n_err);
}

int lalalai_server_key(const struct config *cfg, char *out, bool *own, char *err, size_t n_err)
{
	if (!cfg->lalalai_license_key[0])
		return sfa_err(
			err, n_err, SFA_ENOTFOUND,
			"lal.ai is not configured: add your lal.ai license key in Settings.");
	if (strlen(cfg->lalalai_license_key) > LALALAI_KEY_MAX)
		return sfa_err(err, n_err, SFA_EINVAL, "SFA_LALALAI_LICENSE_KEY is too long.");
	str_copy(out, LALALAI_KEY_MAX + 1, cfg->lalalai_license_key);
	if (own)
		*own = false;
	return 0;
}

int lalalai_client_for_user(struct db *db, const struct config *cfg, const char *user_id,
                            const volatile sig_atomic_t *abort_flag, struct lalalai_client **out,
                            char *err, size_t n_err)
{
	char key[LALALAI_KEY_MAX + 1];
	int rc = lalalai_key_resolve(db, cfg, user_id, key, NULL, err, n_err);
	if (rc)
		return rc;
	struct lalalai_config lc = {
		.base_url = cfg->lalalai_url, .license_key = key, .abort_flag = abort_flag};
	rc = lalalai_client_new(&lc, out, err, n_err);
	sodium_memzero(key, sizeof key);
	return rc;
}
