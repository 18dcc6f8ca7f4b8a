/* cli.h - the `sfa separate` and `sfa models` subcommands (the engine's command line).
 *
 * Both take the subcommand's own argv: argv[0] is the subcommand name ("separate",
 * "models"), options follow. They print results on stdout (a JSON summary for separate),
 * errors on stderr as "sfa <cmd>: <sentence>", a progress bar on stderr when it is a
 * terminal, and return the process exit status: 0 success, 1 failure, 2 usage error.
 *
 *   sfa separate FILE [--model M] [--out DIR] [--format wav|wav24|f32|flac] [--shifts N]
 *                     [--overlap F] [--segment S] [--seed N] [--threads N]
 *   sfa models list [--json]
 *   sfa models fetch NAME...
 *   sfa models verify [NAME...]
 *
 * Models come from $SFA_MODELS_DIR (default data/models); see nn/catalog.h.
 */
#ifndef SFA_NN_CLI_H
#define SFA_NN_CLI_H

int nn_cli_separate(int argc, char **argv);
int nn_cli_models(int argc, char **argv);

#endif
