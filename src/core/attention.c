/* attention.c - fused causal multi-head self-attention; see ops.h.
 *
 * q, k, v, out are (B, T, C) with C = H * dh.  Per (b, h):
 *   forward   S = q k^T / sqrt(dh),  P = causal softmax(S),  O = P v
 *   backward  dP = dO v^T,  dS = P * (dP - rowsum(dP * P)) / sqrt(dh),
 *             dq += dS k,  dk += dS^T q,  dv += P^T dO
 * P (B, H, T, T8) is saved for backward, rows T8 = T rounded up to 8 apart,
 * exactly 0 above the diagonal.
 *
 * With attention dropout, M = keep (B, H, T, T) the caller's factors (0 or
 * 1/(1-p)) and Pd = P * M:
 *   forward   O = Pd v
 *   backward  dv += Pd^T dO,  dP = (dO v^T) * M, then dS as above
 * Pd is built per head in the scratch dS uses, in forward and again in
 * backward, so that nothing more is saved than the caller's M.
 *
 * A head is a few thousand multiply-adds (T <= ~64, dh 8..64), where
 * sgemm's per-call packing costs show: the products are small
 * register-blocked kernels (4 rows x 8 columns of accumulators) that also
 * skip the masked upper triangle, measured 15-25% faster than per-head
 * sgemm calls for dh 8..32 at T 48 (equal at dh 64).  Each head is first
 * gathered into contiguous scratch with its width padded with zeros to dh8
 * (a multiple of 8), so the kernels never need a remainder loop.
 */
#include "ops_internal.h"

#include <math.h>
#include <string.h>

enum { RB = 4, CB = 8 };   /* accumulator block: rows x columns */

/* 8 floats in one register (GCC/Clang vector extension): the blocked
 * kernels below are written with it because the auto-vectoriser picks
 * the wrong loop for them.  memcpy does the unaligned loads and stores. */
typedef float v8 __attribute__((vector_size(CB * sizeof(float))));

static inline void load8(v8 *v, const float *p)
{
    memcpy(v, p, sizeof *v);
}

static int round8(int n) { return (n + CB - 1) / CB * CB; }
static int min_int(int a, int b) { return a < b ? a : b; }

/* Per-head scratch, carved from one arena allocation. */
typedef struct head_buf {
    float *a, *b, *c;   /* (T, dh8) each: gathered heads */
    float *t;           /* (dh8, T8): a transposed head */
    float *o;           /* (T, dh8): a product before it is scattered */
    float *s;           /* (T, T8): dS in backward */
} head_buf;

static size_t head_buf_floats(int T, int dh8)
{
    return (size_t)4 * T * dh8 + (size_t)dh8 * round8(T) + (size_t)T * round8(T);
}

static head_buf head_buf_carve(float *p, int T, int dh8)
{
    size_t td = (size_t)T * dh8;
    return (head_buf){ p, p + td, p + 2 * td, p + 3 * td, p + 3 * td + (size_t)dh8 * round8(T),
                       p + 4 * td + (size_t)dh8 * round8(T) };
}

/* dst (T, dh8) = src (T, dh; rows C apart), zero padded. */
static void gather(float *restrict dst, const float *restrict src, int T, int dh, int dh8, int C)
{
    for (int i = 0; i < T; i++) {
        float *restrict d = dst + (size_t)i * dh8;
        const float *restrict s = src + (size_t)i * C;
        for (int c = 0; c < dh; c++) d[c] = s[c];
        for (int c = dh; c < dh8; c++) d[c] = 0.0f;
    }
}

/* dst (dh8, T8) = src (T, dh; rows C apart) transposed, zero padded. */
static void gather_transposed(float *restrict dst, const float *restrict src, int T, int dh,
                              int dh8, int C)
{
    int T8 = round8(T);
    memset(dst, 0, (size_t)dh8 * T8 * sizeof *dst);
    for (int j = 0; j < T; j++)
        for (int c = 0; c < dh; c++) dst[(size_t)c * T8 + j] = src[(size_t)j * C + c];
}

/* dst (T, dh; rows C apart) += src (T, dh8) */
static void scatter_add(float *restrict dst, const float *restrict src, int T, int dh, int dh8, int C)
{
    for (int i = 0; i < T; i++)
        for (int c = 0; c < dh; c++) dst[(size_t)i * C + c] += src[(size_t)i * dh8 + c];
}

/* S (T, T8) = alpha a (T, dh8) bt (dh8, T8), for the columns j < i + 1 of
 * each row rounded up to the block (the rest of S is not written). */
static void causal_scores(float *restrict S, const float *restrict a, const float *restrict bt,
                          int T, int dh8, float alpha)
{
    int T8 = round8(T);
    for (int i0 = 0; i0 < T; i0 += RB) {
        const float *ar[RB];
        for (int r = 0; r < RB; r++) ar[r] = a + (size_t)min_int(i0 + r, T - 1) * dh8;
        int jend = round8(min_int(i0 + RB, T));
        for (int j0 = 0; j0 < jend; j0 += CB) {
            v8 acc[RB] = { 0 };
            for (int c = 0; c < dh8; c++) {
                v8 b;
                load8(&b, bt + (size_t)c * T8 + j0);
                for (int r = 0; r < RB; r++) acc[r] += ar[r][c] * b;
            }
            for (int r = 0; r < RB && i0 + r < T; r++) {
                v8 s = alpha * acc[r];
                memcpy(S + (size_t)(i0 + r) * T8 + j0, &s, sizeof s);
            }
        }
    }
}

