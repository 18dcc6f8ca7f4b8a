/* socket.c - see socket.h. The HTTP side (authentication, upgrade) is api_socket at the
 * bottom; above it the Phoenix session, which knows nothing of sockets.
 *
 * A joined topic is a struct phx_chan holding its bus subscription and the first bytes
 * of every push on it, `[<join_ref>,null,<topic>,`, encoded once at join time, so a
 * delivery on the publisher's thread only concatenates and queues. The list of channels
 * belongs to the connection's thread; a channel is freed only after bus_unsubscribe has
 * returned, when no delivery can be running on it any more.
 */
#include "api/socket.h"

#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/app.h"
#include "api/routes.h"
#include "core/accounts.h"
#include "core/token.h"
#include "http/websocket.h"
#include "http/ws_conn.h"
#include "jobs/bus.h"
#include "jobs/registry.h"
#include "util/err.h"
#include "util/json.h"
#include "util/log.h"
#include "util/str.h"

struct phx_chan {
	struct phx_chan *next;
	struct phx_session *s;
	struct bus_sub *sub;
	char *prefix; /* `[<join_ref>,null,<topic>,` */
	size_t n_prefix;
	char topic[];
};

struct phx_session {
	struct app *app;
	char user_id[UUID_STR_LEN];
	struct phx_transport tr;
	struct phx_chan *chans;
	int n_chans;
	bool counted; /* holds one socket_user_acquire */
	/* The credential it was opened with (hash of the API key or of the session token), so
	 * revoking that credential closes it; listed in g_open while the socket is open. */
	char cred_hash[TOKEN_HASH_LEN];
	bool by_session;
	struct ws_conn *conn;
	struct phx_session *open_next;
};

static pthread_mutex_t g_open_mu = PTHREAD_MUTEX_INITIALIZER;
static struct phx_session *g_open;

static void open_add(struct phx_session *s)
{
	pthread_mutex_lock(&g_open_mu);
	s->open_next = g_open;
	g_open = s;
	pthread_mutex_unlock(&g_open_mu);
}

static void open_remove(struct phx_session *s)
{
	pthread_mutex_lock(&g_open_mu);
	for (struct phx_session **pp = &g_open; *pp; pp = &(*pp)->open_next) {
		if (*pp == s) {
			*pp = s->open_next;
			break;
		}
	}
	pthread_mutex_unlock(&g_open_mu);
}

/* Closes the open sockets matching: a credential hash, or (cred_hash NULL) every
 * session-opened socket of user_id except the one of keep_hash. ws_conn_close only queues
 * the close; a session leaves g_open (under the same lock) before its connection is
 * freed, so each one is alive while it is closed here. */
static int close_matching(const char *cred_hash, const char *user_id, const char *keep_hash)
{
	int n = 0;
	pthread_mutex_lock(&g_open_mu);
	for (struct phx_session *s = g_open; s; s = s->open_next) {
		bool hit = cred_hash ? strcmp(s->cred_hash, cred_hash) == 0
		                     : s->by_session && strcmp(s->user_id, user_id) == 0 &&
		                               (!keep_hash || strcmp(s->cred_hash, keep_hash) != 0);
		if (hit && s->conn) {
			ws_conn_close(s->conn, WS_CLOSE_POLICY, "credentials revoked");
			n++;
		}
	}
	pthread_mutex_unlock(&g_open_mu);
	return n;
}

void socket_close_credential(const char *cred_hash)
{
	int n = close_matching(cred_hash, NULL, NULL);
	if (n)
		log_info("closed %d socket(s) whose credentials were revoked", n);
}

void socket_close_user_sessions(const char *user_id, const char *keep_token)
{
	char keep[TOKEN_HASH_LEN];
	if (keep_token)
		token_hash(keep_token, keep);
	int n = close_matching(NULL, user_id, keep_token ? keep : NULL);
	if (n)
		log_info("closed %d socket(s) of sessions that ended", n);
}

