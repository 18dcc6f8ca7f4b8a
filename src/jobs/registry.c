/* registry.c - see registry.h. */
#include "jobs/registry.h"

#include <string.h>

#include "jobs/workers.h"

static int download_limit(const struct config *c) { return c->jobs_download; }
static int processing_limit(const struct config *c) { return c->jobs_processing; }
static int analysis_limit(const struct config *c) { return c->jobs_analysis; }
static int lalalai_limit(const struct config *c) { return c->jobs_lalalai; }
static int probe_limit(const struct config *c)
{
	(void)c;
	return 2;
}

/* Outlasts the worker's own SFA_DOWNLOAD_TIMEOUT_S, which explains itself to the user. */
static int download_timeout(const struct config *c)
{
	return c->download_timeout_s + 300 > 1800 ? c->download_timeout_s + 300 : 1800;
}
static int processing_timeout(const struct config *c)
{
	(void)c;
	return 4 * 3600;
}
/* Outlasts the worker's own SFA_LALALAI_DEADLINE_S (which cancels the task at lal.ai and
 * says so) by the time the upload and the downloads may take. */
static int lalalai_timeout(const struct config *c) { return c->lalalai_deadline_s + 1800; }
static int analysis_timeout(const struct config *c)
{
	(void)c;
	return 1800;
}
static int probe_timeout(const struct config *c)
{
	(void)c;
	return 600;
}

const struct job_type job_types[] = {
	{"download", job_worker_download, 3, download_limit, download_timeout,
         "{\"output_path\", \"file_size\", \"format\", \"codec\", \"quality\", \"bit_rate\", "
         "\"sample_rate\", \"channels\", \"duration\", \"source_url\"}"},
	{"processing", job_worker_processing, 2, processing_limit, processing_timeout,
         "{\"model\", \"stems\": [{\"id\", \"stem_type\"}], \"duration\"}"},
	/* Shown as "processing": POST /api/processing/separate with engine "lalalai". */
	{"lalalai", job_worker_lalalai, 2, lalalai_limit, lalalai_timeout,
         "{\"model\", \"engine\": \"lalalai\", \"lalalai_task_id\", \"stems\": [{\"id\", "
         "\"stem_type\"}], \"duration\"}",
         "processing"},
	{"analysis", job_worker_analysis, 2, analysis_limit, analysis_timeout,
         "the analysis without its per-frame features and beats (the whole result is stored "
         "as the track's analysis)"},
	{"transform", job_worker_transform, 2, processing_limit, processing_timeout,
         "{\"parent_id\", \"semitones\", \"tempo_ratio\", \"duration\", \"stems\": [{\"id\", "
         "\"stem_type\"}], \"tempo\", \"key\", \"camelot\"} (the new track is the job's "
         "track_id)"},
	{"probe", job_worker_probe, 2, probe_limit, probe_timeout,
         "{\"steps\", \"attempt\", and the track's audio properties when it has audio}"},
};
const int job_types_n = (int)(sizeof job_types / sizeof job_types[0]);
_Static_assert(sizeof job_types / sizeof job_types[0] <= JOB_TYPES_MAX,
               "raise JOB_TYPES_MAX (registry.h)");

const struct job_type *job_type_find(const char *name)
{
	for (int i = 0; name && i < job_types_n; i++)
		if (strcmp(job_types[i].name, name) == 0)
			return &job_types[i];
	return NULL;
}

const char *job_type_shown(const char *name)
{
	const struct job_type *t = job_type_find(name);
	return t && t->shown_as ? t->shown_as : name;
}

int job_types_shown_as(const char *shown, const char **out, int n_out)
{
	int n = 0;
	for (int i = 0; shown && i < job_types_n && n < n_out - 1; i++)
		if (strcmp(job_types[i].shown_as ? job_types[i].shown_as : job_types[i].name,
		           shown) == 0)
			out[n++] = job_types[i].name;
	if (n_out > 0)
		out[n] = NULL;
	return n;
}

int job_type_attempt_timeout_s(const struct job_type *t, const struct config *c)
{
	return c->job_timeout_s ? c->job_timeout_s : t->timeout_s(c);
}