/* o (T, dh8) = sum over j of A(i, j) b (T, dh8)[j], with A(i, j) =
 * A[i * ars + j * acs] and j running over the causal range of row i:
 * j <= i (lower), or j >= i (upper, A transposed); A is 0 outside it, so
 * a block of rows may use the range of its widest row. */
static void causal_mix(float *restrict o, const float *restrict A, int ars, int acs,
                       const float *restrict b, int T, int dh8, bool upper)
{
    for (int i0 = 0; i0 < T; i0 += RB) {
        const float *ar[RB];
        for (int r = 0; r < RB; r++) ar[r] = A + (size_t)min_int(i0 + r, T - 1) * ars;
        int jlo = upper ? i0 : 0, jhi = upper ? T : min_int(i0 + RB, T);
        for (int c0 = 0; c0 < dh8; c0 += CB) {
            v8 acc[RB] = { 0 };
            for (int j = jlo; j < jhi; j++) {
                v8 bj;
                load8(&bj, b + (size_t)j * dh8 + c0);
                for (int r = 0; r < RB; r++) acc[r] += ar[r][(size_t)j * acs] * bj;
            }
            for (int r = 0; r < RB && i0 + r < T; r++)
                memcpy(o + (size_t)(i0 + r) * dh8 + c0, &acc[r], sizeof acc[r]);
        }
    }
}

/* Rows of S (T, T8) -> causal softmax in place, zero beyond the diagonal.
 * Row i is handled over n8 = round8(i + 1) columns (entries past i masked)
 * so that every loop runs over whole vectors. */
static void causal_softmax(float *P, int T)
{
    int T8 = round8(T);
    for (int i = 0; i < T; i++) {
        float *restrict p = P + (size_t)i * T8;
        int n8 = round8(i + 1);
        for (int j = i + 1; j < n8; j++) p[j] = -1e30f;
        float mx = vmax(p, n8);
        for (int j = 0; j < n8; j++) p[j] = vec_expf(p[j] - mx);
        for (int j = i + 1; j < T8; j++) p[j] = 0.0f;
        float inv = 1.0f / vsum(p, n8);
        for (int j = 0; j < n8; j++) p[j] *= inv;
    }
}

/* dP (T, T8) -> dS in place: dS = scale * P * (dP - rowsum(dP * P)); P is
 * 0 past the diagonal, so whole vectors of n8 columns give the same. */
static void softmax_backward(float *dP, const float *P, int T, float scale)
{
    int T8 = round8(T);
    for (int i = 0; i < T; i++) {
        float *restrict g = dP + (size_t)i * T8;
        const float *restrict p = P + (size_t)i * T8;
        int n8 = round8(i + 1);
        float dot = vdot(g, p, n8);
        for (int j = 0; j < n8; j++) g[j] = scale * p[j] * (g[j] - dot);
        for (int j = n8; j < T8; j++) g[j] = 0.0f;
    }
}

/* D (T, T8) = A (T, T8) * keep (T, T) on and below the diagonal, 0 above
 * it (the causal products read the upper triangle as zeros); D may be A. */
static void apply_keep(float *D, const float *A, const float *keep, int T)
{
    int T8 = round8(T);
    for (int i = 0; i < T; i++) {
        float *d = D + (size_t)i * T8;
        const float *a = A + (size_t)i * T8, *m = keep + (size_t)i * T;
        for (int j = 0; j <= i; j++) d[j] = a[j] * m[j];
        for (int j = i + 1; j < T8; j++) d[j] = 0.0f;
    }
}

/* One head's forward: P (T, T8) and out (T, dh; rows C apart); keep (T, T)
 * or NULL. */
static void head_forward(float *out, float *P, const float *q, const float *k, const float *v,
                         const float *keep, head_buf *w, int T, int dh, int C, float scale)
{
    int dh8 = round8(dh);
    gather(w->a, q, T, dh, dh8, C);
    gather_transposed(w->t, k, T, dh, dh8, C);
    gather(w->b, v, T, dh, dh8, C);
    causal_scores(P, w->a, w->t, T, dh8, scale);
    causal_softmax(P, T);
    if (keep) apply_keep(w->s, P, keep, T);
    causal_mix(w->o, keep ? w->s : P, round8(T), 1, w->b, T, dh8, false);
    for (int i = 0; i < T; i++)
        for (int c = 0; c < dh; c++) out[(size_t)i * C + c] = w->o[(size_t)i * dh8 + c];
}

