/* pickle.c - see pickle.h.
 *
 * The machine: a value stack, a mark stack (positions in the value stack, as CPython's
 * metastack), and a memo (an index -> object table filled by PUT and read by GET).
 * Opcodes are dispatched in one switch; each checks its operands against the bytes left
 * and the types on the stack before touching them. Mutable containers (lists, dicts) are
 * shared by pointer through the memo, exactly like Python references.
 */
#include "nn/pickle.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

struct pk_vm {
	const uint8_t *d;
	size_t n, pos;
	struct arena *a;
	struct nn_pk **stack;
	size_t n_stack, cap_stack;
	size_t *marks;
	size_t n_marks, cap_marks;
	struct nn_pk **memo;
	size_t cap_memo;
	size_t n_memo; /* entries set, for MEMOIZE */
	char *err;
	size_t n_err;
	size_t op_pos; /* offset of the opcode being run, for messages */
};

static const struct {
	const char *module, *name;
	enum nn_pk_global g;
} allowed_globals[] = {
	{"collections", "OrderedDict", NN_PKG_ORDERED_DICT},
	{"torch._utils", "_rebuild_tensor_v2", NN_PKG_REBUILD_TENSOR_V2},
	{"torch._utils", "_rebuild_parameter", NN_PKG_REBUILD_PARAMETER},
	{"torch", "HalfStorage", NN_PKG_HALF_STORAGE},
	{"torch", "FloatStorage", NN_PKG_FLOAT_STORAGE},
	{"fractions", "Fraction", NN_PKG_FRACTION},
	{"demucs.htdemucs", "HTDemucs", NN_PKG_HTDEMUCS},
	{"demucs.hdemucs", "HDemucs", NN_PKG_HDEMUCS},
	{"demucs.demucs", "Demucs", NN_PKG_DEMUCS},
};

const char *nn_pk_global_name(enum nn_pk_global g)
{
	switch (g) {
	case NN_PKG_ORDERED_DICT:
		return "collections.OrderedDict";
	case NN_PKG_REBUILD_TENSOR_V2:
		return "torch._utils._rebuild_tensor_v2";
	case NN_PKG_REBUILD_PARAMETER:
		return "torch._utils._rebuild_parameter";
	case NN_PKG_HALF_STORAGE:
		return "torch.HalfStorage";
	case NN_PKG_FLOAT_STORAGE:
		return "torch.FloatStorage";
	case NN_PKG_FRACTION:
		return "fractions.Fraction";
	case NN_PKG_HTDEMUCS:
		return "demucs.htdemucs.HTDemucs";
	case NN_PKG_HDEMUCS:
		return "demucs.hdemucs.HDemucs";
	case NN_PKG_DEMUCS:
		return "demucs.demucs.Demucs";
	}
	return "?";
}

static int fail(struct pk_vm *vm, int code, const char *what)
{
	return sfa_err(vm->err, vm->n_err, code, "pickle: %s (at byte %zu)", what, vm->op_pos);
}

static struct nn_pk *new_obj(struct pk_vm *vm, enum nn_pk_type t)
{
	struct nn_pk *o = arena_alloc(vm->a, sizeof *o);
	if (o) {
		memset(o, 0, sizeof *o);
		o->type = t;
	}
	return o;
}

static int push(struct pk_vm *vm, struct nn_pk *o)
{
	if (!o)
		return fail(vm, SFA_ENOMEM, "out of memory (arena cap reached)");
	if (vm->n_stack == vm->cap_stack) {
		if (vm->cap_stack >= NN_PK_MAX_STACK)
			return fail(vm, SFA_ETOOBIG, "stack too deep");
		size_t cap = vm->cap_stack ? vm->cap_stack * 2 : 256;
		struct nn_pk **s = realloc(vm->stack, cap * sizeof *s);
		if (!s)
			return fail(vm, SFA_ENOMEM, "out of memory");
		vm->stack = s;
		vm->cap_stack = cap;
	}
	vm->stack[vm->n_stack++] = o;
	return 0;
}

/* Number of items above the current mark; -1 when there is no mark. */
static long above_mark(const struct pk_vm *vm)
{
	if (vm->n_marks == 0)
		return -1;
	return (long)(vm->n_stack - vm->marks[vm->n_marks - 1]);
}

