/* bench_http.c - an HTTP/1.1 load generator for `sfa serve`: N keep-alive connections,
 * one request in flight on each, cycling through the given paths for S seconds.
 *
 *   bench_http --port P [--host 127.0.0.1] [--connections 64] [--seconds 60]
 *              [--header "Authorization: Bearer sfa_..."] PATH [PATH...]
 *
 * Prints requests per second, p50/p99/max latency, and errors (a status other than 2xx or
 * 304, or a connection that failed). One thread and epoll: the client must not be what is
 * measured. Loopback only, bounded in time, stops by itself.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MAX_CONNS = 1024, MAX_PATHS = 16, BUF = 1 << 16, MAX_SAMPLES = 1 << 24 };

struct conn {
	int fd;
	int path;
	double t0;
	char *in;
	size_t n_in;
	char req[2048];
	size_t n_req, sent;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int connect_to(const char *host, int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
		close(fd);
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Length of a complete response at the start of buf (headers + Content-Length body), or 0
 * while incomplete; *status receives the status code. */
static size_t complete_response(const char *buf, size_t n, int *status)
{
	const char *end = memmem(buf, n, "\r\n\r\n", 4);
	if (!end)
		return 0;
	size_t head = (size_t)(end - buf) + 4;
	*status = n > 12 ? atoi(buf + 9) : 0;
	size_t body = 0;
	for (const char *p = buf; p < end; p++) {
		if ((p == buf || p[-1] == '\n') && strncasecmp(p, "Content-Length:", 15) == 0) {
			body = (size_t)strtoull(p + 15, NULL, 10);
			break;
		}
	}
	return n >= head + body ? head + body : 0;
}

int main(int argc, char **argv)
{
	const char *host = "127.0.0.1", *header = NULL;
	int port = 0, n_conns = 64;
	double seconds = 60;
	const char *paths[MAX_PATHS];
	int n_paths = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--port") && i + 1 < argc)
			port = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--host") && i + 1 < argc)
			host = argv[++i];
		else if (!strcmp(argv[i], "--connections") && i + 1 < argc)
			n_conns = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--header") && i + 1 < argc)
			header = argv[++i];
		else if (argv[i][0] == '/' && n_paths < MAX_PATHS)
			paths[n_paths++] = argv[i];
		else {
			fprintf(stderr, "usage: bench_http --port P [--connections N] [--seconds S] "
			                "[--header H] PATH...\n");
			return 2;
		}
	}
	if (!port || !n_paths || n_conns < 1 || n_conns > MAX_CONNS || seconds <= 0 ||
	    strncmp(host, "127.", 4) != 0) {
		fprintf(stderr, "bench_http: give a loopback port, 1..%d connections and paths\n",
		        MAX_CONNS);
		return 2;
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct conn *cs = calloc((size_t)n_conns, sizeof *cs);
	double *lat = malloc(MAX_SAMPLES * sizeof *lat);
	long n_lat = 0, n_ok = 0, n_err = 0, per_path_err[MAX_PATHS] = {0};
	if (ep < 0 || !cs || !lat)
		return 1;
	double start = now_s(), stop = start + seconds;
	for (int i = 0; i < n_conns; i++) {
		struct conn *c = &cs[i];
		c->in = malloc(BUF);
		c->path = i % n_paths;
		c->fd = connect_to(host, port);
		if (c->fd < 0 || !c->in) {
			fprintf(stderr, "bench_http: cannot connect to %s:%d\n", host, port);
			return 1;
		}
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i};
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
	}
	/* Every connection starts with a request. */
	for (int i = 0; i < n_conns; i++) {
		struct conn *c = &cs[i];
		c->n_req = (size_t)snprintf(c->req, sizeof c->req,
		                            "GET %s HTTP/1.1\r\nHost: %s:%d\r\n%s%s\r\n",
		                            paths[c->path], host, port, header ? header : "",
		                            header ? "\r\n" : "");
		c->sent = 0;
		c->t0 = now_s();
	}
	struct epoll_event evs[256];
	while (now_s() < stop) {
		int n = epoll_wait(ep, evs, 256, 100);
		for (int k = 0; k < n; k++) {
			struct conn *c = &cs[evs[k].data.u32];
			if (evs[k].events & (EPOLLERR | EPOLLHUP)) {
				n_err++;
				per_path_err[c->path]++;
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				close(c->fd);
				c->fd = connect_to(host, port);
				c->n_in = 0;
				c->sent = 0;
				c->t0 = now_s();
				struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT,
				                         .data.u32 = evs[k].data.u32};
				if (c->fd >= 0)
					epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
				continue;
			}
			if ((evs[k].events & EPOLLOUT) && c->sent < c->n_req) {
				ssize_t w = send(c->fd, c->req + c->sent, c->n_req - c->sent, MSG_NOSIGNAL);
				if (w > 0)
					c->sent += (size_t)w;
			}
			if (evs[k].events & EPOLLIN) {
				ssize_t r = recv(c->fd, c->in + c->n_in, BUF - c->n_in, 0);
				if (r <= 0) {
					if (r < 0 && errno == EAGAIN)
						continue;
					n_err++;
					per_path_err[c->path]++;
					continue;
				}
				c->n_in += (size_t)r;
				int status = 0;
				size_t len = complete_response(c->in, c->n_in, &status);
				if (len) {
					double t = now_s();
					if (n_lat < MAX_SAMPLES)
						lat[n_lat++] = t - c->t0;
					if ((status >= 200 && status < 300) || status == 304) {
						n_ok++;
					} else {
						n_err++;
						per_path_err[c->path]++;
					}
					memmove(c->in, c->in + len, c->n_in - len);
					c->n_in -= len;
					c->path = (c->path + 1) % n_paths;
					c->n_req = (size_t)snprintf(c->req, sizeof c->req,
					                            "GET %s HTTP/1.1\r\nHost: %s:%d\r\n%s%s\r\n",
					                            paths[c->path], host, port, header ? header : "",
					                            header ? "\r\n" : "");
					c->sent = 0;
					c->t0 = t;
					ssize_t w = send(c->fd, c->req, c->n_req, MSG_NOSIGNAL);
					if (w > 0)
						c->sent = (size_t)w;
				}
			}
		}
	}
	double wall = now_s() - start;
	qsort(lat, (size_t)n_lat, sizeof *lat, cmp_double);
	double p50 = n_lat ? lat[n_lat / 2] : 0, p99 = n_lat ? lat[(long)((double)n_lat * 0.99)] : 0;
	double mx = n_lat ? lat[n_lat - 1] : 0;
	printf("bench_http: %d connections, %.1f s, paths:", n_conns, wall);
	for (int i = 0; i < n_paths; i++)
		printf(" %s", paths[i]);
	printf("\n  requests %ld ok, %ld errors; %.0f req/s; latency p50 %.2f ms, p99 %.2f ms, "
	       "max %.1f ms\n",
	       n_ok, n_err, (double)n_ok / wall, p50 * 1e3, p99 * 1e3, mx * 1e3);
	for (int i = 0; i < n_paths; i++)
		if (per_path_err[i])
			printf("  errors on %s: %ld\n", paths[i], per_path_err[i]);
	return n_err ? 1 : 0;
}
