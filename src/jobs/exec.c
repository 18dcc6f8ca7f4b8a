/* exec.c - the worker side of the job system: `sfa job-exec <id>`.
 *
 * Runs in a child process started by the scheduler with the progress pipe on fd 3. It
 * loads the job, runs the worker function of its type, and reports one JSON object per
 * line on fd 3 (see jobs.h). Default signal handling: a SIGTERM from a cancel simply
 * ends the process; the scheduler removes the scratch directory, and workers move their
 * outputs into place only as their very last step.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobs/jobs.h"
#include "jobs/registry.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/log.h"
#include "util/str.h"

static void emit(json_t *obj)
{
	char *text = json_encode(obj);
	json_decref(obj);
	if (!text)
		return;
	size_t n = strlen(text);
	text[n] = '\n'; /* json_encode's NUL becomes the line end */
	if (fs_write_all(3, text, n + 1) != 0)
		log_error("job: the progress pipe is gone: %s", strerror(errno));
	free(text);
}

void job_report(struct job_run *r, int progress, const char *status, const char *message)
{
	(void)r;
	if (progress < 0)
		progress = 0;
	if (progress > 100)
		progress = 100;
	emit(json_pack("{s:i, s:s?, s:s}", "progress", progress, "status", status, "message",
	               message ? message : ""));
}

int job_exec_main(const struct config *cfg, const char *job_id)
{
	if (fcntl(3, F_GETFD) < 0) {
		fprintf(stderr,
		        "sfa: job-exec is run by the server's scheduler (no progress pipe on fd 3)\n");
		return 2;
	}
	char err[512];
	struct db *db = NULL;
	if (db_open(config_db_target(cfg), cfg->db_pool, &db, err, sizeof err)) {
		emit(json_pack("{s:s}", "error", "The worker could not open the database."));
		log_error("job %s: %s", job_id, err);
		return 1;
	}
	struct job_run r;
	memset(&r, 0, sizeof r);
	r.cfg = cfg;
	r.db = db;
	r.retry = true;
	int rc = db_job_get(db, NULL, job_id, &r.job);
	if (rc) {
		emit(json_pack("{s:s, s:b}", "error", "The job no longer exists.", "retry", 0));
		db_close(db);
		return 1;
	}
	json_error_t je;
	r.payload = json_loads(r.job.payload, 0, &je);
	if (!json_is_object(r.payload)) {
		json_decref(r.payload);
		r.payload = json_object();
	}
	snprintf(r.work_dir, sizeof r.work_dir, "%s/tmp/jobs/%s", cfg->data_dir, job_id);
	const struct job_type *type = job_type_find(r.job.type);
	if (storage_init(&r.store, cfg->data_dir) != 0) {
		str_copy(r.error, sizeof r.error, "The stored files cannot be reached.");
		rc = SFA_EIO;
	} else if (!type) {
		snprintf(r.error, sizeof r.error, "This server cannot run %s jobs.", r.job.type);
		r.retry = false;
		rc = SFA_EUNSUPP;
	} else {
		rc = type->run(&r);
	}
	if (rc == 0) {
		emit(json_pack("{s:O}", "result", r.result ? r.result : json_object()));
	} else {
		if (!r.error[0])
			str_copy(r.error, sizeof r.error, "The job failed for an unknown reason.");
		emit(json_pack("{s:s, s:b}", "error", r.error, "retry", r.retry));
	}
	json_decref(r.result);
	json_decref(r.payload);
	db_close(db);
	return rc == 0 ? 0 : 1;
}