static int need(struct pk_vm *vm, size_t k)
{
	if (vm->n - vm->pos < k)
		return fail(vm, SFA_EFORMAT, "truncated data");
	return 0;
}

static int need_stack(struct pk_vm *vm, size_t k)
{
	size_t floor = vm->n_marks ? vm->marks[vm->n_marks - 1] : 0;
	if (vm->n_stack < floor + k)
		return fail(vm, SFA_EFORMAT, "stack underflow");
	return 0;
}

static struct nn_pk *make_str(struct pk_vm *vm, enum nn_pk_type t, const uint8_t *p, size_t n)
{
	struct nn_pk *o = new_obj(vm, t);
	if (!o)
		return NULL;
	char *s = arena_strndup(vm->a, (const char *)p, n);
	if (!s)
		return NULL;
	o->u.str.p = s;
	o->u.str.n = n;
	return o;
}

static struct nn_pk *make_seq(struct pk_vm *vm, enum nn_pk_type t, size_t n)
{
	struct nn_pk *o = new_obj(vm, t);
	if (!o)
		return NULL;
	if (n) {
		if (n > SIZE_MAX / sizeof(struct nn_pk *))
			return NULL;
		o->u.seq.items = arena_alloc(vm->a, n * sizeof(struct nn_pk *));
		if (!o->u.seq.items)
			return NULL;
	}
	o->u.seq.n = 0;
	o->u.seq.cap = n;
	return o;
}

static int seq_append(struct pk_vm *vm, struct nn_pk *l, struct nn_pk *v)
{
	if (l->u.seq.n == l->u.seq.cap) {
		size_t cap = l->u.seq.cap ? l->u.seq.cap * 2 : 8;
		struct nn_pk **items = arena_alloc(vm->a, cap * sizeof *items);
		if (!items)
			return fail(vm, SFA_ENOMEM, "out of memory (arena cap reached)");
		if (l->u.seq.n)
			memcpy(items, l->u.seq.items, l->u.seq.n * sizeof *items);
		l->u.seq.items = items;
		l->u.seq.cap = cap;
	}
	l->u.seq.items[l->u.seq.n++] = v;
	return 0;
}

static int dict_set(struct pk_vm *vm, struct nn_pk *d, struct nn_pk *k, struct nn_pk *v)
{
	if (d->u.dict.n == d->u.dict.cap) {
		size_t cap = d->u.dict.cap ? d->u.dict.cap * 2 : 8;
		struct nn_pk **keys = arena_alloc(vm->a, cap * sizeof *keys);
		struct nn_pk **vals = arena_alloc(vm->a, cap * sizeof *vals);
		if (!keys || !vals)
			return fail(vm, SFA_ENOMEM, "out of memory (arena cap reached)");
		if (d->u.dict.n) {
			memcpy(keys, d->u.dict.keys, d->u.dict.n * sizeof *keys);
			memcpy(vals, d->u.dict.vals, d->u.dict.n * sizeof *vals);
		}
		d->u.dict.keys = keys;
		d->u.dict.vals = vals;
		d->u.dict.cap = cap;
	}
	d->u.dict.keys[d->u.dict.n] = k;
	d->u.dict.vals[d->u.dict.n] = v;
	d->u.dict.n++;
	return 0;
}

const struct nn_pk *nn_pk_get(const struct nn_pk *d, const char *key)
{
	if (!d || d->type != NN_PK_DICT)
		return NULL;
	size_t n = strlen(key);
	for (size_t i = d->u.dict.n; i-- > 0;) {
		const struct nn_pk *k = d->u.dict.keys[i];
		if (k->type == NN_PK_STR && k->u.str.n == n && memcmp(k->u.str.p, key, n) == 0)
			return d->u.dict.vals[i];
	}
	return NULL;
}

static int memo_put(struct pk_vm *vm, uint64_t idx)
{
	if (vm->n_stack == 0)
		return fail(vm, SFA_EFORMAT, "PUT on an empty stack");
	if (idx >= NN_PK_MAX_MEMO)
		return fail(vm, SFA_ETOOBIG, "memo index too large");
	if (idx >= vm->cap_memo) {
		size_t cap = vm->cap_memo ? vm->cap_memo : 1024;
		while (cap <= idx)
			cap *= 2;
		struct nn_pk **m = realloc(vm->memo, cap * sizeof *m);
		if (!m)
			return fail(vm, SFA_ENOMEM, "out of memory");
		memset(m + vm->cap_memo, 0, (cap - vm->cap_memo) * sizeof *m);
		vm->memo = m;
		vm->cap_memo = cap;
	}
	if (!vm->memo[idx])
		vm->n_memo++;
	vm->memo[idx] = vm->stack[vm->n_stack - 1];
	return 0;
}

