/* rnn.c - the recurrent LM: config, parameters, the fused sequence op of a
 * layer, the training graph and generation; see rnn.h.
 *
 * The layer op, over a packed batch (rnn_pack) of N rows, with X (N, d) the
 * layer's input, H (N, d) its output, W_g = [Wx_g | Wh_g] (d, 2d) per gate:
 *   forward   A_g = X Wx_g^T + b_g for all rows at once (one GEMM per gate),
 *             then step by step, with P the state before the step:
 *               rnn: H_s = tanh(A_s + P Wh^T)
 *               gru: Z_s = sigmoid(A_z,s + P Wh_z^T), R_s = sigmoid(A_r,s + P Wh_r^T),
 *                    RH_s = R_s * P, HH_s = tanh(A_h,s + RH_s Wh_h^T),
 *                    H_s = P + Z_s * (HH_s - P)
 *   backward  step by step in reverse, g = dH_s (already holding what later
 *             steps sent back):
 *               rnn: dA = g * (1 - H^2);                    dP += dA Wh
 *               gru: dA_z = g * (HH - P) * Z (1 - Z),  dA_h = g * Z * (1 - HH^2),
 *                    dRH = dA_h Wh_h,  dA_r = dRH * P * R (1 - R),
 *                    dP += g * (1 - Z) + dRH * R + dA_z Wh_z + dA_r Wh_r
 *             then for all rows at once: dWx_g += dA_g^T X, db_g += sums of
 *             dA_g, dX += dA_g Wx_g, dWh_g += dA_g^T P (gru's Wh_h: RH).
 * The state before step 0 is h0 (its gradient is the column sum of dP) or
 * a carried state, a constant.
 */
#include "rnn.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "vec.h"

/* ---- config ---------------------------------------------------------- */

static const char *const cell_names[] = { "rnn", "gru", NULL };
static const char *const dropout_mode_names[] = { "standard", "variational", NULL };

const char *rnn_cell_name(rnn_cell c) { return c == RNN_CELL_GRU ? "gru" : "rnn"; }

/* The index of word s in the NULL-terminated names, -1 when absent. */
static int word_index(const char *const *names, const char *s)
{
    for (int i = 0; s && names[i]; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

int rnn_cell_parse(const char *s) { return word_index(cell_names, s); }

int rnn_n_gates(rnn_cell c) { return c == RNN_CELL_GRU ? 3 : 1; }

err_code rnn_config_check(const rnn_config *c)
{
    if (!c) return err_set(ERR_ARG, "rnn config: NULL");
    if (c->vocab_size <= TOK_FIRST || c->vocab_size > RNN_MAX_VOCAB)
        return err_set(ERR_ARG, "vocab_size %d out of range (%d..%d)", c->vocab_size,
                       TOK_FIRST + 1, RNN_MAX_VOCAB);
    if (c->cell != RNN_CELL_RNN && c->cell != RNN_CELL_GRU)
        return err_set(ERR_ARG, "cell must be rnn or gru");
    if (c->d_model < 1 || c->d_model > RNN_MAX_DIM)
        return err_set(ERR_ARG, "d_model %d out of range (1..%d)", c->d_model, RNN_MAX_DIM);
    if (c->n_layers < 1 || c->n_layers > RNN_MAX_LAYERS)
        return err_set(ERR_ARG, "n_layers %d out of range (1..%d)", c->n_layers, RNN_MAX_LAYERS);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return err_set(ERR_ARG, "dropout %g out of range [0, 1)", (double)c->dropout);
    if (c->dropout_mode != RNN_DROPOUT_STANDARD && c->dropout_mode != RNN_DROPOUT_VARIATIONAL)
        return err_set(ERR_ARG, "dropout_mode must be standard or variational");
    return ERR_OK;
}

/* The float as the shortest decimal that reads back to it, so that the
 * JSON shows 0.1 rather than 0.10000000149011612. */
static double short_double(float f)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", (double)f);
    return strtod(buf, NULL);
}

err_code rnn_config_to_json(const rnn_config *c, char **json)
{
    *json = NULL;
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size) &&
              cJSON_AddStringToObject(o, "cell", rnn_cell_name(c->cell)) &&
              cJSON_AddNumberToObject(o, "d_model", c->d_model) &&
              cJSON_AddNumberToObject(o, "n_layers", c->n_layers) &&
              cJSON_AddNumberToObject(o, "dropout", short_double(c->dropout)) &&
              (c->dropout_mode == RNN_DROPOUT_STANDARD ||
               cJSON_AddStringToObject(o, "dropout_mode", dropout_mode_names[c->dropout_mode])) &&
              (!c->text || cJSON_AddTrueToObject(o, "text"));
    if (ok) *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return *json ? ERR_OK : err_set(ERR_NOMEM, "cannot build the rnn config JSON");
}

