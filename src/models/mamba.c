/* mamba.c - the Mamba LM: config, parameters, the fused selective-scan op
 * with its hand-written backward, the training graph and generation in
 * recurrent form; see mamba.h.
 *
 * The op "mamba_ssm" of one layer, on the packed rows r = off[b] + t of a
 * batch (each sequence up to its last non-pad token, so no work is spent
 * on padding), P = R + 2N columns of x_proj's output:
 *   forward   xc = conv(xi) + bias                  (n, e)      conv_forward
 *             u  = silu(xc)
 *             dbc = u x_proj^T                      (n, P)      one GEMM
 *             pre = dtr dt_w^T + dt_b,  dt = softplus(pre)     one GEMM
 *             h, y by scan_step, t = 0 .. len_b - 1 (sequential)
 *             out = y * silu(z)
 *   backward  gy = g * silu(z),  gz = g * y * silu'(z)
 *             scan_row_backward per sequence b: the scan replayed into (Tmax, N, e)
 *             buffers of h and exp(dt A), then t = len_b - 1 .. 0 with gh
 *             the gradient of h_t (what later steps sent back included):
 *               gh  += gy_t Ct_t;       gCt += gy_t h_t;   gu += gy_t D
 *               gdt += sum_n gh (h_{t-1} a A + Bt u);       a = exp(dt A)
 *               gA  += gh h_{t-1} a dt;  gBt += gh dt u;    gu += dt gh.Bt
 *               gh  *= a                      (becomes the gradient of h_{t-1})
 *             ga = gdt sigmoid(pre) -> dt_proj's gradients and gdtr
 *             gu += gdbc x_proj (and x_proj's gradient), gxc = gu silu'(xc)
 *             conv_backward -> gxi, conv weight and bias
 *             gA_log = gA * A.
 * The whole graph runs on the packed rows: the positions after a row's
 * last non-pad input are never computed (the scan is causal: nothing
 * before them depends on them, and no loss reads them).
 */
#include "mamba.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "vec.h"

/* ---- config ---------------------------------------------------------- */

int mamba_auto_dt_rank(int d_model) { return (d_model + 15) / 16; }

static err_code range(const char *name, int v, int lo, int hi)
{
    return v < lo || v > hi ? err_set(ERR_ARG, "%s %d out of range (%d..%d)", name, v, lo, hi)
                            : ERR_OK;
}

err_code mamba_config_check(const mamba_config *c)
{
    if (!c) return err_set(ERR_ARG, "mamba config: NULL");
    err_code e;
    if ((e = range("vocab_size", c->vocab_size, TOK_FIRST + 1, MAMBA_MAX_VOCAB)) ||
        (e = range("d_model", c->d_model, 1, MAMBA_MAX_DIM)) ||
        (e = range("n_layers", c->n_layers, 1, MAMBA_MAX_LAYERS)) ||
        (e = range("d_state", c->d_state, 1, MAMBA_MAX_STATE)) ||
        (e = range("expand_factor", c->expand_factor, 1, MAMBA_MAX_EXPAND)) ||
        (e = range("d_conv", c->d_conv, 1, MAMBA_MAX_CONV)) ||
        (e = range("dt_rank", c->dt_rank, 1, MAMBA_MAX_DIM)))
        return e;
    return ERR_OK;
}

err_code mamba_config_to_json(const mamba_config *c, char **json)
{
    *json = NULL;
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size) &&
              cJSON_AddNumberToObject(o, "d_model", c->d_model) &&
              cJSON_AddNumberToObject(o, "n_layers", c->n_layers) &&
              cJSON_AddNumberToObject(o, "d_state", c->d_state) &&
              cJSON_AddNumberToObject(o, "expand_factor", c->expand_factor) &&
              cJSON_AddNumberToObject(o, "d_conv", c->d_conv) &&
              cJSON_AddNumberToObject(o, "dt_rank", c->dt_rank);
    if (ok) *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return *json ? ERR_OK : err_set(ERR_NOMEM, "cannot build the mamba config JSON");
}

err_code mamba_config_from_json(mamba_config *c, const char *json)
{
    cJSON *o = mdl_config_object(json, MAMBA_KIND);
    if (!o) return ERR_FORMAT;
    mamba_config k;
    const char *keys[] = { "vocab_size", "d_model", "n_layers", "d_state", "expand_factor",
                           "d_conv", "dt_rank" };
    int *out[] = { &k.vocab_size, &k.d_model, &k.n_layers, &k.d_state, &k.expand_factor,
                   &k.d_conv, &k.dt_rank };
    err_code e = ERR_OK;
    for (int i = 0; !e && i < (int)(sizeof keys / sizeof keys[0]); i++)
        e = mdl_config_int(o, MAMBA_KIND, keys[i], out[i]);
    cJSON_Delete(o);
    if (!e && k.dt_rank == 0) k.dt_rank = mamba_auto_dt_rank(k.d_model);
    if (!e && mamba_config_check(&k)) e = err_prefix(ERR_FORMAT, "mamba config");
    if (!e) *c = k;
    return e;
}

/* ---- parameters ------------------------------------------------------ */

static tensor *declare(mamba_model *m, int ndim, const int *shape, const char *what, int i)
{
    char name[TN_NAME_MAX];
    snprintf(name, sizeof name, "core.layers.%d.%s", i, what);
    return tn_param(&m->p, name, ndim >= 2, ndim, shape);   /* decay: 2 dims or more */
}