static int memo_get(struct pk_vm *vm, uint64_t idx)
{
	if (idx >= vm->cap_memo || !vm->memo[idx])
		return fail(vm, SFA_EFORMAT, "GET of an unknown memo entry");
	return push(vm, vm->memo[idx]);
}

static int do_global(struct pk_vm *vm, const char *mod, size_t n_mod, const char *name,
                     size_t n_name)
{
	for (size_t i = 0; i < sizeof allowed_globals / sizeof allowed_globals[0]; i++) {
		if (strlen(allowed_globals[i].module) == n_mod &&
		    memcmp(allowed_globals[i].module, mod, n_mod) == 0 &&
		    strlen(allowed_globals[i].name) == n_name &&
		    memcmp(allowed_globals[i].name, name, n_name) == 0) {
			struct nn_pk *o = new_obj(vm, NN_PK_GLOBAL);
			if (o)
				o->u.global = allowed_globals[i].g;
			return push(vm, o);
		}
	}
	/* Name the refused global; clip it so a hostile name cannot flood the message. */
	return sfa_err(vm->err, vm->n_err, SFA_EFORMAT,
	               "pickle: global '%.*s.%.*s' is not allowed in a checkpoint (at byte %zu)",
	               (int)(n_mod > 80 ? 80 : n_mod), mod, (int)(n_name > 80 ? 80 : n_name), name,
	               vm->op_pos);
}

static int is_int(const struct nn_pk *o) { return o && o->type == NN_PK_INT; }

