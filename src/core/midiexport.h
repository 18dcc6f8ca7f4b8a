/* midiexport.h - a track's analysis as a Standard MIDI File (GET /export/midi/:track_id).
 *
 * Format 1, MIDI_PPQ ticks per quarter note, two tracks:
 *   0  the conductor: the track name, the time signature, a tempo map and a marker (FF 06)
 *      at each section's start, named after it;
 *   1  "Chords": each chord of the analysis as a block chord on channel 1 (piano; its
 *      notes from the root in C4..B4 up, with the root again two octaves below) with a text event
 *      (FF 01) holding its label at its start. "N" (no chord) plays nothing.
 * The tempo map puts every detected beat on a quarter note: a tempo event at each beat
 * gives the time to the next one (in whole microseconds of absolute time, so rounding
 * never accumulates). Before the first beat come whole beats of the first beat's length
 * (at least one when it is not at 0), and the first bar start falls on a bar line: when
 * the beats before it do not fill whole bars, the file opens with a shorter bar (a time
 * signature of that many quarters) and then switches to the analysis's 4/4 or 3/4.
 *
 * The analysis is the stored JSON object (result_json.h): beats, downbeats and
 * time_signature from `tempo`, chords and sections when present. Values that are not
 * what the analyser writes (not numbers, out of order, negative, beyond the analysis's
 * length limit) are left out; counts are capped (MIDI_MAX_*).
 *
 * Threading: a pure function of its arguments.
 */
#ifndef SFA_CORE_MIDIEXPORT_H
#define SFA_CORE_MIDIEXPORT_H

#include <jansson.h>
#include <stddef.h>

enum {
	MIDI_PPQ = 480,
	MIDI_MAX_BEATS = 60000, /* 2 hours at 500 BPM */
	MIDI_MAX_CHORDS = 60000,
	MIDI_MAX_SECTIONS = 2000,
	MIDI_MAX_TEXT = 120, /* bytes of a name or label; longer ones are cut */
};

/* The SMF of analysis into *out (malloced, caller frees) and *n_out. title names the
 * conductor track (NULL or "" for none). Fails with SFA_ECONFLICT when the analysis has
 * fewer than two beats (no tempo to map), SFA_ENOMEM. */
int midi_from_analysis(const json_t *analysis, const char *title, unsigned char **out,
                       size_t *n_out, char *err, size_t n_err);

#endif
