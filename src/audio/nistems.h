/* nistems.h - Native Instruments Stems files (.stem.mp4), the stem format Traktor, Mixxx
 * and other DJ software load: an MP4 whose first audio track is the master mix and whose
 * next four are the stems in NI's order (drums, bass, other, vocals), all AAC, with the
 * stems' names, colours and the master's mastering DSP settings as JSON in a 'stem' box
 * inside moov/udta.
 *
 * The MP4 itself is written by libavformat (audio_write_nistems in write.c); the 'stem'
 * box is added afterwards by nistems_insert_box, a small writer that rebuilds the moov box
 * (moov comes after mdat in what libavformat writes, so no chunk offset moves).
 *
 * Threading: no shared state; every call stands alone. Memory: what a function hands out
 * is malloced and the caller frees it (see each).
 */
#ifndef SFA_AUDIO_NISTEMS_H
#define SFA_AUDIO_NISTEMS_H

#include <stddef.h>
#include <stdint.h>

enum { NISTEMS_N_STEMS = 4, NISTEMS_MAX_MOOV = 64 << 20, NISTEMS_MAX_JSON = 64 * 1024 };

/* The stems in file order (tracks 2..5). */
extern const char *const nistems_names[NISTEMS_N_STEMS];

/* The 'stem' box's JSON: {"version": 1, "mastering_dsp": {"compressor": {...},
 * "limiter": {...}}, "stems": [{"name", "color"} x 4]} (both DSP units disabled, so the
 * master plays as rendered). Malloced, the caller frees it; NULL when out of memory. */
char *nistems_metadata_json(void);

/* moov (n bytes: one whole 'moov' box) with a 'stem' box holding json appended to its
 * 'udta' (made when it has none; a 'stem' box already there is replaced). *out is
 * malloced; the caller frees it. SFA_EFORMAT when moov is not a well-formed moov box
 * (sizes out of bounds, a 64-bit size, a second udta), SFA_ETOOBIG past NISTEMS_MAX_MOOV
 * or NISTEMS_MAX_JSON. */
int nistems_insert_box(const uint8_t *moov, size_t n, const char *json, uint8_t **out,
                       size_t *n_out);

/* The same on a file written by libavformat: its last top-level box must be moov. */
int nistems_insert_box_fd(int fd, const char *json, char *err, size_t n_err);

/* `sfa nistems-render OUT MASTER DRUMS BASS OTHER VOCALS [--title T] [--artist A]`: the
 * child process GET /export/nistems runs. Prints one JSON line; exit 0, 1, or 2 (usage). */
int nistems_cli(int argc, char **argv);

#endif
