/* Unit tests for src/http/websocket.c (handshake key, frame parser, frame builders) and
 * src/http/ws_conn.c (a connection's thread, driven over a socketpair: echo, ping/pong,
 * close handshake, protocol errors, idle timeout, queue overflow, shutdown). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/websocket.h"
#include "http/ws_conn.h"
#include "util/err.h"

/* ---- helpers ---- */

/* A client frame (masked unless told otherwise) into out; returns its length. */
static size_t client_frame(uint8_t *out, int opcode, bool fin, const void *payload, size_t n,
                           bool masked, unsigned rsv)
{
	static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
	size_t at = 0;
	out[at++] = (uint8_t)((fin ? 0x80u : 0u) | (rsv << 4) | (unsigned)opcode);
	uint8_t m = masked ? 0x80 : 0;
	if (n < 126) {
		out[at++] = (uint8_t)(m | n);
	} else if (n <= 0xFFFF) {
		out[at++] = (uint8_t)(m | 126);
		out[at++] = (uint8_t)(n >> 8);
		out[at++] = (uint8_t)n;
	} else {
		out[at++] = (uint8_t)(m | 127);
		for (int i = 0; i < 8; i++)
			out[at++] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
	}
	if (masked) {
		memcpy(out + at, key, 4);
		at += 4;
	}
	const uint8_t *p = payload;
	for (size_t i = 0; i < n; i++)
		out[at + i] = masked ? (uint8_t)(p[i] ^ key[i % 4]) : p[i];
	return at + n;
}

struct seen {
	int n;
	enum ws_event_type type[16];
	uint16_t code[16];
	size_t len[16];
	char data[16][256];
};

/* Feeds in[0..n) in chunks of `chunk` bytes, collecting every event. */
static void feed_all(struct ws_parser *p, const uint8_t *in, size_t n, size_t chunk, struct seen *s)
{
	memset(s, 0, sizeof *s);
	for (size_t at = 0; at < n;) {
		size_t len = n - at < chunk ? n - at : chunk;
		size_t off = 0;
		while (off < len) {
			struct ws_event ev;
			off += ws_parser_feed(p, in + at + off, len - off, &ev);
			if (ev.type == WS_EV_NONE)
				continue;
			assert_true(s->n < 16);
			s->type[s->n] = ev.type;
			s->code[s->n] = ev.code;
			s->len[s->n] = ev.len;
			if (ev.data && ev.len < sizeof s->data[0])
				memcpy(s->data[s->n], ev.data, ev.len);
			s->n++;
		}
		at += len;
	}
}

/* Parses in with a fresh parser at every chunk size; each run must see the same single
 * event. */
static void expect_one_event_any_chunking(const uint8_t *in, size_t n, enum ws_event_type type,
                                          uint16_t code, const char *data)
{
	for (size_t chunk = 1; chunk <= n; chunk++) {
		struct ws_parser p;
		ws_parser_init(&p, 0, 0);
		struct seen s;
		feed_all(&p, in, n, chunk, &s);
		assert_int_equal(s.n, 1);
		assert_int_equal(s.type[0], type);
		assert_int_equal(s.code[0], code);
		if (data) {
			assert_int_equal(s.len[0], strlen(data));
			assert_memory_equal(s.data[0], data, strlen(data));
		}
		ws_parser_free(&p);
	}
}

static void expect_error(const uint8_t *in, size_t n, uint16_t code)
{
	expect_one_event_any_chunking(in, n, WS_EV_ERROR, code, NULL);
}

/* ---- handshake ---- */

static void accept_key_rfc_example(void **state)
{
	(void)state;
	char out[WS_ACCEPT_LEN];
	assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
	assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	assert_int_equal(ws_accept_key("  dGhlIHNhbXBsZSBub25jZQ== ", out), 0);
	assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	assert_int_equal(ws_accept_key(NULL, out), SFA_EINVAL);
	assert_int_equal(ws_accept_key("", out), SFA_EINVAL);
	assert_int_equal(ws_accept_key("dG9vc2hvcnQ=", out), SFA_EINVAL);             /* 8 bytes */
	assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ!!", out), SFA_EINVAL); /* not b64 */
	assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZXMh", out), SFA_EINVAL); /* 18 bytes */
}