static int64_t gcd64(int64_t a, int64_t b)
{
	if (a < 0)
		a = -a;
	if (b < 0)
		b = -b;
	while (b) {
		int64_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/* Parses "[-]digits", "[-]digits/digits" or "[-]digits.digits" into a fraction. */
static int parse_fraction(const char *s, int64_t *num, int64_t *den)
{
	int neg = 0;
	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	int64_t a = 0, b = 1;
	int nd = 0;
	while (*s >= '0' && *s <= '9') {
		if (a > (INT64_MAX - 9) / 10)
			return -1;
		a = a * 10 + (*s++ - '0');
		nd++;
	}
	if (!nd)
		return -1;
	if (*s == '/') {
		s++;
		b = 0;
		nd = 0;
		while (*s >= '0' && *s <= '9') {
			if (b > (INT64_MAX - 9) / 10)
				return -1;
			b = b * 10 + (*s++ - '0');
			nd++;
		}
		if (!nd || b == 0)
			return -1;
	} else if (*s == '.') {
		s++;
		while (*s >= '0' && *s <= '9') {
			if (a > (INT64_MAX - 9) / 10 || b > INT64_MAX / 10)
				return -1;
			a = a * 10 + (*s++ - '0');
			b *= 10;
		}
	}
	if (*s)
		return -1;
	*num = neg ? -a : a;
	*den = b;
	return 0;
}

static int make_fraction(struct pk_vm *vm, const struct nn_pk *args)
{
	int64_t num, den;
	if (args->u.seq.n == 2 && is_int(args->u.seq.items[0]) && is_int(args->u.seq.items[1])) {
		num = args->u.seq.items[0]->u.i;
		den = args->u.seq.items[1]->u.i;
	} else if (args->u.seq.n == 1 && args->u.seq.items[0]->type == NN_PK_STR) {
		if (parse_fraction(args->u.seq.items[0]->u.str.p, &num, &den) != 0)
			return fail(vm, SFA_EFORMAT, "fractions.Fraction from a malformed string");
	} else if (args->u.seq.n == 1 && is_int(args->u.seq.items[0])) {
		num = args->u.seq.items[0]->u.i;
		den = 1;
	} else {
		return fail(vm, SFA_EFORMAT, "fractions.Fraction with unexpected arguments");
	}
	if (den == 0 || num == INT64_MIN || den == INT64_MIN)
		return fail(vm, SFA_EFORMAT, "fractions.Fraction with a zero or huge denominator");
	if (den < 0) {
		num = -num;
		den = -den;
	}
	int64_t g = gcd64(num, den);
	if (g > 1) {
		num /= g;
		den /= g;
	}
	struct nn_pk *o = new_obj(vm, NN_PK_FRACTION);
	if (o) {
		o->u.frac.num = num;
		o->u.frac.den = den;
	}
	return push(vm, o);
}

static int make_tensor(struct pk_vm *vm, const struct nn_pk *args)
{
	size_t na = args->u.seq.n;
	struct nn_pk **it = args->u.seq.items;
	if (na < 4 || na > 7 || it[0]->type != NN_PK_STORAGE || !is_int(it[1]) ||
	    it[2]->type != NN_PK_TUPLE || it[3]->type != NN_PK_TUPLE)
		return fail(vm, SFA_EFORMAT, "_rebuild_tensor_v2 with unexpected arguments");
	const struct nn_pk *size = it[2], *stride = it[3];
	if (size->u.seq.n != stride->u.seq.n || size->u.seq.n > NN_PK_MAX_DIMS)
		return fail(vm, SFA_EFORMAT, "tensor with mismatched or too many dimensions");
	struct nn_pk *o = new_obj(vm, NN_PK_TENSOR);
	if (!o)
		return push(vm, o);
	o->u.tensor.storage = it[0];
	o->u.tensor.offset = it[1]->u.i;
	o->u.tensor.ndim = (int)size->u.seq.n;
	int64_t numel = it[0]->u.storage.numel;
	if (o->u.tensor.offset < 0)
		return fail(vm, SFA_EFORMAT, "tensor with a negative storage offset");
	/* The highest element the view touches must lie inside the storage. */
	int64_t last = o->u.tensor.offset, count = 1;
	for (size_t k = 0; k < size->u.seq.n; k++) {
		const struct nn_pk *s = size->u.seq.items[k], *st = stride->u.seq.items[k];
		if (!is_int(s) || !is_int(st) || s->u.i < 0 || st->u.i < 0 || s->u.i > INT32_MAX ||
		    st->u.i > INT64_MAX / 4 / (s->u.i ? s->u.i : 1))
			return fail(vm, SFA_EFORMAT, "tensor with a bad size or stride");
		o->u.tensor.size[k] = s->u.i;
		o->u.tensor.stride[k] = st->u.i;
		if (s->u.i == 0)
			count = 0;
		else if (count)
			count = count > INT64_MAX / s->u.i ? -1 : count * s->u.i;
		if (count < 0)
			return fail(vm, SFA_EFORMAT, "tensor too large");
		if (s->u.i > 0) {
			int64_t span = (s->u.i - 1) * st->u.i;
			if (last > INT64_MAX - span)
				return fail(vm, SFA_EFORMAT, "tensor view overflows");
			last += span;
		}
	}
	if (count > 0 && last >= numel)
		return fail(vm, SFA_EFORMAT, "tensor view reaches past its storage");
	return push(vm, o);
}

static int do_reduce(struct pk_vm *vm)
{
	if (need_stack(vm, 2))
		return SFA_EFORMAT;
	struct nn_pk *args = vm->stack[--vm->n_stack];
	struct nn_pk *fn = vm->stack[--vm->n_stack];
	if (fn->type != NN_PK_GLOBAL)
		return fail(vm, SFA_EFORMAT, "REDUCE on something that is not a global");
	if (args->type != NN_PK_TUPLE)
		return fail(vm, SFA_EFORMAT, "REDUCE without an argument tuple");
	switch (fn->u.global) {
	case NN_PKG_ORDERED_DICT: {
		struct nn_pk *d = new_obj(vm, NN_PK_DICT);
		if (!d)
			return push(vm, d);
		if (args->u.seq.n == 0)
			return push(vm, d);
		const struct nn_pk *l = args->u.seq.items[0];
		if (args->u.seq.n != 1 || (l->type != NN_PK_LIST && l->type != NN_PK_TUPLE))
			return fail(vm, SFA_EFORMAT, "OrderedDict with unexpected arguments");
		for (size_t i = 0; i < l->u.seq.n; i++) {
			const struct nn_pk *kv = l->u.seq.items[i];
			if (kv->type != NN_PK_TUPLE || kv->u.seq.n != 2)
				return fail(vm, SFA_EFORMAT, "OrderedDict item is not a pair");
			int rc = dict_set(vm, d, kv->u.seq.items[0], kv->u.seq.items[1]);
			if (rc)
				return rc;
		}
		return push(vm, d);
	}
	case NN_PKG_REBUILD_TENSOR_V2:
		return make_tensor(vm, args);
	case NN_PKG_REBUILD_PARAMETER:
		if (args->u.seq.n < 1 || args->u.seq.items[0]->type != NN_PK_TENSOR)
			return fail(vm, SFA_EFORMAT, "_rebuild_parameter without a tensor");
		return push(vm, args->u.seq.items[0]);
	case NN_PKG_FRACTION:
		return make_fraction(vm, args);
	default:
		return sfa_err(vm->err, vm->n_err, SFA_EFORMAT,
		               "pickle: calling '%s' is not allowed (at byte %zu)",
		               nn_pk_global_name(fn->u.global), vm->op_pos);
	}
}

static int do_persid(struct pk_vm *vm)
{
	if (need_stack(vm, 1))
		return SFA_EFORMAT;
	struct nn_pk *pid = vm->stack[--vm->n_stack];
	if (pid->type != NN_PK_TUPLE || pid->u.seq.n != 5)
		return fail(vm, SFA_EFORMAT, "persistent id is not a 5-tuple");
	struct nn_pk **it = pid->u.seq.items;
	if (it[0]->type != NN_PK_STR || strcmp(it[0]->u.str.p, "storage") != 0)
		return fail(vm, SFA_EFORMAT, "persistent id is not a storage");
	if (it[1]->type != NN_PK_GLOBAL ||
	    (it[1]->u.global != NN_PKG_HALF_STORAGE && it[1]->u.global != NN_PKG_FLOAT_STORAGE))
		return fail(vm, SFA_EFORMAT,
		            "storage of an unsupported type (only half and float)");
	if (it[2]->type != NN_PK_STR || it[2]->u.str.n == 0 || it[2]->u.str.n > 64 ||
	    strchr(it[2]->u.str.p, '/'))
		return fail(vm, SFA_EFORMAT, "storage with a bad key");
	if (it[3]->type != NN_PK_STR)
		return fail(vm, SFA_EFORMAT, "storage with a bad location");
	if (!is_int(it[4]) || it[4]->u.i < 0 || it[4]->u.i > ((int64_t)1 << 40))
		return fail(vm, SFA_EFORMAT, "storage with a bad element count");
	struct nn_pk *o = new_obj(vm, NN_PK_STORAGE);
	if (o) {
		o->u.storage.dtype = it[1]->u.global == NN_PKG_HALF_STORAGE ? NN_PK_F16 : NN_PK_F32;
		o->u.storage.key = it[2]->u.str.p;
		o->u.storage.numel = it[4]->u.i;
	}
	return push(vm, o);
}

static uint64_t rd_le(const uint8_t *p, int k)
{
	uint64_t v = 0;
	for (int i = k - 1; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* Reads a length-prefixed string operand (k = 1 or 4 byte length) and pushes it. */
static int op_string(struct pk_vm *vm, int k, enum nn_pk_type t, int is_signed)
{
	if (need(vm, (size_t)k))
		return SFA_EFORMAT;
	uint64_t len = rd_le(vm->d + vm->pos, k);
	if (is_signed && k == 4 && (len & 0x80000000u))
		return fail(vm, SFA_EFORMAT, "negative string length");
	vm->pos += (size_t)k;
	if (need(vm, len))
		return SFA_EFORMAT;
	struct nn_pk *o = make_str(vm, t, vm->d + vm->pos, (size_t)len);
	vm->pos += (size_t)len;
	return push(vm, o);
}

/* Reads "text\n" for the GLOBAL opcode. */
static int read_line(struct pk_vm *vm, const char **s, size_t *n)
{
	const uint8_t *start = vm->d + vm->pos;
	const uint8_t *nl = memchr(start, '\n', vm->n - vm->pos);
	if (!nl)
		return fail(vm, SFA_EFORMAT, "unterminated GLOBAL name");
	*s = (const char *)start;
	*n = (size_t)(nl - start);
	vm->pos += *n + 1;
	return 0;
}

static int build_tuple(struct pk_vm *vm, size_t k)
{
	if (need_stack(vm, k))
		return SFA_EFORMAT;
	struct nn_pk *t = make_seq(vm, NN_PK_TUPLE, k);
	if (!t)
		return push(vm, t);
	memcpy(t->u.seq.items, vm->stack + vm->n_stack - k, k * sizeof(struct nn_pk *));
	t->u.seq.n = k;
	vm->n_stack -= k;
	return push(vm, t);
}

static int run(struct pk_vm *vm, const struct nn_pk **out)
{
	int rc = 0;
	while (rc == 0) {
		if (vm->pos >= vm->n)
			return fail(vm, SFA_EFORMAT, "data ends without a STOP opcode");
		vm->op_pos = vm->pos;
		uint8_t op = vm->d[vm->pos++];
		switch (op) {
		case 0x80: /* PROTO */
			if ((rc = need(vm, 1)))
				break;
			if (vm->d[vm->pos] > 5)
				return fail(vm, SFA_EFORMAT, "unknown protocol version");
			vm->pos++;
			break;
		case 0x95: /* FRAME (protocol 4): a length hint only */
			if ((rc = need(vm, 8)))
				break;
			vm->pos += 8;
			break;
		case '.': /* STOP */
			if (vm->n_stack == 0)
				return fail(vm, SFA_EFORMAT, "STOP on an empty stack");
			*out = vm->stack[vm->n_stack - 1];
			return 0;
		case '(': /* MARK */
			if (vm->n_marks == vm->cap_marks) {
				if (vm->cap_marks >= NN_PK_MAX_STACK)
					return fail(vm, SFA_ETOOBIG, "too many nested marks");
				size_t cap = vm->cap_marks ? vm->cap_marks * 2 : 64;
				size_t *m = realloc(vm->marks, cap * sizeof *m);
				if (!m)
					return fail(vm, SFA_ENOMEM, "out of memory");
				vm->marks = m;
				vm->cap_marks = cap;
			}
			vm->marks[vm->n_marks++] = vm->n_stack;
			break;
		case '0': /* POP */
			if ((rc = need_stack(vm, 1)))
				break;
			vm->n_stack--;
			break;
		case '1': /* POP_MARK */
			if (above_mark(vm) < 0)
				return fail(vm, SFA_EFORMAT, "POP_MARK without a mark");
			vm->n_stack = vm->marks[--vm->n_marks];
			break;
		case '}': /* EMPTY_DICT */
			rc = push(vm, new_obj(vm, NN_PK_DICT));
			break;
		case ']': /* EMPTY_LIST */
			rc = push(vm, make_seq(vm, NN_PK_LIST, 0));
			break;
		case ')': /* EMPTY_TUPLE */
			rc = push(vm, make_seq(vm, NN_PK_TUPLE, 0));
			break;
		case 't': { /* TUPLE */
			long k = above_mark(vm);
			if (k < 0)
				return fail(vm, SFA_EFORMAT, "TUPLE without a mark");
			/* build_tuple checks against the mark floor, so pop the mark after. */
			struct nn_pk *t = make_seq(vm, NN_PK_TUPLE, (size_t)k);
			if (!t)
				return push(vm, t);
			if (k > 0)
				memcpy(t->u.seq.items, vm->stack + vm->n_stack - (size_t)k,
				       (size_t)k * sizeof(struct nn_pk *));
			t->u.seq.n = (size_t)k;
			vm->n_stack -= (size_t)k;
			vm->n_marks--;
			rc = push(vm, t);
			break;
		}
		case 0x85: /* TUPLE1 */
		case 0x86: /* TUPLE2 */
		case 0x87: /* TUPLE3 */
			rc = build_tuple(vm, (size_t)(op - 0x84));
			break;
		case 'q': /* BINPUT */
			if ((rc = need(vm, 1)))
				break;
			rc = memo_put(vm, vm->d[vm->pos++]);
			break;
		case 'r': /* LONG_BINPUT */
			if ((rc = need(vm, 4)))
				break;
			rc = memo_put(vm, rd_le(vm->d + vm->pos, 4));
			vm->pos += 4;
			break;
		case 0x94: /* MEMOIZE (protocol 4): index = number of entries so far */
			rc = memo_put(vm, vm->n_memo);
			break;
		case 'h': /* BINGET */
			if ((rc = need(vm, 1)))
				break;
			rc = memo_get(vm, vm->d[vm->pos++]);
			break;
		case 'j': /* LONG_BINGET */
			if ((rc = need(vm, 4)))
				break;
			rc = memo_get(vm, rd_le(vm->d + vm->pos, 4));
			vm->pos += 4;
			break;
		case 'J':   /* BININT */
		case 'K':   /* BININT1 */
		case 'M': { /* BININT2 */
			int k = op == 'J' ? 4 : op == 'K' ? 1 : 2;
			if ((rc = need(vm, (size_t)k)))
				break;
			uint64_t v = rd_le(vm->d + vm->pos, k);
			vm->pos += (size_t)k;
			struct nn_pk *o = new_obj(vm, NN_PK_INT);
			if (o)
				o->u.i = op == 'J' ? (int64_t)(int32_t)(uint32_t)v : (int64_t)v;
			rc = push(vm, o);
			break;
		}
		case 0x8a: { /* LONG1 */
			if ((rc = need(vm, 1)))
				break;
			size_t k = vm->d[vm->pos++];
			if (k > 8)
				return fail(vm, SFA_EFORMAT, "integer larger than 64 bits");
			if ((rc = need(vm, k)))
				break;
			uint64_t v = k ? rd_le(vm->d + vm->pos, (int)k) : 0;
			if (k && k < 8 && (vm->d[vm->pos + k - 1] & 0x80))
				v |= ~(uint64_t)0 << (8 * k); /* sign-extend */
			vm->pos += k;
			struct nn_pk *o = new_obj(vm, NN_PK_INT);
			if (o)
				o->u.i = (int64_t)v;
			rc = push(vm, o);
			break;
		}
		case 'G': { /* BINFLOAT, big-endian */
			if ((rc = need(vm, 8)))
				break;
			uint64_t v = 0;
			for (int i = 0; i < 8; i++)
				v = (v << 8) | vm->d[vm->pos + (size_t)i];
			vm->pos += 8;
			struct nn_pk *o = new_obj(vm, NN_PK_FLOAT);
			if (o)
				memcpy(&o->u.f, &v, sizeof v);
			rc = push(vm, o);
			break;
		}
		case 'X': /* BINUNICODE */
			rc = op_string(vm, 4, NN_PK_STR, 0);
			break;
		case 0x8c: /* SHORT_BINUNICODE */
			rc = op_string(vm, 1, NN_PK_STR, 0);
			break;
		case 'T': /* BINSTRING */
			rc = op_string(vm, 4, NN_PK_STR, 1);
			break;
		case 'U': /* SHORT_BINSTRING */
			rc = op_string(vm, 1, NN_PK_STR, 0);
			break;
		case 'B': /* BINBYTES */
			rc = op_string(vm, 4, NN_PK_BYTES, 0);
			break;
		case 'C': /* SHORT_BINBYTES */
			rc = op_string(vm, 1, NN_PK_BYTES, 0);
			break;
		case 'N': /* NONE */
			rc = push(vm, new_obj(vm, NN_PK_NONE));
			break;
		case 0x88:   /* NEWTRUE */
		case 0x89: { /* NEWFALSE */
			struct nn_pk *o = new_obj(vm, NN_PK_BOOL);
			if (o)
				o->u.b = op == 0x88;
			rc = push(vm, o);
			break;
		}
		case 'a': { /* APPEND */
			if ((rc = need_stack(vm, 2)))
				break;
			struct nn_pk *v = vm->stack[--vm->n_stack];
			struct nn_pk *l = vm->stack[vm->n_stack - 1];
			if (l->type != NN_PK_LIST)
				return fail(vm, SFA_EFORMAT,
				            "APPEND to something that is not a list");
			rc = seq_append(vm, l, v);
			break;
		}
		case 'e': { /* APPENDS */
			long k = above_mark(vm);
			if (k < 0)
				return fail(vm, SFA_EFORMAT, "APPENDS without a mark");
			size_t base = vm->marks[vm->n_marks - 1];
			if (base == 0 || vm->stack[base - 1]->type != NN_PK_LIST)
				return fail(vm, SFA_EFORMAT,
				            "APPENDS to something that is not a list");
			struct nn_pk *l = vm->stack[base - 1];
			for (size_t i = base; i < vm->n_stack && rc == 0; i++)
				rc = seq_append(vm, l, vm->stack[i]);
			vm->n_stack = base;
			vm->n_marks--;
			break;
		}
		case 's': { /* SETITEM */
			if ((rc = need_stack(vm, 3)))
				break;
			struct nn_pk *v = vm->stack[--vm->n_stack];
			struct nn_pk *k = vm->stack[--vm->n_stack];
			struct nn_pk *d = vm->stack[vm->n_stack - 1];
			if (d->type != NN_PK_DICT)
				return fail(vm, SFA_EFORMAT,
				            "SETITEM on something that is not a dict");
			rc = dict_set(vm, d, k, v);
			break;
		}
		case 'u': { /* SETITEMS */
			long k = above_mark(vm);
			if (k < 0 || (k & 1))
				return fail(vm, SFA_EFORMAT,
				            "SETITEMS without a mark or with an odd count");
			size_t base = vm->marks[vm->n_marks - 1];
			if (base == 0 || vm->stack[base - 1]->type != NN_PK_DICT)
				return fail(vm, SFA_EFORMAT,
				            "SETITEMS on something that is not a dict");
			struct nn_pk *d = vm->stack[base - 1];
			for (size_t i = base; i + 1 < vm->n_stack && rc == 0; i += 2)
				rc = dict_set(vm, d, vm->stack[i], vm->stack[i + 1]);
			vm->n_stack = base;
			vm->n_marks--;
			break;
		}
		case 'c': { /* GLOBAL "module\nname\n" */
			const char *mod = NULL, *name = NULL;
			size_t n_mod = 0, n_name = 0;
			if ((rc = read_line(vm, &mod, &n_mod)) ||
			    (rc = read_line(vm, &name, &n_name)))
				break;
			rc = do_global(vm, mod, n_mod, name, n_name);
			break;
		}
		case 0x93: { /* STACK_GLOBAL */
			if ((rc = need_stack(vm, 2)))
				break;
			struct nn_pk *name = vm->stack[--vm->n_stack];
			struct nn_pk *mod = vm->stack[--vm->n_stack];
			if (name->type != NN_PK_STR || mod->type != NN_PK_STR)
				return fail(vm, SFA_EFORMAT, "STACK_GLOBAL without two strings");
			rc = do_global(vm, mod->u.str.p, mod->u.str.n, name->u.str.p,
			               name->u.str.n);
			break;
		}
		case 'R': /* REDUCE */
			rc = do_reduce(vm);
			break;
		case 'Q': /* BINPERSID */
			rc = do_persid(vm);
			break;
		case 'b': { /* BUILD: only instance dicts of dicts/tensors, which we drop */
			if ((rc = need_stack(vm, 2)))
				break;
			struct nn_pk *st = vm->stack[--vm->n_stack];
			struct nn_pk *o = vm->stack[vm->n_stack - 1];
			if ((o->type != NN_PK_DICT && o->type != NN_PK_TENSOR) ||
			    (st->type != NN_PK_DICT && st->type != NN_PK_NONE))
				return fail(vm, SFA_EFORMAT, "BUILD on an unsupported object");
			break;
		}
		default: {
			return sfa_err(vm->err, vm->n_err, SFA_EFORMAT,
			               "pickle: opcode 0x%02x is not supported (at byte %zu)", op,
			               vm->op_pos);
		}
		}
	}
	return rc;
}

int nn_pickle_load(const uint8_t *data, size_t n, struct arena *a, const struct nn_pk **out,
                   char *err, size_t n_err)
{
	if (n > NN_PK_MAX_INPUT_BYTES)
		return sfa_err(err, n_err, SFA_ETOOBIG, "pickle: data.pkl is larger than %d bytes",
		               NN_PK_MAX_INPUT_BYTES);
	struct pk_vm vm = {.d = data, .n = n, .a = a, .err = err, .n_err = n_err};
	const struct nn_pk *root = NULL;
	int rc = run(&vm, &root);
	free(vm.stack);
	free(vm.marks);
	free(vm.memo);
	if (rc == 0)
		*out = root;
	return rc;
}