/* Open sockets per user: a short list, one entry per user with a socket open. */
struct user_count {
	struct user_count *next;
	int n;
	char user_id[UUID_STR_LEN];
};

static pthread_mutex_t g_users_mu = PTHREAD_MUTEX_INITIALIZER;
static struct user_count *g_users;

int socket_user_acquire(const char *user_id)
{
	int rc = 0;
	pthread_mutex_lock(&g_users_mu);
	struct user_count *u = g_users;
	while (u && strcmp(u->user_id, user_id) != 0)
		u = u->next;
	if (!u) {
		u = calloc(1, sizeof *u);
		if (u) {
			str_copy(u->user_id, sizeof u->user_id, user_id);
			u->next = g_users;
			g_users = u;
		}
	}
	if (!u)
		rc = SFA_ENOMEM;
	else if (u->n >= PHX_MAX_SOCKETS_PER_USER)
		rc = SFA_ETOOBIG;
	else
		u->n++;
	pthread_mutex_unlock(&g_users_mu);
	return rc;
}

void socket_user_release(const char *user_id)
{
	pthread_mutex_lock(&g_users_mu);
	for (struct user_count **pp = &g_users; *pp; pp = &(*pp)->next) {
		struct user_count *u = *pp;
		if (strcmp(u->user_id, user_id) == 0) {
			if (--u->n <= 0) {
				*pp = u->next;
				free(u);
			}
			break;
		}
	}
	pthread_mutex_unlock(&g_users_mu);
}

int socket_user_count(const char *user_id)
{
	int n = 0;
	pthread_mutex_lock(&g_users_mu);
	for (struct user_count *u = g_users; u; u = u->next)
		if (strcmp(u->user_id, user_id) == 0)
			n = u->n;
	pthread_mutex_unlock(&g_users_mu);
	return n;
}

socket_job_owner_fn socket_job_owner_check = socket_job_owner_db;

bool socket_job_owner_db(struct app *app, const char *user_id, const char *job_id)
{
	return db_job_owned(app->db, user_id, job_id) == 0;
}

struct phx_session *phx_session_new(struct app *app, const char *user_id,
                                    const struct phx_transport *tr)
{
	struct phx_session *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->app = app;
	str_copy(s->user_id, sizeof s->user_id, user_id);
	s->tr = *tr;
	return s;
}

int phx_session_n_topics(const struct phx_session *s) { return s->n_chans; }

static void chan_free(struct phx_chan *ch)
{
	bus_unsubscribe(ch->sub); /* after this, deliver() never runs on ch again */
	free(ch->prefix);
	free(ch);
}

void phx_session_free(struct phx_session *s)
{
	if (!s)
		return;
	open_remove(s);
	while (s->chans) {
		struct phx_chan *ch = s->chans;
		s->chans = ch->next;
		chan_free(ch);
	}
	if (s->counted)
		socket_user_release(s->user_id);
	free(s);
}

static struct phx_chan *find_chan(struct phx_session *s, const char *topic, struct phx_chan ***link)
{
	for (struct phx_chan **pp = &s->chans; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->topic, topic) == 0) {
			if (link)
				*link = pp;
			return *pp;
		}
	}
	return NULL;
}

static void drop_chan(struct phx_session *s, const char *topic)
{
	struct phx_chan **link;
	struct phx_chan *ch = find_chan(s, topic, &link);
	if (!ch)
		return;
	*link = ch->next;
	s->n_chans--;
	chan_free(ch);
}

static void send_json(struct phx_session *s, json_t *msg)
{
	char *text = msg ? json_encode(msg) : NULL;
	json_decref(msg);
	if (!text) {
		log_error("socket: out of memory encoding a reply");
		return;
	}
	s->tr.send_text(s->tr.arg, text, strlen(text));
	free(text);
}

/* [join_ref, ref, topic, "phx_reply", {"status": status, "response": response}];
 * response is consumed. */