static err_code declare_layer(mamba_model *m, int i)
{
    const mamba_config *c = &m->c;
    const int d = c->d_model, e = c->expand_factor * d, N = c->d_state, R = c->dt_rank;
    mamba_layer *L = &m->layer[i];
    bool ok = (L->norm = declare(m, 1, (int[]){ d }, "norm.weight", i)) &&
              (L->in_proj = declare(m, 2, (int[]){ 2 * e, d }, "mixer.in_proj.weight", i)) &&
              (L->conv_w = declare(m, 3, (int[]){ e, 1, c->d_conv }, "mixer.conv1d.weight", i)) &&
              (L->conv_b = declare(m, 1, (int[]){ e }, "mixer.conv1d.bias", i)) &&
              (L->x_proj = declare(m, 2, (int[]){ R + 2 * N, e }, "mixer.x_proj.weight", i)) &&
              (L->dt_w = declare(m, 2, (int[]){ e, R }, "mixer.dt_proj.weight", i)) &&
              (L->dt_b = declare(m, 1, (int[]){ e }, "mixer.dt_proj.bias", i)) &&
              (L->A_log = declare(m, 2, (int[]){ e, N }, "mixer.A_log", i)) &&
              (L->D = declare(m, 1, (int[]){ e }, "mixer.D", i)) &&
              (L->out_proj = declare(m, 2, (int[]){ d, e }, "mixer.out_proj.weight", i));
    return ok ? ERR_OK : ERR_ARG;   /* tn_param recorded the message */
}

/* Check c and declare the parameters (not allocated yet). */
static err_code declare_all(mamba_model *m, const mamba_config *c)
{
    memset(m, 0, sizeof *m);
    tn_params_init(&m->p);
    err_code e = mamba_config_check(c);
    if (e) return e;
    m->c = *c;
    const int d = c->d_model;
    if (!(m->emb = tn_param(&m->p, "embedding.weight", true, 2, (int[]){ c->vocab_size, d })))
        return ERR_ARG;
    for (int i = 0; i < c->n_layers; i++)
        if ((e = declare_layer(m, i))) return e;
    return (m->out_norm = tn_param(&m->p, "out_norm.weight", false, 1, (int[]){ d })) ? ERR_OK
                                                                                       : ERR_ARG;
}

err_code mamba_init(mamba_model *m, const mamba_config *c)
{
    err_code e = declare_all(m, c);
    return e ? e : tn_params_alloc(&m->p);
}

MDL_REPLICA(mamba, mamba_model, declare_all)

static void fill_uniform(tensor *t, rng *r, float bound)
{
    for (int i = 0; i < t->n; i++) t->data[i] = (float)((2.0 * rng_uniform(r) - 1.0) * bound);
}

/* dt_proj.bias: softplus^-1(dt), dt log-uniform in [0.001, 0.1], >= 1e-4. */
static void fill_dt_bias(tensor *b, rng *r)
{
    const double lo = log(0.001), hi = log(0.1);
    for (int i = 0; i < b->n; i++) {
        double dt = fmax(exp(lo + rng_uniform(r) * (hi - lo)), 1e-4);
        b->data[i] = (float)(dt + log(-expm1(-dt)));
    }
}

void mamba_init_weights(mamba_model *m, rng *r)
{
    if (!m || !m->p.data) return;
    const float std = 0.02f, conv_bound = 1.0f / sqrtf((float)m->c.d_conv);
    const int N = m->c.d_state;
    tn_fill_normal(m->emb, r, 0.0f, std);
    for (int i = 0; i < m->c.n_layers; i++) {
        mamba_layer *L = &m->layer[i];
        tn_fill(L->norm, 1.0f);
        tn_fill_normal(L->in_proj, r, 0.0f, std);
        fill_uniform(L->conv_w, r, conv_bound);
        fill_uniform(L->conv_b, r, conv_bound);
        tn_fill_normal(L->x_proj, r, 0.0f, std);
        tn_fill_normal(L->dt_w, r, 0.0f, std);
        fill_dt_bias(L->dt_b, r);
        for (int j = 0; j < L->A_log->n; j++) L->A_log->data[j] = logf((float)(j % N + 1));
        tn_fill(L->D, 1.0f);
        tn_fill_normal(L->out_proj, r, 0.0f, std);
    }
    tn_fill(m->out_norm, 1.0f);
}

/* Parameters of a checked config, to refuse a file that cannot hold them
 * before allocating. */
static size_t param_count(const mamba_config *c)
{
    const size_t d = (size_t)c->d_model, e = (size_t)c->expand_factor * d, N = (size_t)c->d_state;
    const size_t R = (size_t)c->dt_rank, K = (size_t)c->d_conv;
    const size_t layer = d + 2 * e * d + e * K + e + (R + 2 * N) * e + e * R + e + e * N + e + d * e;
    return (size_t)c->vocab_size * d + d + (size_t)c->n_layers * layer;
}

err_code mamba_load(mamba_model *m, const ck_file *f, const char *path, bool optim)
{
    memset(m, 0, sizeof *m);
    const char *json;
    mamba_config c;
    err_code e = mdl_read_meta(f, path, MAMBA_KIND, &json, NULL);
    if (e) return e;
    if ((e = mamba_config_from_json(&c, json))) return err_prefix(e, path);
    size_t held = 0;
    for (int i = 0; i < f->n; i++) held += f->t[i].numel;
    if (param_count(&c) > held)
        return err_set(ERR_FORMAT, "%s: the config asks for %zu parameters, the file holds %zu values",
                       path, param_count(&c), held);
    if ((e = mamba_init(m, &c)) || (e = tn_params_load(&m->p, f, optim))) {
        mamba_free(m);
        return err_prefix(e, path);
    }
    return ERR_OK;
}

