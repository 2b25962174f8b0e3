/* tensor.c - the contiguous parameter store; see tensor.h.
 *
 * Layout: one 64-byte aligned allocation of 4 * n floats holding, in order,
 * values, gradients, first and second AdamW moments.  Every parameter
 * starts on a 64-byte boundary inside each buffer (offsets rounded up to 16
 * floats), so the loops over one parameter vectorise with aligned loads.
 * The padding floats stay zero forever: zero gradient, zero moments, zero
 * value, so they change neither the optimiser step nor the gradient norm.
 */
#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TN_ALIGN_FLOATS = 16 };   /* 64 bytes */

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

void tn_params_init(tn_params *p)
{
    memset(p, 0, sizeof *p);
}

tensor *tn_param(tn_params *p, const char *name, bool decay, int ndim, const int *shape)
{
    if (!p || !name || !shape) {
        err_set(ERR_ARG, "tn_param: NULL argument");
        return NULL;
    }
    if (p->data) {
        err_set(ERR_ARG, "tn_param: '%s' declared after tn_params_alloc", name);
        return NULL;
    }
    if (p->count >= TN_MAX_PARAMS) {
        err_set(ERR_ARG, "tn_param: more than %d parameters", TN_MAX_PARAMS);
        return NULL;
    }
    if (strlen(name) >= TN_NAME_MAX) {
        err_set(ERR_ARG, "tn_param: name '%.40s...' longer than %d bytes", name, TN_NAME_MAX - 1);
        return NULL;
    }
    if (tn_params_find(p, name)) {
        err_set(ERR_ARG, "tn_param: duplicate parameter '%s'", name);
        return NULL;
    }
    if (ndim < 1 || ndim > TN_MAX_DIMS) {
        err_set(ERR_ARG, "tn_param: '%s' has %d dimensions (1..%d)", name, ndim, TN_MAX_DIMS);
        return NULL;
    }
    long long n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0) {
            err_set(ERR_ARG, "tn_param: '%s' dimension %d is %d", name, i, shape[i]);
            return NULL;
        }
        n *= shape[i];
        if (n > (1LL << 31) - 1) {
            err_set(ERR_ARG, "tn_param: '%s' is too large", name);
            return NULL;
        }
    }
    tn_param_entry *e = &p->e[p->count++];
    memset(e, 0, sizeof *e);
    memcpy(e->name, name, strlen(name) + 1);
    e->decay = decay;
    e->offset = p->n;
    e->t.ndim = ndim;
    for (int i = 0; i < ndim; i++) e->t.shape[i] = shape[i];
    e->t.n = (int)n;
    p->n = round_up(p->n + (size_t)n, TN_ALIGN_FLOATS);
    return &e->t;
}

/* Every declared tensor's data and grad into p's buffers. */
static void point_entries(tn_params *p)
{
    for (int i = 0; i < p->count; i++) {
        p->e[i].t.data = p->data + p->e[i].offset;
        p->e[i].t.grad = p->grad + p->e[i].offset;
    }
}

err_code tn_params_alloc(tn_params *p)
{
    if (p->data) return err_set(ERR_ARG, "tn_params_alloc: already allocated");
    size_t n = p->n ? p->n : TN_ALIGN_FLOATS;   /* p->n is a multiple of 16 */
    if (n > ((size_t)-1) / (4 * sizeof(float))) return err_set(ERR_NOMEM, "parameters too large");
    size_t bytes = 4 * n * sizeof(float);
    float *mem = aligned_alloc(64, bytes);
    if (!mem) return err_set(ERR_NOMEM, "cannot allocate %zu bytes of parameters", bytes);
    memset(mem, 0, bytes);
    p->mem = mem;
    p->data = mem;
    p->grad = mem + n;
    p->m = mem + 2 * n;
    p->v = mem + 3 * n;
    point_entries(p);
    return ERR_OK;
}

void tn_params_free(tn_params *p)
{
    if (!p) return;
    free(p->mem);
    tn_params_init(p);
}

err_code tn_params_alias(tn_params *p, const tn_params *src, float *grad)
{
    if (p->data) return err_set(ERR_ARG, "tn_params_alias: already allocated");
    bool same = p->count == src->count && p->n == src->n && src->data && grad;
    for (int i = 0; same && i < p->count; i++)
        same = p->e[i].offset == src->e[i].offset && p->e[i].t.n == src->e[i].t.n;
    if (!same) return err_set(ERR_ARG, "tn_params_alias: not the same parameters");
    p->data = src->data;
    p->grad = grad;
    point_entries(p);
    return ERR_OK;
}

void tn_params_zero_grad(tn_params *p)
{
    if (p && p->grad) memset(p->grad, 0, p->n * sizeof(float));
}

