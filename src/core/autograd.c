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

ag_node *ag_record(ag_tape *t, ag_backward_fn fn, tensor *out)
{
    if (!t->grad) return NULL;
    if (t->n_nodes == t->cap_nodes) {
        int cap = 2 * t->cap_nodes;
        ag_node *nn = realloc(t->nodes, (size_t)cap * sizeof *nn);
        if (!nn) die_nomem((size_t)cap * sizeof *nn);
        t->nodes = nn;
        t->cap_nodes = cap;
    }
    ag_node *n = &t->nodes[t->n_nodes++];
    memset(n, 0, sizeof *n);
    n->backward = fn;
    n->out = out;
    return n;
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
