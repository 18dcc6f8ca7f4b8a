/* apply.c - nn_separate(): Demucs' apply_model over a whole track, in parallel.
 *
 * The work is a flat list of forward passes ("items") in Demucs' own order: for each bag
 * member, for each random shift, for each chunk. A pass over one (member, shift) is the
 * track delayed by d = max_shift - offset inside a zero-extended "virtual" signal of
 * length N + d; chunk c starts at c*stride in it, is read centred-padded to the network's
 * length (real neighbouring samples, zeros outside the track), and its output is trimmed
 * back. Its contribution to the final output is
 *
 *     out[k][ch][p - d] += bag_w[k] / total_w[k] / n_shifts * w_c(p) / sum_c' w_c'(p) * y
 *
 * with w the triangle weight, which is apply_model's arithmetic regrouped so that every
 * item can be added into the one output buffer as soon as it is done (no per-pass
 * buffers: a 4-minute track is 340 MB of output already).
 *
 * Workers take items in order; each computes into its own buffers and then waits for its
 * turn to add them into the output: additions happen in item order whatever the number
 * of threads, so the result is bit-identical for 1 or 16 workers. Each worker owns one
 * workspace for the whole call (sized by its first item, reused afterwards).
 *
 * Members that are not resident (bags of several networks, see network_internal.h) run in
 * phases: the items of member k are all the items of its passes, consecutive in the list;
 * the member is loaded, the workers run its items, the member is freed, then the next one.
 * The items, their order and the commit order are those of the one-phase run, so the output
 * is the same bit for bit; the peak holds one member's weights instead of all of them (the
 * workspaces are trimmed while a member loads). HDemucs segments are long (mdx_extra: 44 s, ~0.4 GB of activations each),
 * so from NN_TEAM_SEGMENT_S on, or when there are fewer segments than threads, an HDemucs
 * network runs one segment at a time on worker 0 and the other threads join it as a GEMM
 * team (ops.h: the products are cut between threads, bit-identically, and tiles, attention
 * heads and token blocks are shared as parts): the working memory is one workspace
 * whatever the number of threads. Other networks (HTDemucs) run whole waves one segment
 * per worker, and the tail of a phase that does not fill a wave (fewer items left than
 * threads: a short clip, the last wave) one segment at a time with the team, so that no
 * thread idles; a job with fewer items than threads gets workers for its items only, the
 * other threads being the team. The commit order is the item order either way.
 *
 * With a streaming sink and a single pass (one network, shifts <= 1), the output is a
 * window of one segment: after item c, every frame before chunk c+1's start is final, is
 * denormalised, handed to the sink (from the committing thread, so in order) and slid
 * out. Peak memory then no longer grows with the track (htdemucs: ~600 MB for 4 min).
 * With a sink and several passes (bags, shifts), no frame is final before the last pass,
 * so the sum lives in an anonymous temporary file (planes of n floats, sparse zeros at
 * first): a commit reads the chunk's span of each plane, adds exactly what the in-memory
 * sum would add, and writes it back; the end reads the file in blocks for the sink. The
 * output is the same bit for bit, and a 4-minute track no longer holds 340 MB of sums.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/net.h"
#include "nn/network_internal.h"
#include "nn/nn.h"
#include "nn/ops.h"
#include "nn/workspace.h"
#include "util/err.h"
#include "util/fs.h"

enum { MAX_THREADS = 64, FILE_BLOCK_FRAMES = 16384 };
/* HDemucs segments from this length on run one at a time with a GEMM team. */
#define NN_TEAM_SEGMENT_S 20.0

struct pass {
	int member;
	int delay;    /* d: the track starts at d in the virtual signal */
	long long lv; /* virtual length N + d */
	int seglen;   /* chunk length */
	int valid;    /* forward length of a full chunk (fixed-length nets pad to it) */
	int stride;
	int n_chunks;
	int split;
	float factor[NN_MAX_STEMS]; /* bag weight / total / shifts */
};

struct item {
	int pass;
	int chunk;
};

/* One nn_separate call: its passes (shifts x bag members) cut into items that workers take
 * in order and commit in order. */
