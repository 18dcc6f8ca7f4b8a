/* server.c - see server.h.
 *
 * Everything a running server keeps is in its struct server, handed to libmicrohttpd's
 * callbacks as their closure, so two servers can run in one process (the tests do).
 *
 * libmicrohttpd calls the access handler at least twice per request: first with the
 * headers only (we set up and return), then once per body chunk, then a last time with
 * no data, where the response is queued. Answering on the first call would break
 * keep-alive for requests with bodies, so we always wait for the last one.
 */
#include "http/server.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/cookie.h"
#include "http/ws_conn.h"
#include "util/err.h"
#include "util/log.h"
#include "util/str.h"
#include "util/timeutil.h"

struct server {
	struct server_opts o; /* a copy: the caller's may go */
	struct MHD_Daemon *d;
	int port;
	/* Requests in flight (the live list, under live_mu), so that a shutdown can say which
	 * ones it is waiting for and the reaper can find the ones past their deadline. */
	atomic_int in_flight;
	pthread_mutex_t live_mu;
	struct http_ctx *live;
	atomic_uint requests_seen; /* successful requests considered for the access log */
	pthread_t reaper;
	bool reaping;
	atomic_bool reaper_stop;
	struct ws_registry *ws; /* its WebSocket connections */
	atomic_bool closing;    /* server_stop began: new connections are turned away */
};

struct framing {
	int n_length;
	char length[32];
	bool conflict, chunked;
};

/* After the grace period, how long the rest of the shutdown (closing connections, the job
 * scheduler, the database) may take before the process ends regardless. */
enum { STUCK_EXIT_MS = 5000 };

static void live_add(struct server *s, struct http_ctx *ctx)
{
	pthread_mutex_lock(&s->live_mu);
	ctx->live_next = s->live;
	if (s->live)
		s->live->live_prev = ctx;
	s->live = ctx;
	pthread_mutex_unlock(&s->live_mu);
	atomic_fetch_add(&s->in_flight, 1);
}

static void live_remove(struct server *s, struct http_ctx *ctx)
{
	pthread_mutex_lock(&s->live_mu);
	if (ctx->live_prev)
		ctx->live_prev->live_next = ctx->live_next;
	else
		s->live = ctx->live_next;
	if (ctx->live_next)
		ctx->live_next->live_prev = ctx->live_prev;
	pthread_mutex_unlock(&s->live_mu);
	atomic_fetch_sub(&s->in_flight, 1);
}

/* Logs the requests still running. The lines are formatted under the lock (the list may
 * change as soon as it is released) and logged after it. */
static void log_live(struct server *s)
{
	enum { MAX_SHOWN = 32 };
	char lines[MAX_SHOWN][160];
	int n = 0, more = 0;
	int64_t now = time_mono_ms();
	pthread_mutex_lock(&s->live_mu);
	for (struct http_ctx *c = s->live; c; c = c->live_next) {
		if (n == MAX_SHOWN) {
			more++;
			continue;
		}
		snprintf(lines[n++], sizeof lines[0], "%s %s (for %lld s)",
		         c->method ? c->method : "?",
		         c->path ? c->path : "(request line not read yet)",
		         (long long)((now - c->t0_ms) / 1000));
	}
	pthread_mutex_unlock(&s->live_mu);
	for (int i = 0; i < n; i++)
		log_warn("still running: %s", lines[i]);
	if (more)
		log_warn("still running: %d more request(s)", more);
}

/* Disconnects requests past their header or body deadline (slowloris: a client sending a
 * header line every few seconds would otherwise hold a connection and a slot for as long
 * as it likes, since libmicrohttpd's timeout only counts idle time). Shutting the socket
 * down makes libmicrohttpd see the connection fail and clean it up on its own thread; the
 * request cannot complete meanwhile, since completing takes live_mu. The warnings are
 * logged after the lock is released. */
