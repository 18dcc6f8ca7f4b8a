/* job_probe.c - the "probe" job type (see workers.h). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "audio/audio.h"
#include "jobs/workers.h"
#include "util/err.h"
#include "util/storage.h"

static json_int_t knob(json_t *payload, const char *key, json_int_t lo, json_int_t hi,
                       json_int_t dflt)
{
	json_t *v = json_object_get(payload, key);
	if (!json_is_integer(v))
		return dflt;
	json_int_t x = json_integer_value(v);
	return x < lo ? lo : x > hi ? hi : x;
}

int job_worker_probe(struct job_run *r)
{
	json_int_t steps = knob(r->payload, "steps", 1, 1000, 4);
	json_int_t step_ms = knob(r->payload, "step_ms", 0, 60000, 0);
	json_int_t fail_attempts = knob(r->payload, "fail_attempts", 0, 100, 0);
	if (json_is_true(json_object_get(r->payload, "crash")))
		abort();
	for (json_int_t i = 1; i <= steps; i++) {
		if (step_ms) {
			struct timespec ts = {(time_t)(step_ms / 1000),
			                      (long)(step_ms % 1000) * 1000000L};
			nanosleep(&ts, NULL);
		}
		char msg[64];
		snprintf(msg, sizeof msg, "step %lld of %lld", (long long)i, (long long)steps);
		job_report(r, (int)(i * 100 / (steps + 1)), "running", msg);
	}
	if (r->job.attempts <= fail_attempts) {
		snprintf(r->error, sizeof r->error,
		         "Probe attempt %d failed on purpose (fail_attempts=%lld).",
		         r->job.attempts, (long long)fail_attempts);
		return SFA_EINVAL;
	}
	r->result = json_pack("{s:I, s:i}", "steps", steps, "attempt", r->job.attempts);
	if (r->job.track_id[0]) {
		struct db_track t;
		if (db_track_get(r->db, r->job.user_id, r->job.track_id, &t) == 0 &&
		    t.audio_path[0]) {
			char path[8192];
			struct audio_info info;
			char err[512] = "it is outside the library";
			if (storage_local_path(&r->store, t.audio_path, path, sizeof path) != 0 ||
			    audio_probe(path, &info, err, sizeof err)) {
				snprintf(r->error, sizeof r->error,
				         "The track's audio cannot be decoded: %s", err);
				r->retry = false;
				return SFA_EFORMAT;
			}
			json_object_set_new(r->result, "audio",
			                    json_pack("{s:s, s:s, s:i, s:i, s:f}", "container",
			                              info.container, "codec", info.codec,
			                              "sample_rate", info.sample_rate_hz,
			                              "channels", info.n_channels, "duration",
			                              info.duration_s));
		}
	}
	job_report(r, 100, "running", "done");
	return 0;
}