/* ---- parser ---- */

static void masked_text_any_chunking(void **state)
{
	(void)state;
	/* RFC 6455 section 5.7: a masked "Hello". */
	static const uint8_t hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
	                                0x7f, 0x9f, 0x4d, 0x51, 0x58};
	expect_one_event_any_chunking(hello, sizeof hello, WS_EV_TEXT, 0, "Hello");
	uint8_t f[64];
	size_t n = client_frame(f, WS_OP_BINARY, true, "\x00\xff\x80", 3, true, 0);
	expect_one_event_any_chunking(f, n, WS_EV_BINARY, 0, NULL);
	n = client_frame(f, WS_OP_TEXT, true, "", 0, true, 0);
	expect_one_event_any_chunking(f, n, WS_EV_TEXT, 0, "");
	n = client_frame(f, WS_OP_PING, true, "", 0, true, 0);
	expect_one_event_any_chunking(f, n, WS_EV_PING, 0, "");
	n = client_frame(f, WS_OP_PONG, true, "abc", 3, true, 0);
	expect_one_event_any_chunking(f, n, WS_EV_PONG, 0, "abc");
}

static void extended_lengths(void **state)
{
	(void)state;
	size_t sizes[] = {125, 126, 300, 65535, 65536, 70000};
	for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
		size_t n = sizes[k];
		uint8_t *payload = malloc(n), *f = malloc(n + 14);
		for (size_t i = 0; i < n; i++)
			payload[i] = (uint8_t)('a' + i % 26);
		size_t fn = client_frame(f, WS_OP_TEXT, true, payload, n, true, 0);
		size_t chunks[] = {1, 7, 4096, fn};
		for (size_t c = 0; c < 4; c++) {
			struct ws_parser p;
			ws_parser_init(&p, 0, 0);
			size_t off = 0, events = 0;
			struct ws_event ev = {0}, got = {0};
			while (off < fn) {
				size_t len = fn - off < chunks[c] ? fn - off : chunks[c];
				size_t used = 0;
				while (used < len) {
					used += ws_parser_feed(&p, f + off + used, len - used, &ev);
					if (ev.type != WS_EV_NONE) {
						events++;
						got = ev;
						assert_int_equal(ev.type, WS_EV_TEXT);
						assert_int_equal(ev.len, n);
						assert_memory_equal(ev.data, payload, n);
					}
				}
				off += len;
			}
			assert_int_equal(events, 1);
			assert_int_equal(got.len, n);
			ws_parser_free(&p);
		}
		free(payload);
		free(f);
	}
}

static void fragments_with_control_frames_between(void **state)
{
	(void)state;
	uint8_t buf[256];
	size_t n = 0;
	n += client_frame(buf + n, WS_OP_TEXT, false, "Hel", 3, true, 0);
	n += client_frame(buf + n, WS_OP_PING, true, "p1", 2, true, 0);
	n += client_frame(buf + n, WS_OP_CONT, false, "", 0, true, 0);
	n += client_frame(buf + n, WS_OP_PONG, true, "", 0, true, 0);
	n += client_frame(buf + n, WS_OP_CONT, true, "lo", 2, true, 0);
	n += client_frame(buf + n, WS_OP_BINARY, false, "\x01", 1, true, 0);
	n += client_frame(buf + n, WS_OP_CONT, true, "\x02", 1, true, 0);
	n += client_frame(buf + n, WS_OP_CLOSE, true,
	                  "\x03\xe8"
	                  "bye",
	                  5, true, 0);
	for (size_t chunk = 1; chunk <= n; chunk++) {
		struct ws_parser p;
		ws_parser_init(&p, 0, 0);
		struct seen s;
		feed_all(&p, buf, n, chunk, &s);
		assert_int_equal(s.n, 5);
		assert_int_equal(s.type[0], WS_EV_PING);
		assert_memory_equal(s.data[0], "p1", 2);
		assert_int_equal(s.type[1], WS_EV_PONG);
		assert_int_equal(s.type[2], WS_EV_TEXT);
		assert_int_equal(s.len[2], 5);
		assert_memory_equal(s.data[2], "Hello", 5);
		assert_int_equal(s.type[3], WS_EV_BINARY);
		assert_memory_equal(s.data[3], "\x01\x02", 2);
		assert_int_equal(s.type[4], WS_EV_CLOSE);
		assert_int_equal(s.code[4], 1000);
		assert_int_equal(s.len[4], 3);
		assert_memory_equal(s.data[4], "bye", 3);
		ws_parser_free(&p);
	}
}

