/* ws_conn.c - see ws_conn.h.
 *
 * Life of a connection: ws_conn_new (NEW) → ws_conn_accept queues the 101 response and
 * leaves a hook in the request (ctx->on_done) → libmicrohttpd sends the response and
 * calls upgrade_cb on its worker thread, with the request's ctx still alive: upgrade_cb
 * clears that hook (the connection now owns itself) and starts the thread. If the client
 * went away before the 101 was sent, upgrade_cb never runs and the request's completion
 * calls the hook, which discards the connection. libmicrohttpd calls the completion of an
 * upgraded request only after we hand the socket back, so the two never race.
 *
 * The thread's loop: poll the socket and an eventfd that other threads write to after
 * queueing a message or asking for a close; move queued frames into the output buffer;
 * feed received bytes to the parser; write what it can. Two buffers: `pending` (guarded
 * by mu, filled by any thread, capped) and `out` (the thread's own, whole frames only,
 * so control frames can be appended between messages and a close frame can follow a
 * partially written message).
 *
 * The registry of running connections lets ws_conn_shutdown_all reach each of them.
 */
#include "http/ws_conn.h"

#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/websocket.h"
#include "util/err.h"
#include "util/log.h"
#include "util/str.h"
#include "util/timeutil.h"

enum phase {
	PH_OPEN,       /* exchanging messages */
	PH_CLOSE_SENT, /* our close frame is queued: read and discard until the peer's */
	PH_END,        /* handshake done (or the peer is gone): write what is left, then end */
};

enum { RX_CHUNK_BYTES = 16 * 1024, THREAD_STACK_BYTES = 1 << 20, OUT_HEADROOM_BYTES = 64 * 1024 };

struct ws_conn {
	const struct ws_handler *h;
	void *arg;
	int fd;
	int efd;
	struct MHD_UpgradeResponseHandle *urh;
	void (*release)(void *release_arg, int fd);
	void *release_arg;
	uint8_t *extra;
	size_t n_extra;

	/* Shared with other threads, under mu. */
	pthread_mutex_t mu;
	struct buf pending;
	bool closing; /* no more messages are accepted */
	bool overflow;
	bool close_req;
	uint16_t close_code;
	char close_reason[WS_MAX_CONTROL_BYTES];
	atomic_bool stop;

	/* The connection thread's own. */
	struct buf out;
	size_t out_off;
	struct ws_parser parser;
	enum phase phase;
	int64_t last_rx_ms;
	int64_t deadline_ms;

	struct ws_registry *reg;     /* whose connection it is */
	struct ws_conn *prev, *next; /* reg's list, under reg->mu */
};

struct ws_registry {
	pthread_mutex_t mu;
	struct ws_conn *conns;
	int n_running;
	int n_pending; /* 101 queued, upgrade_cb not yet run nor the request ended */
	bool stopping;
};

/* Connections not accepted through a server's request (ws_conn_start_fd), and those of
 * requests that carry no registry. */
static struct ws_registry g_default = {.mu = PTHREAD_MUTEX_INITIALIZER};
static atomic_int g_idle_ms = WS_IDLE_MS;
static atomic_int g_close_wait_ms = WS_CLOSE_WAIT_MS;
static atomic_size_t g_queue_max = WS_QUEUE_MAX_BYTES;

/* Takes c out of its registry's list; the caller holds c->reg->mu. */
static void unlink_locked(struct ws_conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		c->reg->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
}

static void conn_free(struct ws_conn *c)
{
	if (c->efd >= 0)
		close(c->efd);
	buf_free(&c->pending);
	buf_free(&c->out);
	ws_parser_free(&c->parser);
	free(c->extra);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

struct ws_conn *ws_conn_new(const struct ws_handler *h, void *arg)
{
	struct ws_conn *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->efd < 0) {
		free(c);
		return NULL;
	}
	c->h = h;
	c->arg = arg;
	c->reg = &g_default;
	c->fd = -1;
	pthread_mutex_init(&c->mu, NULL);
	size_t q = atomic_load(&g_queue_max);
	buf_init(&c->pending, q);
	buf_init(&c->out, 2 * q + OUT_HEADROOM_BYTES);
	ws_parser_init(&c->parser, WS_MAX_FRAME_BYTES, WS_MAX_MESSAGE_BYTES);
	atomic_init(&c->stop, false);
	return c;
}