struct separation {
	const struct nn_model *m;
	const struct nn_separate_opts *o;
	const float *mix; /* the caller's input, C planes of n */
	float mean, div;  /* standardisation applied on the fly: (x - mean) / div */
	size_t n;
	float *out; /* planes of out_stride frames holding track frames from out_base */
	size_t out_stride;
	long long out_base;
	int streaming; /* out is a window flushed to the sink after each item */
	int acc_fd;    /* >= 0: the sums live in this file (out is one span's scratch) */
	struct pass *passes;
	struct item *items;
	int n_items;
	int item_end;                        /* the current phase runs items [.., item_end) */
	struct nn_net *nets[NN_MAX_MEMBERS]; /* the networks of the current phase */
	int max_valid, max_seg;
	int n_threads; /* workers, plus helpers for a team when there are fewer items */
	pthread_mutex_t lock;
	pthread_cond_t turn;
	int next_item, next_commit;
	int rc;
	char err[256];
};

struct worker {
	struct separation *job;
	struct nn_ws ws;
	float *in, *y, *f;
	pthread_t thread;
};

unsigned long long nn_flop_count(void) { return nn_ops_flop_count(); }

void nn_separate_opts_init(struct nn_separate_opts *o)
{
	memset(o, 0, sizeof *o);
	o->shifts = 1;
	o->overlap = 0.25;
	o->split = true;
	o->normalize = true;
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static float *aligned_floats(size_t n)
{
	void *p = NULL;
	return posix_memalign(&p, 64, (n ? n : 1) * sizeof(float)) == 0 ? p : NULL;
}

static int available_cpus(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) == 0) {
		int n = CPU_COUNT(&set);
		if (n > 0)
			return n;
	}
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

/* Triangle weight of apply_model: cat(arange(1, L//2+1), arange(L - L//2, 0, -1)) / max. */
static float tri_weight(int i, int seglen)
{
	int h = seglen / 2, mx = seglen - h;
	int v = i < h ? i + 1 : seglen - i;
	return (float)v / (float)mx;
}

static int chunk_len(const struct pass *p, int c)
{
	long long off = (long long)c * p->stride;
	long long rest = p->lv - off;
	return (int)(rest < p->seglen ? rest : p->seglen);
}

static int run_item(struct worker *w, int idx)
{
	struct separation *j = w->job;
	const struct pass *p = &j->passes[j->items[idx].pass];
	int c = j->items[idx].chunk;
	const struct nn_model *m = j->m;
	int C = m->info.audio_channels;
	int len = p->split ? chunk_len(p, c) : (int)p->lv;
	int valid = m->fixed_len[p->member] ? p->valid : len; /* HDemucs runs short chunks */
	long long off = (long long)c * p->stride;
	long long start = off - (valid - len) / 2; /* TensorChunk.padded: centred */
	for (int ch = 0; ch < C; ch++) {
		const float *src = j->mix + (size_t)ch * j->n;
		float *dst = w->in + (size_t)ch * valid;
		for (int i = 0; i < valid; i++) {
			long long t = start + i - p->delay; /* index into the track */
			dst[i] = (t >= 0 && t < (long long)j->n) ? (src[t] - j->mean) / j->div
			                                         : 0.0f;
		}
	}
	int rc = nn_net_forward(j->nets[p->member], &w->ws, w->in, valid, w->y, j->o->cancel);
	nn_ws_reset(&w->ws);
	return rc;
}

/* Adds the finished item into the output (called in item order). 0, or SFA_EIO when the
 * sums' file cannot be read or written. */
