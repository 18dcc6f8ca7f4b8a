/* range.h - the Range request header (RFC 9110 §14), single byte ranges.
 *
 * http_range_parse reads "bytes=first-last", "bytes=first-" and "bytes=-suffix" against a
 * resource of size bytes. Several ranges ("bytes=0-1,5-6") are answered with the whole
 * resource (HTTP allows ignoring Range), other units or syntax errors likewise; only a
 * well-formed range that lies wholly past the end is unsatisfiable (416). Pure function.
 *
 * Threading: any thread; nothing is allocated.
 */
#ifndef SFA_HTTP_RANGE_H
#define SFA_HTTP_RANGE_H

#include <stdint.h>

enum http_range_result {
	RANGE_NONE = 0,          /* serve the whole resource (200) */
	RANGE_PARTIAL = 1,       /* serve [*first, *first + *len) (206) */
	RANGE_UNSATISFIABLE = 2, /* 416 with Content-Range: bytes * / size */
};

enum http_range_result http_range_parse(const char *header, uint64_t size, uint64_t *first,
                                        uint64_t *len);

#endif