static void utf8_split_across_fragments(void **state)
{
	(void)state;
	/* "é€😀" with every multi-byte sequence cut between frames. */
	const char *text = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
	size_t tn = strlen(text);
	for (size_t cut = 1; cut < tn; cut++) {
		uint8_t buf[64];
		size_t n = client_frame(buf, WS_OP_TEXT, false, text, cut, true, 0);
		n += client_frame(buf + n, WS_OP_CONT, true, text + cut, tn - cut, true, 0);
		expect_one_event_any_chunking(buf, n, WS_EV_TEXT, 0, text);
	}
}

static void protocol_errors_close_1002(void **state)
{
	(void)state;
	uint8_t f[256];
	size_t n;
	n = client_frame(f, WS_OP_TEXT, true, "hi", 2, false, 0);
	expect_error(f, n, WS_CLOSE_PROTOCOL); /* unmasked */
	for (unsigned rsv = 1; rsv < 8; rsv++) {
		n = client_frame(f, WS_OP_TEXT, true, "hi", 2, true, rsv);
		expect_error(f, n, WS_CLOSE_PROTOCOL);
	}
	int bad_ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
	for (size_t i = 0; i < sizeof bad_ops / sizeof bad_ops[0]; i++) {
		n = client_frame(f, bad_ops[i], true, "", 0, true, 0);
		expect_error(f, n, WS_CLOSE_PROTOCOL);
	}
	n = client_frame(f, WS_OP_PING, false, "", 0, true, 0);
	expect_error(f, n, WS_CLOSE_PROTOCOL); /* fragmented control frame */
	uint8_t big[200];
	memset(big, 'x', sizeof big);
	n = client_frame(f, WS_OP_PING, true, big, 126, true, 0);
	expect_error(f, n, WS_CLOSE_PROTOCOL); /* control frame > 125 */
	n = client_frame(f, WS_OP_CONT, true, "x", 1, true, 0);
	expect_error(f, n, WS_CLOSE_PROTOCOL); /* nothing to continue */
	n = client_frame(f, WS_OP_TEXT, false, "a", 1, true, 0);
	n += client_frame(f + n, WS_OP_TEXT, true, "b", 1, true, 0);
	expect_error(f, n, WS_CLOSE_PROTOCOL); /* new message inside a fragmented one */
	n = client_frame(f, WS_OP_CLOSE, true, "\x03", 1, true, 0);
	expect_error(f, n, WS_CLOSE_PROTOCOL); /* 1-byte close payload */
	/* A 64-bit length with the top bit set. */
	static const uint8_t huge[] = {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4};
	expect_error(huge, sizeof huge, WS_CLOSE_PROTOCOL);
}

static void close_codes(void **state)
{
	(void)state;
	uint8_t f[64];
	size_t n = client_frame(f, WS_OP_CLOSE, true, "", 0, true, 0);
	expect_one_event_any_chunking(f, n, WS_EV_CLOSE, WS_CLOSE_NO_STATUS, "");
	unsigned ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4000, 4999};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		uint8_t pl[2] = {(uint8_t)(ok[i] >> 8), (uint8_t)ok[i]};
		n = client_frame(f, WS_OP_CLOSE, true, pl, 2, true, 0);
		expect_one_event_any_chunking(f, n, WS_EV_CLOSE, (uint16_t)ok[i], "");
		assert_true(ws_close_code_valid(ok[i]));
	}
	unsigned bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		uint8_t pl[2] = {(uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
		n = client_frame(f, WS_OP_CLOSE, true, pl, 2, true, 0);
		expect_error(f, n, WS_CLOSE_PROTOCOL);
		assert_false(ws_close_code_valid(bad[i]));
	}
	n = client_frame(f, WS_OP_CLOSE, true, "\x03\xe8\xff", 3, true, 0);
	expect_error(f, n, WS_CLOSE_INVALID_DATA); /* reason not UTF-8 */
}

