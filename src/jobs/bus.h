/* bus.h - in-process publish/subscribe for live job events.
 *
 * The job scheduler publishes each job's events on two topics, "jobs:<job id>" and
 * "user:<user id>"; WebSocket connections subscribe to the topics their users joined.
 * Events are (topic, event name, JSON payload text). Delivery calls the subscriber's
 * function synchronously on the publisher's thread, with no bus lock held; it should copy
 * the message into its own bounded queue and return, and must not unsubscribe itself
 * (bus_unsubscribe waits for running deliveries).
 *
 * A bus is a value (bus_new): a server makes one and hands it to its scheduler and its
 * socket handlers; a test may make two, and they share nothing. Events that other
 * processes publish (a worker on another node) reach a bus through the scheduler's relay
 * (jobs.h), never through the bus itself.
 *
 * Threading: every function may be called from any thread. bus_free is called once, after
 * every subscription is gone and nobody publishes any more.
 */
#ifndef SFA_JOBS_BUS_H
#define SFA_JOBS_BUS_H

typedef void (*bus_deliver_fn)(void *arg, const char *topic, const char *event,
                               const char *payload_json);

struct bus;
struct bus_sub;

/* A new, empty bus (caller frees with bus_free), or NULL when out of memory. */
struct bus *bus_new(void);
/* Frees the bus; subscriptions must have been removed first. NULL is a no-op. */
void bus_free(struct bus *b);
/* Subscribes fn(arg, ...) to topic. Returns NULL when out of memory. The subscription
 * belongs to the caller until bus_unsubscribe, which frees it. */
struct bus_sub *bus_subscribe(struct bus *b, const char *topic, bus_deliver_fn fn, void *arg);
/* After this returns, fn is never called again for this subscription. NULL is a no-op. */
void bus_unsubscribe(struct bus_sub *sub);
/* Calls every subscriber of topic; the strings are borrowed for the call only. */
void bus_publish(struct bus *b, const char *topic, const char *event, const char *payload_json);

#endif