static err_code json_int(const cJSON *o, const char *key, int *out)
{
    return mdl_config_int(o, "rnn", key, out);
}

err_code rnn_config_from_json(rnn_config *c, const char *json)
{
    cJSON *o = mdl_config_object(json, RNN_KIND);
    if (!o) return ERR_FORMAT;
    rnn_config r = RNN_DEFAULTS;
    err_code rc = ERR_OK;
    const cJSON *cell = cJSON_GetObjectItemCaseSensitive(o, "cell");
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(o, "dropout");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(o, "dropout_mode");
    if ((rc = json_int(o, "vocab_size", &r.vocab_size)) || (rc = json_int(o, "d_model", &r.d_model)) ||
        (rc = json_int(o, "n_layers", &r.n_layers))) {
        /* rc set */
    } else if (!cJSON_IsString(cell) || rnn_cell_parse(cell->valuestring) < 0) {
        rc = err_set(ERR_FORMAT, "rnn config: 'cell' must be \"rnn\" or \"gru\"");
    } else if (!cJSON_IsNumber(drop)) {
        rc = err_set(ERR_FORMAT, "rnn config: 'dropout' is missing or not a number");
    } else if (mode && word_index(dropout_mode_names, cJSON_GetStringValue(mode)) < 0) {
        rc = err_set(ERR_FORMAT, "rnn config: 'dropout_mode' must be \"standard\" or \"variational\"");
    } else if (text && !cJSON_IsBool(text)) {
        rc = err_set(ERR_FORMAT, "rnn config: 'text' must be true or false");
    } else {
        r.cell = (rnn_cell)rnn_cell_parse(cell->valuestring);
        r.dropout = (float)drop->valuedouble;
        if (mode) r.dropout_mode = (rnn_dropout_mode)word_index(dropout_mode_names, mode->valuestring);
        r.text = cJSON_IsTrue(text);
        if (rnn_config_check(&r)) rc = err_prefix(ERR_FORMAT, "rnn config");
    }
    cJSON_Delete(o);
    if (!rc) *c = r;
    return rc;
}

/* ---- parameters ------------------------------------------------------ */

static const char *const gru_gate_names[] = { "fc_z", "fc_r", "fc_h_hat" };

