/* tensor.h - float32 tensors and the contiguous parameter store.
 *
 * A tensor is a view: data (and grad, when a gradient flows) point into
 * either the parameter buffers or a tape's arena (autograd.h).  Shapes are
 * row-major, at most 4 dimensions.
 *
 * Parameters of a model live in four contiguous buffers - values,
 * gradients, AdamW first and second moments - so zeroing gradients, the
 * optimiser step and checkpoint writes are single passes.  A model declares
 * its parameters with tn_param(), then tn_params_alloc() allocates the
 * buffers once and points every declared tensor into them (the tensor
 * pointers returned by tn_param() stay valid).
 */
#ifndef VILLES_TENSOR_H
#define VILLES_TENSOR_H

#include <stdbool.h>
#include <stddef.h>

#include "checkpoint.h"
#include "error.h"
#include "rng.h"

enum { TN_MAX_DIMS = 4 };

typedef struct tensor {
    float *data;
    float *grad;                 /* NULL when no gradient is needed */
    int    ndim;
    int    shape[TN_MAX_DIMS];
    int    n;                    /* number of elements */
    bool   grad_lazy;            /* grad not zeroed yet: read it through ag_grad() */
} tensor;

/* Rows of a tensor seen as a matrix: product of all dims but the last. */
static inline int tn_rows(const tensor *t) { return t->n / t->shape[t->ndim - 1]; }
static inline int tn_cols(const tensor *t) { return t->shape[t->ndim - 1]; }

enum { TN_MAX_PARAMS = 512, TN_NAME_MAX = 96 };

typedef struct tn_param_entry {
    char   name[TN_NAME_MAX];   /* checkpoint name, e.g. "core.layers.0.sa.query_proj.weight" */
    bool   decay;               /* AdamW weight decay applies (matrices, embeddings) */
    size_t offset;              /* into the buffers */
    tensor t;
} tn_param_entry;

typedef struct tn_params {
    tn_param_entry e[TN_MAX_PARAMS];
    int    count;
    size_t n;                   /* total floats */
    float *data, *grad, *m, *v; /* each n floats, one allocation */
    void  *mem;                 /* that allocation; NULL for an alias (tn_params_alias) */
} tn_params;

void     tn_params_init(tn_params *p);
/* Declare a parameter (before tn_params_alloc).  Returns NULL with err_set
 * when the store is full or the shape invalid. */
tensor  *tn_param(tn_params *p, const char *name, bool decay, int ndim, const int *shape);
err_code tn_params_alloc(tn_params *p);          /* all buffers zeroed */
void     tn_params_free(tn_params *p);
/* Make p, declared but not allocated, an alias of src for one worker of
 * data-parallel training (train.h): p must declare src's parameters in the
 * same order (ERR_ARG otherwise); its tensors then read src's values
 * (p->data = src->data, shared, never written through p) and accumulate
 * their gradients into grad (src->n floats laid out like src->grad, the
 * caller's); no moments.  tn_params_free releases nothing of it. */
err_code tn_params_alias(tn_params *p, const tn_params *src, float *grad);
void     tn_params_zero_grad(tn_params *p);
tensor  *tn_params_find(tn_params *p, const char *name);

void tn_fill_normal(tensor *t, rng *r, float mean, float std);
void tn_fill(tensor *t, float value);

/* Checkpoint name prefixes of the AdamW moments. */
#define TN_MOMENT1_PREFIX "optim.m."
#define TN_MOMENT2_PREFIX "optim.v."

/* Save every parameter under its name; with optim, also the moments as
 * "optim.m.<name>" / "optim.v.<name>".  The data is referenced by w. */
err_code tn_params_save(const tn_params *p, ck_writer *w, bool optim);
/* Load values (and moments when optim) by name, checking every shape;
 * ERR_FORMAT naming the first missing or mis-shaped tensor, p untouched. */
err_code tn_params_load(tn_params *p, const ck_file *f, bool optim);
/* The same check on parameters declared but not allocated yet. */
err_code tn_params_check(const tn_params *p, const ck_file *f, bool optim);
/* What a model's P_load does with its declared parameters: tn_params_check,
 * then tn_params_alloc and tn_params_load.  A checkpoint whose config asks
 * for parameters it does not hold (hostile: a config claiming a huge model
 * beside small tensors) is refused before anything is allocated. */
err_code tn_params_alloc_load(tn_params *p, const ck_file *f, bool optim);
/* The same for any buffer of p->n floats laid out like p->data (e.g. an
 * average of the weights), under "<prefix><name>". */
err_code tn_params_save_buffer(const tn_params *p, ck_writer *w, const char *prefix,
                               const float *buf);
err_code tn_params_load_buffer(const tn_params *p, const ck_file *f, const char *prefix, float *buf);

#endif