void mamba_free(mamba_model *m)
{
    if (!m) return;
    tn_params_free(&m->p);
    memset(m, 0, sizeof *m);
}

err_code mamba_save(const mamba_model *m, const txt_vocab *v, const char *path)
{
    char *config = NULL;
    err_code e = mamba_config_to_json(&m->c, &config);
    if (!e) e = mdl_save_params(path, MAMBA_KIND, config, v, &m->p);
    free(config);
    return e;
}

/* ---- kernels over float* (shared by training and generation) ---------- */

static inline float silu(float x) { return x * vec_sigmoidf(x); }

static inline float silu_grad(float x)
{
    const float s = vec_sigmoidf(x);
    return s * (1.0f + x * (1.0f - s));
}

/* log(x) for a positive normal x, vectorisable: Cephes' logf (mantissa
 * in [sqrt(1/2), sqrt(2)), degree-9 polynomial, within 2 ulp). */
static inline float log_pos(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    int ex = (int)((bits >> 23) & 0xff) - 126;          /* x = m 2^ex, m in [0.5, 1) */
    bits = (bits & 0x007fffffu) | 0x3f000000u;
    float m;
    memcpy(&m, &bits, sizeof m);
    const bool low = m < 0.70710678f;
    ex = low ? ex - 1 : ex;
    m = low ? m + m - 1.0f : m - 1.0f;
    const float z = m * m, e = (float)ex;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z - 2.12194440e-4f * e - 0.5f * z;
    return m + y + 0.693359375f * e;
}

/* PyTorch's softplus (beta 1, threshold 20), as max(x, 0) + log1p(exp(-|x|))
 * with log1p(w) = log(1 + w) w / ((1 + w) - 1), accurate for small w too,
 * and vectorisable (libm's log1pf took a tenth of the training time). */
static inline float softplus(float x)
{
    const float w = vec_expf(-fabsf(x)), v = 1.0f + w, d = v - 1.0f;
    /* both sides of every select run (no division by 0), so that GCC
     * if-converts the loops that call this */
    const float q = log_pos(v) * (w / (d == 0.0f ? 1.0f : d));
    const float r = (x > 0.0f ? x : 0.0f) + (d == 0.0f ? w : q);
    return x > 20.0f ? x : r;
}

/* A (N, e) = -exp(A_log^T), A_log (e, N): the scan runs along channels. */
static void decay_rates(float *A, const tensor *A_log)
{
    const int e = A_log->shape[0], N = A_log->shape[1];
    for (int c = 0; c < e; c++)
        for (int n = 0; n < N; n++) A[(size_t)n * e + c] = -expf(A_log->data[(size_t)c * N + n]);
}

/* wT (K, e) = conv1d.weight (e, 1, K) transposed, so that the conv's
 * loops run along the channels. */
static void conv_transpose(float *wT, const tensor *conv_w)
{
    const int e = conv_w->shape[0], K = conv_w->shape[2];
    for (int c = 0; c < e; c++)
        for (int k = 0; k < K; k++) wT[(size_t)k * e + c] = conv_w->data[(size_t)c * K + k];
}

/* One step of the selective scan over e channels, state laid out (N, e) so
 * that every loop runs along the channels:
 *   a = exp(dt A),  h_out = a * h_in + dt u Bt,  y = h_out Ct + D u
 * h_in, h_out (N, e) (may be the same buffer); dt, u, y (e); Bt, Ct (N);
 * A (N, e); D (e); a (N, e) receives the decay factors. */
static void scan_step(float *h_out, const float *h_in, float *restrict y, const float *restrict u,
                      const float *restrict dt, const float *Bt, const float *Ct,
                      const float *A, const float *restrict D, float *a, int e, int N)
{
    for (int c = 0; c < e; c++) y[c] = D[c] * u[c];
    for (int n = 0; n < N; n++) {
        const float bn = Bt[n], cn = Ct[n];
        const float *restrict An = A + (size_t)n * e, *hi = h_in + (size_t)n * e;
        float *ho = h_out + (size_t)n * e, *restrict an = a + (size_t)n * e;
        for (int c = 0; c < e; c++) {
            an[c] = vec_expf(dt[c] * An[c]);
            ho[c] = an[c] * hi[c] + dt[c] * u[c] * bn;
            y[c] += cn * ho[c];
        }
    }
}

/* sum of a[i] b[i], in 8 partial sums so that it vectorises without
 * -ffast-math. */
static float dot(const float *restrict a, const float *restrict b, int n)
{
    float acc[8] = { 0 };
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[i + k] * b[i + k];
    float s = 0.0f;
    for (; i < n; i++) s += a[i] * b[i];
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}

/* The shapes of one op. */
/* B sequences packed into n rows (row off[b] + t is position t of
 * sequence b), the longest Tmax positions long. */
typedef struct ssm_dims { int B, n, Tmax, e, N, R, P, K; } ssm_dims;

/* xc (n, e) = bias + sum_k wT[k] * xi at time t - K + 1 + k of the same
 * sequence, xi the first e columns of xz (n, 2e); wT (K, e) the conv
 * weight transposed. */