static void *deadline_reaper(void *arg)
{
	struct server *s = arg;
	const struct server_opts *o = &s->o;
	enum { MAX_CLOSED = 64 };
	struct {
		char ip[sizeof((struct http_ctx *)0)->client_ip];
		bool headers;
	} closed[MAX_CLOSED];
	while (!atomic_load(&s->reaper_stop)) {
		struct timespec ts = {0, 250 * 1000 * 1000};
		nanosleep(&ts, NULL);
		int64_t now = time_mono_ms();
		int n_closed = 0;
		pthread_mutex_lock(&s->live_mu);
		for (struct http_ctx *c = s->live; c && n_closed < MAX_CLOSED; c = c->live_next) {
			int phase = atomic_load(&c->phase);
			int64_t limit_ms = phase == HTTP_PHASE_HEADERS
			                           ? (int64_t)o->header_timeout_s * 1000
			                   : phase == HTTP_PHASE_BODY
			                           ? (int64_t)o->body_timeout_s * 1000
			                           : 0;
			if (!limit_ms || now - c->t0_ms <= limit_ms || c->deadline_hit)
				continue;
			const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
				c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
			if (!ci)
				continue;
			c->deadline_hit = true;
			str_copy(closed[n_closed].ip, sizeof closed[n_closed].ip,
			         c->client_ip[0] ? c->client_ip : "?");
			closed[n_closed++].headers = phase == HTTP_PHASE_HEADERS;
			shutdown(ci->connect_fd, SHUT_RDWR);
		}
		pthread_mutex_unlock(&s->live_mu);
		for (int i = 0; i < n_closed; i++)
			log_warn("closing a connection from %s: its %s did not arrive within %d s",
			         closed[i].ip, closed[i].headers ? "headers" : "body",
			         closed[i].headers ? o->header_timeout_s : o->body_timeout_s);
	}
	return NULL;
}

/* Ends the process if the shutdown is itself stuck (a handler that never returns keeps
 * libmicrohttpd from stopping): SIGTERM always ends the server. Worker processes die
 * with it (PR_SET_PDEATHSIG) and their jobs are queued again at the next start. */
static void *stuck_exit(void *arg)
{
	struct server *s = arg;
	struct timespec ts = {STUCK_EXIT_MS / 1000, (STUCK_EXIT_MS % 1000) * 1000000L};
	nanosleep(&ts, NULL);
	log_error("shutdown did not finish within %d s of the grace period; exiting now",
	          STUCK_EXIT_MS / 1000);
	log_live(s);
	_exit(1);
}

static const char *const secret_keys[] = {"token",         "key",         "api_key", "password",
                                          "code",          "state",       "secret",  "access_token",
                                          "refresh_token", "_csrf_token", NULL};

void server_redact_query(const char *query, char *out, size_t n_out)
{
	struct buf b;
	buf_init(&b, n_out ? n_out - 1 : 0);
	const char *p = query;
	while (*p) {
		size_t n = strcspn(p, "&");
		size_t klen = strcspn(p, "=&");
		bool secret = false;
		for (int i = 0; secret_keys[i]; i++)
			if (strlen(secret_keys[i]) == klen &&
			    strncasecmp(p, secret_keys[i], klen) == 0)
				secret = true;
		if (b.len)
			buf_append(&b, "&", 1);
		if (secret && klen < n) {
			buf_append(&b, p, klen);
			buf_puts(&b, "=[FILTERED]");
		} else {
			buf_append(&b, p, n);
		}
		p += n;
		if (*p == '&')
			p++;
	}
	str_copy(out, n_out, b.data ? b.data : "");
	buf_free(&b);
}

static void *uri_logger(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct server *s = cls;
	struct http_ctx *ctx = calloc(1, sizeof *ctx);
	if (!ctx)
		return NULL;
	ctx->t0_ms = time_mono_ms();
	ctx->ws_registry = s->ws;
	live_add(s, ctx);
	arena_init(&ctx->arena, HTTP_ARENA_MAX_BYTES);
	buf_init(&ctx->body, HTTP_BODY_MAX_BYTES);
	buf_init(&ctx->resp, 64u << 20);
	ctx->conn = conn;
	const char *q = strchr(uri, '?');
	size_t plen = q ? (size_t)(q - uri) : strlen(uri);
	ctx->path = arena_strndup(&ctx->arena, uri, plen);
	ctx->query = arena_strdup(&ctx->arena, q ? q + 1 : "");
	return ctx;
}