static void invalid_utf8_closes_1007(void **state)
{
	(void)state;
	const char *bad[] = {
		"\xff",
		"\xc0\x80", /* overlong NUL */
		"\xe0\x80\xaf",
		/* overlong '/' */ "\xed\xa0\x80", /* surrogate */
		"\xf4\x90\x80\x80",
		/* > U+10FFFF */ "\xf8\x88\x80\x80\x80",
		"a\x80",
		"\xc3\x28",
	};
	uint8_t f[64];
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		size_t n = client_frame(f, WS_OP_TEXT, true, bad[i], strlen(bad[i]), true, 0);
		expect_error(f, n, WS_CLOSE_INVALID_DATA);
		assert_false(utf8_valid((const uint8_t *)bad[i], strlen(bad[i])));
	}
	/* A message that ends inside a sequence. */
	size_t n = client_frame(f, WS_OP_TEXT, true, "ok\xe2\x82", 4, true, 0);
	expect_error(f, n, WS_CLOSE_INVALID_DATA);
	/* Fail fast: the error comes on the bad byte, before the frame is complete. */
	struct ws_parser p;
	ws_parser_init(&p, 0, 0);
	n = client_frame(f, WS_OP_TEXT, true,
	                 "ab\xff"
	                 "cdefgh",
	                 9, true, 0);
	struct ws_event ev;
	size_t used = ws_parser_feed(&p, f, n, &ev);
	assert_int_equal(ev.type, WS_EV_ERROR);
	assert_int_equal(ev.code, WS_CLOSE_INVALID_DATA);
	assert_int_equal(used, 6 + 3);
	/* A dead parser swallows everything. */
	assert_int_equal(ws_parser_feed(&p, f, n, &ev), n);
	assert_int_equal(ev.type, WS_EV_NONE);
	ws_parser_free(&p);
	/* Binary messages are not UTF-8 checked. */
	n = client_frame(f, WS_OP_BINARY, true, "\xff\xfe", 2, true, 0);
	expect_one_event_any_chunking(f, n, WS_EV_BINARY, 0, NULL);
	assert_true(utf8_valid((const uint8_t *)"\xf4\x8f\xbf\xbf", 4)); /* U+10FFFF */
	assert_true(utf8_valid((const uint8_t *)"", 0));
}

static void size_caps_close_1009(void **state)
{
	(void)state;
	uint8_t f[64];
	/* Refused from the header alone: no payload needs to follow. */
	static const uint8_t two_mib[] = {0x81, 0xFF, 0, 0, 0, 0, 0, 0x20, 0, 0, 1, 2, 3, 4};
	expect_error(two_mib, sizeof two_mib, WS_CLOSE_TOO_BIG);
	/* Small caps: frame cap 8, message cap 12. */
	struct ws_parser p;
	struct seen s;
	size_t n = client_frame(f, WS_OP_TEXT, true, "123456789", 9, true, 0);
	ws_parser_init(&p, 8, 12);
	feed_all(&p, f, n, 3, &s);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.type[0], WS_EV_ERROR);
	assert_int_equal(s.code[0], WS_CLOSE_TOO_BIG);
	ws_parser_free(&p);
	n = client_frame(f, WS_OP_TEXT, false, "12345678", 8, true, 0);
	n += client_frame(f + n, WS_OP_CONT, true, "12345", 5, true, 0);
	ws_parser_init(&p, 8, 12);
	feed_all(&p, f, n, 1, &s);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.type[0], WS_EV_ERROR);
	assert_int_equal(s.code[0], WS_CLOSE_TOO_BIG);
	ws_parser_free(&p);
	/* Exactly at the caps is fine, and the buffer is reused for the next message. */
	n = client_frame(f, WS_OP_TEXT, false, "12345678", 8, true, 0);
	n += client_frame(f + n, WS_OP_CONT, true, "1234", 4, true, 0);
	n += client_frame(f + n, WS_OP_TEXT, true, "xy", 2, true, 0);
	ws_parser_init(&p, 8, 12);
	feed_all(&p, f, n, 5, &s);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.len[0], 12);
	assert_memory_equal(s.data[0], "123456781234", 12);
	assert_int_equal(s.len[1], 2);
	assert_memory_equal(s.data[1], "xy", 2);
	ws_parser_free(&p);
	/* Control frames do not count against the message cap. */
	n = client_frame(f, WS_OP_PING, true, "1234567890", 10, true, 0);
	ws_parser_init(&p, 8, 8);
	feed_all(&p, f, n, 64, &s);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.type[0], WS_EV_PING);
	ws_parser_free(&p);
}