/* Declare one parameter named printf-style; NULL with err_set on failure. */
static tensor *param(rnn_model *m, bool decay, int ndim, const int *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static tensor *param(rnn_model *m, bool decay, int ndim, const int *shape, const char *fmt, ...)
{
    char name[TN_NAME_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return tn_param(&m->p, name, decay, ndim, shape);
}

static err_code declare_layer(rnn_model *m, int i)
{
    int d = m->c.d_model;
    rnn_layer *L = &m->layer[i];
    if (!(L->h0 = param(m, false, 1, (int[]){ d }, "core.layers.%d.h0", i))) return ERR_ARG;
    for (int g = 0; g < rnn_n_gates(m->c.cell); g++) {
        const char *gate = m->c.cell == RNN_CELL_GRU ? gru_gate_names[g] : "fc";
        L->w[g] = param(m, true, 2, (int[]){ d, 2 * d }, "core.layers.%d.cell.%s.weight", i, gate);
        L->b[g] = param(m, false, 1, (int[]){ d }, "core.layers.%d.cell.%s.bias", i, gate);
        if (!L->w[g] || !L->b[g]) return ERR_ARG;
    }
    return ERR_OK;
}

/* Check c and declare the parameters (not allocated yet). */
static err_code declare(rnn_model *m, const rnn_config *c)
{
    memset(m, 0, sizeof *m);
    tn_params_init(&m->p);
    err_code rc = rnn_config_check(c);
    if (rc) return rc;
    m->c = *c;
    int d = c->d_model;
    if (!(m->emb = tn_param(&m->p, "embedding.weight", true, 2, (int[]){ c->vocab_size, d })))
        return ERR_ARG;
    for (int i = 0; i < c->n_layers; i++)
        if ((rc = declare_layer(m, i))) return rc;
    return (m->out_norm = tn_param(&m->p, "out_norm.weight", false, 1, (int[]){ d })) ? ERR_OK
                                                                                       : ERR_ARG;
}

MDL_REPLICA(rnn, rnn_model, declare)

err_code rnn_init(rnn_model *m, const rnn_config *c)
{
    err_code rc = declare(m, c);
    return rc ? rc : tn_params_alloc(&m->p);
}

static void fill_uniform(tensor *t, rng *r, float bound)
{
    for (int i = 0; i < t->n; i++) t->data[i] = (float)((2.0 * rng_uniform(r) - 1.0) * bound);
}

void rnn_init_weights(rnn_model *m, rng *r)
{
    if (!m || !m->p.data) return;
    float bound = 1.0f / sqrtf(2.0f * (float)m->c.d_model);   /* nn.Linear, fan_in 2d */
    /* The embedding is also the lm_head: nn.Linear(d, V)'s uniform(±1/√d), as when
     * a notebook ties embedding.weight = lm_head.weight.  nn.Embedding's normal(0, 1)
     * would make the initial logits (unit-RMS state · rows of norm √d) ~√d too large. */
    fill_uniform(m->emb, r, 1.0f / sqrtf((float)m->c.d_model));
    for (int i = 0; i < m->c.n_layers; i++) {
        rnn_layer *L = &m->layer[i];
        tn_fill(L->h0, 0.0f);
        for (int g = 0; g < rnn_n_gates(m->c.cell); g++) {
            fill_uniform(L->w[g], r, bound);
            fill_uniform(L->b[g], r, bound);
        }
    }
    tn_fill(m->out_norm, 1.0f);
}

err_code rnn_load(rnn_model *m, const ck_file *f, const char *path, bool optim)
{
    memset(m, 0, sizeof *m);
    const char *json;
    rnn_config c;
    err_code rc = mdl_read_meta(f, path, RNN_KIND, &json, NULL);
    if (rc) return rc;
    if ((rc = rnn_config_from_json(&c, json)) || (rc = declare(m, &c)) ||
        (rc = tn_params_alloc_load(&m->p, f, optim))) {
        rnn_free(m);
        return err_prefix(rc, path);
    }
    return ERR_OK;
}

void rnn_free(rnn_model *m)
{
    if (!m) return;
    tn_params_free(&m->p);
    memset(m, 0, sizeof *m);
}

err_code rnn_save(const rnn_model *m, const txt_vocab *v, const char *path)
{
    char *config = NULL;
    err_code rc = rnn_config_to_json(&m->c, &config);
    if (!rc) rc = mdl_save_params(path, RNN_KIND, config, v, &m->p);
    free(config);
    return rc;
}

int rnn_d_model(const rnn_model *m) { return m ? m->c.d_model : 0; }
int rnn_n_layers(const rnn_model *m) { return m ? m->c.n_layers : 0; }
int rnn_vocab_size(const rnn_model *m) { return m ? m->c.vocab_size : 0; }

/* ---- packed batches -------------------------------------------------- */

static int *arena_ints(ag_tape *t, size_t n) { return ag_alloc(t, (n ? n : 1) * sizeof(int)); }

rnn_pack *rnn_pack_batch(ag_tape *t, const int *x, const int *y, int B, int T)
{
    rnn_pack *p = ag_alloc(t, sizeof *p);
    memset(p, 0, sizeof *p);
    p->B = B;
    p->row = arena_ints(t, (size_t)B);
    p->len = arena_ints(t, (size_t)B);
    int *len_of_row = arena_ints(t, (size_t)B);
    for (int b = 0; b < B; b++) {
        int len = 0;
        for (int s = 0; s < T; s++)
            if (y[(size_t)b * T + s] != TOK_PAD) len = s + 1;
        len_of_row[b] = len;
        if (len > p->T) p->T = len;
    }
    /* counting sort by length, longest first, ties in row order */
    int *start = arena_ints(t, (size_t)p->T + 2);
    memset(start, 0, ((size_t)p->T + 2) * sizeof *start);
    for (int b = 0; b < B; b++) start[p->T - len_of_row[b] + 1]++;
    for (int k = 1; k <= p->T + 1; k++) start[k] += start[k - 1];
    for (int b = 0; b < B; b++) {
        int k = start[p->T - len_of_row[b]]++;
        p->row[k] = b;
        p->len[k] = len_of_row[b];
    }
    p->n = arena_ints(t, (size_t)p->T);
    p->off = arena_ints(t, (size_t)p->T + 1);
    p->off[0] = 0;
    for (int s = 0, k = B; s < p->T; s++) {
        while (k > 0 && p->len[k - 1] <= s) k--;
        p->n[s] = k;
        p->off[s + 1] = p->off[s] + k;
    }
    p->N = p->off[p->T];
    p->x = arena_ints(t, (size_t)p->N);
    p->y = arena_ints(t, (size_t)p->N);
    p->pos = arena_ints(t, (size_t)p->N);
    for (int s = 0; s < p->T; s++)
        for (int k = 0; k < p->n[s]; k++) {
            size_t src = (size_t)p->row[k] * T + s;
            p->x[p->off[s] + k] = x[src];
            p->y[p->off[s] + k] = y[src];
            p->pos[p->off[s] + k] = (int)src;
        }
    return p;
}

/* ---- the fused sequence op of one layer ------------------------------ */

/* Products with one half of a cell matrix W (d, 2d) (leading dimension
 * 2d): Wx = W (multiplies the input), Wh = W + d (multiplies the state). */
static void mul_wt(float *y, const float *x, const float *Wpart, int n, int d, float beta)
{   /* y (n, d) = beta y + x (n, d) Wpart^T */
    if (n > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, d, d, 1.0f, x, d, Wpart,
                    2 * d, beta, y, d);
}

static void mul_w(float *dx, const float *dy, const float *Wpart, int n, int d)
{   /* dx (n, d) += dy (n, d) Wpart */
    if (n > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, d, 1.0f, dy, d, Wpart,
                    2 * d, 1.0f, dx, d);
}

static void acc_dw(float *dWpart, const float *dy, const float *x, int n, int d)
{   /* dWpart (d, d) += dy (n, d)^T x (n, d) */
    if (n > 0)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, n, 1.0f, dy, d, x, d, 1.0f,
                    dWpart, 2 * d);
}

static void acc_colsum(float *restrict db, const float *restrict dy, int n, int d)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) db[j] += dy[(size_t)i * d + j];
}

