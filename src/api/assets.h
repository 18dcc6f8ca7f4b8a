/* assets.h - the browser app's files, embedded at build time (scripts/embed_web.py).
 *
 * Each file of web/ and each npm library the app imports is compiled into the binary and
 * served as /assets/<name>-<hash>.<ext>: the name changes whenever the bytes do, so
 * responses are cached for a year and `sfa serve` needs no files beside it.
 *
 * Threading: the table is constant and read from any thread; nothing is allocated.
 */
#ifndef SFA_API_ASSETS_H
#define SFA_API_ASSETS_H

#include <stddef.h>

struct web_asset {
	const char *name; /* as the app imports it: "app.js", "vendor/phoenix.js" */
	const char *url;  /* "/assets/app-<hash>.js" */
	const char *content_type;
	const char *etag; /* quoted */
	const unsigned char *data;
	size_t n_bytes;
};

extern const struct web_asset web_assets[];
extern const size_t web_assets_n;

/* The hashed URL of an embedded file ("app.css" -> "/assets/app-<hash>.css"), in static
 * storage (nothing to free); NULL when there is no such file. */
const char *web_asset_url(const char *name);

#endif
