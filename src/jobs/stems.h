/* stems.h - the last step every worker that makes stems shares (the local separation,
 * lal.ai's, the transform's rendered stems): moving them from the job's scratch directory
 * into the library's stems folder, described for the job's result.
 *
 * Threading: called by a worker in its job's child process (workers.h); touches only that
 * job's files, so jobs of any types may publish at once.
 */
#ifndef SFA_JOBS_STEMS_H
#define SFA_JOBS_STEMS_H

#include <jansson.h>

#include "jobs/jobs.h"

/* Moves work_dir/<names[i]>.<ext> (i < n_src) into data/uploads/stems/<job id>/, replacing
 * what an earlier attempt of the job left there. On success *out_list is a new array (the
 * caller owns it; it usually becomes part of r->result) describing each stem:
 * {"stem_type", "file_path", "file_size", "format", "duration", "engine", "model"}; the
 * scheduler records the rows when it completes the job (library_job_complete). On failure
 * r->error is filled, nothing is left in the stems folder and *out_list is untouched. */
int job_stems_publish(struct job_run *r, const char *const *names, int n_src, const char *ext,
                      double duration, const char *engine, const char *model, json_t **out_list);

#endif