static void client_ip(struct http_ctx *ctx)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
		ctx->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	str_copy(ctx->client_ip, sizeof ctx->client_ip, "unknown");
	if (!ci || !ci->client_addr)
		return;
	const struct sockaddr *sa = ci->client_addr;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
		          ctx->client_ip, sizeof ctx->client_ip);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
		          ctx->client_ip, sizeof ctx->client_ip);
}

static enum MHD_Result queue(struct http_ctx *ctx)
{
	struct MHD_Response *r = ctx->resp_override;
	if (!r) {
		r = MHD_create_response_from_buffer(
			ctx->resp.len, ctx->resp.data ? ctx->resp.data : "", MHD_RESPMEM_MUST_COPY);
		if (!r)
			return MHD_NO;
		ctx->resp_bytes = ctx->resp.len;
		if (ctx->content_type)
			MHD_add_response_header(r, "Content-Type", ctx->content_type);
	}
	for (int i = 0; i < ctx->n_headers; i++)
		MHD_add_response_header(r, ctx->header_names[i], ctx->header_values[i]);
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	MHD_add_response_header(r, "Referrer-Policy", "strict-origin-when-cross-origin");
	if (ctx->content_type && str_starts_with(ctx->content_type, "text/html"))
		/* Scripts only from this server (no inline script, no eval). Styles may also be
		 * inline: the waveform library styles its shadow DOM with a <style> element. Media
		 * may be blob: URLs, which it plays fetched audio from. */
		MHD_add_response_header(r, "Content-Security-Policy",
		                        "default-src 'self'; img-src 'self' https: data:; "
		                        "media-src 'self' blob:; style-src 'self' 'unsafe-inline'; "
		                        "script-src 'self'; object-src 'none'; base-uri 'none'; "
		                        "form-action 'self'; frame-ancestors 'none'");
	if (!MHD_get_response_header(r, "Cache-Control"))
		MHD_add_response_header(r, "Cache-Control", "no-store");
	enum MHD_Result ret = MHD_queue_response(ctx->conn, (unsigned)ctx->status, r);
	MHD_destroy_response(r);
	ctx->resp_override = NULL;
	return ret;
}

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
	(void)kind;
	struct framing *f = cls;
	if (strcasecmp(key, "Content-Length") == 0) {
		if (f->n_length && strcmp(f->length, value ? value : "") != 0)
			f->conflict = true;
		str_copy(f->length, sizeof f->length, value ? value : "");
		f->n_length++;
	} else if (strcasecmp(key, "Transfer-Encoding") == 0) {
		f->chunked = true;
	}
	return MHD_YES;
}

/* Why a request must be refused before its body (RFC 9112 §3, §6.3), or NULL: control
 * characters in the target, a Content-Length next to a Transfer-Encoding, or two
 * different Content-Lengths (a request smuggling vector behind proxies). */
static const char *bad_request_head(struct http_ctx *ctx)
{
	for (const char *p = ctx->path; *p; p++)
		if ((unsigned char)*p < 0x21 || *p == 0x7f)
			return "The request target contains control characters or spaces.";
	for (const char *p = ctx->query; *p; p++)
		if ((unsigned char)*p < 0x21 || *p == 0x7f)
			return "The request target contains control characters or spaces.";
	struct framing f = {0};
	MHD_get_connection_values(ctx->conn, MHD_HEADER_KIND, count_framing, &f);
	if (f.chunked && f.n_length)
		return "The request has both Content-Length and Transfer-Encoding.";
	if (f.conflict)
		return "The request has two different Content-Length headers.";
	return NULL;
}