/* ---- builders ---- */

static void frame_builders(void **state)
{
	(void)state;
	uint8_t h[WS_MAX_HEADER_BYTES];
	assert_int_equal(ws_frame_header(h, WS_OP_TEXT, true, 0), 2);
	assert_int_equal(h[0], 0x81);
	assert_int_equal(h[1], 0);
	assert_int_equal(ws_frame_header(h, WS_OP_BINARY, false, 125), 2);
	assert_int_equal(h[0], 0x02);
	assert_int_equal(h[1], 125);
	assert_int_equal(ws_frame_header(h, WS_OP_TEXT, true, 126), 4);
	assert_int_equal(h[1], 126);
	assert_int_equal(h[2], 0);
	assert_int_equal(h[3], 126);
	assert_int_equal(ws_frame_header(h, WS_OP_TEXT, true, 65535), 4);
	assert_int_equal(ws_frame_header(h, WS_OP_TEXT, true, 65536), 10);
	assert_int_equal(h[1], 127);
	assert_int_equal(h[7], 1);
	assert_int_equal(h[8], 0);

	struct buf b;
	buf_init(&b, 10);
	assert_int_equal(ws_frame_append(&b, WS_OP_TEXT, "hello", 5), 0);
	assert_int_equal(b.len, 7);
	assert_memory_equal(b.data, "\x81\x05hello", 7);
	assert_int_equal(ws_frame_append(&b, WS_OP_TEXT, "abc", 3), SFA_ETOOBIG);
	assert_int_equal(b.len, 7); /* unchanged */
	assert_int_equal(ws_frame_append(&b, WS_OP_PING, "", 0), 0);
	assert_int_equal(b.len, 9);
	buf_free(&b);

	uint8_t pl[WS_MAX_CONTROL_BYTES];
	assert_int_equal(ws_close_payload(pl, 1001, "bye"), 5);
	assert_memory_equal(pl,
	                    "\x03\xe9"
	                    "bye",
	                    5);
	assert_int_equal(ws_close_payload(pl, 1000, NULL), 2);
	/* A long reason is cut at a character boundary: 61 two-byte characters = 122 bytes
	 * fit, the 62nd would end at byte 124 of 123. */
	char reason[200];
	for (int i = 0; i < 70; i++)
		memcpy(reason + 2 * i, "\xc3\xa9", 2);
	reason[140] = '\0';
	size_t n = ws_close_payload(pl, 1000, reason);
	assert_int_equal(n, 2 + 122);
	assert_true(utf8_valid(pl + 2, n - 2));
}

/* ---- the connection thread, over a socketpair ---- */

static atomic_int g_closed;

static void echo_message(void *arg, struct ws_conn *c, bool is_text, const uint8_t *data, size_t n)
{
	(void)arg;
	if (n == 5 && memcmp(data, "flood", 5) == 0) {
		char chunk[1024];
		memset(chunk, 'f', sizeof chunk);
		int overflowed = 0;
		for (int i = 0; i < 64; i++)
			overflowed |= ws_conn_send_text(c, chunk, sizeof chunk) == SFA_ETOOBIG;
		assert_true(overflowed);
		return;
	}
	if (n == 4 && memcmp(data, "quit", 4) == 0) {
		ws_conn_close(c, 4000, "asked to");
		return;
	}
	if (is_text)
		ws_conn_send_text(c, (const char *)data, n);
	else
		ws_conn_close(c, WS_CLOSE_UNSUPPORTED, "text only");
}