static int commit_item(struct worker *w, int idx)
{
	struct separation *j = w->job;
	const struct pass *p = &j->passes[j->items[idx].pass];
	int c = j->items[idx].chunk;
	const struct nn_model *m = j->m;
	int C = m->info.audio_channels, S = m->info.n_sources;
	int len = p->split ? chunk_len(p, c) : (int)p->lv;
	int valid = m->fixed_len[p->member] ? p->valid : len;
	long long off = (long long)c * p->stride;
	int trim = (valid - len) / 2; /* center_trim */
	/* Per-sample blend factor w_c / sum of the weights of every chunk covering it. */
	for (int i = 0; i < len; i++) {
		if (!p->split) {
			w->f[i] = 1.0f;
			continue;
		}
		long long pos = off + i;
		float sum = 0.0f;
		int reach = (p->seglen + p->stride - 1) / p->stride;
		int c0 = c - reach < 0 ? 0 : c - reach;
		int c1 = c + reach >= p->n_chunks ? p->n_chunks - 1 : c + reach;
		for (int k = c0; k <= c1; k++) {
			long long o2 = (long long)k * p->stride;
			if (pos >= o2 && pos - o2 < chunk_len(p, k))
				sum += tri_weight((int)(pos - o2), p->seglen);
		}
		w->f[i] = tri_weight(i, p->seglen) / sum;
	}
	/* Output sample index = virtual position - delay; keep [0, n). */
	long long i0 = p->delay - off > 0 ? p->delay - off : 0;
	long long i1 = (long long)j->n + p->delay - off;
	if (i1 > len)
		i1 = len;
	long long shift = off - p->delay - j->out_base; /* out index of sample 0 */
	for (int k = 0; k < S && i1 > i0; k++) {
		float fk = p->factor[k];
		if (fk == 0.0f)
			continue;
		for (int ch = 0; ch < C; ch++) {
			const float *y = w->y + ((size_t)k * C + ch) * valid + trim;
			size_t plane = (size_t)k * C + ch, span = (size_t)(i1 - i0) * sizeof(float);
			off_t at = (off_t)((plane * j->n + (size_t)(shift + i0)) * sizeof(float));
			/* In the file, the span is read into out[0..) and written back. */
			bool file = j->acc_fd >= 0;
			float *dst = file ? j->out : j->out + plane * j->out_stride;
			long long at0 = file ? -i0 : shift; /* dst index of item sample 0 */
			if (file && fs_pread_all(j->acc_fd, j->out, span, at) != 0)
				return SFA_EIO;
			for (long long i = i0; i < i1; i++)
				dst[at0 + i] += fk * (w->f[i] * y[i]);
			if (file && fs_pwrite_all(j->acc_fd, j->out, span, at) != 0)
				return SFA_EIO;
		}
	}
	return 0;
}

/* Streaming: after item idx (chunk c of the only pass) every frame before the next chunk's
 * start is final; hand it to the sink and slide the window. Returns 0 or SFA_EIO. */
static int flush_window(struct separation *j, int idx)
{
	const struct pass *p = &j->passes[j->items[idx].pass];
	int c = j->items[idx].chunk;
	long long end = c + 1 < p->n_chunks ? (long long)(c + 1) * p->stride - p->delay
	                                    : (long long)j->n;
	if (end < 0)
		end = 0;
	if (end > (long long)j->n)
		end = (long long)j->n;
	long long k = end - j->out_base;
	if (k <= 0)
		return 0;
	int planes = j->m->info.n_sources * j->m->info.audio_channels;
	for (int pl = 0; pl < planes; pl++) {
		float *row = j->out + (size_t)pl * j->out_stride;
		for (long long i = 0; i < k; i++)
			row[i] = row[i] * j->div + j->mean;
	}
	if (j->o->sink(j->o->sink_user, j->out, j->out_stride, (size_t)j->out_base, (size_t)k))
		return SFA_EIO;
	for (int pl = 0; pl < planes; pl++) {
		float *row = j->out + (size_t)pl * j->out_stride;
		memmove(row, row + k, (j->out_stride - (size_t)k) * sizeof *row);
		memset(row + j->out_stride - k, 0, (size_t)k * sizeof *row);
	}
	j->out_base = end;
	return 0;
}

static void fail_job(struct separation *j, int rc, const char *msg)
{
	if (!j->rc) {
		j->rc = rc;
		sfa_err(j->err, sizeof j->err, rc, "%s", msg);
	}
	pthread_cond_broadcast(&j->turn);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct separation *j = w->job;
	nn_ops_set_precision(j->o->precision); /* this thread's products (and its team's) */
	for (;;) {
		pthread_mutex_lock(&j->lock);
		if (j->rc || j->next_item >= j->item_end) {
			pthread_mutex_unlock(&j->lock);
			break;
		}
		int idx = j->next_item++;
		pthread_mutex_unlock(&j->lock);

		int rc = (j->o->cancel && *j->o->cancel) ? SFA_ECANCELED : run_item(w, idx);

		pthread_mutex_lock(&j->lock);
		if (rc) {
			fail_job(j, rc,
			         rc == SFA_ECANCELED ? "separation cancelled"
			         : rc == SFA_ENOMEM  ? "out of memory during separation"
			                             : "the network refused a chunk");
			pthread_mutex_unlock(&j->lock);
			break;
		}
		while (j->next_commit != idx && !j->rc)
			pthread_cond_wait(&j->turn, &j->lock);
		if (j->rc) {
			pthread_mutex_unlock(&j->lock);
			break;
		}
		pthread_mutex_unlock(&j->lock);
		/* This thread has the turn until next_commit moves on: commits and progress
		 * reports stay in item order without the lock held around outside code. */
		int crc = commit_item(w, idx);
		int frc = crc == 0 && j->streaming ? flush_window(j, idx) : 0;
		if (!crc && !frc && j->o->progress)
			j->o->progress(j->o->progress_user, idx + 1, j->n_items);
		pthread_mutex_lock(&j->lock);
		if (crc || frc) {
			fail_job(
				j, SFA_EIO,
				crc ? "the temporary file of the summed stems could not be read or "
				      "written (is the scratch disk full?)"
				    : "the output could not be written");
			pthread_mutex_unlock(&j->lock);
			break;
		}
		j->next_commit++;
		pthread_cond_broadcast(&j->turn);
		pthread_mutex_unlock(&j->lock);
	}
	nn_ops_set_precision(NN_PRECISION_FP32); /* worker 0 is the caller's thread */
	return NULL;
}