/* Everything the dispatcher needs that is not the body: cookies and the query. */
static int parse_head(struct http_ctx *ctx)
{
	const char *cookie = MHD_lookup_connection_value(ctx->conn, MHD_HEADER_KIND, "Cookie");
	if (cookie && cookie_parse(&ctx->arena, cookie, &ctx->cookies))
		return SFA_EINVAL;
	if (form_parse(&ctx->arena, ctx->query, strlen(ctx->query), FORM_MAX_PAIRS,
	               &ctx->query_args))
		return SFA_EINVAL;
	return 0;
}

static bool is_form(struct http_ctx *ctx)
{
	const char *ct = MHD_lookup_connection_value(ctx->conn, MHD_HEADER_KIND, "Content-Type");
	return ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
}

static enum MHD_Result finish(const struct server_opts *o, struct http_ctx *ctx)
{
	if (!ctx->path || !ctx->query) {
		http_error(ctx, 500, "internal", "The server ran out of memory for this request.");
		return queue(ctx);
	}
	if (ctx->early)
		return queue(ctx);
	if (ctx->body_too_large) {
		http_error(
			ctx, 413, "payload_too_large",
			"The request body is too large (the limit is 1 MiB for forms and JSON).");
		return queue(ctx);
	}
	if (!ctx->streaming && is_form(ctx)) {
		if (form_parse(&ctx->arena, ctx->body.data ? ctx->body.data : "", ctx->body.len,
		               FORM_MAX_PAIRS, &ctx->form)) {
			http_error(ctx, 400, "bad_request", "The form body could not be parsed.");
			return queue(ctx);
		}
		const char *m = kv_get(&ctx->form, "_method");
		if (m && strcmp(ctx->method, "POST") == 0) {
			if (strcasecmp(m, "put") == 0)
				ctx->method = "PUT";
			else if (strcasecmp(m, "patch") == 0)
				ctx->method = "PATCH";
			else if (strcasecmp(m, "delete") == 0)
				ctx->method = "DELETE";
		}
	}
	o->dispatch(ctx);
	if (!ctx->status && !ctx->resp_override)
		http_error(ctx, 500, "internal", "The server did not produce a response.");
	return queue(ctx);
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
	const struct server_opts *o = &((struct server *)cls)->o;
	struct http_ctx *ctx = *con_cls;
	if (!ctx)
		return MHD_NO; /* out of memory in uri_logger */
	if (!ctx->method) {
		atomic_store(&ctx->phase, HTTP_PHASE_BODY);
		ctx->app = o->app;
		ctx->method = arena_strdup(&ctx->arena, method);
		if (!ctx->method)
			return MHD_NO;
		client_ip(ctx);
		if (!ctx->path || !ctx->query)
			return MHD_YES; /* answered in finish() */
		const char *why = bad_request_head(ctx);
		if (why) {
			/* RFC 9112: the message framing cannot be trusted, so nothing more is read. */
			http_error(ctx, 400, "bad_request", why);
			http_set_header(ctx, "Connection", "close");
			return queue(ctx);
		}
		if (parse_head(ctx)) {
			http_error(ctx, 400, "bad_request",
			           "The query string or Cookie header could not be parsed.");
			ctx->early = true;
			return MHD_YES;
		}
		if (o->begin)
			o->begin(ctx);
		if (ctx->early && ctx->streaming)
			return queue(ctx); /* refused before its (large) body: MHD closes after */
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
		                                             "Content-Length");
		long n;
		if (!ctx->body_sink && cl && str_to_long(cl, 0, (long)1 << 40, &n) == 0 &&
		    n > HTTP_BODY_MAX_BYTES)
			ctx->body_too_large = true;
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (ctx->early) {
			/* discard */
		} else if (ctx->body_sink) {
			if (ctx->body_sink(ctx, upload_data, *upload_data_size) != 0)
				ctx->early = true;
		} else if (!ctx->body_too_large &&
		           buf_append(&ctx->body, upload_data, *upload_data_size)) {
			ctx->body_too_large = true;
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	atomic_store(&ctx->phase, HTTP_PHASE_HANDLER);
	return finish(o, ctx);
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
	struct http_ctx *ctx = *con_cls;
	if (!ctx)
		return;
	struct server *s = cls;
	const struct server_opts *o = &s->o;
	bool failed = ctx->status >= 400 || toe != MHD_REQUEST_TERMINATED_COMPLETED_OK;
	if (ctx->method && o->access_log_every >= 0 &&
	    (failed ||
	     (o->access_log_every > 0 &&
	      atomic_fetch_add(&s->requests_seen, 1) % (unsigned)o->access_log_every == 0))) {
		char q[512] = "";
		if (ctx->query && *ctx->query)
			server_redact_query(ctx->query, q, sizeof q);
		log_batched(LOG_INFO, "http %s %s%s%s %d %llu %lldms%s", ctx->method,
		            ctx->path ? ctx->path : "?", *q ? "?" : "", q, ctx->status,
		            (unsigned long long)ctx->resp_bytes,
		            (long long)(time_mono_ms() - ctx->t0_ms),
		            toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (aborted)");
	}
	if (ctx->on_done)
		ctx->on_done(ctx->on_done_arg);
	if (ctx->resp_override)
		MHD_destroy_response(ctx->resp_override);
	if (ctx->route_state_free)
		ctx->route_state_free(ctx->route_state);
	buf_free(&ctx->body);
	buf_free(&ctx->resp);
	arena_free(&ctx->arena);
	*con_cls = NULL;
	live_remove(s, ctx);
	free(ctx);
}

static int listen_socket(const char *bind_addr, int port, int *out_fd, int *out_port, char *err,
                         size_t n_err)
{
	struct addrinfo hints = {0}, *res = NULL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	char ps[16];
	snprintf(ps, sizeof ps, "%d", port);
	int gai = getaddrinfo(bind_addr, ps, &hints, &res);
	if (gai)
		return sfa_err(
			err, n_err, SFA_EINVAL,
			"Cannot listen on \"%s\": it is not an IP address (use e.g. 127.0.0.1 or "
			"0.0.0.0).",
			bind_addr);
	int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
	if (fd < 0) {
		freeaddrinfo(res);
		return sfa_err(err, n_err, SFA_EIO, "Cannot create a socket: %s.", strerror(errno));
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
		int e = errno;
		freeaddrinfo(res);
		close(fd);
		if (e == EADDRINUSE)
			return sfa_err(
				err, n_err, SFA_EIO,
				"Port %d on %s is already in use; stop the other server or pick "
				"another port with --port.",
				port, bind_addr);
		if (e == EACCES)
			return sfa_err(
				err, n_err, SFA_EIO,
				"Permission denied to listen on port %d; use a port above 1023.",
				port);
		return sfa_err(err, n_err, SFA_EIO, "Cannot listen on %s:%d: %s.", bind_addr, port,
		               strerror(e));
	}
	freeaddrinfo(res);
	if (listen(fd, 128) != 0) {
		close(fd);
		return sfa_err(err, n_err, SFA_EIO, "listen() failed: %s.", strerror(errno));
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	*out_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
	                                     : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	*out_fd = fd;
	return 0;
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	vsnprintf(line, sizeof line, fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_warn("libmicrohttpd: %s", line);
}

/* libmicrohttpd's accept policy: every connection until server_stop begins, none after. */
static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t len)
{
	(void)addr, (void)len;
	struct server *s = cls;
	return atomic_load(&s->closing) ? MHD_NO : MHD_YES;
}

int server_start(const struct server_opts *o, struct server **out, char *err, size_t n_err)
{
	struct server *s = calloc(1, sizeof *s);
	if (!s)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory starting the HTTP server.");
	s->o = *o;
	if (!(s->ws = ws_registry_new())) {
		free(s);
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory starting the HTTP server.");
	}
	pthread_mutex_init(&s->live_mu, NULL);
	int fd = -1;
	int rc = listen_socket(o->bind, o->port, &fd, &s->port, err, n_err);
	if (rc) {
		pthread_mutex_destroy(&s->live_mu);
		ws_registry_free(s->ws);
		free(s);
		return rc;
	}
	signal(SIGPIPE, SIG_IGN);
	atomic_store(&s->closing, false);
	s->d = MHD_start_daemon(
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG |
			MHD_ALLOW_UPGRADE,
		0, accept_policy, s, access_handler, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger,
		NULL, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_THREAD_POOL_SIZE,
		(unsigned)o->n_threads, MHD_OPTION_URI_LOG_CALLBACK, uri_logger, s,
		MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)(32 * 1024), MHD_OPTION_END);
	if (!s->d) {
		close(fd);
		pthread_mutex_destroy(&s->live_mu);
		ws_registry_free(s->ws);
		free(s);
		return sfa_err(err, n_err, SFA_EIO, "The HTTP server could not start.");
	}
	log_info("listening on http://%s:%d", o->bind, s->port);
	atomic_store(&s->reaper_stop, false);
	s->reaping = o->header_timeout_s > 0 &&
	             pthread_create(&s->reaper, NULL, deadline_reaper, s) == 0;
	if (o->on_listen)
		o->on_listen(s->port, o->on_listen_arg);
	*out = s;
	return 0;
}

int server_port(const struct server *s) { return s->port; }

int server_in_flight(struct server *s) { return atomic_load(&s->in_flight); }

void server_stop(struct server *s)
{
	if (!s)
		return;
	const struct server_opts *o = &s->o;
	/* Not MHD_quiesce_daemon: on an epoll daemon with worker threads it races with the
	 * workers removing the listening socket themselves and aborts the process (an open
	 * libmicrohttpd defect; it did so here when a server stopped right after starting).
	 * The accept policy turns new connections away instead, until MHD_stop_daemon. */
	atomic_store(&s->closing, true);
	/* Upgraded connections count as in flight until their socket is handed back, and
	 * libmicrohttpd cannot stop while one is open: close them first (1001). */
	int ws_left = ws_registry_shutdown(s->ws, WS_CLOSE_WAIT_MS + 1000);
	int64_t deadline = time_mono_ms() + (int64_t)o->grace_s * 1000;
	while (atomic_load(&s->in_flight) > 0 && time_mono_ms() < deadline) {
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	int left = atomic_load(&s->in_flight);
	if (left > 0) {
		log_warn("%d request(s) still running after %d s; closing them", left, o->grace_s);
		log_live(s);
		pthread_t t;
		if (pthread_create(&t, NULL, stuck_exit, s) == 0)
			pthread_detach(t);
		else
			left = 0;
	}
	MHD_stop_daemon(s->d);
	if (s->reaping) {
		atomic_store(&s->reaper_stop, true);
		pthread_join(s->reaper, NULL);
	}
	if (left > 0)
		return; /* stuck_exit still reads s; the process ends within STUCK_EXIT_MS */
	pthread_mutex_destroy(&s->live_mu);
	if (ws_left == 0)
		ws_registry_free(s->ws); /* else connections still refer to it: left for the exit */
	free(s);
}

int server_run(const struct server_opts *o, char *err, size_t n_err)
{
	/* Block the stop signals in every thread (libmicrohttpd's inherit this mask) and
	 * take them synchronously below. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	log_batch_start();
	struct server *s = NULL;
	int rc = server_start(o, &s, err, n_err);
	if (rc) {
		log_batch_stop();
		return rc;
	}
	int sig = 0;
	sigwait(&set, &sig);
	log_info("received %s: no new connections; finishing %d request(s) in flight",
	         sig == SIGINT ? "SIGINT" : "SIGTERM", server_in_flight(s));
	server_stop(s);
	log_batch_stop();
	log_info("HTTP server stopped");
	return 0;
}
