/* json.c - see json.h. */
#include "util/json.h"

#include "util/err.h"

char *json_encode(const json_t *j)
{
	return json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
}

int json_parse_object(const char *text, size_t n, json_t **out, char *err, size_t n_err)
{
	if (n > JSON_BODY_MAX_BYTES)
		return sfa_err(err, n_err, SFA_ETOOBIG, "The JSON body is larger than %d bytes.",
		               JSON_BODY_MAX_BYTES);
	json_error_t je;
	json_t *j = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return sfa_err(err, n_err, SFA_EINVAL,
		               "The body is not valid JSON (line %d, column %d: %s).", je.line,
		               je.column, je.text);
	if (!json_is_object(j)) {
		json_decref(j);
		return sfa_err(err, n_err, SFA_EINVAL, "The JSON body must be an object.");
	}
	*out = j;
	return 0;
}

const char *json_str(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}
