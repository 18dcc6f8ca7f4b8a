/* transform_cli.h - `sfa transform FILE [--semitones N] [--tempo-ratio R] [--formants]
 * --out FILE`: key-shift and time-stretch one file (audio_transform), written as WAV,
 * FLAC or MP3 by the output's extension. Prints one line of JSON on success; exit 0,
 * 1 on a failure, 2 on a usage error.
 *
 * Threading: the whole of the `sfa transform` process, on its main thread. */
#ifndef SFA_AUDIO_TRANSFORM_CLI_H
#define SFA_AUDIO_TRANSFORM_CLI_H

int transform_cli(int argc, char **argv);

#endif
