/* main.c - the sfa command line: dispatch to subcommands only.
 *
 *   sfa serve [--port N] [--bind ADDR] [--data DIR] [--no-jobs]
 *   sfa worker [--types T,...] [--concurrency N] [--data DIR]    jobs, no HTTP
 *   sfa user create --email E --password P [--data DIR]     prints the user id
 *   sfa token create --email E [--name N] [--data DIR]      prints only the new API key
 *   sfa routes
 *   sfa version
 *
 * Every setting also has an SFA_* environment variable (core/config.h). Errors are one
 * line on stderr; exit status 2 for usage errors, 1 for failures.
 */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/app.h"
#include "audio/audio.h"
#include "audio/mixer_cli.h"
#include "audio/nistems.h"
#include "audio/transform_cli.h"
#include "dsp/cli.h"
#include "nn/cli.h"
#include "nn/nn.h"
#include "api/routes.h"
#include "jobs/registry.h"
#include "core/accounts.h"
#include "http/server.h"
#include "core/jobs.h"
#include "jobs/bus.h"
#include "jobs/jobs.h"
#include "util/err.h"
#include "util/json.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/str.h"

#define SFA_VERSION "0.1.0"

static const char usage[] =
	"usage: sfa <command>\n"
	"  serve [--port N] [--bind ADDR] [--data DIR] [--no-jobs]\n"
	"                                                 run the HTTP server and the jobs\n"
	"                                                 (--no-jobs or SFA_RUN_JOBS=0: no jobs)\n"
	"  worker [--types download,processing,analysis,...] [--concurrency N] [--data DIR]\n"
	"                                                 run jobs (every type, or those listed,\n"
	"                                                 N of each at once) and no HTTP\n"
	"  user create --email E --password P             create a user, print its id\n"
	"  token create --email E [--name N]              create an API key, print it\n"
	"  separate FILE --model M [--out DIR] [--format wav|wav24|f32|flac|mp3] [--shifts N]\n"
	"           [--overlap F] [--segment S] [--seed N] [--threads N]\n"
	"                                                 split a song into stems\n"
	"  models list|fetch NAME|verify [--data DIR]     manage Demucs model files\n"
	"  analyze FILE [--features tempo,key,...|all] [--frame-rate N]\n"
	"                                                 analyse a song, print JSON\n"
	"  transform FILE [--semitones N] [--tempo-ratio R] [--formants] --out FILE\n"
	"                                                 key-shift and time-stretch a song\n"
	"  job enqueue --email E --type T [--track ID] [--payload JSON]\n"
	"                                                 queue a job, print its id\n"
	"  routes                                         print the route table (JSON)\n"
	"  version                                        print the version\n"
	"Settings: SFA_PORT, SFA_BIND, SFA_DATA_DIR, SFA_SECRET_KEY_BASE, SFA_RATE_API,\n"
	"SFA_RATE_HEAVY, SFA_RATE_AUTH, SFA_TRUSTED_PROXIES, SFA_HTTPS; several nodes on one\n"
	"PostgreSQL: SFA_DATABASE_URL, SFA_DB_POOL, SFA_RUN_JOBS, SFA_JOB_LEASE_S, SFA_NODE_ID.\n";

static int fail(const char *msg)
{
	fprintf(stderr, "sfa: %s\n", msg);
	return 1;
}

/* Loads the configuration (env + --data) and opens the database. */
static int open_app(struct app *app, int *argc, char **argv, bool serve)
{
	char err[512];
	memset(app, 0, sizeof *app);
	if (config_from_env(&app->cfg, err, sizeof err))
		return fail(err);
	if (serve ? config_parse_serve_args(&app->cfg, *argc, argv, err, sizeof err)
	          : config_take_data_flag(&app->cfg, argc, argv, err, sizeof err)) {
		fprintf(stderr, "sfa: %s\n", err);
		return 2;
	}
	if (config_prepare_data(&app->cfg, err, sizeof err))
		return fail(err);
	if (storage_init(&app->store, app->cfg.data_dir) != 0)
		return fail("the data folder's uploads/ cannot be reached");
	if (db_open(config_db_target(&app->cfg), app->cfg.db_pool, &app->db, err, sizeof err))
		return fail(err);
	return 0;
}