/* One head's backward; dq, dk, dv may be NULL, keep too. */
static void head_backward(const float *dout, const float *P, const float *q, const float *k,
                          const float *v, const float *keep, float *dq, float *dk, float *dv,
                          head_buf *w, int T, int dh, int C, float scale)
{
    int dh8 = round8(dh), T8 = round8(T);
    gather(w->a, dout, T, dh, dh8, C);
    if (dv) {   /* dv += Pd^T dO */
        if (keep) apply_keep(w->s, P, keep, T);
        causal_mix(w->o, keep ? w->s : P, 1, T8, w->a, T, dh8, true);
        scatter_add(dv, w->o, T, dh, dh8, C);
    }
    if (!dq && !dk) return;
    gather_transposed(w->t, v, T, dh, dh8, C);
    causal_scores(w->s, w->a, w->t, T, dh8, 1.0f);   /* dPd = dO v^T */
    if (keep) apply_keep(w->s, w->s, keep, T);        /* dP = dPd * M */
    softmax_backward(w->s, P, T, scale);
    if (dq) {   /* dq += dS k */
        gather(w->b, k, T, dh, dh8, C);
        causal_mix(w->o, w->s, T8, 1, w->b, T, dh8, false);
        scatter_add(dq, w->o, T, dh, dh8, C);
    }
    if (dk) {   /* dk += dS^T q */
        gather(w->c, q, T, dh, dh8, C);
        causal_mix(w->o, w->s, 1, T8, w->c, T, dh8, true);
        scatter_add(dk, w->o, T, dh, dh8, C);
    }
}

/* Pointer to head h of batch row b in a (B, T, C) buffer, or NULL. */
static float *head(float *base, int b, int h, int T, int C, int dh)
{
    return base ? base + (size_t)b * T * C + (size_t)h * dh : NULL;
}

/* Head h of batch row b's (T, T) dropout factors in keep (B, H, T, T), or NULL. */
static const float *head_keep(const float *keep, int b, int h, int H, int T)
{
    return keep ? keep + ((size_t)b * H + h) * T * T : NULL;
}

/* What backward reads: P (B, H, T, T8) followed by the head scratch,
 * allocated by forward since backward has no tape to allocate from, and
 * the caller's dropout factors (NULL: none). */
typedef struct attn_saved { float *P; const float *keep; } attn_saved;

static void attention_backward(ag_node *nd)
{
    tensor *q = nd->in[0], *k = nd->in[1], *v = nd->in[2];
    int B = nd->iarg[0], T = nd->iarg[1], H = nd->iarg[2], C = tn_cols(q), dh = C / H;
    size_t per_head = (size_t)T * round8(T);
    const attn_saved *sv = nd->saved;
    const float *P = sv->P, *keep = sv->keep;
    head_buf w = head_buf_carve(sv->P + (size_t)B * H * per_head, T, round8(dh));
    float *dy = ag_grad(nd->out), *dq = ag_grad(q), *dk = ag_grad(k), *dv = ag_grad(v);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            head_backward(head(dy, b, h, T, C, dh), P + ((size_t)b * H + h) * per_head,
                          head(q->data, b, h, T, C, dh), head(k->data, b, h, T, C, dh),
                          head(v->data, b, h, T, C, dh), head_keep(keep, b, h, H, T),
                          head(dq, b, h, T, C, dh), head(dk, b, h, T, C, dh),
                          head(dv, b, h, T, C, dh), &w, T, dh, C, nd->farg[0]);
}

static bool attention_shapes_ok(const tensor *q, const tensor *k, const tensor *v,
                                int B, int T, int H)
{
    if (B < 1 || T < 1 || H < 1 || q->n != k->n || q->n != v->n || tn_cols(q) != tn_cols(k) ||
        tn_cols(q) != tn_cols(v) || tn_cols(q) % H != 0 || (long long)B * T != tn_rows(q))
        return false;
    return true;
}

tensor *op_attention(ag_tape *t, tensor *q, tensor *k, tensor *v, int B, int T, int H,
                     const float *keep)
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
    size_t per_head = (size_t)T * round8(T), heads = need ? (size_t)B * H : 1;
    float *P = ag_alloc(t, (heads * per_head + head_buf_floats(T, round8(dh))) * sizeof *P);
    head_buf w = head_buf_carve(P + heads * per_head, T, round8(dh));
    float scale = 1.0f / sqrtf((float)dh);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            head_forward(head(out->data, b, h, T, C, dh),
                         need ? P + ((size_t)b * H + h) * per_head : P,
                         head(q->data, b, h, T, C, dh), head(k->data, b, h, T, C, dh),
                         head(v->data, b, h, T, C, dh), head_keep(keep, b, h, H, T), &w, T,
                         dh, C, scale);
    ag_node *nd = op_node(t, "attention", attention_backward, out, q, k);
    if (nd) {
        nd->in[2] = v;
        nd->iarg[0] = B;
        nd->iarg[1] = T;
        nd->iarg[2] = H;
        nd->farg[0] = scale;
        attn_saved *sv = ag_alloc(t, sizeof *sv);
        *sv = (attn_saved){ P, keep };
        nd->saved = sv;
    }
    return out;
}
