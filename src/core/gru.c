/* gru.c - the GRU cell, one op with a hand-written backward: a reference
 * op (ops.h), from which test_rnn builds the step-by-step oracle of the
 * recurrent LM's fused GRU layer (rnn.c).
 *
 * Shapes: x (B, dx), h (B, d), D = dx + d; Wz, Wr, Wh (d, D); bz, br, bh (d).
 *   xh  = [x; h]                 (B, D)
 *   z   = sigmoid(xh Wz^T + bz)  (B, d)
 *   r   = sigmoid(xh Wr^T + br)  (B, d)
 *   xrh = [x; r * h]             (B, D)
 *   hh  = tanh(xrh Wh^T + bh)    (B, d)
 *   h'  = (1 - z) * h + z * hh
 * Backward, with g = dh':
 *   dAh = g * z * (1 - hh^2)            -> dWh, dbh, dxrh = dAh Wh
 *   drh = dxrh[:, dx:],  dAr = drh * h * r * (1 - r)
 *   dAz = g * (hh - h) * z * (1 - z)
 *   dxh = dAz Wz + dAr Wr               (and dWz, dbz, dWr, dbr)
 *   dx += dxrh[:, :dx] + dxh[:, :dx]
 *   dh += g * (1 - z) + drh * r + dxh[:, dx:]
 */
#include "ops_internal.h"

#include <math.h>
#include <string.h>

/* Forward values and backward scratch, allocated together by forward. */
typedef struct gru_state {
    float *xh, *xrh;          /* (B, D) */
    float *z, *r, *hh;        /* (B, d) */
    float *dAz, *dAr, *dAh;   /* (B, d) scratch */
    float *dxh, *dxrh;        /* (B, D) scratch */
} gru_state;

static gru_state *gru_state_new(ag_tape *t, int B, int d, int D, bool backward)
{
    gru_state *s = ag_alloc(t, sizeof *s);
    memset(s, 0, sizeof *s);
    size_t bd = (size_t)B * d * sizeof(float), bD = (size_t)B * D * sizeof(float);
    s->xh = ag_alloc(t, bD);
    s->xrh = ag_alloc(t, bD);
    s->z = ag_alloc(t, bd);
    s->r = ag_alloc(t, bd);
    s->hh = ag_alloc(t, bd);
    if (backward) {
        s->dAz = ag_alloc(t, bd);
        s->dAr = ag_alloc(t, bd);
        s->dAh = ag_alloc(t, bd);
        s->dxh = ag_alloc(t, bD);
        s->dxrh = ag_alloc(t, bD);
    }
    return s;
}

/* out (B, p+q) = [a (B, p), b (B, q)] */
static void join(float *out, const float *a, const float *b, int B, int p, int q)
{
    for (int i = 0; i < B; i++) {
        memcpy(out + (size_t)i * (p + q), a + (size_t)i * p, (size_t)p * sizeof *out);
        memcpy(out + (size_t)i * (p + q) + p, b + (size_t)i * q, (size_t)q * sizeof *out);
    }
}

static void sigmoid_inplace(float *restrict a, int n)
{
    for (int i = 0; i < n; i++) a[i] = vec_sigmoidf(a[i]);
}

static void tanh_inplace(float *restrict a, int n)
{
    for (int i = 0; i < n; i++) a[i] = vec_tanhf(a[i]);
}

static const float *data_or_null(const tensor *t) { return t ? t->data : NULL; }

static void gru_forward(float *restrict out, gru_state *s, const float *x, const float *h,
                        const tensor *const W[6], int B, int dx, int d)
{
    int D = dx + d, n = B * d;
    join(s->xh, x, h, B, dx, d);
    linear_forward(s->z, s->xh, W[0]->data, data_or_null(W[1]), B, D, d);
    sigmoid_inplace(s->z, n);
    linear_forward(s->r, s->xh, W[2]->data, data_or_null(W[3]), B, D, d);
    sigmoid_inplace(s->r, n);
    /* xrh = [x; r * h]: copy xh, then scale its h part by r */
    memcpy(s->xrh, s->xh, (size_t)B * D * sizeof(float));
    for (int i = 0; i < B; i++) {
        float *restrict rh = s->xrh + (size_t)i * D + dx;
        const float *restrict r = s->r + (size_t)i * d;
        for (int j = 0; j < d; j++) rh[j] *= r[j];
    }
    linear_forward(s->hh, s->xrh, W[4]->data, data_or_null(W[5]), B, D, d);
    tanh_inplace(s->hh, n);
    const float *restrict z = s->z, *restrict hh = s->hh;
    for (int i = 0; i < n; i++) out[i] = h[i] + z[i] * (hh[i] - h[i]);
}

