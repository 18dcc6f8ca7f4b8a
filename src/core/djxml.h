/* djxml.h - the user's library as DJ software reads it: a Rekordbox collection
 * (DJ_PLAYLISTS XML) and a Traktor collection (NML), written with libxml2's text writer
 * (escaping and encoding are libxml2's, never printf's).
 *
 * Each track carries its title, artist, album, duration, file size, average BPM, a beat
 * grid anchored at its first bar's start (its first beat when the analysis found no bars),
 * its key (Rekordbox's Tonality in classic notation, Traktor's MUSICAL_KEY value) and a
 * memory cue named after each section at its start. Where the file lies on the DJ's machine is `location`: an absolute POSIX path
 * ("/Users/dj/Music/a.mp3") or a Windows one ("C:/Music/a.mp3" or "C:\Music\a.mp3").
 *
 * The text fields come from users and services: control characters (which XML 1.0 cannot
 * carry) become spaces; everything else is kept. No state; thread-safe.
 */
#ifndef SFA_CORE_DJXML_H
#define SFA_CORE_DJXML_H

#include <stddef.h>
#include <stdint.h>

enum { DJ_PATH_MAX = 2048, DJ_MAX_TRACKS = 10000 };

/* A memory cue (Rekordbox POSITION_MARK, Traktor CUE_V2 of type cue) at a section start. */
struct dj_cue {
	double start_s;
	const char *name; /* "intro", "drop", ... */
};

struct dj_track { /* the strings are the caller's; none is NULL */
	const char *title;
	const char *artist;
	const char *album;
	const char *location; /* absolute path of the audio on the DJ's machine */
	const char *kind;     /* "MP3 File", "WAV File", ... (Rekordbox's Kind) */
	int64_t size_bytes;
	double duration_s;
	int sample_rate_hz;  /* 0: unknown */
	int bit_rate_kbps;   /* 0: unknown */
	double bpm;          /* 0: not analysed */
	double first_beat_s; /* the grid's anchor; < 0 when there is no beat */
	int key_pc;          /* 0 = C .. 11 = B; -1 when there is no key */
	int key_minor;
	int64_t added_at;          /* Unix seconds */
	const struct dj_cue *cues; /* n_cues of them, in time order; NULL when none */
	size_t n_cues;
};

/* Whether path is an absolute POSIX or Windows path of at most DJ_PATH_MAX - 1 bytes of
 * UTF-8 without control characters. */
int dj_path_valid(const char *path);

/* Rekordbox's Tonality ("Am", "F#m", "Db") and Traktor's MUSICAL_KEY value (0..11 major
 * C..B, 12..23 minor Cm..Bm) for a key; "" and -1 when key_pc < 0. The names are static
 * strings. */
const char *dj_rekordbox_key(int key_pc, int key_minor);
int dj_traktor_key(int key_pc, int key_minor);

/* The collection as one document: *out (malloced, the caller frees it; NUL-terminated,
 * *n_out bytes) holds it.
 * playlist names the one playlist listing every track. 0, SFA_EINVAL (more than
 * DJ_MAX_TRACKS or an invalid location) or SFA_ENOMEM. */
int dj_rekordbox_xml(const struct dj_track *tracks, size_t n, const char *playlist, char **out,
                     size_t *n_out);
int dj_traktor_nml(const struct dj_track *tracks, size_t n, const char *playlist, char **out,
                   size_t *n_out);

#endif
