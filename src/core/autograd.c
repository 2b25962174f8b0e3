/* autograd.c - the tape: an arena of blocks and a list of backward nodes;
 * see autograd.h.
 *
 * The arena hands out 64-byte aligned pieces of its last block.  When a
 * piece does not fit, a new block (at least twice the last one) is added;
 * the next ag_reset() replaces all blocks by one of their total size, so
 * from the second identical step on, nothing is allocated at all.  The node
 * list doubles when full and keeps its capacity across resets.
 */
#include "autograd.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { AG_ALIGN = 64, AG_MIN_BLOCK = 1 << 16, AG_MIN_NODES = 256 };

static size_t align_up(size_t n) { return (n + AG_ALIGN - 1) & ~(size_t)(AG_ALIGN - 1); }

/* Out of memory in the middle of a graph: nothing sensible can continue. */
static void die_nomem(size_t bytes)
{
    fprintf(stderr, "villes: out of memory (autograd arena, %zu bytes)\n", bytes);
    abort();
}

static bool block_new(ag_block *b, size_t cap)
{
    cap = align_up(cap < AG_MIN_BLOCK ? AG_MIN_BLOCK : cap);
    b->mem = aligned_alloc(AG_ALIGN, cap);
    b->used = 0;
    b->cap = b->mem ? cap : 0;
    return b->mem != NULL;
}

err_code ag_init(ag_tape *t, size_t initial_bytes)
{
    memset(t, 0, sizeof *t);
    t->blocks = malloc(4 * sizeof *t->blocks);
    t->nodes = malloc(AG_MIN_NODES * sizeof *t->nodes);
    if (!t->blocks || !t->nodes || !block_new(&t->blocks[0], initial_bytes)) {
        free(t->blocks);
        free(t->nodes);
        memset(t, 0, sizeof *t);
        return err_set(ERR_NOMEM, "cannot allocate the autograd arena (%zu bytes)", initial_bytes);
    }
    t->n_blocks = 1;
    t->cap_blocks = 4;
    t->cap_nodes = AG_MIN_NODES;
    t->grad = true;
    return ERR_OK;
}

void ag_free(ag_tape *t)
{
    if (!t) return;
    for (int i = 0; i < t->n_blocks; i++) free(t->blocks[i].mem);
    free(t->blocks);
    free(t->nodes);
    memset(t, 0, sizeof *t);
}

void ag_reset(ag_tape *t)
{
    t->n_nodes = 0;
    if (t->n_blocks > 1) {
        size_t total = 0;
        for (int i = 0; i < t->n_blocks; i++) {
            total += t->blocks[i].cap;
            free(t->blocks[i].mem);
        }
        t->n_blocks = 1;
        if (!block_new(&t->blocks[0], total)) die_nomem(total);
    }
    t->blocks[0].used = 0;
}

void *ag_alloc(ag_tape *t, size_t bytes)
{
    bytes = align_up(bytes ? bytes : 1);
    ag_block *b = &t->blocks[t->n_blocks - 1];
    if (b->cap - b->used < bytes) {
        if (t->n_blocks == t->cap_blocks) {
            int cap = 2 * t->cap_blocks;
            ag_block *nb = realloc(t->blocks, (size_t)cap * sizeof *nb);
            if (!nb) die_nomem((size_t)cap * sizeof *nb);
            t->blocks = nb;
            t->cap_blocks = cap;
        }
        size_t cap = 2 * t->blocks[t->n_blocks - 1].cap;
        if (cap < bytes) cap = bytes;
        b = &t->blocks[t->n_blocks];
        if (!block_new(b, cap)) die_nomem(cap);
        t->n_blocks++;
    }
    void *p = b->mem + b->used;
    b->used += bytes;
    return p;
}

/* The tensor header itself also lives in the arena.  NULL (with err_set)
 * for a bad shape, which the ops pass on (see ops.h).  Leading dimensions
 * may be 0 (an empty batch), the last may not (tn_rows divides by it). */