void ws_conn_set_arg(struct ws_conn *c, void *arg) { c->arg = arg; }

void ws_conn_discard(struct ws_conn *c)
{
	if (!c)
		return;
	if (c->h->on_close)
		c->h->on_close(c->arg);
	conn_free(c);
}

static void wake(struct ws_conn *c)
{
	uint64_t one = 1;
	ssize_t w = write(c->efd, &one, sizeof one);
	(void)w; /* EAGAIN means the counter is already non-zero: the thread will wake */
}

int ws_conn_send_text(struct ws_conn *c, const char *text, size_t n)
{
	pthread_mutex_lock(&c->mu);
	int rc = 0;
	if (c->closing || c->overflow) {
		rc = SFA_EIO;
	} else {
		rc = ws_frame_append(&c->pending, WS_OP_TEXT, text, n);
		if (rc == SFA_ETOOBIG || rc == SFA_ENOMEM) {
			c->overflow = true;
			rc = SFA_ETOOBIG;
		}
	}
	pthread_mutex_unlock(&c->mu);
	if (rc != SFA_EIO)
		wake(c);
	return rc;
}

void ws_conn_close(struct ws_conn *c, uint16_t code, const char *reason)
{
	pthread_mutex_lock(&c->mu);
	if (!c->close_req) {
		c->close_req = true;
		c->close_code = code;
		str_copy(c->close_reason, sizeof c->close_reason, reason ? reason : "");
	}
	pthread_mutex_unlock(&c->mu);
	wake(c);
}

/* ---- the connection thread ---- */

static bool out_empty(const struct ws_conn *c) { return c->out_off == c->out.len; }

static void out_reset_if_done(struct ws_conn *c)
{
	if (!out_empty(c))
		return;
	if (c->out.alloc > OUT_HEADROOM_BYTES) {
		size_t cap = c->out.cap_bytes;
		buf_free(&c->out); /* give a burst's memory back */
		buf_init(&c->out, cap);
	}
	c->out.len = 0;
	c->out_off = 0;
}

/* Moves queued frames into out, when they fit. Caller holds mu. */
static void take_pending_locked(struct ws_conn *c)
{
	if (!c->pending.len)
		return;
	out_reset_if_done(c);
	if (c->out_off > c->out.len / 2) {
		memmove(c->out.data, c->out.data + c->out_off, c->out.len - c->out_off);
		c->out.len -= c->out_off;
		c->out_off = 0;
	}
	if (buf_append(&c->out, c->pending.data, c->pending.len) != 0)
		return; /* no room yet: try again once more is written */
	if (c->pending.alloc > OUT_HEADROOM_BYTES) {
		size_t cap = c->pending.cap_bytes;
		buf_free(&c->pending);
		buf_init(&c->pending, cap);
	}
	c->pending.len = 0;
}

/* Appends a control frame the thread itself sends (pong, close). */
static void out_control(struct ws_conn *c, enum ws_opcode op, const uint8_t *p, size_t n)
{
	out_reset_if_done(c);
	if (ws_frame_append(&c->out, op, p, n) != 0) {
		/* The output is full of unread data: this client is not reading at all. */
		c->phase = PH_END;
		c->out.len = c->out_off;
	}
}