/* Stops the scheduler (its children are queued again), then frees what handlers shared. */
static void close_app(struct app *app)
{
	scheduler_free(app->sched);
	app->sched = NULL;
	bus_free(app->bus);
	ratelimit_free(app->rl);
	keycache_free(app->keys);
	respcache_free(app->lists);
	db_close(app->db);
}

/* Everything under data/tmp is scratch of a process and its children: tmp/jobs holds job
 * work folders (of the process that runs jobs), the rest uploads and exports in progress (of
 * the one serving HTTP). What a process that died (kill -9, a power cut) left there is
 * removed before anything new is made; its children died with it. A shared database
 * (PostgreSQL) means a data dir shared with other nodes, whose scratch this is too: nothing
 * is removed then (a job's folder is emptied when the job runs again). */
static void clear_scratch(const struct app *app, bool http, bool jobs)
{
	if (db_is_shared(app->db))
		return;
	char tmp[PATH_MAX + 8];
	snprintf(tmp, sizeof tmp, "%s/tmp", app->cfg.data_dir);
	DIR *d = opendir(tmp);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		bool is_jobs = strcmp(e->d_name, "jobs") == 0;
		if (is_jobs ? !jobs : !http)
			continue;
		char path[PATH_MAX + 300];
		snprintf(path, sizeof path, "%s/%s", tmp, e->d_name);
		if (fs_remove_tree(path) != 0)
			log_warn("could not clear %s of a previous run's scratch files", path);
	}
	if (d)
		closedir(d);
}

/* This binary's path (children run it), into app->exe. */
static int find_exe(struct app *app)
{
	ssize_t n_exe = readlink("/proc/self/exe", app->exe, sizeof app->exe - 1);
	if (n_exe <= 0)
		return -1;
	app->exe[n_exe] = '\0';
	return 0;
}

static int cmd_serve(int argc, char **argv)
{
	struct app app;
	int rc = open_app(&app, &argc, argv, true);
	if (rc)
		return rc;
	app.rl = ratelimit_new(100000, 60, db_is_shared(app.db) ? app.db : NULL);
	app.keys = keycache_new(4096, 10 * 1000); /* a revoked key elsewhere: 10 s at most */
	app.lists = respcache_new(1024, 32 << 20);
	app.bus = bus_new();
	if (!app.rl || !app.keys || !app.lists || !app.bus) {
		close_app(&app);
		return fail("out of memory");
	}
	struct server_opts o = {
		.bind = app.cfg.bind,
		.port = app.cfg.port,
		.n_threads = app.cfg.n_http_threads,
		.grace_s = app.cfg.shutdown_grace_s,
		.header_timeout_s = app.cfg.header_timeout_s,
		.access_log_every = app.cfg.access_log_every,
		.body_timeout_s = app.cfg.body_timeout_s,
		.begin = routes_begin,
		.dispatch = routes_dispatch,
		.app = &app,
	};
	char err[512];
	if (find_exe(&app)) {
		close_app(&app);
		return fail("cannot find the sfa executable to run jobs with");
	}
	clear_scratch(&app, true, app.cfg.run_jobs);
	/* With --no-jobs the scheduler runs no job; it still takes back the jobs of nodes that
	 * died (leases), and relays other nodes' job events to this node's sockets. */
	struct scheduler_opts so = {.cfg = &app.cfg,
	                            .db = app.db,
	                            .bus = app.bus,
	                            .exe = app.exe,
	                            .types = app.cfg.run_jobs ? NULL : "",
	                            .relay = true};
	app.sched = scheduler_new(&so, err, sizeof err);
	if (!app.sched) {
		close_app(&app);
		return fail(err);
	}
	rc = server_run(&o, err, sizeof err);
	close_app(&app);
	if (rc)
		return fail(err);
	log_info("database closed; bye");
	return 0;
}

static int check_flags(int argc, char **argv, const char *const *allowed);
static const char *flag(int argc, char **argv, const char *name);

