/* bus.h - in-process publish/subscribe for live job events.
 *
 * The job scheduler publishes each job's events on two topics, "jobs:<job id>" and
 * "user:<user id>"; WebSocket connections subscribe to the topics their users joined.
 * Events are (topic, event name, JSON payload text). Delivery calls the subscriber's
 * function synchronously on the publisher's thread, with no bus lock held; it should copy
 * the message into its own bounded queue and return, and must not unsubscribe itself
 * (bus_unsubscribe waits for running deliveries). Thread-safe; one global bus per process.
 */
#ifndef SFA_JOBS_BUS_H
#define SFA_JOBS_BUS_H

typedef void (*bus_deliver_fn)(void *arg, const char *topic, const char *event,
                               const char *payload_json);

struct bus_sub;

/* Subscribes fn(arg, ...) to topic. Returns NULL when out of memory; the subscription is
 * freed by bus_unsubscribe. */
struct bus_sub *bus_subscribe(const char *topic, bus_deliver_fn fn, void *arg);
/* After this returns, fn is never called again for this subscription. NULL is a no-op. */
void bus_unsubscribe(struct bus_sub *sub);
void bus_publish(const char *topic, const char *event, const char *payload_json);

#endif
