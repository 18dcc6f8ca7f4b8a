/* result_json.h - a dsp_result as the API's analysis result object (API.md section 5), for
 * the edges that answer in JSON: the analysis job and `sfa analyze`. The engine (dsp.h)
 * knows nothing of JSON; this is the one place its results become JSON.
 *
 * Threading: pure functions of their arguments.
 */
#ifndef SFA_DSP_RESULT_JSON_H
#define SFA_DSP_RESULT_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "dsp/dsp.h"

/* Builds the API's analysis result object (API.md section 5) from r, with only the
 * requested features. On success *out is a new reference the caller must json_decref. */
int dsp_result_to_json(const struct dsp_result *r, json_t **out, char *err, size_t n_err);

/* Number of pooled columns dsp_result_to_json writes for r's features.mfcc/chroma. */
size_t dsp_pooled_columns(const struct dsp_result *r);

#endif