static tensor *tensor_header(ag_tape *t, int ndim, const int *shape)
{
    if (ndim < 1 || ndim > TN_MAX_DIMS || !shape) {
        err_set(ERR_ARG, "tensor with %d dimensions (1..%d)", ndim, TN_MAX_DIMS);
        return NULL;
    }
    long long n = 1;
    for (int i = 0; i < ndim; i++) {
        n *= shape[i];
        if (shape[i] < 0 || (shape[i] == 0 && i == ndim - 1) || n > (1LL << 31) - 1) {
            err_set(ERR_ARG, "tensor dimension %d is %d", i, shape[i]);
            return NULL;
        }
    }
    tensor *x = ag_alloc(t, sizeof *x);
    memset(x, 0, sizeof *x);
    x->ndim = ndim;
    x->n = (int)n;
    for (int i = 0; i < ndim; i++) x->shape[i] = shape[i];
    return x;
}

tensor *ag_tensor(ag_tape *t, int ndim, const int *shape)
{
    tensor *x = tensor_header(t, ndim, shape);
    if (!x) return NULL;
    x->data = ag_alloc(t, (size_t)x->n * sizeof(float));
    if (t->grad) {
        x->grad = ag_alloc(t, (size_t)x->n * sizeof(float));
        x->grad_lazy = true;
    }
    return x;
}

float *ag_grad(tensor *x)
{
    if (!x || !x->grad) return NULL;
    if (x->grad_lazy) {
        memset(x->grad, 0, (size_t)x->n * sizeof *x->grad);
        x->grad_lazy = false;
    }
    return x->grad;
}

float *ag_grad_fill(tensor *x, bool *fresh)
{
    *fresh = x && x->grad && x->grad_lazy;
    if (*fresh) x->grad_lazy = false;
    return x ? x->grad : NULL;
}

tensor *ag_wrap(ag_tape *t, float *data, int ndim, const int *shape)
{
    tensor *x = tensor_header(t, ndim, shape);
    if (x) x->data = data;
    return x;
}

int *ag_ints(ag_tape *t, const int *src, size_t n)
{
    int *p = ag_alloc(t, n * sizeof *p);
    if (n) memcpy(p, src, n * sizeof *p);
    return p;
}

/* A new node at the end of the list, which doubles when full. */
static ag_node *node_append(ag_tape *t)
{
    if (t->n_nodes == t->cap_nodes) {
        int cap = 2 * t->cap_nodes;
        ag_node *nn = realloc(t->nodes, (size_t)cap * sizeof *nn);
        if (!nn) die_nomem((size_t)cap * sizeof *nn);
        t->nodes = nn;
        t->cap_nodes = cap;
    }
    return &t->nodes[t->n_nodes++];
}

/* "64x46" (64 characters hold 4 dimensions of up to 11 each). */
enum { SHAPE_TEXT = 64 };
static void shape_text(const tensor *x, char buf[SHAPE_TEXT])
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < x->ndim && len < SHAPE_TEXT; i++)
        len += (size_t)snprintf(buf + len, SHAPE_TEXT - len, i ? "x%d" : "%d", x->shape[i]);
}

/* What a tensor holds: min, max and mean of its finite values (n_finite
 * of them), and how many are NaN or infinite. */
typedef struct value_stats {
    float  min, max;
    double mean;
    int    n_finite, n_nan, n_inf;
} value_stats;

static value_stats stats_of(const tensor *x)
{
    value_stats s = { .min = INFINITY, .max = -INFINITY };
    double sum = 0.0;
    for (int i = 0; i < x->n; i++) {
        float v = x->data[i];
        if (isnan(v)) {
            s.n_nan++;
        } else if (isinf(v)) {
            s.n_inf++;
        } else {
            s.min = v < s.min ? v : s.min;
            s.max = v > s.max ? v : s.max;
            sum += v;
            s.n_finite++;
        }
    }
    s.mean = s.n_finite ? sum / s.n_finite : 0.0;
    return s;
}

/* Remember the op when out is the first non-finite output; n is its node,
 * or NULL when it was not recorded. */