static void count_close(void *arg)
{
	(void)arg;
	atomic_fetch_add(&g_closed, 1);
}

static const struct ws_handler echo_handler = {echo_message, count_close};

static void release_fd(void *arg, int fd)
{
	(void)arg;
	close(fd);
}

/* Starts a connection on one end of a socketpair; returns the client's end (and the
 * connection, valid until it ends, in *out when not NULL). */
static int start_pair(const void *extra, size_t n_extra, struct ws_conn **out)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct ws_conn *c = ws_conn_new(&echo_handler, NULL);
	assert_non_null(c);
	if (out)
		*out = c;
	assert_int_equal(ws_conn_start_fd(c, sv[0], extra, n_extra, release_fd, NULL), 0);
	return sv[1];
}

static bool read_exact(int fd, uint8_t *p, size_t n)
{
	size_t got = 0;
	while (got < n) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, 5000) != 1)
			return false;
		ssize_t k = read(fd, p + got, n - got);
		if (k <= 0)
			return false;
		got += (size_t)k;
	}
	return true;
}

/* Reads one server frame (never masked); payload into out (cap n_out). Returns the
 * opcode, -1 on EOF or time-out. */
static int read_frame(int fd, uint8_t *out, size_t n_out, size_t *n)
{
	uint8_t h[10];
	if (!read_exact(fd, h, 2))
		return -1;
	assert_int_equal(h[1] & 0x80, 0);
	uint64_t len = h[1] & 0x7F;
	if (len == 126) {
		if (!read_exact(fd, h + 2, 2))
			return -1;
		len = ((uint64_t)h[2] << 8) | h[3];
	} else if (len == 127) {
		if (!read_exact(fd, h + 2, 8))
			return -1;
		len = 0;
		for (int i = 0; i < 8; i++)
			len = (len << 8) | h[2 + i];
	}
	assert_true(len <= n_out);
	if (!read_exact(fd, out, (size_t)len))
		return -1;
	*n = (size_t)len;
	return h[0] & 0x0F;
}

static void send_frame(int fd, int op, const void *p, size_t n, bool masked)
{
	uint8_t f[4096];
	size_t fn = client_frame(f, op, true, p, n, masked, 0);
	assert_int_equal(write(fd, f, fn), (ssize_t)fn);
}

static bool at_eof(int fd)
{
	uint8_t b[256];
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, 5000) != 1)
			return false;
		ssize_t k = read(fd, b, sizeof b);
		if (k == 0)
			return true;
		if (k < 0)
			return false;
	}
}