static void conv_forward(float *xc, const float *xz, const float *wT, const float *bias,
                         const int *off, ssm_dims s)
{
    const int e = s.e;
    for (int b = 0; b < s.B; b++)
        for (int t = 0; t < off[b + 1] - off[b]; t++) {
            float *restrict out = xc + ((size_t)off[b] + t) * e;
            memcpy(out, bias, (size_t)e * sizeof *out);
            for (int k = 0; k < s.K; k++) {
                const int src = t - s.K + 1 + k;
                if (src < 0) continue;
                const float *restrict x = xz + ((size_t)off[b] + src) * 2 * e;
                const float *restrict w = wT + (size_t)k * e;
                for (int c = 0; c < e; c++) out[c] += w[c] * x[c];
            }
        }
}

/* gxz[:, :e] += conv^T gxc, gwT (K, e) and gbias += their gradients. */
static void conv_backward(float *gxz, float *gwT, float *gbias, const float *gxc,
                          const float *xz, const float *wT, const int *off, ssm_dims s)
{
    const int e = s.e;
    for (int b = 0; b < s.B; b++)
        for (int t = 0; t < off[b + 1] - off[b]; t++) {
            const float *restrict g = gxc + ((size_t)off[b] + t) * e;
            for (int c = 0; c < e; c++) gbias[c] += g[c];
            for (int k = 0; k < s.K; k++) {
                const int src = t - s.K + 1 + k;
                if (src < 0) continue;
                const size_t row = ((size_t)off[b] + src) * 2 * e;
                const float *restrict x = xz + row, *restrict w = wT + (size_t)k * e;
                float *restrict gw = gwT + (size_t)k * e;
                if (gxz)
                    for (int c = 0; c < e; c++) gxz[row + c] += w[c] * g[c];
                for (int c = 0; c < e; c++) gw[c] += g[c] * x[c];
            }
        }
}

/* Forward values, and the backward's scratch (NULL in inference). */
typedef struct ssm_op {
    ssm_dims s;
    const int *off;           /* (B + 1) first row of each sequence; off[B] = n */
    const mamba_layer *L;
    tensor *xz;
    float *A, *wT;            /* (N, e) -exp(A_log)^T, (K, e) the conv weight^T */
    float *xc, *u, *pre, *dt, *y;   /* (n, e) */
    float *dbc;               /* (n, P) */
    float *h, *a;             /* (N, e) the forward scan's state, decay factors */
    /* backward */
    float *gy, *gu, *gdt;     /* (n, e) */
    float *gdbc;              /* (n, P) */
    float *hs, *as;           /* (Tmax, N, e) one sequence's h and decay factors */
    float *gh, *gA;           /* (N, e) */
    float *du, *gdu, *ghc;    /* (e) one step's dt u, its gradient, gh + gy C */
    float *gwT;               /* (K, e) */
} ssm_op;

/* The scan of sequence b from h = 0 (o->h), forward: its y rows written;
 * with hs and as, h_t and exp(dt_t A) of every step kept there ((Tmax,
 * N, e), for the backward; o->h then stays 0). */
static void scan_row(const ssm_op *o, int b, float *hs, float *as)
{
    const ssm_dims s = o->s;
    const size_t eN = (size_t)s.e * s.N;
    float *h = o->h;
    memset(h, 0, eN * sizeof *h);
    for (int t = 0; t < o->off[b + 1] - o->off[b]; t++) {
        const size_t r = (size_t)o->off[b] + t;
        const float *Bt = o->dbc + r * s.P + s.R;
        float *h_out = hs ? hs + t * eN : h;
        const float *h_in = hs && t ? hs + (t - 1) * eN : h;
        scan_step(h_out, h_in, o->y + r * s.e, o->u + r * s.e, o->dt + r * s.e, Bt, Bt + s.N,
                  o->A, o->L->D->data, as ? as + t * eN : o->a, s.e, s.N);
    }
}

/* One (t, n) of the reverse sweep along the channels: gh (the gradient of
 * h_t[n], in) becomes that of h_{t-1}[n]; ghc receives gh + gy C[n].
 * (Restrict parameters, so that the loop vectorises.) */
static void scan_back_row(float *restrict gh, float *restrict ghc, float *restrict gdt,
                          float *restrict gA, float *restrict gdu, const float *restrict gy,
                          const float *restrict hp, const float *restrict an,
                          const float *restrict An, const float *restrict dt, float cn,
                          float bn, int e)
{
    for (int c = 0; c < e; c++) {
        ghc[c] = gh[c] + gy[c] * cn;
        const float gexp = ghc[c] * hp[c] * an[c];   /* d/d(dt A) */
        gdt[c] += gexp * An[c];
        gA[c] += gexp * dt[c];
        gdu[c] += ghc[c] * bn;                       /* d/d(dt u) */
        gh[c] = ghc[c] * an[c];
    }
}

/* What step t sends to u, D and (through dt u) to dt, around the sweep
 * over n: before (gdu == NULL: du = dt u, and the D term), after (the
 * gradient gdu of dt u). */
static void scan_back_step(float *restrict du, float *restrict gu, float *restrict gdt,
                           float *restrict gD, const float *restrict gdu,
                           const float *restrict dt, const float *restrict u,
                           const float *restrict gy, const float *restrict D, int e)
{
    if (!gdu) {
        for (int c = 0; c < e; c++) {
            du[c] = dt[c] * u[c];
            gu[c] += gy[c] * D[c];
            gD[c] += gy[c] * u[c];
        }
        return;
    }
    for (int c = 0; c < e; c++) {
        gdt[c] += gdu[c] * u[c];
        gu[c] += gdu[c] * dt[c];
    }
}