typedef struct seq_op {
    const rnn_pack  *p;
    const rnn_layer *L;
    tensor  *X;                       /* (N, d) the layer's input */
    bool     learned_init;            /* state before step 0 = h0 (else a constant) */
    rnn_cell cell;
    int      d, n_gates;
    float   *init;                    /* (B, d) state before step 0, by rank */
    float   *a[RNN_MAX_GATES];        /* gru (N, d): Z, R, HH after activation */
    float   *rh;                      /* gru (N, d): R * P */
    float   *da[RNN_MAX_GATES];       /* (N, d) gradients of the pre-activations */
    float   *hprev;                   /* (N, d) P of every row */
    float   *dinit;                   /* (n[0], d) */
    float   *tmp;                     /* (n[0], d) gru: dRH of one step */
} seq_op;

static size_t rows_bytes(int rows, int d) { return ((size_t)(rows > 0 ? rows : 1)) * d * sizeof(float); }

/* The state before step s (its first n[s] rows), given the output H. */
static const float *state_before(const seq_op *s, const float *H, int step)
{
    return step ? H + (size_t)s->p->off[step - 1] * s->d : s->init;
}

static const float *weight(const seq_op *s, int g) { return s->L->w[g]->data; }

static void rnn_steps_forward(seq_op *s, float *H)
{
    const rnn_pack *p = s->p;
    int d = s->d;
    const float *Wh = weight(s, 0) + d;
    for (int step = 0; step < p->T; step++) {
        float *Hs = H + (size_t)p->off[step] * d;
        int n = p->n[step];
        mul_wt(Hs, state_before(s, H, step), Wh, n, d, 1.0f);
        for (size_t i = 0; i < (size_t)n * d; i++) Hs[i] = vec_tanhf(Hs[i]);
    }
}