/* Sends our close frame after what is already queued (dropped on overflow). */
static void start_close(struct ws_conn *c, uint16_t code, const char *reason)
{
	pthread_mutex_lock(&c->mu);
	c->closing = true;
	if (c->overflow)
		c->pending.len = 0;
	else
		take_pending_locked(c);
	pthread_mutex_unlock(&c->mu);
	uint8_t pl[WS_MAX_CONTROL_BYTES];
	size_t n = ws_close_payload(pl, code, reason);
	c->phase = PH_CLOSE_SENT;
	c->deadline_ms = time_mono_ms() + atomic_load(&g_close_wait_ms);
	out_control(c, WS_OP_CLOSE, pl, n);
	if (code != WS_CLOSE_NORMAL && code != WS_CLOSE_GOING_AWAY)
		log_info("websocket: closing with %u (%s)", code, reason);
}

static void pull_requests(struct ws_conn *c)
{
	pthread_mutex_lock(&c->mu);
	bool overflow = c->overflow, close_req = c->close_req;
	uint16_t code = c->close_code;
	char reason[WS_MAX_CONTROL_BYTES];
	str_copy(reason, sizeof reason, c->close_reason);
	if (c->phase == PH_OPEN && !overflow)
		take_pending_locked(c);
	pthread_mutex_unlock(&c->mu);
	if (c->phase != PH_OPEN)
		return;
	if (overflow)
		start_close(c, WS_CLOSE_POLICY,
		            "outgoing queue overflow: the client reads too slowly");
	else if (atomic_load(&c->stop))
		start_close(c, WS_CLOSE_GOING_AWAY, "server shutting down");
	else if (close_req)
		start_close(c, code, reason);
}

static void handle_event(struct ws_conn *c, const struct ws_event *ev)
{
	switch (ev->type) {
	case WS_EV_TEXT:
	case WS_EV_BINARY:
		if (c->phase == PH_OPEN && c->h->on_message)
			c->h->on_message(c->arg, c, ev->type == WS_EV_TEXT, ev->data, ev->len);
		break;
	case WS_EV_PING:
		if (c->phase == PH_OPEN)
			out_control(c, WS_OP_PONG, ev->data, ev->len);
		break;
	case WS_EV_PONG:
	case WS_EV_NONE:
		break;
	case WS_EV_CLOSE:
		if (c->phase == PH_OPEN) {
			/* Echo the peer's code; what was queued before still goes out first. */
			pthread_mutex_lock(&c->mu);
			c->closing = true;
			take_pending_locked(c);
			pthread_mutex_unlock(&c->mu);
			uint8_t pl[2] = {(uint8_t)(ev->code >> 8), (uint8_t)ev->code};
			out_control(c, WS_OP_CLOSE, pl, ev->code == WS_CLOSE_NO_STATUS ? 0 : 2);
			c->deadline_ms = time_mono_ms() + atomic_load(&g_close_wait_ms);
		}
		c->phase = PH_END;
		break;
	case WS_EV_ERROR:
		if (c->phase == PH_OPEN)
			start_close(c, ev->code, ev->why);
		break;
	}
}

static void consume(struct ws_conn *c, const uint8_t *data, size_t n)
{
	size_t off = 0;
	while (off < n && c->phase != PH_END) {
		struct ws_event ev;
		off += ws_parser_feed(&c->parser, data + off, n - off, &ev);
		if (ev.type == WS_EV_NONE)
			continue;
		handle_event(c, &ev);
		if (ev.type == WS_EV_TEXT || ev.type == WS_EV_BINARY)
			pull_requests(
				c); /* act on a close the handler asked for before the next message */
	}
}

/* Writes what it can. Returns -1 when the peer is gone. */
static int flush(struct ws_conn *c)
{
	while (!out_empty(c)) {
		ssize_t k = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
		                 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k > 0) {
			c->out_off += (size_t)k;
			continue;
		}
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return 0;
		return -1;
	}
	out_reset_if_done(c);
	return 0;
}

static void drain_eventfd(int efd)
{
	uint64_t v;
	ssize_t r = read(efd, &v, sizeof v);
	(void)r;
}

