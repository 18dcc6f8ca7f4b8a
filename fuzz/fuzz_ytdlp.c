/* libFuzzer harness for src/clients/ytdlp.c: what yt-dlp prints (progress lines, search
 * results as JSON lines, error output). The input is split into lines and every line goes
 * through the progress parser and the search picker; the whole input is also explained as
 * an error output. Checks: a picked URL is http(s) without white space, an explanation is
 * a NUL-terminated string without control characters or the redacted path.
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc fuzz/fuzz_ytdlp.c
 *        src/clients/ytdlp.c src/util/str.c -ljansson -lm
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clients/ytdlp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > (1 << 20))
		return 0;
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	struct ytdlp_pick p;
	ytdlp_pick_init(&p, size ? (double)(data[0] % 200) : 0);
	char *line = text;
	while (line && *line) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		int64_t done, total;
		if (ytdlp_parse_progress(line, &done, &total) && (done < 0 || total < 0))
			abort();
		ytdlp_pick_feed(&p, line);
		line = nl ? nl + 1 : NULL;
	}
	if (p.found &&
	    ((strncmp(p.best_url, "https://", 8) != 0 && strncmp(p.best_url, "http://", 7) != 0) ||
	     strpbrk(p.best_url, " \t\r\n")))
		abort();
	memcpy(text, data, size);
	char msg[512];
	bool retry;
	ytdlp_explain_failure(text, size ? data[size - 1] % 4 : 1, "/srv/data", msg, sizeof msg,
	                      &retry);
	if (strlen(msg) >= sizeof msg || strstr(msg, "/srv/data"))
		abort();
	for (const char *c = msg; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			abort();
	free(text);
	return 0;
}
