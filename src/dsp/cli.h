/* cli.h - `sfa analyze`: the analysis engine on the command line.
 *
 * Usage: sfa analyze FILE [--features tempo,key,energy,spectral,mfcc,chroma|all]
 *                         [--frame-rate N] [--pretty]
 *
 * Decodes FILE (any format the audio module accepts) to mono 22050 Hz, analyses it and
 * prints the API's analysis result object (API.md section 5) as one line of JSON on stdout
 * (indented with --pretty). Errors go to stderr as one sentence.
 *
 * Threading: the whole of the `sfa analyze` process, on its main thread.
 */
#ifndef SFA_DSP_CLI_H
#define SFA_DSP_CLI_H

/* argv[0] is the subcommand name ("analyze"), argv[1..] its arguments, as main() passes
 * them after the program name. Returns the process exit status: 0 success, 1 the file
 * could not be analysed, 2 bad usage. */
int dsp_cli_analyze(int argc, char **argv);

#endif
