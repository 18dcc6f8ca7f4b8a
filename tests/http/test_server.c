/* test_server.c - the HTTP server is a value: two run in one process, each with its own
 * requests in flight and WebSocket connections, and stopping one leaves the other serving
 * both. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/request.h"
#include "http/server.h"
#include "http/ws_conn.h"

/* What a server's dispatch answers, and a gate that holds its /hold requests until the
 * test opens it. */
struct tag {
	const char *name;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int n_held; /* /hold requests inside dispatch */
	bool open;
};

static void ws_message(void *arg, struct ws_conn *c, bool is_text, const uint8_t *data, size_t n)
{
	(void)arg, (void)c, (void)is_text, (void)data, (void)n;
}

static void ws_closed(void *arg) { (void)arg; }

static const struct ws_handler ws_handler = {.on_message = ws_message, .on_close = ws_closed};

static void dispatch(struct http_ctx *ctx)
{
	struct tag *t = (struct tag *)(void *)ctx->app;
	if (strcmp(ctx->path, "/ws") == 0) {
		if (ws_conn_check_request(ctx) == 0) {
			struct ws_conn *c = ws_conn_new(&ws_handler, NULL);
			if (c)
				ws_conn_accept(ctx, c, NULL);
			else
				http_error(ctx, 500, "internal", "out of memory");
		}
		return;
	}
	if (strcmp(ctx->path, "/hold") == 0) {
		pthread_mutex_lock(&t->mu);
		t->n_held++;
		pthread_cond_broadcast(&t->cv);
		while (!t->open)
			pthread_cond_wait(&t->cv, &t->mu);
		pthread_mutex_unlock(&t->mu);
	}
	http_text(ctx, 200, "text/plain", t->name);
}

static void tag_init(struct tag *t, const char *name)
{
	memset(t, 0, sizeof *t);
	t->name = name;
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cv, NULL);
}

static void tag_destroy(struct tag *t)
{
	pthread_mutex_destroy(&t->mu);
	pthread_cond_destroy(&t->cv);
}

static struct server *start(struct tag *t)
{
	struct server_opts o = {.bind = "127.0.0.1",
	                        .port = 0,
	                        .n_threads = 2,
	                        .grace_s = 5,
	                        .header_timeout_s = 10,
	                        .body_timeout_s = 10,
	                        .access_log_every = -1,
	                        .dispatch = dispatch,
	                        .app = (struct app *)(void *)t};
	struct server *s = NULL;
	char err[256];
	assert_int_equal(server_start(&o, &s, err, sizeof err), 0);
	assert_non_null(s);
	assert_true(server_port(s) > 0);
	return s;
}

/* GET path from 127.0.0.1:port; the response body into body. Returns the status. */
static int get(int port, const char *path, char *body, size_t n_body)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	char req[256];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
	                 path);
	assert_int_equal(write(fd, req, (size_t)n), n);
	char resp[8192];
	size_t len = 0;
	ssize_t r;
	while (len < sizeof resp - 1 && (r = read(fd, resp + len, sizeof resp - 1 - len)) > 0)
		len += (size_t)r;
	close(fd);
	resp[len] = '\0';
	int status = 0;
	assert_int_equal(sscanf(resp, "HTTP/1.1 %d", &status), 1);
	const char *b = strstr(resp, "\r\n\r\n");
	snprintf(body, n_body, "%s", b ? b + 4 : "");
	return status;
}

/* Opens a WebSocket on 127.0.0.1:port/ws; returns the socket, with the answer's status in
 * *status (101 when it was accepted). The caller closes the socket. */
static int ws_open(int port, int *status)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	static const char req[] = "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
				  "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
				  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
	assert_int_equal(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
	char head[1024];
	size_t len = 0;
	ssize_t r;
	while (len < sizeof head - 1 && (r = read(fd, head + len, 1)) == 1) {
		len++;
		head[len] = '\0';
		if (len >= 4 && strcmp(head + len - 4, "\r\n\r\n") == 0)
			break;
	}
	head[len] = '\0';
	*status = 0;
	assert_int_equal(sscanf(head, "HTTP/1.1 %d", status), 1);
	return fd;
}

struct held_get {
	int port;
	int status;
	char body[64];
};

static void *held_get_main(void *arg)
{
	struct held_get *h = arg;
	h->status = get(h->port, "/hold", h->body, sizeof h->body);
	return NULL;
}

static void two_servers_in_one_process(void **state)
{
	(void)state;
	struct tag ta, tb;
	tag_init(&ta, "A");
	tag_init(&tb, "B");
	ws_conn_set_limits(0, 200, 0); /* a stop waits 200 ms, not 2 s, for our close frame */
	struct server *a = start(&ta), *b = start(&tb);
	assert_int_not_equal(server_port(a), server_port(b));

	/* A request held inside A's dispatch is in flight on A only. */
	struct held_get h = {.port = server_port(a)};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, held_get_main, &h), 0);
	pthread_mutex_lock(&ta.mu);
	while (ta.n_held == 0)
		pthread_cond_wait(&ta.cv, &ta.mu);
	pthread_mutex_unlock(&ta.mu);
	assert_int_equal(server_in_flight(a), 1);
	assert_int_equal(server_in_flight(b), 0);

	/* B answers meanwhile, as itself. */
	char body[64];
	assert_int_equal(get(server_port(b), "/", body, sizeof body), 200);
	assert_string_equal(body, "B");
	assert_int_equal(server_in_flight(a), 1);

	/* Each has its own WebSocket connections: stopping B closes B's (its socket then reads
	 * B's close frame and the end) and leaves A taking new ones. */
	int st;
	int wb = ws_open(server_port(b), &st);
	assert_int_equal(st, 101);

	/* Stopping B leaves A's request running and A serving. */
	server_stop(b);
	assert_int_equal(server_in_flight(a), 1);
	uint8_t frame[64];
	ssize_t nf = read(wb, frame, sizeof frame);
	assert_true(nf >= 4);
	assert_int_equal(frame[0], 0x88); /* close */
	assert_int_equal((frame[2] << 8) | frame[3], 1001);
	close(wb);
	int wa = ws_open(server_port(a), &st);
	assert_int_equal(st, 101);
	pthread_mutex_lock(&ta.mu);
	ta.open = true;
	pthread_cond_broadcast(&ta.cv);
	pthread_mutex_unlock(&ta.mu);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(h.status, 200);
	assert_string_equal(h.body, "A");
	assert_int_equal(get(server_port(a), "/", body, sizeof body), 200);
	assert_string_equal(body, "A");
	server_stop(a);
	nf = read(wa, frame, sizeof frame);
	assert_true(nf >= 4);
	assert_int_equal(frame[0], 0x88);
	close(wa);
	tag_destroy(&ta);
	tag_destroy(&tb);
}

/* A port in use is an exact error, and nothing is left running. */
static void port_in_use(void **state)
{
	(void)state;
	struct tag ta;
	tag_init(&ta, "A");
	struct server *a = start(&ta);
	struct server_opts o = {.bind = "127.0.0.1",
	                        .port = server_port(a),
	                        .n_threads = 1,
	                        .dispatch = dispatch,
	                        .app = (struct app *)(void *)&ta};
	struct server *b = NULL;
	char err[256];
	assert_int_not_equal(server_start(&o, &b, err, sizeof err), 0);
	assert_null(b);
	assert_non_null(strstr(err, "already in use"));
	server_stop(a);
	tag_destroy(&ta);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(two_servers_in_one_process),
		cmocka_unit_test(port_in_use),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
