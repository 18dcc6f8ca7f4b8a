/* json.h - small helpers over jansson for request bodies and responses.
 *
 * Ownership follows jansson: functions returning json_t* return a new reference the
 * caller must json_decref. Strings returned by json_encode are malloced; caller frees.
 *
 *
 * Threading: no shared state; a jansson value belongs to one thread at a time.
 */
#ifndef SFA_UTIL_JSON_H
#define SFA_UTIL_JSON_H

#include <jansson.h>
#include <stddef.h>

enum { JSON_BODY_MAX_BYTES = 1 << 20 };

/* Compact UTF-8 encoding with keys in insertion order. Returns a malloced string or NULL. */
char *json_encode(const json_t *j);
/* Parses n bytes as a JSON object. Fails with SFA_ETOOBIG past JSON_BODY_MAX_BYTES and
 * SFA_EINVAL (with jansson's line/column in err) for bad JSON or a non-object. */
int json_parse_object(const char *text, size_t n, json_t **out, char *err, size_t n_err);
/* Returns the string member `key` of obj (borrowed from obj), or NULL if absent, null or
 * not a string. */
const char *json_str(const json_t *obj, const char *key);

#endif