/* The reverse sweep of row b (see the top of this file), after scan_row
 * filled o->hs and o->as; gh, hs, as, A (N, e) along the channels. */
static void scan_row_backward(ssm_op *o, int b, float *gD)
{
    const ssm_dims s = o->s;
    const int e = s.e, N = s.N;
    const size_t eN = (size_t)e * N;
    memset(o->gh, 0, eN * sizeof *o->gh);
    for (int t = o->off[b + 1] - o->off[b] - 1; t >= 0; t--) {
        const size_t r = (size_t)o->off[b] + t;
        const float *Bt = o->dbc + r * s.P + s.R, *Ct = Bt + N;
        float *gBt = o->gdbc + r * s.P + s.R, *gCt = gBt + N;
        const float *u = o->u + r * e, *dt = o->dt + r * e, *gy = o->gy + r * e;
        float *gu = o->gu + r * e, *gdt = o->gdt + r * e;
        scan_back_step(o->du, gu, gdt, gD, NULL, dt, u, gy, o->L->D->data, e);
        memset(o->gdu, 0, (size_t)e * sizeof *o->gdu);
        for (int n = 0; n < N; n++) {
            const float *hc = o->hs + t * eN + (size_t)n * e;
            scan_back_row(o->gh + (size_t)n * e, o->ghc, gdt, o->gA + (size_t)n * e, o->gdu, gy,
                          t ? hc - eN : o->h /* zeros */, o->as + t * eN + (size_t)n * e,
                          o->A + (size_t)n * e, dt, Ct[n], Bt[n], e);
            gCt[n] += dot(gy, hc, e);
            gBt[n] += dot(o->ghc, o->du, e);
        }
        scan_back_step(o->du, gu, gdt, gD, o->gdu, dt, u, gy, NULL, e);
    }
}

static float *floats(ag_tape *t, size_t n) { return ag_alloc(t, (n ? n : 1) * sizeof(float)); }

/* Everything from xz to y: conv, silu, x_proj, dt_proj, softplus, scan. */
static void ssm_forward(ssm_op *o)
{
    const ssm_dims s = o->s;
    const int BT = s.n, e = s.e;
    const float *xz = o->xz->data;
    conv_forward(o->xc, xz, o->wT, o->L->conv_b->data, o->off, s);
    for (size_t i = 0; i < (size_t)BT * e; i++) o->u[i] = silu(o->xc[i]);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BT, s.P, e, 1.0f, o->u, e,
                o->L->x_proj->data, e, 0.0f, o->dbc, s.P);
    for (int r = 0; r < BT; r++)
        memcpy(o->pre + (size_t)r * e, o->L->dt_b->data, (size_t)e * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BT, e, s.R, 1.0f, o->dbc, s.P,
                o->L->dt_w->data, s.R, 1.0f, o->pre, e);
    for (size_t i = 0; i < (size_t)BT * e; i++) o->dt[i] = softplus(o->pre[i]);
    for (int b = 0; b < s.B; b++) scan_row(o, b, NULL, NULL);
}

/* out (B, T, e) = y * silu(z), z the last e columns of xz. */
static void gate_forward(float *out, const ssm_op *o)
{
    const int e = o->s.e;
    for (size_t r = 0; r < (size_t)o->s.n; r++) {
        const float *z = o->xz->data + r * 2 * e + e, *y = o->y + r * e;
        for (int c = 0; c < e; c++) out[r * e + c] = y[c] * silu(z[c]);
    }
}

/* gy = g * silu(z) into o->gy; gz = g * y * silu'(z) into gxz (if any). */
static void gate_backward(ssm_op *o, const float *g, float *gxz)
{
    const int e = o->s.e;
    for (size_t r = 0; r < (size_t)o->s.n; r++) {
        const float *z = o->xz->data + r * 2 * e + e, *y = o->y + r * e, *gr = g + r * e;
        float *gy = o->gy + r * e;
        for (int c = 0; c < e; c++) gy[c] = gr[c] * silu(z[c]);
        if (gxz)
            for (int c = 0; c < e; c++) gxz[r * 2 * e + e + c] += gr[c] * y[c] * silu_grad(z[c]);
    }
}

static void add_to(float *dst, const float *src, int n)
{
    if (dst)
        for (int i = 0; i < n; i++) dst[i] += src[i];
}

/* From gdt (B, T, e) back through softplus and dt_proj: gdt becomes ga,
 * gdbc's first R columns and dt_proj's gradients receive theirs. */
static void dt_proj_backward(ssm_op *o)
{
    const ssm_dims s = o->s;
    const int BT = s.n, e = s.e;
    float *ga = o->gdt, *gw = ag_grad(o->L->dt_w), *gb = ag_grad(o->L->dt_b);
    for (size_t i = 0; i < (size_t)BT * e; i++) ga[i] *= vec_sigmoidf(o->pre[i]);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BT, s.R, e, 1.0f, ga, e,
                o->L->dt_w->data, s.R, 1.0f, o->gdbc, s.P);
    if (gw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, e, s.R, BT, 1.0f, ga, e, o->dbc,
                    s.P, 1.0f, gw, s.R);
    for (int r = 0; gb && r < BT; r++) add_to(gb, ga + (size_t)r * e, e);
}

