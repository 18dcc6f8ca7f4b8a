/* socket.h - live progress: the Phoenix Channels v2 protocol over WebSocket (spec §6).
 *
 * GET /socket/websocket?vsn=2.0.0&token=<API key> upgrades to a WebSocket that speaks
 * the JSON serializer of Phoenix Channels v2: every message is the array
 * [join_ref, ref, topic, event, payload], so the official `phoenix` JavaScript client
 * works unchanged. The handler (api_socket, routes.h) authenticates, then hands the
 * connection to a phx_session, which is transport-agnostic so tests can drive it with
 * a fake transport and no sockets.
 *
 * Authentication, checked before the upgrade (refused: 403 JSON): an API key in the
 * `token` query parameter (or in the phoenix client's authToken subprotocol,
 * "base64url.bearer.phx.<base64url key>", which keeps the key out of URLs); otherwise
 * the `_sfa_session` cookie, accepted only when Origin is this server's own origin
 * (http[s]://<Host>), so another site cannot ride a visitor's session.
 *
 * Topics: "user:<id>" (only the caller's own id: all of their jobs' events) and
 * "jobs:<job id>" (only the caller's own jobs, checked through socket_job_owner_check).
 * Anything else, or too many topics (PHX_MAX_TOPICS per connection), is refused in the
 * join reply. A join subscribes the connection to that topic of the in-process bus
 * (jobs/bus.h); events published there (job:progress, job:completed, job:failed) become
 * pushes [join_ref, null, topic, event, payload]. Leaving or closing unsubscribes.
 *
 * Replies, as Phoenix gives them: phx_join → phx_reply {"status":"ok","response":{}};
 * refused → {"status":"error","response":{"reason":"unauthorized"}}; heartbeat on
 * "phoenix" → ok {}; "ping" on a joined topic (or "phoenix") → ok {"pong":true}; any
 * other event on a joined topic → error {"reason":"unknown event"}; a message on a
 * topic not joined → error {"reason":"unmatched topic"}. Joining a topic already joined
 * replaces the old subscription (Phoenix closes the old channel and joins anew).
 *
 * Malformed input is not ignored: a binary message closes the connection with 1003
 * (only the JSON serializer is spoken), text that is not a five-element JSON array with
 * string topic and event and null/string/integer refs closes it with 1007. A client
 * that sends garbage is broken, and an explicit close tells it so at once.
 *
 * One account may hold PHX_MAX_SOCKETS_PER_USER sockets at once (429 past that), so a
 * single key cannot take every connection slot (ws_conn.h caps the total).
 *
 * Threading: a session's messages are handled on its connection's thread; bus
 * deliveries arrive on the publisher's thread and only queue a message (thread-safe
 * transport). socket_job_owner_check is set once at start-up (tests) and read after.
 */
#ifndef SFA_API_SOCKET_H
#define SFA_API_SOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct app;

enum {
	PHX_MAX_TOPICS = 100,          /* joined topics per connection */
	PHX_MAX_TOPIC_BYTES = 128,     /* a longer topic is refused, never stored */
	PHX_MAX_SOCKETS_PER_USER = 32, /* open sockets of one user (tabs, scripts): 429 past it */
};

/* How a session talks to its client. send_text may be called from any thread; close
 * only from the thread that calls phx_session_handle. */
struct phx_transport {
	int (*send_text)(void *arg, const char *text, size_t n);
	void (*close)(void *arg, uint16_t code, const char *reason);
	void *arg;
};

/* Whether job_id is one of user_id's jobs. The default, socket_job_owner_db, asks the
 * database (db_job_owned); tests may point this elsewhere before any session exists. */
/* Closes (1008 "credentials revoked") every open socket opened with the credential whose
 * token hash is cred_hash: a revoked API key, an ended session. */
void socket_close_credential(const char *cred_hash);
/* Closes the sockets opened with any session of user_id but keep_token's (NULL: all). */
void socket_close_user_sessions(const char *user_id, const char *keep_token);

typedef bool (*socket_job_owner_fn)(struct app *app, const char *user_id, const char *job_id);
extern socket_job_owner_fn socket_job_owner_check;
bool socket_job_owner_db(struct app *app, const char *user_id, const char *job_id);

struct phx_session;

/* A session for an authenticated user; the caller frees it with phx_session_free. The
 * transport is copied. NULL when out of memory. */
struct phx_session *phx_session_new(struct app *app, const char *user_id,
                                    const struct phx_transport *tr);
/* Handles one whole WebSocket message from the client. */
void phx_session_handle(struct phx_session *s, bool is_text, const uint8_t *data, size_t n);
/* Unsubscribes every topic, then frees. After it returns the transport is never used
 * again. NULL is a no-op. */
void phx_session_free(struct phx_session *s);
/* Topics currently joined. */
int phx_session_n_topics(const struct phx_session *s);

/* Counts an open socket of user_id: SFA_ETOOBIG (nothing counted) when the user already
 * has PHX_MAX_SOCKETS_PER_USER, so one account cannot take every connection slot.
 * Thread-safe. Every successful acquire is matched by one release. */
int socket_user_acquire(const char *user_id);
void socket_user_release(const char *user_id);
int socket_user_count(const char *user_id);

#endif
