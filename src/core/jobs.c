/* jobs.c - see core/jobs.h. */
#include "core/jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jobs/jobs.h"
#include "jobs/registry.h"
#include "util/err.h"
#include "util/json.h"
#include "util/str.h"
#include "util/uuid.h"

int job_enqueue(struct db *db, struct scheduler *sched, const char *user_id, const char *track_id,
                const char *type, json_t *payload, struct db_job *out)
{
	struct db_job j;
	memset(&j, 0, sizeof j);
	uuid_v4(j.id);
	str_copy(j.user_id, sizeof j.user_id, user_id);
	str_copy(j.track_id, sizeof j.track_id, track_id ? track_id : "");
	str_copy(j.type, sizeof j.type, type);
	str_copy(j.status, sizeof j.status, "queued");
	const struct job_type *t = job_type_find(type);
	if (!t) {
		json_decref(payload);
		return SFA_EINVAL;
	}
	j.max_attempts = t->max_attempts;
	j.created_at = j.run_at = (int64_t)time(NULL);
	char *text = payload ? json_encode(payload) : NULL;
	json_decref(payload);
	if (text && strlen(text) >= sizeof j.payload) {
		free(text);
		return SFA_ETOOBIG;
	}
	str_copy(j.payload, sizeof j.payload, text ? text : "{}");
	free(text);
	int rc = db_job_insert(db, &j);
	if (rc)
		return rc;
	/* Idle schedulers of every node wake (inside a transaction: at its commit). A lost note
	 * (db.c logged why) costs only latency: schedulers poll the queue too. Nothing is logged
	 * here: the caller may hold a transaction. */
	char note[DB_NOTIFY_MAX];
	snprintf(note, sizeof note, "queued %s", j.type);
	db_notify(db, JOBS_CHANNEL, note);
	scheduler_wake(sched);
	*out = j;
	return 0;
}