/* `sfa worker`: a scheduler and no HTTP, until SIGTERM or SIGINT; then its running jobs go
 * back to the queue (attempt refunded) as with `serve`. */
static int cmd_worker(int argc, char **argv)
{
	struct app app;
	int rc = open_app(&app, &argc, argv, false);
	if (rc)
		return rc;
	static const char *const allowed[] = {"--types", "--concurrency", NULL};
	if ((rc = check_flags(argc, argv, allowed))) {
		close_app(&app);
		return rc;
	}
	const char *types = flag(argc, argv, "--types");
	const char *conc = flag(argc, argv, "--concurrency");
	long n_conc = 0;
	if (conc && str_to_long(conc, 1, 64, &n_conc)) {
		fprintf(stderr, "sfa: --concurrency must be a number from 1 to 64, not \"%s\"\n",
		        conc);
		close_app(&app);
		return 2;
	}
	app.bus = bus_new();
	if (!app.bus || find_exe(&app)) {
		close_app(&app);
		return fail(app.bus ? "cannot find the sfa executable to run jobs with"
		                    : "out of memory");
	}
	clear_scratch(&app, false, true);
	/* The stop signals are taken by sigwait below: blocked in every thread, the scheduler's
	 * included (its children get a clean mask, util/proc.c). */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);
	char err[512];
	struct scheduler_opts so = {.cfg = &app.cfg,
	                            .db = app.db,
	                            .bus = app.bus,
	                            .exe = app.exe,
	                            .types = types,
	                            .concurrency = (int)n_conc};
	app.sched = scheduler_new(&so, err, sizeof err);
	if (!app.sched) {
		close_app(&app);
		fprintf(stderr, "sfa: %s\n", err);
		return types ? 2 : 1;
	}
	log_info("worker ready (no HTTP); SIGTERM stops it");
	int sig = 0;
	sigwait(&stop, &sig);
	log_info("worker stopping (%s): running jobs go back to the queue",
	         sig == SIGINT ? "SIGINT" : "SIGTERM");
	close_app(&app);
	log_info("database closed; bye");
	return 0;
}