/* Runs items [j->next_item, end) with the networks in j->nets: the calling thread is
 * worker 0, the others get threads (fewer if some cannot be started). */
static void run_phase(struct separation *j, struct worker *ws, int n_workers, int end)
{
	j->item_end = end;
	int started = 1;
	for (int i = 1; i < n_workers; i++) {
		if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0)
			break;
		started = i + 1;
	}
	worker_main(&ws[0]);
	for (int i = 1; i < started; i++)
		pthread_join(ws[i].thread, NULL);
}

/* Items [next_item, end) one at a time on worker 0, the other threads its team. */
static void run_team(struct separation *j, struct worker *ws, int end)
{
	struct nn_team *team = nn_team_start(j->n_threads - 1);
	nn_ops_team_attach(team);
	run_phase(j, ws, 1, end);
	nn_ops_team_attach(NULL);
	nn_team_stop(team);
}

/* Items [at, end) with the networks in j->nets, one segment per worker, or one segment at a
 * time with the other threads as its team (products and tiles shared):
 *  - HDemucs networks run every item with a team when the segments are long (one
 *    segment's activations instead of one per thread: ~0.4 GB each at 44 s) or when there
 *    are fewer segments than threads (team work is then free);
 *  - otherwise (HTDemucs, short HDemucs segments) the whole waves run one segment per
 *    worker, and the tail that does not fill a wave (fewer items left than workers: a
 *    short clip, the last wave of a track, of a bag member) one segment at a time with the
 *    team, instead of leaving threads idle. The items of a full wave cost the same (every
 *    HTDemucs chunk runs at the model's length), so the wave ends nearly together.
 * Whoever computes an item, it is committed in item order with the same bits. */
static void run_items(struct separation *j, struct worker *ws, int n_workers, int at, int end)
{
	bool hdemucs = true;
	for (int i = at; i < end && hdemucs; i++)
		if (j->m->fixed_len[j->passes[j->items[i].pass].member])
			hdemucs = false;
	double seg_s = (double)j->max_seg / j->m->info.samplerate;
	int n = j->n_threads; /* n_workers, or more when the whole job has fewer items */
	if (n < 2) {
		run_phase(j, ws, n_workers, end);
		return;
	}
	if (hdemucs && (end - at < n || seg_s >= NN_TEAM_SEGMENT_S)) {
		run_team(j, ws, end);
		return;
	}
	int tail = (end - at) % n;
	if (end - tail > at)
		run_phase(j, ws, n_workers, end - tail); /* whole waves: n_workers == n */
	if (tail > 0 && !j->rc)
		run_team(j, ws, end);
}

/* All the items: in one phase when every member is resident, else member by member, each
 * loaded just before its items and freed just after. */
