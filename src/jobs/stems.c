/* stems.c - see stems.h. */
#include "jobs/stems.h"

#include <limits.h>
#include <stdio.h>

#include "util/err.h"
#include "util/storage.h"

int job_stems_publish(struct job_run *r, const char *const *names, int n_src, const char *ext,
                      double duration, const char *engine, const char *model, json_t **out_list)
{
	/* Publish: move the folder into place. The rows are the scheduler's to write, with the
	 * job's completion, in one transaction (library_job_complete). */
	char rel_dir[128];
	snprintf(rel_dir, sizeof rel_dir, "stems/%s", r->job.id);
	/* a previous attempt that died mid-publish */
	if (storage_remove(&r->store, rel_dir) != 0) {
		snprintf(r->error, sizeof r->error, "The stems folder could not be created.");
		return SFA_EIO;
	}
	json_t *list = json_array();
	for (int s = 0; s < n_src; s++) {
		char from[PATH_MAX + 256], rel[DB_PATH_MAX];
		struct storage_stat st;
		if (snprintf(from, sizeof from, "%s/%s.%s", r->work_dir, names[s], ext) >=
		            (int)sizeof from ||
		    snprintf(rel, sizeof rel, "%s/%s.%s", rel_dir, names[s], ext) >=
		            (int)sizeof rel ||
		    storage_publish(&r->store, from, rel) != 0 ||
		    storage_stat(&r->store, rel, &st) != 0) {
			storage_remove(&r->store, rel_dir);
			json_decref(list);
			snprintf(r->error, sizeof r->error,
			         "The stems could not be moved into place.");
			return SFA_EIO;
		}
		json_array_append_new(list, json_pack("{s:s, s:s, s:I, s:s, s:f, s:s, s:s}",
		                                      "stem_type", names[s], "file_path", rel,
		                                      "file_size", (json_int_t)st.size_bytes,
		                                      "format", ext, "duration", duration, "engine",
		                                      engine, "model", model));
	}
	*out_list = list;
	return 0;
}