static void *conn_main(void *arg)
{
	struct ws_conn *c = arg;
	c->last_rx_ms = time_mono_ms();
	if (c->n_extra)
		consume(c, c->extra, c->n_extra);
	uint8_t *rx = malloc(RX_CHUNK_BYTES);
	while (rx) {
		pull_requests(c);
		if (flush(c))
			break;
		if (c->phase == PH_END && out_empty(c))
			break;
		int64_t now = time_mono_ms();
		int idle_ms = atomic_load(&g_idle_ms);
		if (c->phase == PH_OPEN && now - c->last_rx_ms >= idle_ms) {
			start_close(c, WS_CLOSE_NORMAL, "idle timeout");
			continue;
		}
		if (c->phase != PH_OPEN && now >= c->deadline_ms)
			break;
		int64_t until = c->phase == PH_OPEN ? c->last_rx_ms + idle_ms : c->deadline_ms;
		int timeout = (int)(until - now);
		struct pollfd p[2] = {
			{.fd = c->fd, .events = (short)(POLLIN | (out_empty(c) ? 0 : POLLOUT))},
			{.fd = c->efd, .events = POLLIN},
		};
		int r = poll(p, 2, timeout < 0 ? 0 : timeout);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents & POLLIN)
			drain_eventfd(c->efd);
		if ((p[0].revents & POLLOUT) && flush(c))
			break;
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			ssize_t k = recv(c->fd, rx, RX_CHUNK_BYTES, MSG_DONTWAIT);
			if (k == 0)
				break; /* the peer closed the TCP connection */
			if (k < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
					continue;
				break;
			}
			c->last_rx_ms = time_mono_ms();
			consume(c, rx, (size_t)k);
		}
	}
	free(rx);

	/* Teardown: the handler first (it stops everything that could still send to c). */
	pthread_mutex_lock(&c->mu);
	c->closing = true;
	pthread_mutex_unlock(&c->mu);
	if (c->h->on_close)
		c->h->on_close(c->arg);
	struct ws_registry *reg = c->reg;
	pthread_mutex_lock(&reg->mu);
	unlink_locked(c);
	pthread_mutex_unlock(&reg->mu);
	if (c->urh)
		MHD_upgrade_action(c->urh, MHD_UPGRADE_ACTION_CLOSE);
	else if (c->release)
		c->release(c->release_arg, c->fd);
	conn_free(c);
	pthread_mutex_lock(&reg->mu);
	reg->n_running--;
	pthread_mutex_unlock(&reg->mu);
	return NULL;
}

/* Registers c and starts its thread. from_upgrade: c was counted in reg->n_pending, and is
 * started even while stopping (with its stop flag set, so it at once says 1001 to a
 * client that already got its 101); otherwise a stopping server refuses it. On failure
 * the caller still owns c (and its socket). */
static int start(struct ws_conn *c, bool from_upgrade)
{
	struct ws_registry *reg = c->reg;
	pthread_mutex_lock(&reg->mu);
	if (from_upgrade)
		reg->n_pending--;
	if (reg->stopping && !from_upgrade) {
		pthread_mutex_unlock(&reg->mu);
		return SFA_EIO;
	}
	if (reg->stopping)
		atomic_store(&c->stop, true);
	c->prev = NULL;
	c->next = reg->conns;
	if (reg->conns)
		reg->conns->prev = c;
	reg->conns = c;
	reg->n_running++;
	pthread_mutex_unlock(&reg->mu);

	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK_BYTES);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	int e = pthread_create(&t, &attr, conn_main, c);
	pthread_attr_destroy(&attr);
	if (e == 0)
		return 0;
	log_error("websocket: cannot start a connection thread: %s", strerror(e));
	pthread_mutex_lock(&reg->mu);
	unlink_locked(c);
	reg->n_running--;
	pthread_mutex_unlock(&reg->mu);
	return SFA_EIO;
}

static int set_extra(struct ws_conn *c, const void *extra, size_t n_extra)
{
	if (!n_extra)
		return 0;
	c->extra = malloc(n_extra);
	if (!c->extra)
		return SFA_ENOMEM;
	memcpy(c->extra, extra, n_extra);
	c->n_extra = n_extra;
	return 0;
}