tensor *tn_params_find(tn_params *p, const char *name)
{
    if (!p || !name) return NULL;
    for (int i = 0; i < p->count; i++)
        if (strcmp(p->e[i].name, name) == 0) return &p->e[i].t;
    return NULL;
}

void tn_fill_normal(tensor *t, rng *r, float mean, float std)
{
    if (!t || !t->data) return;
    for (int i = 0; i < t->n; i++) t->data[i] = mean + std * rng_normal(r);
}

void tn_fill(tensor *t, float value)
{
    if (!t || !t->data) return;
    for (int i = 0; i < t->n; i++) t->data[i] = value;
}

static void shape64(const tensor *t, int64_t *out)
{
    for (int i = 0; i < t->ndim; i++) out[i] = t->shape[i];
}

err_code tn_params_save_buffer(const tn_params *p, ck_writer *w, const char *prefix,
                               const float *buf)
{
    if (!p || !w || !buf) return err_set(ERR_ARG, "tn_params_save: parameters not allocated");
    for (int i = 0; i < p->count; i++) {
        const tn_param_entry *e = &p->e[i];
        int64_t shape[TN_MAX_DIMS];
        char name[TN_NAME_MAX + 32];
        shape64(&e->t, shape);
        snprintf(name, sizeof name, "%s%s", prefix, e->name);
        err_code rc = ck_put(w, name, CK_F32, e->t.ndim, shape, buf + e->offset);
        if (rc) return rc;
    }
    return ERR_OK;
}

err_code tn_params_save(const tn_params *p, ck_writer *w, bool optim)
{
    if (!p || !w) return err_set(ERR_ARG, "tn_params_save: NULL argument");
    err_code rc = tn_params_save_buffer(p, w, "", p->data);
    if (!rc && optim) rc = tn_params_save_buffer(p, w, TN_MOMENT1_PREFIX, p->m);
    if (!rc && optim) rc = tn_params_save_buffer(p, w, TN_MOMENT2_PREFIX, p->v);
    return rc;
}

/* Find prefix + e's name with e's shape; copy it into buf when buf is not
 * NULL (a NULL buf only checks). */
static err_code load_one(const tn_param_entry *e, const ck_file *f, const char *prefix, float *buf)
{
    int64_t shape[TN_MAX_DIMS];
    char name[TN_NAME_MAX + 32];
    const float *src;
    shape64(&e->t, shape);
    snprintf(name, sizeof name, "%s%s", prefix, e->name);
    err_code rc = ck_get_f32(f, name, e->t.ndim, shape, &src);
    if (!rc && buf) memcpy(buf + e->offset, src, (size_t)e->t.n * sizeof(float));
    return rc;
}

/* Two passes: check every tensor first, so a failed load leaves buf untouched. */
err_code tn_params_load_buffer(const tn_params *p, const ck_file *f, const char *prefix, float *buf)
{
    if (!p || !f || !buf) return err_set(ERR_ARG, "tn_params_load: parameters not allocated");
    for (int copy = 0; copy < 2; copy++)
        for (int i = 0; i < p->count; i++) {
            err_code rc = load_one(&p->e[i], f, prefix, copy ? buf : NULL);
            if (rc) return rc;
        }
    return ERR_OK;
}

/* One pass over values and moments together: checking only (NULL buffers) or copying. */
static err_code load_all(const tn_params *p, const ck_file *f, bool optim, bool copy)
{
    for (int i = 0; i < p->count; i++) {
        const tn_param_entry *e = &p->e[i];
        err_code rc = load_one(e, f, "", copy ? p->data : NULL);
        if (!rc && optim) rc = load_one(e, f, TN_MOMENT1_PREFIX, copy ? p->m : NULL);
        if (!rc && optim) rc = load_one(e, f, TN_MOMENT2_PREFIX, copy ? p->v : NULL);
        if (rc) return rc;
    }
    return ERR_OK;
}

err_code tn_params_check(const tn_params *p, const ck_file *f, bool optim)
{
    if (!p || !f) return err_set(ERR_ARG, "tn_params_check: NULL argument");
    return load_all(p, f, optim, false);
}

/* Two passes, as tn_params_load_buffer: check everything, then copy. */
err_code tn_params_load(tn_params *p, const ck_file *f, bool optim)
{
    if (!p || !f) return err_set(ERR_ARG, "tn_params_load: NULL argument");
    if (!p->data) return err_set(ERR_ARG, "tn_params_load: parameters not allocated");
    err_code rc = load_all(p, f, optim, false);
    return rc ? rc : load_all(p, f, optim, true);
}

err_code tn_params_alloc_load(tn_params *p, const ck_file *f, bool optim)
{
    err_code rc = tn_params_check(p, f, optim);
    if (!rc) rc = tn_params_alloc(p);
    return rc ? rc : tn_params_load(p, f, optim);
}
