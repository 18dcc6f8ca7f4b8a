/* libFuzzer harness: the WebSocket frame parser (http/websocket.c).
 *
 * The first byte picks a chunk size; the rest is the client's byte stream, parsed once
 * in one piece and once in chunks of that size, with small caps so the size limits are
 * reached. The two runs must produce the same events (the parser may not depend on how
 * the network cut the stream), every text message and close reason must be valid UTF-8,
 * and control payloads at most 125 bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/websocket.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_EVENTS = 64 };

struct run {
	int n;
	enum ws_event_type type[MAX_EVENTS];
	uint16_t code[MAX_EVENTS];
	size_t len[MAX_EVENTS];
	uint64_t sum[MAX_EVENTS];
};

static void check_event(const struct ws_event *ev)
{
	if (ev->type == WS_EV_TEXT && !utf8_valid(ev->data, ev->len))
		__builtin_trap();
	if (ev->type == WS_EV_CLOSE && !utf8_valid(ev->data, ev->len))
		__builtin_trap();
	if ((ev->type == WS_EV_PING || ev->type == WS_EV_PONG || ev->type == WS_EV_CLOSE) &&
	    ev->len > WS_MAX_CONTROL_BYTES)
		__builtin_trap();
	if (ev->type == WS_EV_ERROR && ev->code != WS_CLOSE_PROTOCOL &&
	    ev->code != WS_CLOSE_INVALID_DATA && ev->code != WS_CLOSE_TOO_BIG &&
	    ev->code != WS_CLOSE_INTERNAL)
		__builtin_trap();
	if ((ev->type == WS_EV_TEXT || ev->type == WS_EV_BINARY) && ev->len > 4096)
		__builtin_trap();
}

static void parse(const uint8_t *in, size_t n, size_t chunk, struct run *r)
{
	struct ws_parser p;
	ws_parser_init(&p, 1024, 4096);
	memset(r, 0, sizeof *r);
	for (size_t at = 0; at < n;) {
		size_t len = n - at < chunk ? n - at : chunk;
		size_t off = 0;
		while (off < len) {
			struct ws_event ev;
			size_t used = ws_parser_feed(&p, in + at + off, len - off, &ev);
			if (used > len - off || (used == 0 && ev.type == WS_EV_NONE))
				__builtin_trap(); /* must always make progress */
			off += used;
			if (ev.type == WS_EV_NONE)
				continue;
			check_event(&ev);
			if (r->n < MAX_EVENTS) {
				uint64_t sum = 0;
				for (size_t i = 0; i < ev.len; i++)
					sum = sum * 31 + ev.data[i];
				r->type[r->n] = ev.type;
				r->code[r->n] = ev.code;
				r->len[r->n] = ev.len;
				r->sum[r->n] = sum;
			}
			r->n++;
		}
		at += len;
	}
	ws_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t chunk = (size_t)(data[0] % 17) + 1;
	static struct run whole, cut;
	parse(data + 1, size - 1, size, &whole);
	parse(data + 1, size - 1, chunk, &cut);
	if (whole.n != cut.n)
		__builtin_trap();
	for (int i = 0; i < whole.n && i < MAX_EVENTS; i++)
		if (whole.type[i] != cut.type[i] || whole.code[i] != cut.code[i] ||
		    whole.len[i] != cut.len[i] || whole.sum[i] != cut.sum[i])
			__builtin_trap();
	return 0;
}
