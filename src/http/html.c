/* html.c - see html.h. */
#include "http/html.h"

#include <string.h>

const char *html_esc(struct arena *a, const char *s)
{
	size_t extra = 0;
	for (const char *p = s; *p; p++)
		extra += strchr("&<>\"'", *p) ? 5 : 0;
	char *out = arena_alloc(a, strlen(s) + extra + 1);
	if (!out)
		return "";
	char *o = out;
	for (; *s; s++) {
		const char *rep = NULL;
		switch (*s) {
		case '&':
			rep = "&amp;";
			break;
		case '<':
			rep = "&lt;";
			break;
		case '>':
			rep = "&gt;";
			break;
		case '"':
			rep = "&quot;";
			break;
		case '\'':
			rep = "&#39;";
			break;
		default:
			*o++ = *s;
			continue;
		}
		size_t n = strlen(rep);
		memcpy(o, rep, n);
		o += n;
	}
	*o = '\0';
	return out;
}
