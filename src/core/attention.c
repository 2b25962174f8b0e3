/* attention.c - fused causal multi-head self-attention; see ops.h.
 *
 * q, k, v, out are (B, T, C) with C = H * dh; head h of batch row b is the
 * (T, dh) slice starting at column h * dh with a row stride of C, which
 * cblas takes directly as a leading dimension, so no head is ever copied.
 *
 * Forward per (b, h):  S = q k^T / sqrt(dh),  P = causal softmax(S),  O = P v.
 * The probabilities P (B, H, T, T) are saved for backward; entries above the
 * diagonal are exactly 0, so the products need no mask.
 * Backward per (b, h), with dO the output gradient:
 *   dP = dO v^T,  dS = P * (dP - rowsum(dP * P)),
 *   dq += dS k / sqrt(dh),  dk += dS^T q / sqrt(dh),  dv += P^T dO.
 */
#include "ops_internal.h"

#include <cblas.h>
#include <math.h>

/* P (T, T) = causal softmax of the scaled scores already in P. */
static void causal_softmax(float *P, int T)
{
    for (int i = 0; i < T; i++) {
        float *restrict p = P + (size_t)i * T;
        float mx = vmax(p, i + 1);
        for (int j = 0; j <= i; j++) p[j] = vexpf(p[j] - mx);
        float inv = 1.0f / vsum(p, i + 1);
        for (int j = 0; j <= i; j++) p[j] *= inv;
        for (int j = i + 1; j < T; j++) p[j] = 0.0f;
    }
}

/* One head: P (T, T) and o (T, dh; stride C) from q, k, v (T, dh; stride C). */
static void head_forward(float *o, float *P, const float *q, const float *k, const float *v,
                         int T, int dh, int C, float scale)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, dh,
                scale, q, C, k, C, 0.0f, P, T);
    causal_softmax(P, T);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, dh, T,
                1.0f, P, T, v, C, 0.0f, o, C);
}

/* dP (T, T) -> dS in place: dS = P * (dP - rowsum(dP * P)). */
static void softmax_backward(float *dP, const float *P, int T)
{
    for (int i = 0; i < T; i++) {
        float *restrict g = dP + (size_t)i * T;
        const float *restrict p = P + (size_t)i * T;
        float dot = vdot(g, p, i + 1);
        for (int j = 0; j <= i; j++) g[j] = p[j] * (g[j] - dot);
        for (int j = i + 1; j < T; j++) g[j] = 0.0f;
    }
}

/* One head's backward; dq, dk, dv may be NULL.  dS is (T, T) scratch. */
static void head_backward(const float *dout, const float *P, float *dS,
                          const float *q, const float *k, const float *v,
                          float *dq, float *dk, float *dv, int T, int dh, int C, float scale)
{
    if (dv)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, dh, T,
                    1.0f, P, T, dout, C, 1.0f, dv, C);
    if (!dq && !dk) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, dh,
                1.0f, dout, C, v, C, 0.0f, dS, T);
    softmax_backward(dS, P, T);
    if (dq)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, dh, T,
                    scale, dS, T, k, C, 1.0f, dq, C);
    if (dk)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, dh, T,
                    scale, dS, T, q, C, 1.0f, dk, C);
}

/* Pointer to head h of batch row b in a (B, T, C) buffer, or NULL. */
static float *head(float *base, int b, int h, int T, int C, int dh)
{
    return base ? base + (size_t)b * T * C + (size_t)h * dh : NULL;
}

/* saved: P (B, H, T, T) followed by one (T, T) scratch for dS, allocated
 * by forward since backward has no tape to allocate from. */
static void attention_backward(ag_node *nd)
{
    tensor *q = nd->in[0], *k = nd->in[1], *v = nd->in[2];
    int B = nd->iarg[0], T = nd->iarg[1], H = nd->iarg[2], C = tn_cols(q), dh = C / H;
    const float *P = nd->saved;
    float *dS = (float *)nd->saved + (size_t)B * H * T * T;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            head_backward(head(nd->out->grad, b, h, T, C, dh), P + ((size_t)b * H + h) * T * T, dS,
                          head(q->data, b, h, T, C, dh), head(k->data, b, h, T, C, dh),
                          head(v->data, b, h, T, C, dh), head(q->grad, b, h, T, C, dh),
                          head(k->grad, b, h, T, C, dh), head(v->grad, b, h, T, C, dh),
                          T, dh, C, nd->farg[0]);
}

static bool attention_shapes_ok(const tensor *q, const tensor *k, const tensor *v,
                                int B, int T, int H)
{
    if (B < 1 || T < 1 || H < 1 || q->n != k->n || q->n != v->n || tn_cols(q) != tn_cols(k) ||
        tn_cols(q) != tn_cols(v) || tn_cols(q) % H != 0 || (long long)B * T != tn_rows(q))
        return false;
    return true;
}

tensor *op_attention(ag_tape *t, tensor *q, tensor *k, tensor *v, int B, int T, int H)
{
    if (!q || !k || !v) return NULL;
    if (!attention_shapes_ok(q, k, v, B, T, H)) {
        err_set(ERR_ARG, "op_attention: q, k, v are not (%d, %d, %d heads * d_head)", B, T, H);
        return NULL;
    }
    int C = tn_cols(q), dh = C / H;
    bool need = ag_needs_grad(t, q, k) || ag_needs_grad(t, v, NULL);
    tensor *out = op_out(t, need, 3, (const int[]){ B, T, C });
    if (!out) return NULL;
    /* inference keeps only one head's P at a time */
    size_t heads = need ? (size_t)B * H + 1 : 1;
    float *P = ag_alloc(t, heads * T * T * sizeof *P);
    float scale = 1.0f / sqrtf((float)dh);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            head_forward(head(out->data, b, h, T, C, dh),
                         need ? P + ((size_t)b * H + h) * T * T : P,
                         head(q->data, b, h, T, C, dh), head(k->data, b, h, T, C, dh),
                         head(v->data, b, h, T, C, dh), T, dh, C, scale);
    ag_node *nd = need ? op_node(t, attention_backward, out, q, k) : NULL;
    if (nd) {
        nd->in[2] = v;
        nd->iarg[0] = B;
        nd->iarg[1] = T;
        nd->iarg[2] = H;
        nd->farg[0] = scale;
        nd->saved = P;
    }
    return out;
}
