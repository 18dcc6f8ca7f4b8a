/* html.h - escaping for HTML text and attribute values.
 *
 * Every value that did not come from a literal in our own source goes through
 * html_esc before it reaches a page, so user data can never become markup.
 *
 * Threading: pure functions, any thread; output goes into the caller's buffer.
 */
#ifndef SFA_HTTP_HTML_H
#define SFA_HTTP_HTML_H

#include "util/arena.h"

/* Returns an escaped copy of s in the arena ("" on exhaustion, never NULL). */
const char *html_esc(struct arena *a, const char *s);

#endif