/* in[] = x, h, Wz, bz, Wr, br, Wh, bh. */
static void gru_backward(ag_node *nd)
{
    tensor *x = nd->in[0], *hx = nd->in[1];
    tensor *Wz = nd->in[2], *Wr = nd->in[4], *Wh = nd->in[6];
    gru_state *s = nd->saved;
    int B = hx->shape[0], d = hx->shape[1], dx = x->shape[1], D = dx + d, n = B * d;
    const float *restrict g = ag_grad(nd->out), *restrict h = hx->data;
    const float *restrict z = s->z, *restrict r = s->r, *restrict hh = s->hh;
    float *restrict dAz = s->dAz, *restrict dAr = s->dAr, *restrict dAh = s->dAh;

    for (int i = 0; i < n; i++) {
        dAh[i] = g[i] * z[i] * (1.0f - hh[i] * hh[i]);
        dAz[i] = g[i] * (hh[i] - h[i]) * z[i] * (1.0f - z[i]);
    }
    memset(s->dxrh, 0, (size_t)B * D * sizeof(float));
    linear_backward(dAh, s->xrh, Wh->data, s->dxrh, ag_grad(Wh), ag_grad(nd->in[7]), B, D, d);
    for (int i = 0; i < B; i++) {
        const float *restrict drh = s->dxrh + (size_t)i * D + dx;
        for (int j = 0; j < d; j++) {
            size_t k = (size_t)i * d + j;
            dAr[k] = drh[j] * h[k] * r[k] * (1.0f - r[k]);
        }
    }
    memset(s->dxh, 0, (size_t)B * D * sizeof(float));
    linear_backward(dAz, s->xh, Wz->data, s->dxh, ag_grad(Wz), ag_grad(nd->in[3]), B, D, d);
    linear_backward(dAr, s->xh, Wr->data, s->dxh, ag_grad(Wr), ag_grad(nd->in[5]), B, D, d);
    float *dX = ag_grad(x), *dH = ag_grad(hx);
    for (int i = 0; i < B; i++) {
        const float *restrict a = s->dxh + (size_t)i * D, *restrict c = s->dxrh + (size_t)i * D;
        if (dX) {
            float *restrict gx = dX + (size_t)i * dx;
            for (int j = 0; j < dx; j++) gx[j] += a[j] + c[j];
        }
        if (dH) {
            float *restrict gh = dH + (size_t)i * d;
            const float *restrict gi = g + (size_t)i * d, *restrict zi = z + (size_t)i * d;
            const float *restrict ri = r + (size_t)i * d;
            for (int j = 0; j < d; j++)
                gh[j] += gi[j] * (1.0f - zi[j]) + c[dx + j] * ri[j] + a[dx + j];
        }
    }
}

/* W[] = Wz, bz, Wr, br, Wh, bh (biases may be NULL). */
static bool gru_shapes_ok(const tensor *x, const tensor *h, const tensor *const W[6])
{
    if (x->ndim != 2 || h->ndim != 2 || x->shape[0] != h->shape[0]) return false;
    int d = h->shape[1], D = x->shape[1] + d;
    for (int i = 0; i < 6; i += 2) {
        if (W[i]->ndim != 2 || W[i]->shape[0] != d || W[i]->shape[1] != D) return false;
        if (W[i + 1] && W[i + 1]->n != d) return false;
    }
    return true;
}

tensor *op_gru_cell(ag_tape *t, tensor *x, tensor *h, tensor *Wz, tensor *bz,
                    tensor *Wr, tensor *br, tensor *Wh, tensor *bh)
{
    if (!x || !h || !Wz || !Wr || !Wh) return NULL;
    const tensor *const W[6] = { Wz, bz, Wr, br, Wh, bh };
    if (!gru_shapes_ok(x, h, W)) {
        err_set(ERR_ARG, "op_gru_cell: x (B, dx), h (B, d) and weights (d, dx + d) disagree");
        return NULL;
    }
    int B = h->shape[0], d = h->shape[1], dx = x->shape[1];
    bool need = ag_needs_grad(t, x, h) || ag_needs_grad(t, Wz, bz) ||
                ag_needs_grad(t, Wr, br) || ag_needs_grad(t, Wh, bh);
    tensor *out = op_out(t, need, 2, (const int[]){ B, d });
    if (!out) return NULL;
    gru_state *s = gru_state_new(t, B, d, dx + d, need);
    gru_forward(out->data, s, x->data, h->data, W, B, dx, d);
    ag_node *nd = op_node(t, "gru_cell", gru_backward, out, x, h);
    if (nd) {
        tensor *params[6] = { Wz, bz, Wr, br, Wh, bh };
        memcpy(&nd->in[2], params, sizeof params);
        nd->saved = s;
    }
    return out;
}
