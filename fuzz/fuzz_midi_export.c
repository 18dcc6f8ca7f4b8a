/* libFuzzer harness: the MIDI export (core/midiexport.c), fed any JSON as the analysis.
 *
 * The analysis comes from our own database, but its JSON is read field by field with caps
 * like outside input, so it is fuzzed like outside input. Checks: the writer either
 * refuses (no beats: SFA_ECONFLICT) or produces a Standard MIDI File that a strict reader
 * of this file's own walks to the end: an MThd of format 1, two tracks, 480 PPQ; two MTrk
 * chunks whose lengths match their events; variable-length quantities of at most four
 * bytes; only note-on, note-off, program change and meta events with data bytes below
 * 0x80; each track ending with exactly one end-of-track meta event.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/midiexport.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
	if (!ok)
		__builtin_trap();
}

static uint32_t be(const unsigned char *p, int n)
{
	uint32_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* A variable-length quantity at p[*i] (before end). */
static uint32_t vlq(const unsigned char *p, size_t *i, size_t end)
{
	uint32_t v = 0;
	for (int k = 0; k < 4; k++) {
		check(*i < end);
		unsigned char c = p[(*i)++];
		v = v << 7 | (c & 0x7F);
		if (!(c & 0x80))
			return v;
	}
	check(false); /* longer than four bytes */
	return 0;
}

static void walk_track(const unsigned char *p, size_t start, size_t end)
{
	size_t i = start;
	bool ended = false;
	while (i < end) {
		check(!ended);
		vlq(p, &i, end);
		check(i < end);
		unsigned char st = p[i++];
		if (st == 0xFF) {
			check(i < end);
			unsigned char type = p[i++];
			uint32_t len = vlq(p, &i, end);
			check(len <= end - i);
			if (type == 0x2F) {
				check(len == 0);
				ended = true;
			}
			if (type == 0x51)
				check(len == 3);
			if (type == 0x58)
				check(len == 4 && p[i] >= 1 && p[i + 1] == 2);
			i += len;
		} else if ((st & 0xF0) == 0x80 || (st & 0xF0) == 0x90) {
			check(end - i >= 2 && p[i] < 0x80 && p[i + 1] < 0x80);
			i += 2;
		} else if ((st & 0xF0) == 0xC0) {
			check(i < end && p[i] < 0x80);
			i += 1;
		} else {
			check(false);
		}
	}
	check(ended && i == end);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *an = json_loadb((const char *)data, size, 0, NULL);
	if (!an)
		return 0;
	unsigned char *smf = NULL;
	size_t n = 0;
	char err[300];
	int rc = midi_from_analysis(an, "Fuzz", &smf, &n, err, sizeof err);
	json_decref(an);
	check(rc == 0 || rc == SFA_ECONFLICT || rc == SFA_ENOMEM);
	if (rc)
		return 0;
	check(n >= 14 && be(smf, 4) == 0x4D546864 && be(smf + 4, 4) == 6 && be(smf + 8, 2) == 1 &&
	      be(smf + 10, 2) == 2 && be(smf + 12, 2) == MIDI_PPQ);
	size_t at = 14;
	for (int t = 0; t < 2; t++) {
		check(n - at >= 8 && be(smf + at, 4) == 0x4D54726B);
		size_t len = be(smf + at + 4, 4);
		check(len <= n - at - 8);
		walk_track(smf, at + 8, at + 8 + len);
		at += 8 + len;
	}
	check(at == n);
	free(smf);
	return 0;
}