static void reply(struct phx_session *s, json_t *join_ref, json_t *ref, const char *topic,
                  const char *status, json_t *response)
{
	send_json(s, json_pack("[O,O,s,s,{s:s,s:o}]", join_ref, ref, topic, "phx_reply", "status",
	                       status, "response", response ? response : json_object()));
}

static void reply_error(struct phx_session *s, json_t *join_ref, json_t *ref, const char *topic,
                        const char *reason)
{
	reply(s, join_ref, ref, topic, "error", json_pack("{s:s}", "reason", reason));
}

/* A bus delivery, on the publisher's thread: queue the push and return. */
static void deliver(void *arg, const char *topic, const char *event, const char *payload_json)
{
	struct phx_chan *ch = arg;
	json_t *ev = json_string(event);
	char *ev_text = ev ? json_encode(ev) : NULL;
	json_decref(ev);
	if (!ev_text)
		return;
	struct buf b;
	buf_init(&b, WS_QUEUE_MAX_BYTES);
	const char *payload = payload_json && *payload_json ? payload_json : "{}";
	if (buf_append(&b, ch->prefix, ch->n_prefix) == 0 && buf_puts(&b, ev_text) == 0 &&
	    buf_puts(&b, ",") == 0 && buf_puts(&b, payload) == 0 && buf_puts(&b, "]") == 0)
		ch->s->tr.send_text(ch->s->tr.arg, b.data, b.len);
	else
		log_warn("socket: a %s event on %s was too large to push", event, topic);
	buf_free(&b);
	free(ev_text);
}

static bool authorized(struct phx_session *s, const char *topic)
{
	if (strlen(topic) > PHX_MAX_TOPIC_BYTES)
		return false;
	if (strncmp(topic, "user:", 5) == 0)
		return strcmp(topic + 5, s->user_id) == 0;
	if (strncmp(topic, "jobs:", 5) == 0) {
		const char *id = topic + 5;
		return *id && socket_job_owner_check(s->app, s->user_id, id);
	}
	return false;
}

static void join(struct phx_session *s, json_t *join_ref, json_t *ref, const char *topic)
{
	drop_chan(s, topic); /* a second join replaces the first, as in Phoenix */
	if (!authorized(s, topic)) {
		reply_error(s, join_ref, ref, topic, "unauthorized");
		return;
	}
	if (s->n_chans >= PHX_MAX_TOPICS) {
		reply_error(s, join_ref, ref, topic, "too many topics");
		return;
	}
	size_t n_topic = strlen(topic);
	struct phx_chan *ch = calloc(1, sizeof *ch + n_topic + 1);
	json_t *head = json_pack("[O,n,s]", join_ref, topic);
	char *head_text = head ? json_encode(head) : NULL;
	json_decref(head);
	if (!ch || !head_text) {
		free(ch);
		free(head_text);
		reply_error(s, join_ref, ref, topic, "internal error");
		return;
	}
	memcpy(ch->topic, topic, n_topic + 1);
	/* `[jr,null,"topic"]` → `[jr,null,"topic",`: the event and payload follow. */
	size_t n_head = strlen(head_text);
	head_text[n_head - 1] = ',';
	ch->prefix = head_text;
	ch->n_prefix = n_head;
	ch->s = s;
	/* Subscribe before replying: no event published after the reply can be missed. */
	ch->sub = bus_subscribe(s->app->bus, topic, deliver, ch);
	if (!ch->sub) {
		free(ch->prefix);
		free(ch);
		reply_error(s, join_ref, ref, topic, "internal error");
		return;
	}
	ch->next = s->chans;
	s->chans = ch;
	s->n_chans++;
	reply(s, join_ref, ref, topic, "ok", NULL);
}

static bool ref_ok(const json_t *r)
{
	return json_is_null(r) || json_is_string(r) || json_is_integer(r);
}

