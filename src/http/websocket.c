/* websocket.c - see websocket.h.
 *
 * The parser is a two-state machine: HEADER collects the 2 fixed bytes, then as many
 * more as they announce (extended length, mask key), validating as early as it can;
 * PAYLOAD unmasks bytes straight into the message buffer (data frames) or the 125-byte
 * control buffer, so a control frame arriving between two fragments of a message never
 * disturbs it. Sizes are checked against the caps from the header, so an oversized
 * frame costs nothing before it is refused.
 */
#include "http/websocket.h"

#include <nettle/sha1.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/utf8.h"

enum { ST_HEADER, ST_PAYLOAD, ST_DEAD };

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

int ws_accept_key(const char *client_key, char out[WS_ACCEPT_LEN])
{
	if (!client_key)
		return SFA_EINVAL;
	while (*client_key == ' ' || *client_key == '\t')
		client_key++;
	size_t n = strlen(client_key);
	while (n && (client_key[n - 1] == ' ' || client_key[n - 1] == '\t'))
		n--;
	unsigned char nonce[18];
	size_t n_nonce = 0;
	if (n != 24 ||
	    sodium_base642bin(nonce, sizeof nonce, client_key, n, NULL, &n_nonce, NULL,
	                      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    n_nonce != 16)
		return SFA_EINVAL;
	struct sha1_ctx sha;
	uint8_t digest[SHA1_DIGEST_SIZE];
	sha1_init(&sha);
	sha1_update(&sha, n, (const uint8_t *)client_key);
	sha1_update(&sha, sizeof ws_guid - 1, (const uint8_t *)ws_guid);
	sha1_digest(&sha, sizeof digest, digest);
	sodium_bin2base64(out, WS_ACCEPT_LEN, digest, sizeof digest,
	                  sodium_base64_VARIANT_ORIGINAL);
	return 0;
}

bool ws_close_code_valid(unsigned code)
{
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
	       (code >= 3000 && code <= 4999);
}

void ws_parser_init(struct ws_parser *p, size_t max_frame_bytes, size_t max_message_bytes)
{
	memset(p, 0, sizeof *p);
	p->max_frame_bytes = max_frame_bytes ? max_frame_bytes : WS_MAX_FRAME_BYTES;
	p->max_message_bytes = max_message_bytes ? max_message_bytes : WS_MAX_MESSAGE_BYTES;
	p->state = ST_HEADER;
	p->hdr_need = 2;
}

void ws_parser_free(struct ws_parser *p)
{
	free(p->msg);
	p->msg = NULL;
	p->msg_len = p->msg_alloc = 0;
}

static size_t fail(struct ws_parser *p, struct ws_event *ev, uint16_t code, const char *why,
                   size_t consumed)
{
	p->state = ST_DEAD;
	ev->type = WS_EV_ERROR;
	ev->code = code;
	ev->why = why;
	ev->data = NULL;
	ev->len = 0;
	return consumed;
}

static bool is_control(uint8_t op) { return op >= 0x8; }

/* Validates the two fixed bytes and works out the whole header's length. Returns NULL or
 * the reason for a protocol error. */
static const char *check_fixed_header(struct ws_parser *p)
{
	uint8_t b0 = p->hdr[0], b1 = p->hdr[1];
	uint8_t op = b0 & 0x0F;
	unsigned len7 = b1 & 0x7Fu;
	if (b0 & 0x70)
		return "reserved bits set (no extension was negotiated)";
	if (op != WS_OP_CONT && op != WS_OP_TEXT && op != WS_OP_BINARY && op != WS_OP_CLOSE &&
	    op != WS_OP_PING && op != WS_OP_PONG)
		return "unknown opcode";
	if (!(b1 & 0x80))
		return "client frames must be masked";
	if (is_control(op)) {
		if (!(b0 & 0x80))
			return "fragmented control frame";
		if (len7 > WS_MAX_CONTROL_BYTES)
			return "control frame longer than 125 bytes";
	} else if (op == WS_OP_CONT) {
		if (!p->msg_opcode)
			return "continuation frame without a message to continue";
	} else if (p->msg_opcode) {
		return "new message before the previous one was finished";
	}
	p->fin = (b0 & 0x80) != 0;
	p->opcode = op;
	p->hdr_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
	return NULL;
}

/* The header is complete: decode the length and mask, check the caps. Returns 0, or the
 * close code of the error with *why set. */
static uint16_t finish_header(struct ws_parser *p, const char **why)
{
	unsigned len7 = p->hdr[1] & 0x7Fu;
	uint64_t n = len7;
	size_t at = 2;
	if (len7 == 126) {
		n = ((uint64_t)p->hdr[2] << 8) | p->hdr[3];
		at = 4;
	} else if (len7 == 127) {
		n = 0;
		for (int i = 0; i < 8; i++)
			n = (n << 8) | p->hdr[2 + i];
		at = 10;
		if (n >> 63) {
			*why = "64-bit length with the top bit set";
			return WS_CLOSE_PROTOCOL;
		}
	}
	memcpy(p->mask, p->hdr + at, 4);
	p->mask_pos = 0;
	p->remaining = n;
	if (!is_control(p->opcode)) {
		if (n > p->max_frame_bytes) {
			*why = "frame larger than the limit";
			return WS_CLOSE_TOO_BIG;
		}
		size_t have = p->opcode == WS_OP_CONT ? p->msg_len : 0;
		if (n > p->max_message_bytes - have) {
			*why = "message larger than the limit";
			return WS_CLOSE_TOO_BIG;
		}
		if (p->opcode != WS_OP_CONT) {
			p->msg_opcode = p->opcode;
			p->msg_len = 0;
			memset(&p->utf8, 0, sizeof p->utf8);
		}
		size_t need = p->msg_len + (size_t)n;
		if (need > p->msg_alloc) {
			size_t alloc = p->msg_alloc ? p->msg_alloc : 256;
			while (alloc < need)
				alloc = alloc > p->max_message_bytes / 2 ? p->max_message_bytes
				                                         : alloc * 2;
			uint8_t *m = realloc(p->msg, alloc);
			if (!m) {
				*why = "out of memory";
				return WS_CLOSE_INTERNAL;
			}
			p->msg = m;
			p->msg_alloc = alloc;
		}
	} else {
		p->ctl_len = 0;
	}
	return 0;
}

/* The current frame's payload is complete: emit what it finishes. Returns true when an
 * event was written (false: a non-final fragment). */
static bool finish_frame(struct ws_parser *p, struct ws_event *ev)
{
	ev->why = NULL;
	ev->code = 0;
	switch (p->opcode) {
	case WS_OP_PING:
	case WS_OP_PONG:
		ev->type = p->opcode == WS_OP_PING ? WS_EV_PING : WS_EV_PONG;
		ev->data = p->ctl;
		ev->len = p->ctl_len;
		return true;
	case WS_OP_CLOSE:
		if (p->ctl_len == 1) {
			fail(p, ev, WS_CLOSE_PROTOCOL, "close frame with a 1-byte payload", 0);
			return true;
		}
		ev->type = WS_EV_CLOSE;
		ev->code = WS_CLOSE_NO_STATUS;
		ev->data = p->ctl + (p->ctl_len ? 2 : 0);
		ev->len = p->ctl_len ? p->ctl_len - 2 : 0;
		if (p->ctl_len) {
			unsigned code = ((unsigned)p->ctl[0] << 8) | p->ctl[1];
			if (!ws_close_code_valid(code)) {
				fail(p, ev, WS_CLOSE_PROTOCOL, "invalid close code", 0);
				return true;
			}
			if (!utf8_valid(ev->data, ev->len)) {
				fail(p, ev, WS_CLOSE_INVALID_DATA,
				     "close reason is not valid UTF-8", 0);
				return true;
			}
			ev->code = (uint16_t)code;
		}
		return true;
	default:
		if (!p->fin)
			return false;
		if (p->msg_opcode == WS_OP_TEXT && p->utf8.need) {
			fail(p, ev, WS_CLOSE_INVALID_DATA,
			     "text message ends inside a UTF-8 sequence", 0);
			return true;
		}
		ev->type = p->msg_opcode == WS_OP_TEXT ? WS_EV_TEXT : WS_EV_BINARY;
		ev->data = p->msg ? p->msg : p->ctl; /* never NULL, even for an empty message */
		ev->len = p->msg_len;
		p->msg_opcode = 0;
		p->msg_delivered = true;
		return true;
	}
}

size_t ws_parser_feed(struct ws_parser *p, const uint8_t *in, size_t n, struct ws_event *ev)
{
	ev->type = WS_EV_NONE;
	ev->data = NULL;
	ev->len = 0;
	ev->code = 0;
	ev->why = NULL;
	if (p->state == ST_DEAD)
		return n;
	if (p->msg_delivered) {
		p->msg_len = 0;
		p->msg_delivered = false;
	}
	size_t i = 0;
	for (;;) {
		if (p->state == ST_HEADER) {
			while (i < n && p->hdr_len < p->hdr_need)
				p->hdr[p->hdr_len++] = in[i++];
			if (p->hdr_len < p->hdr_need)
				return i;
			if (p->hdr_need == 2) {
				const char *why = check_fixed_header(p);
				if (why)
					return fail(p, ev, WS_CLOSE_PROTOCOL, why, i);
				continue; /* now collect the rest of the header */
			}
			const char *why = NULL;
			uint16_t code = finish_header(p, &why);
			if (code)
				return fail(p, ev, code, why, i);
			p->hdr_len = 0;
			p->hdr_need = 2;
			p->state = ST_PAYLOAD;
		}
		/* ST_PAYLOAD; an empty payload falls straight through to finish_frame. */
		size_t take = n - i;
		if ((uint64_t)take > p->remaining)
			take = (size_t)p->remaining;
		if (take) {
			bool ctl = is_control(p->opcode);
			uint8_t *dst = ctl ? p->ctl + p->ctl_len : p->msg + p->msg_len;
			bool text = !ctl && p->msg_opcode == WS_OP_TEXT;
			for (size_t k = 0; k < take; k++) {
				uint8_t c = in[i + k] ^ p->mask[p->mask_pos];
				p->mask_pos = (p->mask_pos + 1) & 3u;
				dst[k] = c;
				if (text && !utf8_step(&p->utf8, c))
					return fail(p, ev, WS_CLOSE_INVALID_DATA,
					            "text message is not valid UTF-8", i + k + 1);
			}
			if (ctl)
				p->ctl_len += take;
			else
				p->msg_len += take;
			p->remaining -= take;
			i += take;
		}
		if (p->remaining)
			return i;
		p->state = ST_HEADER;
		if (finish_frame(p, ev) || i == n)
			return i;
	}
}

size_t ws_frame_header(uint8_t out[WS_MAX_HEADER_BYTES], enum ws_opcode op, bool fin, uint64_t n)
{
	out[0] = (uint8_t)((fin ? 0x80u : 0u) | ((unsigned)op & 0x0Fu));
	if (n < 126) {
		out[1] = (uint8_t)n;
		return 2;
	}
	if (n <= 0xFFFF) {
		out[1] = 126;
		out[2] = (uint8_t)(n >> 8);
		out[3] = (uint8_t)n;
		return 4;
	}
	out[1] = 127;
	for (int i = 0; i < 8; i++)
		out[2 + i] = (uint8_t)(n >> (56 - 8 * i));
	return 10;
}

int ws_frame_append(struct buf *b, enum ws_opcode op, const void *payload, size_t n)
{
	uint8_t h[WS_MAX_HEADER_BYTES];
	size_t hn = ws_frame_header(h, op, true, n);
	if (hn + n < n || b->len > b->cap_bytes || hn + n > b->cap_bytes - b->len)
		return SFA_ETOOBIG;
	size_t old_len = b->len;
	int rc = buf_append(b, h, hn);
	if (!rc)
		rc = buf_append(b, payload, n);
	if (rc) {
		b->len = old_len; /* out of memory half-way: leave no partial frame */
		if (b->data)
			b->data[old_len] = '\0';
	}
	return rc;
}

size_t ws_close_payload(uint8_t out[WS_MAX_CONTROL_BYTES], uint16_t code, const char *reason)
{
	out[0] = (uint8_t)(code >> 8);
	out[1] = (uint8_t)code;
	size_t n = reason ? strlen(reason) : 0;
	if (n > WS_MAX_CONTROL_BYTES - 2) {
		n = WS_MAX_CONTROL_BYTES - 2;
		while (n && ((uint8_t)reason[n] & 0xC0) == 0x80)
			n--; /* do not cut a character in two */
	}
	if (n)
		memcpy(out + 2, reason, n);
	return 2 + n;
}