static void wait_idle(int closed_before, int n_expected)
{
	for (int i = 0; i < 5000 && (atomic_load(&g_closed) < closed_before + n_expected ||
	                             ws_conn_count() != 0);
	     i++) {
		struct timespec ts = {0, 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	assert_int_equal(atomic_load(&g_closed), closed_before + n_expected);
	assert_int_equal(ws_conn_count(), 0);
}

static int setup_limits(void **state)
{
	(void)state;
	ws_conn_set_limits(60000, 200, 4096);
	return 0;
}

static void conn_echo_ping_close(void **state)
{
	(void)state;
	int before = atomic_load(&g_closed);
	uint8_t ping[64];
	size_t pn = client_frame(ping, WS_OP_PING, true, "early", 5, true, 0);
	int fd = start_pair(ping, pn, NULL); /* bytes read before the thread started */
	uint8_t buf[4096];
	size_t n;
	assert_int_equal(read_frame(fd, buf, sizeof buf, &n), WS_OP_PONG);
	assert_int_equal(n, 5);
	assert_memory_equal(buf, "early", 5);
	send_frame(fd, WS_OP_TEXT, "hello", 5, true);
	assert_int_equal(read_frame(fd, buf, sizeof buf, &n), WS_OP_TEXT);
	assert_memory_equal(buf, "hello", 5);
	send_frame(fd, WS_OP_PING, "abc", 3, true);
	assert_int_equal(read_frame(fd, buf, sizeof buf, &n), WS_OP_PONG);
	assert_memory_equal(buf, "abc", 3);
	send_frame(fd, WS_OP_CLOSE,
	           "\x0f\xa0"
	           "done",
	           6, true); /* 4000 */
	assert_int_equal(read_frame(fd, buf, sizeof buf, &n), WS_OP_CLOSE);
	assert_int_equal(n, 2);
	assert_memory_equal(buf, "\x0f\xa0", 2); /* the code is echoed */
	assert_true(at_eof(fd));
	close(fd);
	wait_idle(before, 1);
}

static void conn_protocol_error_then_close_wait(void **state)
{
	(void)state;
	int before = atomic_load(&g_closed);
	int fd = start_pair(NULL, 0, NULL);
	send_frame(fd, WS_OP_TEXT, "hello", 5, false); /* unmasked */
	uint8_t buf[256];
	size_t n;
	assert_int_equal(read_frame(fd, buf, sizeof buf, &n), WS_OP_CLOSE);
	assert_int_equal((buf[0] << 8) | buf[1], WS_CLOSE_PROTOCOL);
	/* We never answer the close: the server drops us after its close wait. */
	assert_true(at_eof(fd));
	close(fd);
	wait_idle(before, 1);
}

static void conn_handler_close_and_binary(void **state)
{
	(void)state;
	int before = atomic_load(&g_closed);
	int fd = start_pair(NULL, 0, NULL);
	send_frame(fd, WS_OP_TEXT, "one", 3, true);
	send_frame(fd, WS_OP_TEXT, "quit", 4, true);
	send_frame(fd, WS_OP_TEXT, "ignored", 7, true);
	uint8_t buf[256];
	size_t n;
	assert_int_equal(read_frame(fd, buf, sizeof buf, &n), WS_OP_TEXT);
	assert_memory_equal(buf, "one", 3);
	assert_int_equal(read_frame(fd, buf, sizeof buf, &n), WS_OP_CLOSE);
	assert_int_equal((buf[0] << 8) | buf[1], 4000);
	assert_memory_equal(buf + 2, "asked to", 8);
	send_frame(fd, WS_OP_CLOSE, "\x0f\xa0", 2, true);
	assert_true(at_eof(fd));
	close(fd);
	wait_idle(before, 1);

	fd = start_pair(NULL, 0, NULL);
	send_frame(fd, WS_OP_BINARY, "\x01", 1, true);
	assert_int_equal(read_frame(fd, buf, sizeof buf, &n), WS_OP_CLOSE);
	assert_int_equal((buf[0] << 8) | buf[1], WS_CLOSE_UNSUPPORTED);
	close(fd); /* the peer vanishes instead of answering */
	wait_idle(before, 2);
}

static void conn_queue_overflow_closes_1008(void **state)
{
	(void)state;
	int before = atomic_load(&g_closed);
	int fd = start_pair(NULL, 0, NULL);
	send_frame(fd, WS_OP_TEXT, "flood", 5, true);
	uint8_t buf[4096];
	size_t n;
	int op, texts = 0;
	while ((op = read_frame(fd, buf, sizeof buf, &n)) == WS_OP_TEXT)
		texts++;
	assert_int_equal(op, WS_OP_CLOSE);
	assert_int_equal((buf[0] << 8) | buf[1], WS_CLOSE_POLICY);
	assert_true(texts < 64); /* the overflowing queue was dropped, not sent */
	send_frame(fd, WS_OP_CLOSE, "\x03\xf0", 2, true);
	assert_true(at_eof(fd));
	close(fd);
	wait_idle(before, 1);
}

static void conn_idle_timeout(void **state)
{
	(void)state;
	int before = atomic_load(&g_closed);
	ws_conn_set_limits(100, 0, 0);
	int fd = start_pair(NULL, 0, NULL);
	uint8_t buf[256];
	size_t n;
	assert_int_equal(read_frame(fd, buf, sizeof buf, &n), WS_OP_CLOSE);
	assert_int_equal((buf[0] << 8) | buf[1], WS_CLOSE_NORMAL);
	assert_memory_equal(buf + 2, "idle timeout", 12);
	ws_conn_set_limits(60000, 0, 0);
	send_frame(fd, WS_OP_CLOSE, "\x03\xe8", 2, true);
	assert_true(at_eof(fd));
	close(fd);
	wait_idle(before, 1);
}

struct sender {
	struct ws_conn *c;
	int rc;
};

static void *send_from_thread(void *arg)
{
	struct sender *s = arg;
	s->rc = ws_conn_send_text(s->c, "from another thread", 19);
	return NULL;
}

static void conn_shutdown_all(void **state)
{
	(void)state;
	int before = atomic_load(&g_closed);
	int fds[3];
	struct ws_conn *conns[3];
	for (int i = 0; i < 3; i++)
		fds[i] = start_pair(NULL, 0, &conns[i]);
	/* Make sure all three threads run before shutting down. */
	uint8_t buf[256];
	size_t n;
	for (int i = 0; i < 3; i++) {
		send_frame(fds[i], WS_OP_TEXT, "up", 2, true);
		assert_int_equal(read_frame(fds[i], buf, sizeof buf, &n), WS_OP_TEXT);
	}
	assert_int_equal(ws_conn_count(), 3);
	/* A message queued from another thread (as the job bus does) arrives. */
	struct sender snd = {conns[1], -1};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, send_from_thread, &snd), 0);
	pthread_join(t, NULL);
	assert_int_equal(snd.rc, 0);
	assert_int_equal(read_frame(fds[1], buf, sizeof buf, &n), WS_OP_TEXT);
	assert_int_equal(n, 19);
	assert_memory_equal(buf, "from another thread", 19);
	/* No client answers the close: each ends after the close wait, and shutdown_all
	 * returns once all have. */
	assert_int_equal(ws_conn_shutdown_all(5000), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(read_frame(fds[i], buf, sizeof buf, &n), WS_OP_CLOSE);
		assert_int_equal((buf[0] << 8) | buf[1], WS_CLOSE_GOING_AWAY);
		assert_true(at_eof(fds[i]));
		close(fds[i]);
	}
	wait_idle(before, 3);
	/* While stopping, new connections are refused (and still released). */
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct ws_conn *c = ws_conn_new(&echo_handler, NULL);
	assert_int_not_equal(ws_conn_start_fd(c, sv[0], NULL, 0, release_fd, NULL), 0);
	assert_true(at_eof(sv[1]));
	close(sv[1]);
	assert_int_equal(atomic_load(&g_closed), before + 4);
	ws_conn_reset_for_tests();
}