static void gru_steps_forward(seq_op *s, float *H)
{
    const rnn_pack *p = s->p;
    int d = s->d;
    const float *Whz = weight(s, 0) + d, *Whr = weight(s, 1) + d, *Whh = weight(s, 2) + d;
    for (int step = 0; step < p->T; step++) {
        size_t o = (size_t)p->off[step] * d, cnt = (size_t)p->n[step] * d;
        int n = p->n[step];
        const float *restrict P = state_before(s, H, step);
        float *restrict Z = s->a[0] + o, *restrict R = s->a[1] + o, *restrict HH = s->a[2] + o;
        float *restrict RH = s->rh + o, *restrict Hs = H + o;
        mul_wt(Z, P, Whz, n, d, 1.0f);
        mul_wt(R, P, Whr, n, d, 1.0f);
        for (size_t i = 0; i < cnt; i++) {
            Z[i] = vec_sigmoidf(Z[i]);
            R[i] = vec_sigmoidf(R[i]);
            RH[i] = R[i] * P[i];
        }
        mul_wt(HH, RH, Whh, n, d, 1.0f);
        for (size_t i = 0; i < cnt; i++) {
            HH[i] = vec_tanhf(HH[i]);
            Hs[i] = P[i] + Z[i] * (HH[i] - P[i]);
        }
    }
}

/* Where the gradient of the state before step s goes. */
static float *state_grad(const seq_op *s, float *dH, int step)
{
    return step ? dH + (size_t)s->p->off[step - 1] * s->d : s->dinit;
}

static void rnn_steps_backward(seq_op *s, const float *H, float *dH)
{
    const rnn_pack *p = s->p;
    int d = s->d;
    const float *Wh = weight(s, 0) + d;
    for (int step = p->T - 1; step >= 0; step--) {
        size_t o = (size_t)p->off[step] * d, cnt = (size_t)p->n[step] * d;
        const float *restrict g = dH + o, *restrict Hs = H + o;
        float *restrict dA = s->da[0] + o;
        for (size_t i = 0; i < cnt; i++) dA[i] = g[i] * (1.0f - Hs[i] * Hs[i]);
        mul_w(state_grad(s, dH, step), dA, Wh, p->n[step], d);
    }
}

static void gru_steps_backward(seq_op *s, const float *H, float *dH)
{
    const rnn_pack *p = s->p;
    int d = s->d;
    const float *Whz = weight(s, 0) + d, *Whr = weight(s, 1) + d, *Whh = weight(s, 2) + d;
    for (int step = p->T - 1; step >= 0; step--) {
        size_t o = (size_t)p->off[step] * d, cnt = (size_t)p->n[step] * d;
        int n = p->n[step];
        const float *restrict g = dH + o, *restrict P = state_before(s, H, step);
        const float *restrict Z = s->a[0] + o, *restrict R = s->a[1] + o, *restrict HH = s->a[2] + o;
        float *restrict dZ = s->da[0] + o, *restrict dR = s->da[1] + o, *restrict dHH = s->da[2] + o;
        float *restrict dRH = s->tmp, *restrict dP = state_grad(s, dH, step);
        for (size_t i = 0; i < cnt; i++) {
            dZ[i] = g[i] * (HH[i] - P[i]) * Z[i] * (1.0f - Z[i]);
            dHH[i] = g[i] * Z[i] * (1.0f - HH[i] * HH[i]);
        }
        memset(dRH, 0, cnt * sizeof *dRH);
        mul_w(dRH, dHH, Whh, n, d);
        for (size_t i = 0; i < cnt; i++) {
            dR[i] = dRH[i] * P[i] * R[i] * (1.0f - R[i]);
            dP[i] += g[i] * (1.0f - Z[i]) + dRH[i] * R[i];
        }
        mul_w(dP, dZ, Whz, n, d);
        mul_w(dP, dR, Whr, n, d);
    }
}