static const char *flag(int argc, char **argv, const char *name)
{
	for (int i = 0; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return NULL;
}

/* Rejects anything but the given flags (each taking a value). */
static int check_flags(int argc, char **argv, const char *const *allowed)
{
	for (int i = 0; i < argc; i += 2) {
		bool ok = false;
		for (int j = 0; allowed[j]; j++)
			ok |= strcmp(argv[i], allowed[j]) == 0;
		if (!ok || i + 1 >= argc) {
			fprintf(stderr, "sfa: %s \"%s\"\n%s",
			        ok ? "missing value for" : "unknown option", argv[i], usage);
			return 2;
		}
	}
	return 0;
}

static int cmd_user_create(int argc, char **argv)
{
	struct app app;
	int rc = open_app(&app, &argc, argv, false);
	if (rc)
		return rc;
	static const char *const allowed[] = {"--email", "--password", NULL};
	if ((rc = check_flags(argc, argv, allowed)))
		goto out;
	const char *email = flag(argc, argv, "--email");
	const char *password = flag(argc, argv, "--password");
	if (!email || !password) {
		fprintf(stderr, "sfa: user create needs --email and --password\n");
		rc = 2;
		goto out;
	}
	struct field_errors fe = {0};
	struct db_user u;
	rc = accounts_register(app.db, email, password, (int64_t)time(NULL), &u, &fe);
	if (rc == SFA_EINVAL) {
		for (int i = 0; i < fe.n; i++)
			fprintf(stderr, "sfa: %s %s\n", fe.e[i].field, fe.e[i].message);
		rc = 1;
	} else if (rc) {
		rc = fail("could not create the user (see the log above)");
	} else {
		printf("%s\n", u.id);
	}
out:
	db_close(app.db);
	return rc;
}

static int cmd_token_create(int argc, char **argv)
{
	struct app app;
	int rc = open_app(&app, &argc, argv, false);
	if (rc)
		return rc;
	static const char *const allowed[] = {"--email", "--name", NULL};
	if ((rc = check_flags(argc, argv, allowed)))
		goto out;
	const char *email = flag(argc, argv, "--email");
	const char *name = flag(argc, argv, "--name");
	if (!email) {
		fprintf(stderr, "sfa: token create needs --email\n");
		rc = 2;
		goto out;
	}
	struct db_user u;
	if (db_user_by_email(app.db, email, &u) != 0) {
		fprintf(stderr, "sfa: no user with the email %s\n", email);
		rc = 1;
		goto out;
	}
	struct field_errors fe = {0};
	char key[TOKEN_STR_LEN];
	struct db_api_key rec;
	rc = accounts_api_key_create(app.db, u.id, name ? name : "cli", (int64_t)time(NULL), key,
	                             &rec, &fe);
	if (rc) {
		fprintf(stderr, "sfa: could not create the key%s%s\n", fe.n ? ": name " : "",
		        fe.n ? fe.e[0].message : "");
		rc = 1;
	} else {
		printf("%s\n", key);
	}
out:
	db_close(app.db);
	return rc;
}

static int cmd_job_enqueue(int argc, char **argv)
{
	struct app app;
	int rc = open_app(&app, &argc, argv, false);
	if (rc)
		return rc;
	static const char *const allowed[] = {"--email", "--type", "--track", "--payload", NULL};
	if ((rc = check_flags(argc, argv, allowed)))
		goto out;
	const char *email = flag(argc, argv, "--email");
	const char *type = flag(argc, argv, "--type");
	const char *track = flag(argc, argv, "--track");
	const char *payload = flag(argc, argv, "--payload");
	struct db_user u;
	if (!email || !type) {
		fprintf(stderr, "sfa: job enqueue needs --email and --type\n");
		rc = 2;
		goto out;
	}
	if (db_user_by_email(app.db, email, &u) != 0) {
		fprintf(stderr, "sfa: no user with the email %s\n", email);
		rc = 1;
		goto out;
	}
	json_error_t je;
	json_t *p = payload ? json_loads(payload, 0, &je) : json_object();
	if (!json_is_object(p)) {
		json_decref(p);
		fprintf(stderr, "sfa: --payload must be a JSON object\n");
		rc = 2;
		goto out;
	}
	if (!job_type_find(type)) {
		json_decref(p);
		fprintf(stderr, "sfa: there is no job type \"%s\"; the types are:", type);
		for (int i = 0; i < job_types_n; i++)
			fprintf(stderr, " %s", job_types[i].name);
		fputc('\n', stderr);
		rc = 2;
		goto out;
	}
	struct db_job j;
	if (job_enqueue(app.db, NULL, u.id, track, type, p, &j) != 0) {
		rc = fail("could not queue the job");
		goto out;
	}
	printf("%s\n", j.id);
out:
	db_close(app.db);
	return rc;
}

/* `sfa probe-audio FILE`: decodes FILE to validate it and prints its properties as JSON.
 * The server runs this in a child process, so untrusted media is never decoded inside
 * the server itself. Exit 0 with {"container",...} or 1 with {"error": "..."}. */
static int cmd_probe_audio(int argc, char **argv)
{
	if (argc != 1) {
		fprintf(stderr, "usage: sfa probe-audio FILE\n");
		return 2;
	}
	struct audio_info info;
	char err[512];
	json_t *out;
	int rc = audio_probe(argv[0], &info, err, sizeof err);
	if (rc)
		out = json_pack("{s:s}", "error", err);
	else
		out = json_pack("{s:s, s:s, s:i, s:i, s:f, s:I, s:s, s:s, s:s}", "container",
		                info.container, "codec", info.codec, "sample_rate",
		                info.sample_rate_hz, "channels", info.n_channels, "duration",
		                info.duration_s, "bit_rate", (json_int_t)info.bit_rate, "title",
		                info.title, "artist", info.artist, "album", info.album);
	char *text = json_encode(out);
	json_decref(out);
	puts(text ? text : "{}");
	free(text);
	return rc ? 1 : 0;
}

/* `sfa separate` and `sfa models`: the Demucs engine's own command line, with the models
 * folder the server uses (SFA_MODELS_DIR, else <data dir>/models; --data is accepted). */
static int cmd_engine(int argc, char **argv)
{
	struct config cfg;
	char err[512];
	if (config_from_env(&cfg, err, sizeof err) ||
	    config_take_data_flag(&cfg, &argc, argv, err, sizeof err)) {
		fprintf(stderr, "sfa: %s\n", err);
		return 2;
	}
	setenv("SFA_MODELS_DIR", cfg.models_dir, 1);
	return strcmp(argv[0], "separate") == 0 ? nn_cli_separate(argc, argv)
	                                        : nn_cli_models(argc, argv);
}

static int cmd_job_exec(int argc, char **argv)
{
	if (argc < 1)
		return 2;
	const char *id = argv[0];
	struct app app;
	argc--;
	argv++;
	char err[512];
	memset(&app, 0, sizeof app);
	if (config_from_env(&app.cfg, err, sizeof err) ||
	    config_take_data_flag(&app.cfg, &argc, argv, err, sizeof err) ||
	    config_prepare_data(&app.cfg, err, sizeof err))
		return fail(err);
	return job_exec_main(&app.cfg, id);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage, stderr);
		return 2;
	}
	const char *cmd = argv[1];
	/* The commands that may run a separation get OpenBLAS's kernels for this CPU (a
	 * re-exec, about 60 ms); the others (analyze, the upload probe, ...) need no sgemm. */
	if (strcmp(cmd, "serve") == 0 || strcmp(cmd, "worker") == 0 ||
	    strcmp(cmd, "separate") == 0 || strcmp(cmd, "job-exec") == 0)
		nn_blas_pick_core(argv);
	if (sodium_init() < 0)
		return fail("libsodium could not initialise");
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		puts("sfa " SFA_VERSION);
		return 0;
	}
	if (strcmp(cmd, "serve") == 0)
		return cmd_serve(argc - 2, argv + 2);
	if (strcmp(cmd, "worker") == 0)
		return cmd_worker(argc - 2, argv + 2);
	if (argc >= 3 && strcmp(cmd, "user") == 0 && strcmp(argv[2], "create") == 0)
		return cmd_user_create(argc - 3, argv + 3);
	if (argc >= 3 && strcmp(cmd, "token") == 0 && strcmp(argv[2], "create") == 0)
		return cmd_token_create(argc - 3, argv + 3);
	if (argc >= 3 && strcmp(cmd, "job") == 0 && strcmp(argv[2], "enqueue") == 0)
		return cmd_job_enqueue(argc - 3, argv + 3);
	if (strcmp(cmd, "routes") == 0) {
		json_t *t = routes_table_json();
		char *text = t ? json_dumps(t, JSON_INDENT(1)) : NULL;
		json_decref(t);
		if (!text)
			return fail("out of memory");
		puts(text);
		free(text);
		return 0;
	}
	if (strcmp(cmd, "separate") == 0 || strcmp(cmd, "models") == 0)
		return cmd_engine(argc - 1, argv + 1);
	if (strcmp(cmd, "analyze") == 0)
		return dsp_cli_analyze(argc - 1, argv + 1);
	if (strcmp(cmd, "probe-audio") == 0)
		return cmd_probe_audio(argc - 2, argv + 2);
	if (strcmp(cmd, "nistems-render") == 0) /* GET /export/nistems's child (audio/nistems.h) */
		return nistems_cli(argc - 2, argv + 2);
	if (strcmp(cmd, "transform") == 0)
		return transform_cli(argc - 2, argv + 2);
	if (strcmp(cmd, "daw-render") == 0) /* POST /api/daw/export's child (audio/mixer_cli.h) */
		return mixer_cli_render(argc - 2, argv + 2);
	if (strcmp(cmd, "job-exec") == 0)
		return cmd_job_exec(argc - 2, argv + 2);
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0) {
		fputs(usage, stdout);
		return 0;
	}
	fprintf(stderr, "sfa: unknown command \"%s\"\n%s", cmd, usage);
	return 2;
}