static void conn_discard_unstarted(void **state)
{
	(void)state;
	/* A connection that never started (the client left before the 101): sending queues,
	 * discarding calls on_close once and frees everything. */
	int before = atomic_load(&g_closed);
	struct ws_conn *c = ws_conn_new(&echo_handler, NULL);
	assert_int_equal(ws_conn_send_text(c, "x", 1), 0);
	ws_conn_close(c, 1000, "bye");
	assert_int_equal(ws_conn_send_text(c, "y", 1), 0); /* closing is decided by the thread */
	ws_conn_discard(c);
	assert_int_equal(atomic_load(&g_closed), before + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(accept_key_rfc_example),
		cmocka_unit_test(masked_text_any_chunking),
		cmocka_unit_test(extended_lengths),
		cmocka_unit_test(fragments_with_control_frames_between),
		cmocka_unit_test(utf8_split_across_fragments),
		cmocka_unit_test(protocol_errors_close_1002),
		cmocka_unit_test(close_codes),
		cmocka_unit_test(invalid_utf8_closes_1007),
		cmocka_unit_test(size_caps_close_1009),
		cmocka_unit_test(frame_builders),
		cmocka_unit_test_setup(conn_echo_ping_close, setup_limits),
		cmocka_unit_test_setup(conn_protocol_error_then_close_wait, setup_limits),
		cmocka_unit_test_setup(conn_handler_close_and_binary, setup_limits),
		cmocka_unit_test_setup(conn_queue_overflow_closes_1008, setup_limits),
		cmocka_unit_test_setup(conn_idle_timeout, setup_limits),
		cmocka_unit_test_setup(conn_shutdown_all, setup_limits),
		cmocka_unit_test_setup(conn_discard_unstarted, setup_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