void phx_session_handle(struct phx_session *s, bool is_text, const uint8_t *data, size_t n)
{
	if (!is_text) {
		s->tr.close(
			s->tr.arg, WS_CLOSE_UNSUPPORTED,
			"binary messages are not supported: use the JSON serializer (vsn=2.0.0)");
		return;
	}
	json_error_t je;
	json_t *m = json_loadb((const char *)data, n, 0, &je);
	json_t *join_ref = json_array_get(m, 0), *ref = json_array_get(m, 1);
	json_t *jtopic = json_array_get(m, 2), *jevent = json_array_get(m, 3);
	if (!json_is_array(m) || json_array_size(m) != 5 || !ref_ok(join_ref) || !ref_ok(ref) ||
	    !json_is_string(jtopic) || !json_is_string(jevent)) {
		json_decref(m);
		s->tr.close(s->tr.arg, WS_CLOSE_INVALID_DATA,
		            "malformed message: expected [join_ref, ref, topic, event, payload]");
		return;
	}
	const char *topic = json_string_value(jtopic);
	const char *event = json_string_value(jevent);
	bool joined = find_chan(s, topic, NULL) != NULL;
	if (strcmp(event, "phx_join") == 0) {
		join(s, join_ref, ref, topic);
	} else if (strcmp(topic, "phoenix") == 0 && strcmp(event, "heartbeat") == 0) {
		reply(s, join_ref, ref, topic, "ok", NULL);
	} else if (!joined && strcmp(topic, "phoenix") != 0) {
		reply_error(s, join_ref, ref, topic, "unmatched topic");
	} else if (strcmp(event, "ping") == 0) {
		reply(s, join_ref, ref, topic, "ok", json_pack("{s:b}", "pong", 1));
	} else if (strcmp(event, "phx_leave") == 0 && joined) {
		drop_chan(s, topic);
		reply(s, join_ref, ref, topic, "ok", NULL);
	} else {
		reply_error(s, join_ref, ref, topic, joined ? "unknown event" : "unmatched topic");
	}
	json_decref(m);
}

/* ---- HTTP: authentication and upgrade ---- */

static int ws_send(void *arg, const char *text, size_t n)
{
	return ws_conn_send_text(arg, text, n);
}

static void ws_close(void *arg, uint16_t code, const char *reason)
{
	ws_conn_close(arg, code, reason);
}

static void on_message(void *arg, struct ws_conn *c, bool is_text, const uint8_t *data, size_t n)
{
	phx_session_handle(arg, is_text, data, n);
}

static void on_close(void *arg) { phx_session_free(arg); }

static const struct ws_handler phx_ws_handler = {on_message, on_close};

static const char auth_token_prefix[] = "base64url.bearer.phx.";

/* Looks through Sec-WebSocket-Protocol: whether "phoenix" is offered, and the API key the
 * phoenix client's authToken option carries (written into key, "" when none). */
