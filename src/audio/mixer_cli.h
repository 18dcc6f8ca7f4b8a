/* mixer_cli.h - `sfa daw-render`: the child process that decodes stems and renders a mix.
 *
 *   sfa daw-render --manifest FILE --work DIR [--file PATH]... [--stem ID=PATH]...
 *                  [--out PATH] [--max-decoded-mb N]
 *
 * The server never decodes untrusted media itself: POST /api/daw/export validates the
 * manifest, resolves stem ids to files, and runs this command in a child process with
 * resource limits. The manifest's "file": i is the i-th --file; "stem_id": ID is the
 * --stem given for ID.
 *
 * Each distinct source is decoded once, streamed (audio_decode_stream_fd), to stereo float
 * at the output rate, into an anonymous temporary file in DIR (O_TMPFILE, or a file
 * unlinked at once): it disappears when the process ends, however it ends. Then the mix
 * is rendered twice block by block - a scan for the peak and the clipped-sample count,
 * then the output - so that the count is known before the first byte of the WAV and
 * memory stays small for any length.
 *
 * Protocol on stdout: first one line of JSON, then (on success, without --out) the WAV:
 *   {"sample_rate": 44100, "bit_depth": 16, "channels": 2, "frames": N,
 *    "bytes": WAV size, "peak": P, "gain": G, "clipped": C}\n<WAV bytes>     exit 0
 *   {"error": "<sentence>", "code": "invalid_audio"|"too_long"|"internal"
 *    [, "stem": i]}\n                                                          exit 1
 * "stem" is the index in manifest.stems of the first stem whose source failed to decode.
 * With --out the WAV goes to PATH instead (the benchmark and manual use).
 * The decoded stems of one export may fill at most 8 GiB of scratch disk (--max-decoded-mb
 * lowers that; tests use it): past it the answer is code "too_long".
 * Usage errors: a message on stderr, exit 2.
 *
 * Threading: the whole of a child process, on its main thread.
 */
#ifndef SFA_AUDIO_MIXER_CLI_H
#define SFA_AUDIO_MIXER_CLI_H

/* argv holds the options only (after "daw-render"). Returns the exit status. */
int mixer_cli_render(int argc, char **argv);

#endif