/* in[] = xz, conv1d.weight, conv1d.bias, x_proj, dt_proj.weight,
 * dt_proj.bias, A_log, D. */
static void ssm_backward(ag_node *nd)
{
    ssm_op *o = nd->saved;
    const ssm_dims s = o->s;
    const mamba_layer *L = o->L;
    const int BT = s.n, e = s.e;
    float *gxz = ag_grad(o->xz), *gD = o->gh + (size_t)e * s.N;   /* gD: (e) after gh */
    gate_backward(o, ag_grad(nd->out), gxz);
    memset(o->gu, 0, (size_t)BT * e * sizeof(float));
    memset(o->gdt, 0, (size_t)BT * e * sizeof(float));
    memset(o->gdbc, 0, (size_t)BT * s.P * sizeof(float));
    memset(o->gA, 0, (size_t)e * s.N * sizeof(float));
    memset(gD, 0, (size_t)e * sizeof(float));
    for (int b = 0; b < s.B; b++) {
        scan_row(o, b, o->hs, o->as);
        scan_row_backward(o, b, gD);
    }
    dt_proj_backward(o);
    float *gxp = ag_grad(L->x_proj);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BT, e, s.P, 1.0f, o->gdbc, s.P,
                L->x_proj->data, e, 1.0f, o->gu, e);
    if (gxp)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s.P, e, BT, 1.0f, o->gdbc, s.P,
                    o->u, e, 1.0f, gxp, e);
    for (size_t i = 0; i < (size_t)BT * e; i++) o->gu[i] *= silu_grad(o->xc[i]);   /* gxc */
    memset(o->gwT, 0, (size_t)s.K * e * sizeof(float));
    float *gcb = ag_grad(L->conv_b), *gcw = ag_grad(L->conv_w), *gAl = ag_grad(L->A_log);
    float *gbias = o->gwT + (size_t)s.K * e;   /* (e) scratch after gwT */
    memset(gbias, 0, (size_t)e * sizeof(float));
    conv_backward(gxz, o->gwT, gbias, o->gu, o->xz->data, o->wT, o->off, s);
    add_to(gcb, gbias, e);
    for (int c = 0; gcw && c < e; c++)
        for (int k = 0; k < s.K; k++) gcw[(size_t)c * s.K + k] += o->gwT[(size_t)k * e + c];
    for (int c = 0; gAl && c < e; c++)   /* gA, A (N, e); A_log (e, N) */
        for (int n = 0; n < s.N; n++)
            gAl[(size_t)c * s.N + n] += o->gA[(size_t)n * e + c] * o->A[(size_t)n * e + c];
    add_to(ag_grad(L->D), gD, e);
}

static bool ssm_shapes_ok(const mamba_layer *L, const tensor *xz, ssm_dims s)
{
    return s.N <= MAMBA_MAX_STATE && s.P == s.R + 2 * s.N && L->A_log->shape[0] == s.e &&
           L->dt_w->shape[0] == s.e && L->x_proj->shape[1] == s.e && L->conv_w->n == s.e * s.K &&
           xz->n == s.n * 2 * s.e && s.B > 0;
}

static void ssm_alloc_backward(ag_tape *t, ssm_op *o)
{
    const ssm_dims s = o->s;
    const size_t bte = (size_t)s.n * s.e, eN = (size_t)s.e * s.N;
    o->gy = floats(t, bte);
    o->gu = floats(t, bte);
    o->gdt = floats(t, bte);
    o->gdbc = floats(t, (size_t)s.n * s.P);
    o->hs = floats(t, (size_t)s.Tmax * eN);
    o->as = floats(t, (size_t)s.Tmax * eN);
    o->gh = floats(t, eN + (size_t)s.e);            /* + gD */
    o->gA = floats(t, eN);
    o->du = floats(t, (size_t)s.e);
    o->gdu = floats(t, (size_t)s.e);
    o->ghc = floats(t, (size_t)s.e);
    o->gwT = floats(t, (size_t)(s.K + 1) * s.e);    /* + the conv bias's gradient */
}

/* off (B + 1) from 0, non-decreasing; *Tmax the longest sequence. */
static bool offsets_ok(const int *off, int B, int *Tmax)
{
    *Tmax = 0;
    for (int b = 0; b < B; b++) {
        if (off[b + 1] < off[b]) return false;
        if (off[b + 1] - off[b] > *Tmax) *Tmax = off[b + 1] - off[b];
    }
    return off[0] == 0;
}