static void seq_backward(ag_node *nd)
{
    seq_op *s = nd->saved;
    const rnn_pack *p = s->p;
    int d = s->d, N = p->N;
    tensor *X = s->X, *h0 = s->L->h0;
    float *H = nd->out->data, *dH = ag_grad(nd->out), *dX = ag_grad(X);

    memset(s->dinit, 0, rows_bytes(p->n[0], d));
    if (s->cell == RNN_CELL_GRU) gru_steps_backward(s, H, dH);
    else rnn_steps_backward(s, H, dH);

    for (int step = 0; step < p->T; step++)
        memcpy(s->hprev + (size_t)p->off[step] * d, state_before(s, H, step),
               (size_t)p->n[step] * d * sizeof(float));
    for (int g = 0; g < s->n_gates; g++) {
        tensor *W = s->L->w[g], *b = s->L->b[g];
        const float *state_in = s->cell == RNN_CELL_GRU && g == 2 ? s->rh : s->hprev;
        float *dW = ag_grad(W), *db = ag_grad(b);
        if (dW) {
            acc_dw(dW, s->da[g], X->data, N, d);
            acc_dw(dW + d, s->da[g], state_in, N, d);
        }
        if (db) acc_colsum(db, s->da[g], N, d);
        if (dX) mul_w(dX, s->da[g], W->data, N, d);
    }
    if (s->learned_init && h0->grad) acc_colsum(ag_grad(h0), s->dinit, p->n[0], d);
}

/* The state before step 0 of every rank: h0 broadcast, or rows of h_in.
 * (Rows of length 0 keep it unchanged: it is also their final state.) */
static float *initial_state(ag_tape *t, const rnn_pack *p, const tensor *h0, const float *h_in,
                            int d)
{
    float *init = ag_alloc(t, rows_bytes(p->B, d));
    for (int k = 0; k < p->B; k++)
        memcpy(init + (size_t)k * d, h_in ? h_in + (size_t)p->row[k] * d : h0->data,
               (size_t)d * sizeof(float));
    return init;
}

/* The state after each row's last step into h_out (B, d) by batch row. */
static void final_state(const rnn_pack *p, const float *H, const float *init, float *h_out, int d)
{
    for (int k = 0; k < p->B; k++) {
        int len = p->len[k];
        const float *src = len ? H + (size_t)(p->off[len - 1] + k) * d : init + (size_t)k * d;
        memcpy(h_out + (size_t)p->row[k] * d, src, (size_t)d * sizeof(float));
    }
}

/* One layer over the packed batch: X (N, d) -> H (N, d). */
static tensor *layer_op(ag_tape *t, const rnn_model *m, int l, tensor *X, const rnn_pack *p,
                        const float *h_in, float *h_out)
{
    if (!X) return NULL;
    const rnn_layer *L = &m->layer[l];
    int d = m->c.d_model, N = p->N, gates = rnn_n_gates(m->c.cell);
    tensor *H = ag_tensor2(t, N, d);
    if (!H) return NULL;
    seq_op *s = ag_alloc(t, sizeof *s);
    *s = (seq_op){ .p = p, .L = L, .X = X, .learned_init = !h_in, .cell = m->c.cell, .d = d,
                   .n_gates = gates };
    s->init = initial_state(t, p, L->h0, h_in, d);

    if (s->cell == RNN_CELL_GRU) {
        for (int g = 0; g < gates; g++) s->a[g] = ag_alloc(t, rows_bytes(N, d));
        s->rh = ag_alloc(t, rows_bytes(N, d));
    } else {
        s->a[0] = H->data;
    }
    for (int g = 0; g < gates; g++) {   /* input halves and biases, all steps at once */
        for (int i = 0; i < N; i++)
            memcpy(s->a[g] + (size_t)i * d, L->b[g]->data, (size_t)d * sizeof(float));
        mul_wt(s->a[g], X->data, L->w[g]->data, N, d, 1.0f);
    }
    if (s->cell == RNN_CELL_GRU) gru_steps_forward(s, H->data);
    else rnn_steps_forward(s, H->data);
    if (h_out) final_state(p, H->data, s->init, h_out, d);

    ag_node *nd = ag_record(t, s->cell == RNN_CELL_GRU ? "gru_seq" : "rnn_seq", seq_backward, H);
    if (nd) {   /* backward buffers */
        nd->saved = s;
        nd->in[0] = X;
        for (int g = 0; g < gates; g++) s->da[g] = ag_alloc(t, rows_bytes(N, d));
        s->hprev = ag_alloc(t, rows_bytes(N, d));
        s->dinit = ag_alloc(t, rows_bytes(p->T ? p->n[0] : 0, d));
        s->tmp = ag_alloc(t, rows_bytes(p->T ? p->n[0] : 0, d));
    }
    return H;
}