int ws_conn_start_fd(struct ws_conn *c, int fd, const void *extra, size_t n_extra,
                     void (*release)(void *release_arg, int fd), void *release_arg)
{
	c->fd = fd;
	c->release = release;
	c->release_arg = release_arg;
	int rc = set_extra(c, extra, n_extra);
	if (!rc)
		rc = start(c, false);
	if (rc) {
		ws_conn_discard(c);
		if (release)
			release(release_arg, fd);
	}
	return rc;
}

/* ---- libmicrohttpd glue ---- */

static void upgrade_cb(void *cls, struct MHD_Connection *connection, void *con_cls,
                       const char *extra_in, size_t extra_in_size, MHD_socket sock,
                       struct MHD_UpgradeResponseHandle *urh)
{
	struct ws_conn *c = cls;
	struct http_ctx *ctx = con_cls;
	if (ctx && ctx->on_done_arg == c) {
		ctx->on_done = NULL; /* from here on the connection owns itself */
		ctx->on_done_arg = NULL;
	}
	c->fd = sock;
	c->urh = urh;
	int rc = set_extra(c, extra_in, extra_in_size);
	if (rc) {
		pthread_mutex_lock(&c->reg->mu);
		c->reg->n_pending--;
		pthread_mutex_unlock(&c->reg->mu);
	}
	if (rc || start(c, true)) {
		ws_conn_discard(c);
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
	}
}

/* The request ended without upgrade_cb: the client left before the 101 was sent. */
static void request_done(void *arg)
{
	struct ws_conn *c = arg;
	pthread_mutex_lock(&c->reg->mu);
	c->reg->n_pending--;
	pthread_mutex_unlock(&c->reg->mu);
	ws_conn_discard(c);
}

static bool has_token(const char *list, const char *token)
{
	if (!list)
		return false;
	size_t n = strlen(token);
	const char *p = list;
	while (*p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		size_t k = strcspn(p, ",");
		size_t t = k;
		while (t && (p[t - 1] == ' ' || p[t - 1] == '\t'))
			t--;
		if (t == n && strncasecmp(p, token, n) == 0)
			return true;
		p += k;
	}
	return false;
}

int ws_conn_check_request(struct http_ctx *ctx)
{
	if (strcmp(ctx->method, "GET") != 0) {
		http_error(ctx, 400, "bad_request", "A WebSocket handshake is a GET request.");
		return SFA_EINVAL;
	}
	if (!has_token(http_req_header(ctx, "Upgrade"), "websocket")) {
		http_error(
			ctx, 426, "upgrade_required",
			"This is a WebSocket endpoint: connect with a WebSocket client (Upgrade: "
			"websocket).");
		return SFA_EINVAL;
	}
	if (!has_token(http_req_header(ctx, "Connection"), "upgrade")) {
		http_error(ctx, 400, "bad_request",
		           "The WebSocket handshake needs \"Connection: Upgrade\".");
		return SFA_EINVAL;
	}
	const char *v = http_req_header(ctx, "Sec-WebSocket-Version");
	if (!v || strcmp(v, "13") != 0) {
		http_set_header(ctx, "Sec-WebSocket-Version", "13");
		http_error(ctx, 426, "upgrade_required",
		           "Only WebSocket version 13 (RFC 6455) is supported.");
		return SFA_EINVAL;
	}
	char accept[WS_ACCEPT_LEN];
	if (ws_accept_key(http_req_header(ctx, "Sec-WebSocket-Key"), accept) != 0) {
		http_error(ctx, 400, "bad_request",
		           "Sec-WebSocket-Key is missing or is not the base64 of 16 bytes.");
		return SFA_EINVAL;
	}
	return 0;
}

