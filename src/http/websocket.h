/* websocket.h - RFC 6455 framing for the server side, independent of any socket.
 *
 * Three pieces: the handshake key (Sec-WebSocket-Accept), an incremental parser for the
 * frames a client sends, and builders for the frames the server sends.
 *
 * The parser accepts its input in chunks of any size (one byte at a time works) and
 * reports one event per completed message or control frame. It enforces the protocol:
 * client frames must be masked, RSV bits must be 0, opcodes are text/binary/continuation/
 * close/ping/pong, control frames are at most 125 bytes and never fragmented, a
 * continuation needs an open message and a new message needs none, text messages and
 * close reasons are valid UTF-8 (checked as bytes arrive, so a bad byte fails at once),
 * and close codes are ones a peer may send. Violations become a WS_EV_ERROR event that
 * carries the close code to answer with: 1002 protocol error, 1007 invalid UTF-8, 1009
 * past a size cap (a frame above max_frame_bytes, a message above max_message_bytes:
 * checked from the header, before any payload is buffered). After an error the parser
 * swallows everything. Memory: one message buffer, at most max_message_bytes.
 *
 * Threading: a parser belongs to one thread (the connection's).
 */
#ifndef SFA_HTTP_WEBSOCKET_H
#define SFA_HTTP_WEBSOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/str.h"
#include "util/utf8.h"

enum {
	WS_MAX_FRAME_BYTES = 1 << 20,   /* default cap of one client frame's payload */
	WS_MAX_MESSAGE_BYTES = 1 << 20, /* default cap of a reassembled message */
	WS_MAX_CONTROL_BYTES = 125,
	WS_MAX_HEADER_BYTES = 14,
	WS_ACCEPT_LEN = 29, /* 28 base64 characters and the NUL */
};

enum ws_opcode {
	WS_OP_CONT = 0x0,
	WS_OP_TEXT = 0x1,
	WS_OP_BINARY = 0x2,
	WS_OP_CLOSE = 0x8,
	WS_OP_PING = 0x9,
	WS_OP_PONG = 0xA,
};

enum ws_close_code {
	WS_CLOSE_NORMAL = 1000,
	WS_CLOSE_GOING_AWAY = 1001,
	WS_CLOSE_PROTOCOL = 1002,
	WS_CLOSE_UNSUPPORTED = 1003,
	WS_CLOSE_NO_STATUS = 1005, /* never sent: "the close frame had no code" */
	WS_CLOSE_INVALID_DATA = 1007,
	WS_CLOSE_POLICY = 1008,
	WS_CLOSE_TOO_BIG = 1009,
	WS_CLOSE_INTERNAL = 1011,
};

enum ws_event_type {
	WS_EV_NONE,   /* the input was consumed without completing anything */
	WS_EV_TEXT,   /* a whole text message (valid UTF-8) */
	WS_EV_BINARY, /* a whole binary message */
	WS_EV_PING,
	WS_EV_PONG,
	WS_EV_CLOSE, /* code = the peer's code (1005 when it sent none), data = reason */
	WS_EV_ERROR, /* code = the close code to send, why = a short description */
};

struct ws_event {
	enum ws_event_type type;
	const uint8_t *data; /* payload; valid until the next ws_parser_feed call */
	size_t len;
	uint16_t code;
	const char *why; /* static string, WS_EV_ERROR only */
};

struct ws_parser {
	size_t max_frame_bytes;
	size_t max_message_bytes;
	int state;
	/* current frame */
	uint8_t hdr[WS_MAX_HEADER_BYTES];
	size_t hdr_len, hdr_need;
	bool fin;
	uint8_t opcode;
	uint64_t remaining;
	uint8_t mask[4];
	unsigned mask_pos;
	/* message being reassembled (msg_opcode 0: none open) */
	uint8_t msg_opcode;
	uint8_t *msg;
	size_t msg_len, msg_alloc;
	struct utf8_check utf8;
	bool msg_delivered; /* the last event pointed into msg: clear it on the next feed */
	/* control frame payload */
	uint8_t ctl[WS_MAX_CONTROL_BYTES];
	size_t ctl_len;
};

/* Computes Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (surrounding spaces
 * ignored). SFA_EINVAL unless the key is the base64 of exactly 16 bytes. */
int ws_accept_key(const char *client_key, char out[WS_ACCEPT_LEN]);

/* Caps of 0 take the defaults above. No allocation until the first data payload. */
void ws_parser_init(struct ws_parser *p, size_t max_frame_bytes, size_t max_message_bytes);
void ws_parser_free(struct ws_parser *p);
/* Consumes bytes of in[0..n) up to and including the one that completes an event, which
 * is written to *ev (WS_EV_NONE when all n bytes were consumed without one). Returns the
 * number of bytes consumed. Feed the rest again until it is all consumed. */
size_t ws_parser_feed(struct ws_parser *p, const uint8_t *in, size_t n, struct ws_event *ev);

/* Writes the header of an unmasked (server) frame; returns its length (2, 4 or 10). */
size_t ws_frame_header(uint8_t out[WS_MAX_HEADER_BYTES], enum ws_opcode op, bool fin, uint64_t n);
/* Appends one whole unmasked frame to b. SFA_ETOOBIG when b's cap would be passed (b is
 * then unchanged), SFA_ENOMEM. */
int ws_frame_append(struct buf *b, enum ws_opcode op, const void *payload, size_t n);
/* A close frame payload: the code big-endian, then reason cut to fit 125 bytes at a
 * character boundary. Returns its length. */
size_t ws_close_payload(uint8_t out[WS_MAX_CONTROL_BYTES], uint16_t code, const char *reason);
/* Whether a peer may send this close code (1000-1003, 1007-1014, 3000-4999). */
bool ws_close_code_valid(unsigned code);

#endif