static bool scan_subprotocols(const char *list, char key[TOKEN_STR_LEN])
{
	key[0] = '\0';
	bool phoenix = false;
	const char *p = list ? list : "";
	while (*p) {
		while (*p == ' ' || *p == ',')
			p++;
		size_t k = strcspn(p, ", ");
		if (k == 7 && strncmp(p, "phoenix", 7) == 0)
			phoenix = true;
		size_t np = sizeof auth_token_prefix - 1;
		if (k > np && strncmp(p, auth_token_prefix, np) == 0) {
			unsigned char raw[TOKEN_STR_LEN];
			size_t n_raw = 0;
			const char *b64 = p + np;
			size_t n_b64 = k - np;
			if ((sodium_base642bin(raw, sizeof raw - 1, b64, n_b64, NULL, &n_raw, NULL,
			                       sodium_base64_VARIANT_ORIGINAL_NO_PADDING) == 0 ||
			     sodium_base642bin(raw, sizeof raw - 1, b64, n_b64, NULL, &n_raw, NULL,
			                       sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0) &&
			    n_raw < TOKEN_STR_LEN) {
				memcpy(key, raw, n_raw);
				key[n_raw] = '\0';
				if (strlen(key) != n_raw)
					key[0] = '\0'; /* a NUL inside: not a key */
			}
		}
		p += k;
	}
	return phoenix;
}

static bool same_origin(struct http_ctx *ctx)
{
	const char *origin = http_req_header(ctx, "Origin");
	const char *host = http_req_header(ctx, "Host");
	if (!origin || !host || !*host)
		return false;
	char own[320];
	int n = snprintf(own, sizeof own, "%s://%s", ctx->app->cfg.https ? "https" : "http", host);
	return n > 0 && (size_t)n < sizeof own && strcasecmp(origin, own) == 0;
}

void api_socket(struct http_ctx *ctx)
{
	if (ws_conn_check_request(ctx))
		return;
	const char *vsn = http_query(ctx, "vsn");
	if (!vsn || strcmp(vsn, "2.0.0") != 0) {
		http_error(
			ctx, 400, "bad_request",
			"Only the Phoenix Channels v2 JSON serializer is spoken here: connect with "
			"vsn=2.0.0.");
		return;
	}
	char proto_key[TOKEN_STR_LEN];
	bool phoenix_proto = scan_subprotocols(http_req_header(ctx, "Sec-WebSocket-Protocol"),
	                                       proto_key);
	const char *key = http_query(ctx, "token");
	if (!key || !*key)
		key = proto_key[0] ? proto_key : NULL;
	int64_t now = (int64_t)time(NULL);
	struct db_user u;
	if (key) {
		if (accounts_api_key_user(ctx->app->db, ctx->app->keys, key, now, &u) != 0) {
			http_error(ctx, 403, "forbidden",
			           "The API key is not valid or was revoked.");
			return;
		}
	} else {
		const char *tok = http_cookie(ctx, "_sfa_session");
		if (!tok) {
			http_error(
				ctx, 403, "forbidden",
				"Authentication required: connect with token=<API key>, or from a page "
				"of this site while logged in.");
			return;
		}
		if (!same_origin(ctx)) {
			http_error(
				ctx, 403, "forbidden",
				"A session cookie only authenticates a socket opened by this site's own "
				"pages (the Origin does not match).");
			return;
		}
		if (accounts_session_user(ctx->app->db, tok, now, &u) != 0) {
			http_error(ctx, 403, "forbidden", "The session has expired; log in again.");
			return;
		}
	}
	if (socket_user_acquire(u.id) != 0) {
		char msg[160];
		snprintf(
			msg, sizeof msg,
			"Too many open sockets for this account (the limit is %d); close some first.",
			PHX_MAX_SOCKETS_PER_USER);
		http_error(ctx, 429, "rate_limited", msg);
		return;
	}
	struct ws_conn *c = ws_conn_new(&phx_ws_handler, NULL);
	struct phx_transport tr = {ws_send, ws_close, c};
	struct phx_session *s = c ? phx_session_new(ctx->app, u.id, &tr) : NULL;
	if (!s) {
		socket_user_release(u.id);
		if (c)
			ws_conn_discard(c);
		http_error(ctx, 500, "internal", "Out of memory opening the socket.");
		return;
	}
	s->counted = true; /* released when the session ends, however the socket does */
	s->by_session = !key;
	token_hash(key ? key : http_cookie(ctx, "_sfa_session"), s->cred_hash);
	s->conn = c;
	open_add(s);
	ws_conn_set_arg(c, s);
	/* Checked again now that a revocation would find it: one that landed between the
	 * first check and open_add must not leave a socket open on a dead credential. */
	struct db_user again;
	if ((key ? accounts_api_key_user(ctx->app->db, NULL, key, now,
	                                 &again) /* the database's word */
	         : accounts_session_user(ctx->app->db, http_cookie(ctx, "_sfa_session"), now,
	                                 &again)) != 0) {
		ws_conn_discard(c); /* frees s through on_close */
		http_error(ctx, 403, "forbidden", "The credentials were revoked.");
		return;
	}
	ws_conn_accept(ctx, c, phoenix_proto ? "phoenix" : NULL);
}