static int run_phases(struct separation *j, struct worker *ws, int n_workers, char *err,
                      size_t n_err)
{
	const struct nn_model *m = j->m;
	bool resident = true;
	for (int k = 0; k < m->n; k++)
		if (!m->nets[k])
			resident = false;
	if (resident) {
		for (int k = 0; k < m->n; k++)
			j->nets[k] = m->nets[k];
		run_items(j, ws, n_workers, 0, j->n_items);
		return j->rc ? sfa_err(err, n_err, j->rc, "%s", j->err) : 0;
	}
	int at = 0;
	for (int k = 0; k < m->n && at < j->n_items; k++) {
		int end = at;
		while (end < j->n_items && j->passes[j->items[end].pass].member == k)
			end++;
		if (end == at)
			continue;
		if (j->o->cancel && *j->o->cancel)
			return sfa_err(err, n_err, SFA_ECANCELED, "separation cancelled");
		/* The workspaces' tiles are not needed while the next member loads (which
		 * holds its file and its fp32 weights at once: ~0.5 GB for mdx_extra). */
		for (int i = 0; i < n_workers; i++)
			nn_ws_trim(&ws[i].ws);
		bool owned = false;
		int rc = nn_model_member(m, k, &j->nets[k], &owned, err, n_err);
		if (rc)
			return rc;
		run_items(j, ws, n_workers, at, end);
		if (owned)
			nn_net_free(j->nets[k]);
		j->nets[k] = NULL;
		if (j->rc)
			return sfa_err(err, n_err, j->rc, "%s", j->err);
		at = end;
	}
	return 0;
}

/* Builds the pass and item lists. */
static int plan(struct separation *j, char *err, size_t n_err)
{
	const struct nn_model *m = j->m;
	const struct nn_separate_opts *o = j->o;
	int S = m->info.n_sources, sr = m->info.samplerate;
	int n_shift_runs = o->shifts > 0 ? o->shifts : 1;
	int max_shift = (int)(0.5 * sr);
	uint64_t rng = o->seed;
	int n_pass = m->n * n_shift_runs;
	j->passes = calloc((size_t)n_pass, sizeof *j->passes);
	if (!j->passes)
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	long long n_items = 0;
	for (int mi = 0, pi = 0; mi < m->n; mi++) {
		int valid = m->valid_len[mi];
		/* int(samplerate * segment): the member's (or the bag's) segment is what its
		 * forward runs at, so by default a chunk is exactly one forward. */
		int seglen = o->segment_s > 0 ? (int)(o->segment_s * sr) : valid;
		if (!m->fixed_len[mi]) {
			/* HDemucs: any chunk length, no padding (apply_model's valid_length is the
			 * chunk's own length for it). */
			if (o->segment_s > NN_MAX_SEGMENT_S)
				return sfa_err(err, n_err, SFA_EINVAL, "segment %.2f s is too long",
				               o->segment_s);
			valid = seglen;
		}
		if (seglen > valid)
			return sfa_err(err, n_err, SFA_EINVAL,
			               "segment %.2f s is longer than the model supports (%.2f s)",
			               (double)seglen / sr, (double)valid / sr);
		if (seglen < 1)
			return sfa_err(err, n_err, SFA_EINVAL, "segment too short");
		int stride = (int)((1.0 - o->overlap) * seglen);
		if (stride < 1)
			return sfa_err(err, n_err, SFA_EINVAL, "overlap too large for the segment");
		for (int s = 0; s < n_shift_runs; s++, pi++) {
			struct pass *p = &j->passes[pi];
			p->member = mi;
			p->delay = 0;
			if (o->shifts > 0)
				p->delay = max_shift -
				           (int)(splitmix64(&rng) % (uint64_t)(max_shift + 1));
			p->lv = (long long)j->n + p->delay;
			p->seglen = seglen;
			p->stride = stride;
			p->split = o->split;
			p->valid = valid;
			if (o->split) {
				long long nc = (p->lv + stride - 1) / stride;
				if (nc > 1000000)
					return sfa_err(err, n_err, SFA_ETOOBIG, "input too long");
				p->n_chunks = (int)nc;
			} else {
				if (!m->fixed_len[mi] && p->lv <= (long long)NN_MAX_SEGMENT_S * sr)
					p->valid = (int)p->lv;
				if (p->lv > p->valid)
					return sfa_err(
						err, n_err, SFA_EINVAL,
						"without split the input (plus shift) must fit one "
						"segment of %.2f s",
						(double)valid / sr);
				p->n_chunks = 1;
			}
			for (int k = 0; k < S; k++)
				p->factor[k] = m->w[mi][k] / m->totals[k] / (float)n_shift_runs;
			n_items += p->n_chunks;
			if (seglen > j->max_seg)
				j->max_seg = seglen;
			if (p->valid > j->max_valid)
				j->max_valid = p->valid;
		}
	}
	if (n_items > 10000000)
		return sfa_err(err, n_err, SFA_ETOOBIG, "input too long");
	j->items = malloc((size_t)n_items * sizeof *j->items);
	if (!j->items)
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	int at = 0;
	for (int pi = 0; pi < n_pass; pi++)
		for (int c = 0; c < j->passes[pi].n_chunks; c++)
			j->items[at++] = (struct item){.pass = pi, .chunk = c};
	j->n_items = at;
	return 0;
}

