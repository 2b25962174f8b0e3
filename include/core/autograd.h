/* autograd.h - a tape for reverse-mode automatic differentiation.
 *
 * Each op (ops.h) computes its output in forward order and, when gradients
 * are enabled, appends a node holding its hand-written backward function.
 * ag_backward() seeds d(loss) = 1 and runs the nodes in reverse; every
 * backward *accumulates* (+=) into the grads of its inputs that have one.
 * An activation's grad is left unset until first used, so a backward
 * reaches every grad through ag_grad() (or ag_grad_fill()).
 *
 * Activations, their gradients and any saved state come from the tape's
 * arena, which ag_reset() rewinds every step.  The arena grows by whole
 * blocks during the first steps and is consolidated into one block on the
 * next reset, so a training loop allocates nothing once warm.
 *
 * The tape can explain itself:
 *  - every node carries the name of its op ("linear", "rmsnorm",
 *    "attention", "cross_entropy", "gru_seq", ...), a static string that
 *    the op hands to ag_record() (a pointer per node, nothing to compute);
 *  - ag_dump() prints the graph, one line per node: op, output shape, the
 *    nodes it reads and the range of its output;
 *  - with t->check_finite set (off by default; a program turns it on, e.g.
 *    from an environment variable), every op's output is scanned once it is
 *    computed, and ag_first_nonfinite() names the first op that produced a
 *    NaN or an infinity, in inference mode too.  Off, the check costs one
 *    predictable branch per op.
 */
#ifndef VILLES_AUTOGRAD_H
#define VILLES_AUTOGRAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "error.h"
#include "rng.h"
#include "tensor.h"

typedef struct ag_node ag_node;
typedef void (*ag_backward_fn)(ag_node *n);

enum { AG_MAX_INPUTS = 8 };

struct ag_node {
    const char    *op;         /* the op's name, a static string */
    ag_backward_fn backward;
    tensor        *out;
    tensor        *in[AG_MAX_INPUTS]; /* unused slots NULL */
    const int     *idx;        /* integer input (token ids, targets), arena-owned */
    int            iarg[8];    /* op-specific sizes */
    float          farg[4];    /* op-specific scalars */
    void          *saved;      /* op-specific saved state, arena-owned */
};

typedef struct ag_block { char *mem; size_t used, cap; } ag_block;

typedef struct ag_tape {
    ag_block *blocks;          /* blocks[0] is the main block */
    int       n_blocks, cap_blocks;
    ag_node  *nodes;
    int       n_nodes, cap_nodes;
    bool      grad;            /* record nodes and allocate grads (false: inference) */
    bool      training;        /* dropout active */
    rng      *rng;             /* for dropout; may be NULL when not training */
    bool      check_finite;    /* scan every op's output for NaN/Inf (set after ag_init) */
    char      nonfinite[160];  /* the first finding, "" when none (ag_first_nonfinite) */
} ag_tape;

err_code ag_init(ag_tape *t, size_t initial_bytes);
void     ag_free(ag_tape *t);
/* Rewind the arena and drop all nodes (consolidating blocks if it grew). */
void     ag_reset(ag_tape *t);

/* 64-byte aligned arena memory; aborts with a message only if the system
 * is out of memory (there is no sane recovery mid-graph). */
void    *ag_alloc(ag_tape *t, size_t bytes);
/* A new activation tensor: data uninitialised; when t->grad, a grad that
 * ag_grad() zeroes on first use, in backward, where it is in cache (or that
 * ag_grad_fill() lets a backward write): zeroing all of them in forward
 * took a tenth of a Transformer training step. */
tensor  *ag_tensor(ag_tape *t, int ndim, const int *shape);
/* x's grad, zeroed first if not yet; NULL when x (or its grad) is NULL. */
float   *ag_grad(tensor *x);
/* x's grad, not zeroed, for a backward that adds to EVERY element: *fresh
 * says it is unset, and the caller then writes 0.0f + v (the bits of
 * zeroing, then adding v) instead of +=.  Set either way afterwards. */
float   *ag_grad_fill(tensor *x, bool *fresh);
static inline tensor *ag_tensor2(ag_tape *t, int d0, int d1)
{ return ag_tensor(t, 2, (const int[]){ d0, d1 }); }
/* A tensor wrapping existing data, no grad (inputs, frozen weights). */
tensor  *ag_wrap(ag_tape *t, float *data, int ndim, const int *shape);
/* Copy n ints into the arena (token ids an op keeps for backward). */
int     *ag_ints(ag_tape *t, const int *src, size_t n);

/* Every op calls this once its output `out` is computed, naming itself
 * (`op`, a static string such as "linear").  With t->check_finite, out is
 * checked (see ag_first_nonfinite).  A node is appended and returned when
 * t->grad and fn is not NULL (an op passes NULL when no input needs a
 * gradient); NULL otherwise. */
ag_node *ag_record(ag_tape *t, const char *op, ag_backward_fn fn, tensor *out);
/* True when some input of an op needs a gradient, i.e. a node is worth recording. */
bool     ag_needs_grad(const ag_tape *t, const tensor *a, const tensor *b);

/* loss must be a scalar (n == 1) produced on this tape. */
void     ag_backward(ag_tape *t, tensor *loss);

/* Print the recorded graph to f, a TSV table with a header line and one
 * line per node: node index, op, output shape (e.g. 64x46), its inputs
 * (comma-separated: the index of the node that produced each, "view:j"
 * for a view into node j's output, "param" for a tensor with a gradient
 * made off the tape, "leaf" for one without, "-" for an empty slot), then
 * min, max and mean of the output's finite values and how many are not
 * finite.  For debugging (quadratic in the nodes); reads no gradient. */
void     ag_dump(const ag_tape *t, FILE *f);

/* With t->check_finite on: the first op whose output held a NaN or an
 * infinity since ag_init (ag_reset keeps it, so a loop that resets per
 * batch can still ask after the last batch), as one line such as
 *   op 'rmsnorm' (node 12, output 64x46) produced NaN (3 of 2944 values)
 * ("node" only when the op was recorded; in inference mode it is not).
 * NULL when nothing was found or the switch is off. */
const char *ag_first_nonfinite(const ag_tape *t);

#endif