int ws_conn_accept(struct http_ctx *ctx, struct ws_conn *c, const char *subprotocol)
{
	struct ws_registry *reg = ctx->ws_registry ? ctx->ws_registry : &g_default;
	c->reg = reg;
	pthread_mutex_lock(&reg->mu);
	bool refuse = reg->stopping || reg->n_running >= WS_MAX_CONNS;
	pthread_mutex_unlock(&reg->mu);
	if (refuse) {
		http_set_header(ctx, "Retry-After", "5");
		http_error(ctx, 503, "unavailable",
		           "The server is not taking new WebSocket connections right now; retry "
		           "shortly.");
		ws_conn_discard(c);
		return SFA_EIO;
	}
	char accept[WS_ACCEPT_LEN];
	struct MHD_Response *r = NULL;
	if (ws_accept_key(http_req_header(ctx, "Sec-WebSocket-Key"), accept) != 0 ||
	    !(r = MHD_create_response_for_upgrade(upgrade_cb, c)) ||
	    MHD_add_response_header(r, "Upgrade", "websocket") != MHD_YES ||
	    MHD_add_response_header(r, "Sec-WebSocket-Accept", accept) != MHD_YES ||
	    (subprotocol &&
	     MHD_add_response_header(r, "Sec-WebSocket-Protocol", subprotocol) != MHD_YES)) {
		if (r)
			MHD_destroy_response(r);
		http_error(ctx, 500, "internal", "The WebSocket handshake could not be answered.");
		ws_conn_discard(c);
		return SFA_ENOMEM;
	}
	pthread_mutex_lock(&reg->mu);
	reg->n_pending++;
	pthread_mutex_unlock(&reg->mu);
	ctx->status = 101;
	ctx->resp_override = r;
	ctx->on_done = request_done;
	ctx->on_done_arg = c;
	return 0;
}

struct ws_registry *ws_registry_new(void)
{
	struct ws_registry *r = calloc(1, sizeof *r);
	if (r)
		pthread_mutex_init(&r->mu, NULL);
	return r;
}

void ws_registry_free(struct ws_registry *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->mu);
	free(r);
}

int ws_registry_shutdown(struct ws_registry *r, int wait_ms)
{
	pthread_mutex_lock(&r->mu);
	r->stopping = true;
	int n = r->n_running + r->n_pending;
	for (struct ws_conn *c = r->conns; c; c = c->next) {
		atomic_store(&c->stop, true);
		wake(c);
	}
	pthread_mutex_unlock(&r->mu);
	if (n)
		log_info("closing %d WebSocket connection(s)", n);
	/* Wait for the running ones, and for upgrades whose 101 is already on its way: those
	 * start with their stop flag set (see start). */
	int64_t deadline = time_mono_ms() + wait_ms;
	for (;;) {
		pthread_mutex_lock(&r->mu);
		n = r->n_running + r->n_pending;
		pthread_mutex_unlock(&r->mu);
		if (n == 0 || time_mono_ms() >= deadline)
			break;
		struct timespec ts = {0, 5 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (n)
		log_warn("%d WebSocket connection(s) did not close in time", n);
	return n;
}

int ws_registry_count(struct ws_registry *r)
{
	pthread_mutex_lock(&r->mu);
	int n = r->n_running;
	pthread_mutex_unlock(&r->mu);
	return n;
}

int ws_conn_shutdown_all(int wait_ms) { return ws_registry_shutdown(&g_default, wait_ms); }

int ws_conn_count(void) { return ws_registry_count(&g_default); }

void ws_conn_set_limits(int idle_ms, int close_wait_ms, size_t queue_max_bytes)
{
	if (idle_ms > 0)
		atomic_store(&g_idle_ms, idle_ms);
	if (close_wait_ms > 0)
		atomic_store(&g_close_wait_ms, close_wait_ms);
	if (queue_max_bytes)
		atomic_store(&g_queue_max, queue_max_bytes);
}

void ws_conn_reset_for_tests(void)
{
	pthread_mutex_lock(&g_default.mu);
	g_default.stopping = false;
	pthread_mutex_unlock(&g_default.mu);
}