/* Variational dropout's factors (N, d) of a packed batch, mask `seed`:
 * packed row (step s, rank k) gets batch row b = p->row[k]'s factors,
 * op_keep at index b d + j, the same at every step. */
static float *sequence_keep(ag_tape *t, const rnn_pack *p, int d, float rate, uint64_t seed)
{
    float *by_rank = ag_alloc(t, rows_bytes(p->B, d)), *keep = ag_alloc(t, rows_bytes(p->N, d));
    for (int k = 0; k < p->B; k++)
        for (int j = 0; j < d; j++)
            by_rank[(size_t)k * d + j] = op_keep(seed, (uint64_t)p->row[k] * d + j, rate);
    for (int s = 0; s < p->T; s++)
        memcpy(keep + (size_t)p->off[s] * d, by_rank, (size_t)p->n[s] * d * sizeof *keep);
    return keep;
}

/* The config's dropout on x (N, d) of a packed batch, in its mode. */
static tensor *dropout(const rnn_model *m, ag_tape *t, const rnn_pack *p, tensor *x)
{
    if (m->c.dropout_mode == RNN_DROPOUT_STANDARD) return op_dropout(t, x, m->c.dropout);
    uint64_t seed = 0;
    const int drop = op_dropout_seed(t, m->c.dropout, &seed);
    if (drop <= 0 || !x) return drop < 0 ? NULL : x;
    return op_mask(t, x, sequence_keep(t, p, m->c.d_model, m->c.dropout, seed));
}

tensor *rnn_forward(const rnn_model *m, ag_tape *t, const rnn_pack *p, const float *h_in,
                    float *h_out)
{
    if (!m || !t || !p) {
        err_set(ERR_ARG, "rnn_forward: NULL argument");
        return NULL;
    }
    if (p->N == 0) {
        err_set(ERR_ARG, "rnn_forward: a batch without any target");
        return NULL;
    }
    size_t layer_state = (size_t)p->B * m->c.d_model;
    tensor *x = op_embedding(t, m->emb, p->x, p->N, 0, NULL);
    for (int l = 0; l < m->c.n_layers; l++) {
        x = dropout(m, t, p, x);
        x = layer_op(t, m, l, x, p, h_in ? h_in + l * layer_state : NULL,
                     h_out ? h_out + l * layer_state : NULL);
    }
    x = dropout(m, t, p, x);
    x = op_rmsnorm(t, x, m->out_norm, RNN_NORM_EPS);
    return op_linear(t, x, m->emb, NULL);
}

tensor *rnn_loss_state(const rnn_model *m, ag_tape *t, const ds_batch *b, const float *h_in,
                       float *h_out)
{
    if (!m || !t || !b) {
        err_set(ERR_ARG, "rnn_loss: NULL argument");
        return NULL;
    }
    rnn_pack *p = rnn_pack_batch(t, b->x, b->y, b->B, b->T);
    tensor *logits = rnn_forward(m, t, p, h_in, h_out);
    return logits ? op_batch_cross_entropy(t, logits, b, p->pos) : NULL;
}

