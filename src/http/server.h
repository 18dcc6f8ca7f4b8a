/* server.h - the HTTP server: libmicrohttpd glue, request lifecycle, graceful shutdown.
 *
 * A server is a value: server_start binds the listening socket itself (so "port in use" and
 * "permission denied" are exact errors) and starts libmicrohttpd with a pool of worker
 * threads; server_stop stops accepting (MHD_quiesce_daemon), closes WebSockets, lets
 * in-flight requests finish for up to grace_s seconds, and stops the daemon. Several may
 * run in one process (the tests start two). server_run is the process's way: it starts
 * one, blocks until SIGINT or SIGTERM, and stops it. The caller closes the database
 * afterwards.
 *
 * Each request gets a struct http_ctx (request.h). The server reads the body up to
 * HTTP_BODY_MAX_BYTES (past it: 413, the rest is discarded), parses the query, cookies
 * and urlencoded forms (applying a form's _method override), calls dispatch on the final
 * callback, adds the security headers and writes one access log line per request:
 * method, path (secret query values redacted), status, bytes, duration.
 *
 * Threading: dispatch runs on libmicrohttpd's worker threads, concurrently; the app it
 * gets must be thread-safe. server_start and server_stop are called by the thread that
 * owns the server (once each); server_port and server_in_flight from any thread. Each
 * server has its own registry of WebSocket connections (ws_conn.h), closed by its stop.
 */
#ifndef SFA_HTTP_SERVER_H
#define SFA_HTTP_SERVER_H

#include <stddef.h>

#include "http/request.h"

struct server_opts {
	const char *bind;
	int port; /* 0: any free port; the chosen one is logged */
	int n_threads;
	int grace_s;
	/* Whole-request deadlines from the request line: the headers, then the body. A client
	 * that trickles them (slowloris) is disconnected when one passes. */
	int header_timeout_s, body_timeout_s;
	/* Request lines logged: 1 every one, N one success in N (failures and aborted ones
	 * always), 0 failures only, -1 none. They are written in batches (log.h). */
	int access_log_every;
	/* Called when the headers are in; may set ctx->body_sink (stream the body there)
	 * or answer early (ctx->early). NULL: every body is buffered. */
	void (*begin)(struct http_ctx *ctx);
	void (*dispatch)(struct http_ctx *ctx);
	struct app *app;
	/* Called once listening, with the bound port (tests and the CLI print it). */
	void (*on_listen)(int port, void *arg);
	void *on_listen_arg;
};

struct server;

/* Binds, starts serving on libmicrohttpd's threads and calls o->on_listen. o is copied;
 * its app and callbacks must outlive the server. On success *out is the running server,
 * which the caller ends with server_stop (which frees it). */
int server_start(const struct server_opts *o, struct server **out, char *err, size_t n_err);
/* The port it listens on (the one chosen when o->port was 0). */
int server_port(const struct server *s);
/* Requests being read, handled or answered right now. */
int server_in_flight(struct server *s);
/* Graceful stop as described above, then frees s. When requests are still running after
 * grace_s, the process is ended 5 s later whatever happens (SIGTERM always ends
 * the server); s is then left for that watchdog. NULL is a no-op. */
void server_stop(struct server *s);

/* server_start, then blocks until SIGINT or SIGTERM (blocked in every thread started
 * after it), then server_stop. Access log lines are batched meanwhile (log.h). */
int server_run(const struct server_opts *o, char *err, size_t n_err);

/* The query string with the values of secret-looking keys (token, key, password, code,
 * state, secret...) replaced by "[FILTERED]"; written into out. Exposed for tests. */
void server_redact_query(const char *query, char *out, size_t n_out);

#endif