/* The sums' file: planes of n floats, all zero (a sparse file) until written. */
static int open_sums_file(struct separation *j, char *err, size_t n_err)
{
	const char *dir = j->o->scratch_dir;
	if (!dir || !*dir)
		dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	int planes = j->m->info.n_sources * j->m->info.audio_channels;
	off_t size = (off_t)((size_t)planes * j->n * sizeof(float));
	j->acc_fd = fs_tmpfile(dir);
	if (j->acc_fd < 0 || ftruncate(j->acc_fd, size) != 0)
		return sfa_err(
			err, n_err, SFA_EIO,
			"cannot make a %lld MB temporary file in %s for the summed stems: %s",
			(long long)(size >> 20), dir, strerror(errno));
	return 0;
}

/* Hands the summed stems to the sink, a block of frames at a time, denormalised. */
static int drain_sums_file(struct separation *j, char *err, size_t n_err)
{
	int planes = j->m->info.n_sources * j->m->info.audio_channels;
	size_t block = j->n < FILE_BLOCK_FRAMES ? j->n : FILE_BLOCK_FRAMES;
	float *buf = malloc((size_t)planes * block * sizeof *buf);
	if (!buf)
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	int rc = 0;
	for (size_t f0 = 0; f0 < j->n && rc == 0; f0 += block) {
		size_t nb = j->n - f0 < block ? j->n - f0 : block;
		for (int p = 0; p < planes && rc == 0; p++) {
			float *row = buf + (size_t)p * block;
			off_t at = (off_t)(((size_t)p * j->n + f0) * sizeof(float));
			if (fs_pread_all(j->acc_fd, row, nb * sizeof *row, at) != 0)
				rc = sfa_err(
					err, n_err, SFA_EIO,
					"the temporary file of the summed stems could not be read: %s",
					strerror(errno));
			for (size_t i = 0; i < nb && rc == 0; i++)
				row[i] = row[i] * j->div + j->mean;
		}
		if (rc == 0 && j->o->sink(j->o->sink_user, buf, block, f0, nb))
			rc = sfa_err(err, n_err, SFA_EIO, "the output could not be written");
	}
	free(buf);
	return rc;
}

