/* ws_conn.h - running WebSocket connections on top of libmicrohttpd's HTTP upgrade.
 *
 * A handler that wants a WebSocket checks the request (ws_conn_check_request), makes a
 * connection object with its callbacks (ws_conn_new), and hands it to ws_conn_accept,
 * which queues the 101 response. Once libmicrohttpd has sent it, the connection gets a
 * thread of its own that reads frames (websocket.h), answers pings, runs the close
 * handshake, writes queued outgoing messages and enforces an idle timeout. When it ends,
 * for whatever reason, on_close runs (exactly once, also when the upgrade never
 * happened) and the socket is handed back to libmicrohttpd to close.
 *
 * Outgoing messages: ws_conn_send_text may be called from any thread (a job's progress
 * comes from the scheduler's). It copies the message, framed, into a per-connection queue
 * capped at WS_QUEUE_MAX_BYTES. A client that reads too slowly for the queue is not fed
 * a thinned stream: on overflow the queue is dropped and the connection closed with 1008,
 * so the client knows to reconnect and re-read the state (the phoenix client does so by
 * itself) instead of silently missing events.
 *
 * Closing: frames that break the protocol close with 1002, invalid UTF-8 with 1007, a
 * frame or message above 1 MiB with 1009; after the server sends a close frame it waits
 * up to close_wait_ms for the client's, reading and discarding, then drops the socket.
 * No byte from the client for idle_ms closes with 1000 "idle timeout" (the phoenix
 * client's heartbeat is every 30 s). ws_registry_shutdown, called by the server before
 * it stops libmicrohttpd, closes every connection of its registry with 1001 and waits for
 * their threads, including connections whose 101 was already on its way (they start, say
 * 1001, end).
 *
 * Threading: one thread per connection (their count is capped at WS_MAX_CONNS; each is
 * idle in poll() nearly always). on_message and on_close run on that thread; they may
 * call ws_conn_send_text and ws_conn_close, which are thread-safe.
 */
#ifndef SFA_HTTP_WS_CONN_H
#define SFA_HTTP_WS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/request.h"

enum {
	WS_MAX_CONNS = 1000,
	WS_QUEUE_MAX_BYTES = 1 << 20,
	WS_IDLE_MS = 90 * 1000,
	WS_CLOSE_WAIT_MS = 2000,
};

struct ws_conn;

struct ws_handler {
	/* A whole message: text (valid UTF-8) or binary. data is valid during the call. */
	void (*on_message)(void *arg, struct ws_conn *c, bool is_text, const uint8_t *data,
	                   size_t n);
	/* The connection is over (or never started): release arg. Called exactly once; after it
	 * returns, nothing may call ws_conn_send_text on c any more. */
	void (*on_close)(void *arg);
};

/* A connection not yet started. h must outlive it; arg may be set later with
 * ws_conn_set_arg (before ws_conn_accept). Returns NULL when out of memory. The caller
 * hands it to ws_conn_accept or ws_conn_start_fd, which take it (it is freed when it
 * ends), or frees it with ws_conn_discard. */
struct ws_conn *ws_conn_new(const struct ws_handler *h, void *arg);
void ws_conn_set_arg(struct ws_conn *c, void *arg);
/* Discards a connection that was never accepted nor started; calls on_close. */
void ws_conn_discard(struct ws_conn *c);

/* Checks that ctx is a WebSocket opening handshake (GET, Upgrade: websocket, Connection:
 * upgrade, Sec-WebSocket-Version: 13, a valid Sec-WebSocket-Key). Returns 0, or answers
 * ctx (426 without the upgrade or with another version, 400 otherwise) and returns
 * SFA_EINVAL. */
int ws_conn_check_request(struct http_ctx *ctx);

/* Answers ctx with 101 Switching Protocols (Sec-WebSocket-Protocol: subprotocol when not
 * NULL) and arranges for c to start once it is sent. Takes c in every case: on failure
 * (503 when shutting down or at WS_MAX_CONNS, 500 when out of memory) ctx is answered and
 * c discarded. Call after ws_conn_check_request succeeded. */
int ws_conn_accept(struct http_ctx *ctx, struct ws_conn *c, const char *subprotocol);

/* Starts c on an already connected socket instead of an upgrade (unit tests): extra are
 * bytes already read from it; release(release_arg, fd) is called at the end instead of
 * handing the socket back to libmicrohttpd. Takes c; on failure c is discarded. */
int ws_conn_start_fd(struct ws_conn *c, int fd, const void *extra, size_t n_extra,
                     void (*release)(void *release_arg, int fd), void *release_arg);

/* Queues a text message. SFA_EIO once the connection is closing, SFA_ETOOBIG when the
 * queue overflowed (the connection then closes with 1008). Any thread. */
int ws_conn_send_text(struct ws_conn *c, const char *text, size_t n);
/* Starts the close handshake with code and reason (messages queued before are sent
 * first). Any thread; later calls are ignored. */
void ws_conn_close(struct ws_conn *c, uint16_t code, const char *reason);

/* The connections of one server: each server has its own registry (server.c makes it and
 * puts it in every request's ctx->ws_registry), so stopping one server never touches
 * another's connections. ws_conn_start_fd, and requests without a registry, use a process
 * default one, which ws_conn_shutdown_all and ws_conn_count below speak of.
 * ws_registry_new returns NULL when out of memory; the owner frees it with
 * ws_registry_free once ws_registry_shutdown returned 0 (no connection refers to it). */
struct ws_registry;
struct ws_registry *ws_registry_new(void);
void ws_registry_free(struct ws_registry *r);
/* Refuses new connections, closes the open ones with 1001 and waits up to wait_ms for
 * their threads to finish. Returns how many are still running (0 normally). */
int ws_registry_shutdown(struct ws_registry *r, int wait_ms);
/* Connections whose thread is running. */
int ws_registry_count(struct ws_registry *r);
/* The same for the process default registry. */
int ws_conn_shutdown_all(int wait_ms);
int ws_conn_count(void);
/* Test hooks: the idle timeout, the close wait and the queue cap (0: keep). Not for
 * production use while connections are open. */
void ws_conn_set_limits(int idle_ms, int close_wait_ms, size_t queue_max_bytes);
/* Allows new connections again after ws_conn_shutdown_all (tests that stop and restart). */
void ws_conn_reset_for_tests(void);

#endif