static void check_output(ag_tape *t, const char *op, const tensor *out, const ag_node *n)
{
    if (t->nonfinite[0] || !out) return;   /* only the first is kept */
    value_stats s = stats_of(out);
    if (!s.n_nan && !s.n_inf) return;
    char shape[SHAPE_TEXT], node[32] = "";
    shape_text(out, shape);
    if (n) snprintf(node, sizeof node, "node %d, ", (int)(n - t->nodes));
    snprintf(t->nonfinite, sizeof t->nonfinite, "op '%s' (%soutput %s) produced %s (%d of %d values)",
             op ? op : "?", node, shape,
             s.n_nan && s.n_inf ? "NaN and Inf" : s.n_nan ? "NaN" : "Inf",
             s.n_nan + s.n_inf, out->n);
}

ag_node *ag_record(ag_tape *t, const char *op, ag_backward_fn fn, tensor *out)
{
    ag_node *n = fn && t->grad ? node_append(t) : NULL;
    if (n) *n = (ag_node){ .op = op, .backward = fn, .out = out };
    if (t->check_finite) check_output(t, op, out, n);
    return n;
}

const char *ag_first_nonfinite(const ag_tape *t)
{
    return t->nonfinite[0] ? t->nonfinite : NULL;
}

/* The latest node before i whose output is x, or (*view) whose output's
 * data holds x's (a view of part of it, such as a row range); -1 if none. */
static int producer(const ag_tape *t, int i, const tensor *x, bool *view)
{
    for (int j = i - 1; j >= 0; j--)
        if (t->nodes[j].out == x) {
            *view = false;
            return j;
        }
    for (int j = i - 1; j >= 0; j--) {
        /* as integers: ordering pointers into different objects is undefined */
        uintptr_t p = (uintptr_t)x->data, lo = (uintptr_t)t->nodes[j].out->data;
        if (p >= lo && p < lo + (size_t)t->nodes[j].out->n * sizeof(float)) {
            *view = true;
            return j;
        }
    }
    return -1;
}

/* Node i's inputs, comma-separated: the node that produced each ("view:j"
 * for a view of node j's output), else "param" or "leaf"; "-" for an empty
 * slot. */
static void dump_inputs(const ag_tape *t, int i, FILE *f)
{
    const ag_node *n = &t->nodes[i];
    int last = AG_MAX_INPUTS - 1;
    while (last >= 0 && !n->in[last]) last--;
    if (last < 0) fputc('-', f);
    for (int k = 0; k <= last; k++) {
        const tensor *x = n->in[k];
        bool view = false;
        int j = x ? producer(t, i, x, &view) : -1;
        if (k) fputc(',', f);
        if (!x) fputc('-', f);
        else if (j >= 0) fprintf(f, view ? "view:%d" : "%d", j);
        else fputs(x->grad ? "param" : "leaf", f);
    }
}

void ag_dump(const ag_tape *t, FILE *f)
{
    fputs("node\top\tshape\tinputs\tmin\tmax\tmean\tnonfinite\n", f);
    for (int i = 0; i < t->n_nodes; i++) {
        const ag_node *n = &t->nodes[i];
        char shape[SHAPE_TEXT];
        shape_text(n->out, shape);
        fprintf(f, "%d\t%s\t%s\t", i, n->op ? n->op : "?", shape);
        dump_inputs(t, i, f);
        value_stats s = stats_of(n->out);
        if (s.n_finite)
            fprintf(f, "\t%.6g\t%.6g\t%.6g", s.min, s.max, s.mean);
        else
            fputs("\t-\t-\t-", f);
        fprintf(f, "\t%d\n", s.n_nan + s.n_inf);
    }
}

bool ag_needs_grad(const ag_tape *t, const tensor *a, const tensor *b)
{
    return t->grad && ((a && a->grad) || (b && b->grad));
}

void ag_backward(ag_tape *t, tensor *loss)
{
    if (!t->grad || !loss || !loss->grad || loss->n != 1) return;
    ag_grad(loss)[0] = 1.0f;
    for (int i = t->n_nodes - 1; i >= 0; i--) t->nodes[i].backward(&t->nodes[i]);
}