tensor *rnn_loss(const rnn_model *m, ag_tape *t, const ds_batch *b)
{
    return rnn_loss_state(m, t, b, NULL, NULL);
}

/* ---- generation ------------------------------------------------------ */

struct rnn_state {
    const rnn_model *m;
    float *h;     /* (n_layers, d) */
    float *xh;    /* (2d) a cell's input [x; h] */
    float *a;     /* (3, d) gate activations */
    float *y;     /* (d) normalised top state */
};

rnn_state *rnn_state_new(const rnn_model *m)
{
    if (!m || !m->p.data) {
        err_set(ERR_ARG, "rnn_state_new: no model");
        return NULL;
    }
    size_t d = (size_t)m->c.d_model;
    rnn_state *s = malloc(sizeof *s);
    float *mem = malloc(((size_t)m->c.n_layers * d + 2 * d + 3 * d + d) * sizeof(float));
    if (!s || !mem) {
        free(s);
        free(mem);
        err_set(ERR_NOMEM, "cannot allocate an rnn state");
        return NULL;
    }
    *s = (rnn_state){ .m = m, .h = mem };
    s->xh = s->h + (size_t)m->c.n_layers * d;
    s->a = s->xh + 2 * d;
    s->y = s->a + 3 * d;
    rnn_state_start(s);
    return s;
}

void rnn_state_free(rnn_state *s)
{
    if (!s) return;
    free(s->h);
    free(s);
}

void rnn_state_start(rnn_state *s)
{
    if (!s) return;
    int d = s->m->c.d_model;
    for (int l = 0; l < s->m->c.n_layers; l++)
        memcpy(s->h + (size_t)l * d, s->m->layer[l].h0->data, (size_t)d * sizeof(float));
}

/* a (d) = W (d, 2d) xh + b */
static void cell_gemv(float *a, const tensor *W, const tensor *b, const float *xh, int d)
{
    memcpy(a, b->data, (size_t)d * sizeof *a);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, d, 2 * d, 1.0f, W->data, 2 * d, xh, 1, 1.0f, a, 1);
}

/* One cell step of layer L: h (d) updated from input x (d). */
static void cell_step(const rnn_state *s, const rnn_layer *L, const float *x, float *restrict h)
{
    int d = s->m->c.d_model;
    float *restrict xh = s->xh, *restrict z = s->a, *restrict r = s->a + d, *restrict hh = s->a + 2 * d;
    memcpy(xh, x, (size_t)d * sizeof *xh);
    memcpy(xh + d, h, (size_t)d * sizeof *xh);
    if (s->m->c.cell == RNN_CELL_RNN) {
        cell_gemv(h, L->w[0], L->b[0], xh, d);
        for (int j = 0; j < d; j++) h[j] = vec_tanhf(h[j]);
        return;
    }
    cell_gemv(z, L->w[0], L->b[0], xh, d);
    cell_gemv(r, L->w[1], L->b[1], xh, d);
    for (int j = 0; j < d; j++) {
        z[j] = vec_sigmoidf(z[j]);
        xh[d + j] = vec_sigmoidf(r[j]) * h[j];
    }
    cell_gemv(hh, L->w[2], L->b[2], xh, d);
    for (int j = 0; j < d; j++) h[j] += z[j] * (vec_tanhf(hh[j]) - h[j]);
}

void rnn_state_next(rnn_state *s, int tok, float *logits)
{
    const rnn_model *m = s->m;
    int d = m->c.d_model, V = m->c.vocab_size;
    if (tok < 0 || tok >= V) tok = TOK_PAD;   /* callers pass vocabulary tokens */
    const float *x = m->emb->data + (size_t)tok * d;
    for (int l = 0; l < m->c.n_layers; l++) {
        float *h = s->h + (size_t)l * d;
        cell_step(s, &m->layer[l], x, h);
        x = h;
    }
    vec_rmsnorm(s->y, x, m->out_norm->data, d, RNN_NORM_EPS);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, V, d, 1.0f, m->emb->data, d, s->y, 1, 0.0f, logits, 1);
}

int rnn_max_len(const rnn_model *m) { return 0; }

MDL_KIND(rnn, RNN_KIND, rnn_model, rnn_state);