int nn_separate(const struct nn_model *m, const float *mix, size_t n_frames,
                const struct nn_separate_opts *o, float **out, char *err, size_t n_err)
{
	const struct nn_model_info *info = &m->info;
	int C = info->audio_channels, S = info->n_sources;
	if (n_frames == 0)
		return sfa_err(err, n_err, SFA_EINVAL, "the input is empty");
	if (n_frames > (size_t)INT32_MAX / 2)
		return sfa_err(err, n_err, SFA_ETOOBIG, "the input is too long");
	if (!(o->overlap >= 0.0 && o->overlap < 1.0))
		return sfa_err(err, n_err, SFA_EINVAL, "overlap must be in [0, 1)");
	if (o->shifts < 0 || o->shifts > 100)
		return sfa_err(err, n_err, SFA_EINVAL, "shifts must be in [0, 100]");
	if (!(o->segment_s >= 0.0) || o->segment_s > 3600)
		return sfa_err(err, n_err, SFA_EINVAL, "segment must be positive");
	if (o->precision != NN_PRECISION_FP32 && o->precision != NN_PRECISION_BF16)
		return sfa_err(err, n_err, SFA_EINVAL, "precision must be fp32 or bf16");
	if (o->precision == NN_PRECISION_BF16 && !nn_bf16_supported(err, n_err))
		return SFA_EUNSUPP;
	nn_ops_init();

	struct separation j;
	memset(&j, 0, sizeof j);
	j.m = m;
	j.o = o;
	j.n = n_frames;
	j.acc_fd = -1;
	int rc = plan(&j, err, n_err);
	float *res = NULL;
	struct worker *ws = NULL;
	int n_workers = 0;
	if (rc)
		goto out;

	/* Standardise by the mono mix, as demucs.separate does (float32 results); the
	 * workers apply it as they read their chunks, so the track is never copied. */
	/* Streaming keeps one segment of output when a single pass covers the track. */
	j.streaming = o->sink && m->n == 1 && o->shifts <= 1;
	j.out_stride = o->sink ? (size_t)j.max_seg : n_frames;
	if (j.out_stride > n_frames)
		j.out_stride = n_frames;
	size_t n_res = (size_t)S * C * j.out_stride;
	if (o->sink && !j.streaming) {
		rc = open_sums_file(&j, err, n_err);
		if (rc)
			goto out;
		n_res = j.out_stride; /* one plane's span */
	}
	res = calloc(n_res, sizeof *res);
	if (!res) {
		rc = sfa_err(err, n_err, SFA_ENOMEM, "out of memory for a %zu-frame track",
		             n_frames);
		goto out;
	}
	float mean = 0.0f, div = 1.0f;
	if (o->normalize) {
		double s = 0.0;
		for (size_t i = 0; i < n_frames; i++) {
			float mono = 0.0f;
			for (int c = 0; c < C; c++)
				mono += mix[(size_t)c * n_frames + i];
			s += mono / (float)C;
		}
		mean = (float)(s / (double)n_frames);
		double ss = 0.0;
		for (size_t i = 0; i < n_frames; i++) {
			float mono = 0.0f;
			for (int c = 0; c < C; c++)
				mono += mix[(size_t)c * n_frames + i];
			double d = mono / (float)C - (double)mean;
			ss += d * d;
		}
		float sd = n_frames > 1 ? (float)sqrt(ss / (double)(n_frames - 1)) : 0.0f;
		div = sd + 1e-8f;
	}
	j.mix = mix;
	j.mean = mean;
	j.div = div;
	j.out = res;

	int want = o->n_threads > 0 ? o->n_threads : available_cpus();
	if (want > MAX_THREADS)
		want = MAX_THREADS;
	/* Workers beyond the items would idle: the threads they would have had help the
	 * running items as a team instead (run_items). */
	int n_alloc = want > j.n_items ? j.n_items : want;
	ws = calloc((size_t)n_alloc, sizeof *ws);
	if (!ws) {
		rc = sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
		goto out;
	}
	pthread_mutex_init(&j.lock, NULL);
	pthread_cond_init(&j.turn, NULL);
	for (int i = 0; i < n_alloc; i++) {
		struct worker *w = &ws[i];
		w->job = &j;
		nn_ws_init(&w->ws, 0);
		/* Aligned like the workspace, so that every worker's buffers look the same to
		 * the kernels (bit-identical results whatever thread runs an item). */
		w->in = aligned_floats((size_t)C * j.max_valid);
		w->y = aligned_floats((size_t)S * C * j.max_valid);
		w->f = aligned_floats((size_t)j.max_valid);
		if (!w->in || !w->y || !w->f) {
			free(w->in);
			free(w->y);
			free(w->f);
			nn_ws_free(&w->ws);
			break;
		}
		n_workers = i + 1;
	}
	j.n_threads = n_workers < n_alloc ? n_workers : want;
	if (n_workers == 0)
		rc = sfa_err(err, n_err, SFA_ENOMEM, "out of memory for the workers");
	else
		rc = run_phases(&j, ws, n_workers, err, n_err);
	for (int i = 0; i < n_workers; i++) {
		nn_ws_free(&ws[i].ws);
		free(ws[i].in);
		free(ws[i].y);
		free(ws[i].f);
	}
	pthread_cond_destroy(&j.turn);
	pthread_mutex_destroy(&j.lock);
	if (rc == 0 && j.acc_fd >= 0) {
		rc = drain_sums_file(&j, err, n_err);
	} else if (rc == 0 && !j.streaming) {
		for (size_t i = 0; i < (size_t)S * C * n_frames; i++)
			res[i] = res[i] * div + mean;
		if (o->sink) {
			if (o->sink(o->sink_user, res, n_frames, 0, n_frames))
				rc = sfa_err(err, n_err, SFA_EIO,
				             "the output could not be written");
		} else {
			*out = res;
			res = NULL;
		}
	}
out:
	if (j.acc_fd >= 0)
		close(j.acc_fd);
	free(ws);
	free(res);
	free(j.passes);
	free(j.items);
	return rc;
}