tensor *mamba_ssm(ag_tape *t, const mamba_layer *L, tensor *xz, int B, const int *off)
{
    if (!t || !L || !xz || !off || B < 1) return NULL;
    ssm_dims s = { .B = B, .n = off[B], .e = L->D->n, .N = L->A_log->shape[1],
                   .R = L->dt_w->shape[1], .P = L->x_proj->shape[0], .K = L->conv_w->shape[2] };
    if (!offsets_ok(off, B, &s.Tmax) || !ssm_shapes_ok(L, xz, s)) {
        err_set(ERR_ARG, "mamba_ssm: xz (n, 2e), the offsets and the layer's shapes disagree");
        return NULL;
    }
    tensor *out = ag_tensor(t, 2, (const int[]){ s.n, s.e });
    ssm_op *o = ag_alloc(t, sizeof *o);
    const size_t bte = (size_t)s.n * s.e;
    *o = (ssm_op){ .s = s, .L = L, .xz = xz, .off = ag_ints(t, off, (size_t)B + 1) };
    o->A = floats(t, (size_t)s.e * s.N);
    decay_rates(o->A, L->A_log);
    o->wT = floats(t, (size_t)s.K * s.e);
    conv_transpose(o->wT, L->conv_w);
    o->xc = floats(t, bte);
    o->u = floats(t, bte);
    o->pre = floats(t, bte);
    o->dt = floats(t, bte);
    o->y = floats(t, bte);
    o->dbc = floats(t, (size_t)s.n * s.P);
    o->h = floats(t, (size_t)s.e * s.N);
    o->a = floats(t, (size_t)s.e * s.N);
    ssm_forward(o);
    gate_forward(out->data, o);
    ag_node *nd = ag_record(t, "mamba_ssm", ssm_backward, out);
    if (nd) {
        tensor *in[AG_MAX_INPUTS] = { xz, L->conv_w, L->conv_b, L->x_proj, L->dt_w, L->dt_b,
                                      L->A_log, L->D };
        memcpy(nd->in, in, sizeof in);
        nd->saved = o;
        ssm_alloc_backward(t, o);
    }
    return out;
}

/* ---- training graph -------------------------------------------------- */

/* The (B + 1) offsets of the packed rows: a row of x (B, T) keeps its
 * positions up to its last non-pad token. */
static int *row_offsets(ag_tape *t, const int *x, int B, int T)
{
    int *off = ag_alloc(t, ((size_t)B + 1) * sizeof *off);
    off[0] = 0;
    for (int b = 0; b < B; b++) {
        int len = 0;
        for (int s = 0; s < T; s++)
            if (x[(size_t)b * T + s] != TOK_PAD) len = s + 1;
        off[b + 1] = off[b] + len;
    }
    return off;
}

/* tok (B, T) packed by off into the arena. */
static int *pack(ag_tape *t, const int *tok, int B, int T, const int *off)
{
    int *out = ag_alloc(t, ((size_t)off[B] + 1) * sizeof *out);
    for (int b = 0; b < B; b++)
        memcpy(out + off[b], tok + (size_t)b * T, (size_t)(off[b + 1] - off[b]) * sizeof *out);
    return out;
}

/* Logits (n, V) of the packed tokens xs. */
static tensor *forward_packed(const mamba_model *m, ag_tape *t, const int *xs, int B,
                              const int *off)
{
    tensor *h = op_embedding(t, m->emb, xs, off[B], 0, NULL);
    for (int l = 0; l < m->c.n_layers; l++) {
        const mamba_layer *L = &m->layer[l];
        tensor *nx = op_rmsnorm(t, h, L->norm, MAMBA_NORM_EPS);
        tensor *xz = op_linear(t, nx, L->in_proj, NULL);
        tensor *g = mamba_ssm(t, L, xz, B, off);
        tensor *o = g ? op_linear(t, g, L->out_proj, NULL) : NULL;
        h = o ? op_add(t, h, o) : NULL;
        if (!h) return NULL;
    }
    h = op_rmsnorm(t, h, m->out_norm, MAMBA_NORM_EPS);
    return h ? op_linear(t, h, m->emb, NULL) : NULL;
}

/* The offsets of batch x (B, T), NULL with err_set when it holds nothing. */
static const int *batch_offsets(ag_tape *t, const int *x, int B, int T)
{
    if (!t || !x || B < 1 || T < 1) {
        err_set(ERR_ARG, "mamba: NULL argument or empty batch");
        return NULL;
    }
    const int *off = row_offsets(t, x, B, T);
    if (off[B] > 0) return off;
    err_set(ERR_ARG, "mamba: a batch without any token");
    return NULL;
}

tensor *mamba_forward(const mamba_model *m, ag_tape *t, const int *x, int B, int T)
{
    const int *off = m ? batch_offsets(t, x, B, T) : NULL;
    return off ? forward_packed(m, t, pack(t, x, B, T, off), B, off) : NULL;
}

tensor *mamba_loss(const mamba_model *m, ag_tape *t, const ds_batch *b)
{
    const int *off = m && b ? batch_offsets(t, b->x, b->B, b->T) : NULL;
    tensor *logits = off ? forward_packed(m, t, pack(t, b->x, b->B, b->T, off), b->B, off) : NULL;
    return logits ? op_cross_entropy(t, logits, pack(t, b->y, b->B, b->T, off), TOK_PAD) : NULL;
}

/* ---- generation in recurrent form ------------------------------------ */

struct mamba_state {
    const mamba_model *m;
    float *win;    /* (n_layers, K - 1, e) the last conv inputs, oldest first */
    float *h;      /* (n_layers, N, e) */
    float *A;      /* (n_layers, N, e) -exp(A_log)^T */
    float *a;      /* (N, e) decay factors of a step */
    float *wT;     /* (n_layers, K, e) the conv weights transposed */
    float *x, *xn; /* (d) residual, normed residual */
    float *xz;     /* (2e) */
    float *u, *dt, *y;   /* (e) */
    float *dbc;    /* (P) */
};

