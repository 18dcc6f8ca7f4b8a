/* stems.c - see stems.h. */
#include "jobs/stems.h"

#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

#include "util/err.h"
#include "util/fs.h"

int job_stems_publish(struct job_run *r, const char *const *names, int n_src, const char *ext,
                      double duration, const char *engine, const char *model,
                      json_t **out_list)
{
	/* Publish: move the folder into place. The rows are the scheduler's to write, with the
	 * job's completion, in one transaction (library_job_complete). */
	char rel_dir[128], dest[PATH_MAX * 2], parent[PATH_MAX + 64];
	snprintf(rel_dir, sizeof rel_dir, "stems/%s", r->job.id);
	snprintf(parent, sizeof parent, "%s/uploads/stems", r->cfg->data_dir);
	snprintf(dest, sizeof dest, "%s/uploads/%s", r->cfg->data_dir, rel_dir);
	fs_remove_tree(dest); /* a previous attempt that died mid-publish */
	if (fs_mkdirs(parent, 0700) || mkdir(dest, 0700) != 0) {
		snprintf(r->error, sizeof r->error, "The stems folder could not be created.");
		return SFA_EIO;
	}
	json_t *list = json_array();
	for (int s = 0; s < n_src; s++) {
		char from[PATH_MAX + 256], to[PATH_MAX * 3];
		struct stat st;
		if (snprintf(from, sizeof from, "%s/%s.%s", r->work_dir, names[s], ext) >=
		        (int)sizeof from ||
		    snprintf(to, sizeof to, "%s/%s.%s", dest, names[s], ext) >= (int)sizeof to ||
		    fs_publish(from, to) != 0 || stat(to, &st) != 0) {
			fs_remove_tree(dest);
			json_decref(list);
			snprintf(r->error, sizeof r->error, "The stems could not be moved into place.");
			return SFA_EIO;
		}
		char rel[DB_PATH_MAX];
		snprintf(rel, sizeof rel, "%s/%s.%s", rel_dir, names[s], ext);
		json_array_append_new(list, json_pack("{s:s, s:s, s:I, s:s, s:f, s:s, s:s}", "stem_type",
		                                      names[s], "file_path", rel, "file_size",
		                                      (json_int_t)st.st_size, "format", ext, "duration",
		                                      duration, "engine", engine, "model", model));
	}
	*out_list = list;
	return 0;
}
