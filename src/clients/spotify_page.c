/* spotify_page.c - short links (spotify.link, spoti.fi) and share pages resolved to a
 * catalogue reference: redirects are followed by hand, each hop checked, and a page is
 * scanned for the open.spotify.com link it names. Bodies are capped; no token is sent.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clients/spotify_internal.h"
#include "util/json.h"
#include "util/log.h"
#include "util/str.h"

/* ---- Short links ---------------------------------------------------------------------- */

/* True when url's host is open.spotify.com (whatever its path). */
static bool host_is_open_spotify(const char *url)
{
	const char *p = url;
	if (str_ieq_n("https://", p, 8))
		p += 8;
	else if (str_ieq_n("http://", p, 7))
		p += 7;
	return str_ieq_n("open.spotify.com", p, 16) &&
	       (p[16] == '\0' || p[16] == '/' || p[16] == '?' || p[16] == '#');
}

/* Looks for the first open.spotify.com/{kind}/{id} link in a page. */
static bool find_link_in_page(const char *body, size_t n, struct spotify_ref *out)
{
	static const char needle[] = "open.spotify.com/";
	const size_t n_needle = sizeof needle - 1;
	const char *p = body, *end = body + n;
	for (int tries = 0; tries < 64; tries++) {
		const char *hit = memmem(p, (size_t)(end - p), needle, n_needle);
		if (!hit)
			return false;
		size_t len = 0;
		while (hit + len < end && len < 512) {
			char ch = hit[len];
			if (ch == '"' || ch == '\'' || ch == '<' || ch == '>' || ch == '\\' ||
			    ch == '&' || (unsigned char)ch <= 0x20)
				break;
			len++;
		}
		char cand[600];
		memcpy(cand, hit, len);
		cand[len] = '\0';
		if (spotify_url_parse(cand, out, NULL, 0) == 0)
			return true;
		p = hit + n_needle;
	}
	return false;
}

int spotify_resolve_url(struct spotify_client *c, const char *input, struct spotify_ref *out,
                        char *err, size_t n_err)
{
	char url[SPOTIFY_URL_MAX_BYTES + 16];
	if (!spotify_url_short_link(input, c->allow_http_loopback, url, sizeof url))
		return spotify_url_parse(input, out, err, n_err);

	CURL *h = curl_easy_init();
	if (!h)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
	struct http_resp rs = {0};
	int rc = 0;
	for (int hop = 0; hop < c->max_redirects; hop++) {
		struct spotify__req rq = {
			.url = url,
			.protocols = c->allow_http_loopback ? "http,https" : "https",
			.max_body_bytes = SHORT_LINK_BODY_MAX_BYTES,
			.idempotent = true,
		};
		rc = spotify__request(c, h, &rq, &rs, err, n_err);
		if (rc)
			goto out;
		if (rs.status >= 300 && rs.status < 400) {
			if (!rs.location) {
				rc = sfa_err(err, n_err, SFA_EINVAL,
				             "The short link redirects without saying where to.");
				goto out;
			}
			/* An open.spotify.com link or a spotify: URI ends the walk; it is never
			 * fetched. */
			if (host_is_open_spotify(rs.location) ||
			    str_ieq_n("spotify:", rs.location, 8)) {
				rc = spotify_url_parse(rs.location, out, err, n_err);
				goto out;
			}
			if (!spotify_url_short_link(rs.location, c->allow_http_loopback, url,
			                            sizeof url)) {
				rc = sfa_err(
					err, n_err, SFA_EINVAL,
					"The short link leads away from Spotify (or off https).");
				goto out;
			}
			continue;
		}
		if (rs.status == 200 && rs.body.data &&
		    find_link_in_page(rs.body.data, rs.body.len, out))
			goto out;
		if (rs.status == 200 || rs.status == 404 || rs.status == 410)
			rc = sfa_err(err, n_err, SFA_EINVAL,
			             "This short link does not lead to a Spotify track, album or "
			             "playlist.");
		else
			rc = sfa_err(err, n_err, SFA_EUPSTREAM,
			             "spotify.link answered HTTP %ld for this short link.",
			             rs.status);
		goto out;
	}
	rc = sfa_err(err, n_err, SFA_EINVAL, "The short link redirects more than %d times.",
	             c->max_redirects);
out:
	http_resp_free(&rs);
	curl_easy_cleanup(h);
	return rc;
}