mamba_state *mamba_state_new(const mamba_model *m)
{
    if (!m || !m->p.data) {
        err_set(ERR_ARG, "mamba_state_new: no model");
        return NULL;
    }
    const mamba_config *c = &m->c;
    const size_t d = (size_t)c->d_model, e = (size_t)c->expand_factor * d, N = (size_t)c->d_state;
    const size_t layers = (size_t)c->n_layers, P = (size_t)c->dt_rank + 2 * N;
    const size_t K = (size_t)c->d_conv;
    const size_t n = layers * ((K - 1) * e + 2 * e * N + K * e) + e * N + 2 * d + 2 * e + 3 * e + P;
    mamba_state *s = malloc(sizeof *s);
    float *mem = malloc(n * sizeof *mem);
    if (!s || !mem) {
        free(s);
        free(mem);
        err_set(ERR_NOMEM, "cannot allocate a mamba state");
        return NULL;
    }
    *s = (mamba_state){ .m = m, .win = mem };
    s->h = s->win + layers * (size_t)(c->d_conv - 1) * e;
    s->A = s->h + layers * e * N;
    s->a = s->A + layers * e * N;
    s->wT = s->a + e * N;
    s->x = s->wT + layers * K * e;
    s->xn = s->x + d;
    s->xz = s->xn + d;
    s->u = s->xz + 2 * e;
    s->dt = s->u + e;
    s->y = s->dt + e;
    s->dbc = s->y + e;
    for (size_t l = 0; l < layers; l++) {
        decay_rates(s->A + l * e * N, m->layer[l].A_log);
        conv_transpose(s->wT + l * K * e, m->layer[l].conv_w);
    }
    mamba_state_start(s);
    return s;
}

void mamba_state_free(mamba_state *s)
{
    if (!s) return;
    free(s->win);
    free(s);
}

void mamba_state_start(mamba_state *s)
{
    if (!s) return;
    const mamba_config *c = &s->m->c;
    const size_t e = (size_t)c->expand_factor * c->d_model;
    memset(s->win, 0, (size_t)c->n_layers * ((size_t)(c->d_conv - 1) * e + e * c->d_state) *
                          sizeof(float));
}

/* u (e) = silu(conv of the window and the new input xi (e)), then the
 * window moves on by one. */
static void conv_step(float *restrict u, float *restrict win, const float *restrict xi,
                      const float *restrict wT, const float *restrict bias, int e, int K)
{
    memcpy(u, bias, (size_t)e * sizeof *u);
    for (int k = 0; k + 1 < K; k++)
        for (int c = 0; c < e; c++) u[c] += wT[(size_t)k * e + c] * win[(size_t)k * e + c];
    for (int c = 0; c < e; c++) u[c] = silu(u[c] + wT[(size_t)(K - 1) * e + c] * xi[c]);
    if (K > 1) {
        memmove(win, win + e, (size_t)(K - 2) * e * sizeof *win);
        memcpy(win + (size_t)(K - 2) * e, xi, (size_t)e * sizeof *win);
    }
}

/* y = A x + beta y for A (rows, cols) row-major. */
static void gemv(float *y, const tensor *A, const float *x, float beta)
{
    const int rows = A->shape[0], cols = A->n / rows;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, cols, 1.0f, A->data, cols, x, 1, beta, y, 1);
}

/* One layer's step on the residual s->x. */
static void layer_step(mamba_state *s, int l)
{
    const mamba_config *c = &s->m->c;
    const mamba_layer *L = &s->m->layer[l];
    const int d = c->d_model, e = c->expand_factor * d, N = c->d_state, R = c->dt_rank;
    const size_t eN = (size_t)e * N;
    vec_rmsnorm(s->xn, s->x, L->norm->data, d, MAMBA_NORM_EPS);
    gemv(s->xz, L->in_proj, s->xn, 0.0f);
    conv_step(s->u, s->win + (size_t)l * (c->d_conv - 1) * e, s->xz,
              s->wT + (size_t)l * c->d_conv * e, L->conv_b->data, e, c->d_conv);
    gemv(s->dbc, L->x_proj, s->u, 0.0f);
    memcpy(s->dt, L->dt_b->data, (size_t)e * sizeof(float));
    cblas_sgemv(CblasRowMajor, CblasNoTrans, e, R, 1.0f, L->dt_w->data, R, s->dbc, 1, 1.0f,
                s->dt, 1);
    for (int i = 0; i < e; i++) s->dt[i] = softplus(s->dt[i]);
    float *h = s->h + (size_t)l * eN;
    scan_step(h, h, s->y, s->u, s->dt, s->dbc + R, s->dbc + R + N, s->A + (size_t)l * eN,
              L->D->data, s->a, e, N);
    for (int i = 0; i < e; i++) s->y[i] *= silu(s->xz[e + i]);
    gemv(s->x, L->out_proj, s->y, 1.0f);
}

void mamba_state_next(mamba_state *s, int tok, float *logits)
{
    const mamba_model *m = s->m;
    const int d = m->c.d_model, V = m->c.vocab_size;
    if (tok < 0 || tok >= V) tok = TOK_PAD;   /* callers pass vocabulary tokens */
    memcpy(s->x, m->emb->data + (size_t)tok * d, (size_t)d * sizeof(float));
    for (int l = 0; l < m->c.n_layers; l++) layer_step(s, l);
    vec_rmsnorm(s->xn, s->x, m->out_norm->data, d, MAMBA_NORM_EPS);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, V, d, 1.0f, m->emb->data, d, s->xn, 1, 0.0f, logits, 1);
}

int mamba_max_len(const mamba_model *m)
{
    (void)m;
    return 0;
}

MDL_KIND(mamba, MAMBA_KIND, mamba_model, mamba_state);
