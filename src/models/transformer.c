/* transformer.c - the decoder-only Transformer LM; see transformer.h.
 *
 * Two forward paths share the parameters:
 *   - the graph, built from ops.h on a tape: the activations API runs it on
 *     whole (B, T) batches; the training loss on the positions that carry a
 *     target only, packed, with attention on buckets of similar lengths;
 *   - cached generation, one position at a time with plain loops over
 *     preallocated buffers and a key/value cache, so a name costs O(n) block
 *     evaluations and no allocation.
 * The unit tests check that all of them give the same logits and losses.
 */
#include "transformer.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "text.h"
#include "vec.h"

/* ---- Config ------------------------------------------------------------- */

err_code tf_config_check(const tf_config *c)
{
    if (c->vocab_size < TOK_FIRST + 1 || c->vocab_size > TF_MAX_VOCAB)
        return err_set(ERR_ARG, "vocab_size %d out of range [%d, %d]", c->vocab_size,
                       TOK_FIRST + 1, TF_MAX_VOCAB);
    if (c->d_model < 1 || c->d_model > TF_MAX_DIM)
        return err_set(ERR_ARG, "d_model %d out of range [1, %d]", c->d_model, TF_MAX_DIM);
    if (c->n_heads < 1 || c->n_heads > c->d_model || c->d_model % c->n_heads != 0)
        return err_set(ERR_ARG, "n_heads %d does not divide d_model %d", c->n_heads, c->d_model);
    if (c->n_layers < 1 || c->n_layers > TF_MAX_LAYERS)
        return err_set(ERR_ARG, "n_layers %d out of range [1, %d]", c->n_layers, TF_MAX_LAYERS);
    if (c->max_len < 2 || c->max_len > TF_MAX_LEN)
        return err_set(ERR_ARG, "max_len %d out of range [2, %d]", c->max_len, TF_MAX_LEN);
    const char *rate_names[] = { "dropout", "attn_dropout", "emb_dropout" };
    const float rates[] = { c->dropout, c->attn_dropout, c->emb_dropout };
    for (int i = 0; i < 3; i++)
        if (!(rates[i] >= 0.0f && rates[i] < 1.0f))
            return err_set(ERR_ARG, "%s %g out of range [0, 1)", rate_names[i], (double)rates[i]);
    return ERR_OK;
}

/* ",\"key\":value" when value is not 0, else "": the members added after
 * the first version are written only when used, so that a config without
 * them stays byte for byte what it was. */
static void optional_member(char *buf, size_t size, const char *key, float value)
{
    if (value != 0.0f) snprintf(buf, size, ",\"%s\":%.9g", key, (double)value);
    else buf[0] = '\0';
}

err_code tf_config_to_json(const tf_config *c, char **json)
{
    char buf[320], attn[64], emb[64];
    optional_member(attn, sizeof attn, "attn_dropout", c->attn_dropout);
    optional_member(emb, sizeof emb, "emb_dropout", c->emb_dropout);
    int n = snprintf(buf, sizeof buf,
                     "{\"vocab_size\":%d,\"d_model\":%d,\"n_heads\":%d,\"n_layers\":%d,"
                     "\"max_len\":%d,\"dropout\":%.9g%s%s}",
                     c->vocab_size, c->d_model, c->n_heads, c->n_layers, c->max_len,
                     (double)c->dropout, attn, emb);
    *json = (n > 0 && (size_t)n < sizeof buf) ? strdup(buf) : NULL;
    return *json ? ERR_OK : err_set(ERR_NOMEM, "out of memory");
}

static err_code json_int(const cJSON *o, const char *key, int *out)
{
    return mdl_config_int(o, "transformer", key, out);
}

/* An optional number: *out unchanged when the member is absent. */
static err_code json_opt_real(const cJSON *o, const char *key, float *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (v && !cJSON_IsNumber(v)) return err_set(ERR_FORMAT, "transformer config: '%s' is not a number", key);
    if (v) *out = (float)v->valuedouble;
    return ERR_OK;
}

err_code tf_config_from_json(tf_config *c, const char *json)
{
    cJSON *o = mdl_config_object(json, TF_KIND);
    if (!o) return ERR_FORMAT;
    tf_config k = TF_DEFAULTS;
    err_code e = json_int(o, "vocab_size", &k.vocab_size);
    if (!e) e = json_int(o, "d_model", &k.d_model);
    if (!e) e = json_int(o, "n_heads", &k.n_heads);
    if (!e) e = json_int(o, "n_layers", &k.n_layers);
    if (!e) e = json_int(o, "max_len", &k.max_len);
    if (!e) e = json_opt_real(o, "dropout", &k.dropout);
    if (!e) e = json_opt_real(o, "attn_dropout", &k.attn_dropout);
    if (!e) e = json_opt_real(o, "emb_dropout", &k.emb_dropout);
    cJSON_Delete(o);
    if (!e && tf_config_check(&k)) e = err_prefix(ERR_FORMAT, "transformer config");
    if (!e) *c = k;
    return e;
}

/* ---- Parameters --------------------------------------------------------- */

static tensor *declare(tf_model *m, bool decay, int ndim, const int *shape, const char *fmt, int i)
{
    char name[TN_NAME_MAX];
    snprintf(name, sizeof name, fmt, i);
    return tn_param(&m->p, name, decay, ndim, shape);
}

/* Check c and declare the parameters (not allocated yet).  Matrices and
 * embeddings decay (as llama2.c / the notebooks' configure_optimizers);
 * norm weights do not. */
static err_code declare_all(tf_model *m, const tf_config *c)
{
    memset(m, 0, sizeof *m);
    err_code e = tf_config_check(c);
    if (e) return e;
    m->c = *c;
    tn_params_init(&m->p);
    const int d = c->d_model, h = 4 * c->d_model;
    const int vd[] = { c->vocab_size, d }, ld[] = { c->max_len, d }, dd[] = { d, d };
    const int hd[] = { h, d }, dh[] = { d, h }, v1[] = { d };
    bool ok = (m->emb = declare(m, true, 2, vd, "embedding.weight", 0)) &&
              (m->pe = declare(m, true, 2, ld, "core.PE.weight", 0));
    for (int i = 0; ok && i < c->n_layers; i++) {
        tf_layer *L = &m->layer[i];
        ok = (L->attn_norm = declare(m, false, 1, v1, "core.layers.%d.attention_norm.weight", i)) &&
             (L->wq = declare(m, true, 2, dd, "core.layers.%d.sa.query_proj.weight", i)) &&
             (L->wk = declare(m, true, 2, dd, "core.layers.%d.sa.key_proj.weight", i)) &&
             (L->wv = declare(m, true, 2, dd, "core.layers.%d.sa.value_proj.weight", i)) &&
             (L->wo = declare(m, true, 2, dd, "core.layers.%d.sa.c_proj.weight", i)) &&
             (L->mlp_norm = declare(m, false, 1, v1, "core.layers.%d.mlp_norm.weight", i)) &&
             (L->fc1 = declare(m, true, 2, hd, "core.layers.%d.mlp.fc_1.weight", i)) &&
             (L->fc2 = declare(m, true, 2, dh, "core.layers.%d.mlp.fc_2.weight", i)) &&
             (L->fc3 = declare(m, true, 2, hd, "core.layers.%d.mlp.fc_3.weight", i));
    }
    ok = ok && (m->out_norm = declare(m, false, 1, v1, "out_norm.weight", 0));
    return ok ? ERR_OK : ERR_ARG;   /* tn_param recorded the message */
}

MDL_REPLICA(tf, tf_model, declare_all)

err_code tf_init(tf_model *m, const tf_config *c)
{
    err_code e = declare_all(m, c);
    return e ? e : tn_params_alloc(&m->p);
}

void tf_init_weights(tf_model *m, rng *r)
{
    const float std = 0.02f, std_out = 0.02f / sqrtf(2.0f * (float)m->c.n_layers);
    tn_fill_normal(m->emb, r, 0.0f, std);
    tn_fill_normal(m->pe, r, 0.0f, std);
    for (int i = 0; i < m->c.n_layers; i++) {
        tf_layer *L = &m->layer[i];
        tn_fill(L->attn_norm, 1.0f);
        tn_fill_normal(L->wq, r, 0.0f, std);
        tn_fill_normal(L->wk, r, 0.0f, std);
        tn_fill_normal(L->wv, r, 0.0f, std);
        tn_fill_normal(L->wo, r, 0.0f, std_out);
        tn_fill(L->mlp_norm, 1.0f);
        tn_fill_normal(L->fc1, r, 0.0f, std);
        tn_fill_normal(L->fc2, r, 0.0f, std);
        tn_fill_normal(L->fc3, r, 0.0f, std_out);
    }
    tn_fill(m->out_norm, 1.0f);
}

err_code tf_load(tf_model *m, const ck_file *f, const char *path, bool optim)
{
    memset(m, 0, sizeof *m);
    const char *json;
    tf_config c;
    err_code e = mdl_read_meta(f, path, TF_KIND, &json, NULL);
    if (e) return e;
    if ((e = tf_config_from_json(&c, json))) return err_prefix(e, path);
    if ((e = declare_all(m, &c)) || (e = tn_params_alloc_load(&m->p, f, optim))) {
        tf_free(m);
        return err_prefix(e, path);
    }
    return ERR_OK;
}

static void step_free(tf_step *w);

void tf_free(tf_model *m)
{
    if (!m) return;
    tn_params_free(&m->p);
    step_free(m->step);
    m->step = NULL;
}

err_code tf_save(const tf_model *m, const txt_vocab *v, const char *path)
{
    char *config = NULL;
    err_code e = tf_config_to_json(&m->c, &config);
    if (!e) e = mdl_save_params(path, TF_KIND, config, v, &m->p);
    free(config);
    return e;
}

/* ---- Training graph ----------------------------------------------------- */

/* The positions a graph computes and how attention sees them.
 *
 * Activations are (n, d): one row per computed position, of token tok[i]
 * at position pos[i] of its sequence.  Attention runs on a grid of
 * `size` rows made of buckets: bucket j holds B sequences of T positions
 * at grid rows [off, off + B*T), and the packed rows [first, first + count)
 * sit at grid rows rows[i].
 *
 * The activations API computes the whole (B, T) batch as one bucket, in
 * order (rows NULL: the grid is the activations).  The training loss
 * computes each sequence only up to its last target, and groups sequences
 * of similar lengths into buckets of TF_BUCKET_ROWS with their own T: on
 * villes batches most of a (B, T) batch is padding, and attention costs
 * grow with T.  Padding after a sequence's last target never changes a
 * counted loss (attention is causal), so the loss is the same.
 *
 * The dropout masks addressed by position (op_keep) name a sequence by its
 * row in the batch (seq) and positions in the batch's width T, so that
 * both grids drop the same entries. */
enum { TF_BUCKET_ROWS = 16 };

/* B sequences, those of seq[seq0 ..] in the grid's seq. */
typedef struct bucket { int B, T, off, first, count, seq0; } bucket;

typedef struct grid {
    int           n, size, n_buckets;
    int           T;                  /* the batch's width */
    const int    *tok, *pos, *rows;   /* n each; rows NULL: grid row i = activation row i */
    const int    *seq;                /* batch row of each bucketed sequence; NULL: in order */
    const bucket *bk;
} grid;

/* A view of rows [first, first + count) of the matrix x, sharing its data
 * and gradient (which is zeroed now: views of it cannot zero their rows
 * lazily without zeroing x's again). */
static tensor *row_view(ag_tape *t, tensor *x, int first, int count)
{
    if (!x) return NULL;
    const int d = tn_cols(x);
    ag_grad(x);
    tensor *v = ag_alloc(t, sizeof *v);
    *v = *x;
    v->ndim = 2;
    v->shape[0] = count;
    v->shape[1] = d;
    v->n = count * d;
    v->data += (size_t)first * d;
    if (v->grad) v->grad += (size_t)first * d;
    return v;
}

/* dx[i] += dout[rows[i]], written when dx is fresh (see ag_grad_fill) */
static void scatter_rows_backward(ag_node *nd)
{
    tensor *x = nd->in[0];
    const int d = tn_cols(x);
    const float *dy = ag_grad(nd->out);
    bool fresh;
    float *dX = ag_grad_fill(x, &fresh);
    for (int i = 0; i < tn_rows(x); i++) {
        const float *g = dy + (size_t)nd->idx[i] * d;
        float *dx = dX + (size_t)i * d;
        if (fresh) for (int j = 0; j < d; j++) dx[j] = 0.0f + g[j];
        else       for (int j = 0; j < d; j++) dx[j] += g[j];
    }
}

/* x (n, d) -> out (M, d): out[rows[i]] = x[i], every other row 0 (so that
 * attention over unused grid rows stays finite); rows distinct, in [0, M). */
static tensor *scatter_rows(ag_tape *t, tensor *x, const int *rows, int M)
{
    if (!x) return NULL;
    const int n = tn_rows(x), d = tn_cols(x);
    tensor *out = ag_tensor2(t, M, d);
    if (!out) return NULL;
    memset(out->data, 0, (size_t)M * d * sizeof *out->data);
    for (int i = 0; i < n; i++)
        memcpy(out->data + (size_t)rows[i] * d, x->data + (size_t)i * d, (size_t)d * sizeof *x->data);
    ag_node *nd = ag_record(t, "scatter_rows",
                            ag_needs_grad(t, x, NULL) ? scatter_rows_backward : NULL, out);
    if (nd) {
        nd->in[0] = x;
        nd->idx = rows;
    }
    return out;
}

/* What gather_buckets keeps for backward (the grid itself lives on the
 * caller's stack; its arrays are on the tape). */
typedef struct gather_state { grid g; tensor **outs; } gather_state;

static void gather_buckets_backward(ag_node *nd)
{
    const gather_state *s = nd->saved;
    const grid *g = &s->g;
    const int d = tn_cols(nd->out);
    const float *dy = ag_grad(nd->out);
    for (int j = 0; j < g->n_buckets; j++) {
        float *dst = ag_grad(s->outs[j]);
        if (!dst) continue;
        for (int p = g->bk[j].first; p < g->bk[j].first + g->bk[j].count; p++) {
            const float *src = dy + (size_t)p * d;
            float *dx = dst + (size_t)(g->rows[p] - g->bk[j].off) * d;
            for (int i = 0; i < d; i++) dx[i] += src[i];
        }
    }
}

/* The packed rows (n, d) of the buckets' attention outputs outs[j] (B_j, T_j, d). */
static tensor *gather_buckets(ag_tape *t, tensor **outs, const grid *g)
{
    bool need = false;
    for (int j = 0; j < g->n_buckets; j++) {
        if (!outs[j]) return NULL;
        need = need || ag_needs_grad(t, outs[j], NULL);
    }
    const int d = tn_cols(outs[0]);
    tensor *out = ag_tensor2(t, g->n, d);
    if (!out) return NULL;
    for (int j = 0; j < g->n_buckets; j++)
        for (int p = g->bk[j].first; p < g->bk[j].first + g->bk[j].count; p++)
            memcpy(out->data + (size_t)p * d, outs[j]->data + (size_t)(g->rows[p] - g->bk[j].off) * d,
                   (size_t)d * sizeof *out->data);
    ag_node *nd = ag_record(t, "gather_buckets", need ? gather_buckets_backward : NULL, out);
    if (nd) {
        gather_state *s = ag_alloc(t, sizeof *s);
        *s = (gather_state){ *g, outs };
        nd->saved = s;
    }
    return out;
}

/* The attention dropout factors (B, H, T, T) of bucket b, mask `seed`:
 * the factor of (sequence r, head h, query i, key j) is op_keep at index
 * ((r H + h) T' + i) T' + j, T' the batch's width.  Only j <= i is written,
 * all op_attention reads. */
static float *attention_keep(const tf_model *m, ag_tape *t, const grid *g, const bucket *b,
                             uint64_t seed)
{
    const int H = m->c.n_heads, T = b->T;
    const uint64_t W = (uint64_t)g->T;
    float *keep = ag_alloc(t, (size_t)b->B * H * T * T * sizeof *keep);
    for (int s = 0; s < b->B; s++) {
        const uint64_t r = (uint64_t)(g->seq ? g->seq[b->seq0 + s] : s);
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                float *row = keep + (((size_t)s * H + h) * T + i) * T;
                const uint64_t at = ((r * H + (uint64_t)h) * W + (uint64_t)i) * W;
                for (int j = 0; j <= i; j++) row[j] = op_keep(seed, at + (uint64_t)j, m->c.attn_dropout);
            }
    }
    return keep;
}

/* Causal attention of packed q, k, v (n, d), bucket by bucket, with
 * attention dropout when it applies. */
static tensor *grid_attention(const tf_model *m, ag_tape *t, tensor *q, tensor *k, tensor *v,
                              const grid *g)
{
    const int H = m->c.n_heads;
    uint64_t seed = 0;
    const int drop = op_dropout_seed(t, m->c.attn_dropout, &seed);
    if (drop < 0) return NULL;
    if (!g->rows)
        return op_attention(t, q, k, v, g->bk[0].B, g->bk[0].T, H,
                            drop ? attention_keep(m, t, g, &g->bk[0], seed) : NULL);
    q = scatter_rows(t, q, g->rows, g->size);
    k = scatter_rows(t, k, g->rows, g->size);
    v = scatter_rows(t, v, g->rows, g->size);
    tensor **outs = ag_alloc(t, (size_t)g->n_buckets * sizeof *outs);
    for (int j = 0; j < g->n_buckets; j++) {
        const bucket *b = &g->bk[j];
        const int rows = b->B * b->T;
        outs[j] = op_attention(t, row_view(t, q, b->off, rows), row_view(t, k, b->off, rows),
                               row_view(t, v, b->off, rows), b->B, b->T, H,
                               drop ? attention_keep(m, t, g, b, seed) : NULL);
    }
    return gather_buckets(t, outs, g);
}

/* x (n, d) -> x + dropout(c_proj(attention(RMSNorm(x)))) */
static tensor *attention_block(const tf_model *m, ag_tape *t, const tf_layer *L, tensor *x,
                               const grid *g)
{
    tensor *n = op_rmsnorm(t, x, L->attn_norm, TF_NORM_EPS);
    tensor *q = op_linear(t, n, L->wq, NULL);
    tensor *k = op_linear(t, n, L->wk, NULL);
    tensor *v = op_linear(t, n, L->wv, NULL);
    tensor *a = grid_attention(m, t, q, k, v, g);
    tensor *o = op_dropout(t, op_linear(t, a, L->wo, NULL), m->c.dropout);
    return op_add(t, x, o);
}

/* x (n, d) -> x + dropout(fc_2(silu(fc_1 h) * fc_3 h)), h = RMSNorm(x) */
static tensor *mlp_block(const tf_model *m, ag_tape *t, const tf_layer *L, tensor *x)
{
    tensor *n = op_rmsnorm(t, x, L->mlp_norm, TF_NORM_EPS);
    tensor *g = op_swiglu(t, op_linear(t, n, L->fc1, NULL), op_linear(t, n, L->fc3, NULL));
    tensor *o = op_dropout(t, op_linear(t, g, L->fc2, NULL), m->c.dropout);
    return op_add(t, x, o);
}

/* Layers from+1 .. to on the residual x. */
static tensor *run_blocks(const tf_model *m, ag_tape *t, tensor *x, int from, int to, const grid *g)
{
    for (int i = from; i < to; i++) {
        x = attention_block(m, t, &m->layer[i], x, g);
        x = mlp_block(m, t, &m->layer[i], x);
    }
    return x;
}

/* Embedding dropout's factors (n, d) for the grid's tokens, mask `seed`:
 * token type v is kept or dropped as a whole, by op_keep at index v. */
static float *token_keep(const tf_model *m, ag_tape *t, const grid *g, uint64_t seed)
{
    const int d = m->c.d_model;
    float *keep = ag_alloc(t, (size_t)g->n * d * sizeof *keep);
    for (int i = 0; i < g->n; i++) {
        const float f = op_keep(seed, (uint64_t)g->tok[i], m->c.emb_dropout);
        for (int j = 0; j < d; j++) keep[(size_t)i * d + j] = f;
    }
    return keep;
}

/* dropout(emb_dropout(emb[tok]) + PE[pos]) at the grid's positions:
 * (B, T, d) for a whole batch, (n, d) when packed. */
static tensor *embed(const tf_model *m, ag_tape *t, const grid *g)
{
    const int d = m->c.d_model;
    const int full[] = { g->bk[0].B, g->bk[0].T, d }, packed[] = { g->n, d };
    const int ndim = g->rows ? 2 : 3;
    const int *shape = g->rows ? packed : full;
    tensor *e = op_embedding(t, m->emb, g->tok, g->n, ndim, shape);
    uint64_t seed = 0;
    const int drop = op_dropout_seed(t, m->c.emb_dropout, &seed);
    if (drop < 0) return NULL;
    if (drop) e = op_mask(t, e, token_keep(m, t, g, seed));
    tensor *p = op_embedding(t, m->pe, g->pos, g->n, ndim, shape);
    return op_dropout(t, op_add(t, e, p), m->c.dropout);
}

/* logits = RMSNorm(x; out_norm) . emb^T (lm_head tied to the embedding) */
static tensor *lm_head(const tf_model *m, ag_tape *t, tensor *x)
{
    return op_linear(t, op_rmsnorm(t, x, m->out_norm, TF_NORM_EPS), m->emb, NULL);
}

static err_code check_rows(const tf_model *m, int B, int T)
{
    if (B < 1 || T < 1 || T > m->c.max_len)
        return err_set(ERR_ARG, "a batch of %d x %d tokens does not fit the transformer (max_len %d)",
                       B, T, m->c.max_len);
    return ERR_OK;
}

/* The whole batch x (B, T), in order, as one bucket (x NULL: no embedding to compute). */
static grid whole_grid(ag_tape *t, const int *x, int B, int T)
{
    bucket *bk = ag_alloc(t, sizeof *bk);
    *bk = (bucket){ .B = B, .T = T, .off = 0, .first = 0, .count = B * T };
    grid g = { .n = B * T, .size = B * T, .n_buckets = 1, .T = T, .tok = x, .bk = bk };
    if (x) {
        int *pos = ag_alloc(t, (size_t)B * T * sizeof *pos);
        for (int i = 0; i < B * T; i++) pos[i] = i % T;
        g.pos = pos;
    }
    return g;
}

tensor *tf_residual(const tf_model *m, ag_tape *t, const int *x, int B, int T, int L)
{
    if (check_rows(m, B, T)) return NULL;
    if (L < 0 || L > m->c.n_layers) {
        err_set(ERR_ARG, "layer %d out of range [0, %d]", L, m->c.n_layers);
        return NULL;
    }
    const grid g = whole_grid(t, x, B, T);
    return run_blocks(m, t, embed(m, t, &g), 0, L, &g);
}

tensor *tf_logits_from(const tf_model *m, ag_tape *t, tensor *x, int L, int B, int T)
{
    if (!x || check_rows(m, B, T)) return NULL;
    if (L < 0 || L > m->c.n_layers || x->n != B * T * m->c.d_model) {
        err_set(ERR_ARG, "residual stream (%d values) after layer %d does not fit the transformer",
                x->n, L);
        return NULL;
    }
    const grid g = whole_grid(t, NULL, B, T);
    return lm_head(m, t, run_blocks(m, t, x, L, m->c.n_layers, &g));
}

tensor *tf_forward(const tf_model *m, ag_tape *t, const int *x, int B, int T)
{
    tensor *h = tf_residual(m, t, x, B, T, 0);
    return h ? tf_logits_from(m, t, h, 0, B, T) : NULL;
}

/* Sequence r of b computed up to its last non-pad target. */
static int used_len(const ds_batch *b, int r)
{
    int len = b->T;
    while (len > 0 && b->y[r * b->T + len - 1] == TOK_PAD) len--;
    return len;
}

/* Sequences sorted by used length (insertion sort: B is small), the empty
 * ones dropped; returns how many remain in order[]. */
static int sort_by_length(const ds_batch *b, int *len, int *order)
{
    int n = 0;
    for (int r = 0; r < b->B; r++) {
        len[r] = used_len(b, r);
        if (len[r] == 0) continue;
        int i = n++;
        for (; i > 0 && len[order[i - 1]] > len[r]; i--) order[i] = order[i - 1];
        order[i] = r;
    }
    return n;
}

/* The packed, bucketed grid of a training batch and the batch position of
 * each of its grid.n targets. */
static grid loss_grid(ag_tape *t, const ds_batch *b, const int **targets)
{
    const int B = b->B, cap = B * b->T;
    int *len = ag_alloc(t, 2 * (size_t)B * sizeof *len), *order = len + B;
    int *tok = ag_alloc(t, 4 * (size_t)cap * sizeof *tok), *pos = tok + cap, *rows = pos + cap;
    int *y = rows + cap;
    const int n_seq = sort_by_length(b, len, order);
    const int n_buckets = (n_seq + TF_BUCKET_ROWS - 1) / TF_BUCKET_ROWS;
    bucket *bk = ag_alloc(t, (size_t)(n_buckets ? n_buckets : 1) * sizeof *bk);
    grid g = { .T = b->T, .tok = tok, .pos = pos, .rows = rows, .seq = order, .bk = bk,
               .n_buckets = n_buckets };
    for (int j = 0; j < n_buckets; j++) {
        const int s0 = j * TF_BUCKET_ROWS, s1 = s0 + TF_BUCKET_ROWS < n_seq ? s0 + TF_BUCKET_ROWS : n_seq;
        bucket *k = &bk[j];
        *k = (bucket){ .B = s1 - s0, .T = len[order[s1 - 1]], .off = g.size, .first = g.n, .seq0 = s0 };
        for (int s = s0; s < s1; s++) {
            const int r = order[s];
            for (int i = 0; i < len[r]; i++, g.n++) {
                tok[g.n] = b->x[r * b->T + i];
                pos[g.n] = i;
                rows[g.n] = k->off + (s - s0) * k->T + i;
                y[g.n] = r * b->T + i;
            }
        }
        k->count = g.n - k->first;
        g.size += k->B * k->T;
    }
    *targets = y;
    return g;
}

tensor *tf_loss(const tf_model *m, ag_tape *t, const ds_batch *b)
{
    if (check_rows(m, b->B, b->T)) return NULL;
    const int *pos;
    const grid g = loss_grid(t, b, &pos);
    if (g.n == 0) {   /* nothing counted: the loss is 0 */
        tensor *logits = tf_forward(m, t, b->x, b->B, b->T);
        return logits ? op_batch_cross_entropy(t, logits, b, NULL) : NULL;
    }
    tensor *h = run_blocks(m, t, embed(m, t, &g), 0, m->c.n_layers, &g);
    return op_batch_cross_entropy(t, lm_head(m, t, h), b, pos);
}

/* ---- Single vectors (generation, logit lens) ------------------------------ */

void tf_unembed(const tf_model *m, const float *x, float *logits)
{
    float xn[TF_MAX_DIM];
    const int V = m->c.vocab_size, d = m->c.d_model;
    vec_rmsnorm(xn, x, m->out_norm->data, d, TF_NORM_EPS);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, V, d, 1.0f, m->emb->data, d, xn, 1, 0.0f, logits, 1);
}

/* ---- Accessors ---------------------------------------------------------- */

int tf_d_model(const tf_model *m) { return m ? m->c.d_model : 0; }
int tf_n_layers(const tf_model *m) { return m ? m->c.n_layers : 0; }
int tf_n_heads(const tf_model *m) { return m ? m->c.n_heads : 0; }
int tf_max_len(const tf_model *m) { return m ? m->c.max_len : 0; }
int tf_vocab_size(const tf_model *m) { return m ? m->c.vocab_size : 0; }
const float *tf_out_norm_weight(const tf_model *m) { return m ? m->out_norm->data : NULL; }
const float *tf_embedding(const tf_model *m) { return m ? m->emb->data : NULL; }

/* ---- Cached generation -------------------------------------------------- */

/* The matrices of one layer in "panels" for products with a few vectors (the
 * lanes): a matrix seen as (in, out) = W^T is cut into panels of
 * VECMAT_BLOCK output columns (the last one narrower, stored with zero
 * columns up to a multiple of PANEL_PAD), each stored contiguously row by row, so that a product streams through a panel once
 * for LANE_BLOCK lanes and keeps their outputs in registers.  Q, K, V side
 * by side, and fc_1, fc_3 side by side, so that each group reads its input
 * once.  Q, K, V come out, and c_proj takes its input, in head-minor order
 * (head_minor), the attention's layout. */
enum { VECMAT_BLOCK = 64, LANE_BLOCK = 6, PANEL_PAD = 16 };

typedef struct step_layer {
    float *qkv;    /* (d, 3d): columns q | k | v */
    float *o;      /* (d, d) c_proj */
    float *fc13;   /* (d, 8d): columns fc_1 | fc_3 */
    float *fc2;    /* (4d, d) */
} step_layer;

/* Every matrix of a step in panels: built once for a model loaded for
 * generation (shared by its states), or by each state of another model. */
struct tf_step {
    step_layer layer[TF_MAX_LAYERS];
    float     *emb_t;    /* (d, V) the lm_head */
    float     *mem;      /* the one allocation behind the above */
};

struct tf_state {
    const tf_model *m;
    const tf_step  *w;         /* the model's panels, or own */
    tf_step        *own;       /* NULL when the model's are shared */
    int    pos;                /* tokens fed since start */
    float *k, *v;              /* (n_layers, max_len, d) cached keys and values, head-minor */
    float *x, *xn, *att;       /* (d) residual, normed residual, attention output (head-minor) */
    float *qkv;                /* (3d) query, key, value of the current position, head-minor */
    float *h13;                /* (8d) fc_1 | fc_3 outputs */
    float *w_att;              /* (max_len, n_heads) attention weights */
    float *mem;                /* the one allocation behind the buffers */
    tf_hook_fn hook;
    void      *hook_ctx;
    int        hook_layer;
};

/* The columns of the panel at o0 of an (in, out) panel matrix, and its
 * stored width (padded: the lm_head's 46 columns are three vector
 * registers, not two and a masked remainder). */
static int panel_width(int out, int o0) { return out - o0 < VECMAT_BLOCK ? out - o0 : VECMAT_BLOCK; }
static int panel_stride(int out, int o0)
{
    return (panel_width(out, o0) + PANEL_PAD - 1) / PANEL_PAD * PANEL_PAD;
}
/* Floats of an (in, out) panel matrix. */
static size_t panel_size(int in, int out)
{
    const int last = out - out % VECMAT_BLOCK;   /* the narrow panel, if any */
    return (size_t)in * (last + panel_stride(out, last));
}

/* Where entry (i, c) of an (in, out) matrix sits in its panel layout. */
static size_t panel_at(int in, int out, int i, int c)
{
    const int o0 = c - c % VECMAT_BLOCK;
    return (size_t)o0 * in + (size_t)i * panel_stride(out, o0) + (c - o0);
}

/* Channel c (of n = H dh, head c / dh, i = c % dh) in head-minor order,
 * i H + h: the attention's loops then run along the heads.  H = 1 leaves
 * the order as it is. */
static int head_minor(int c, int n, int H)
{
    const int dh = n / H;
    return c % dh * H + c / dh;
}

/* Columns [col, col + rows of W) of the (in, out) panel matrix P = W^T,
 * W (rows, in) in PyTorch layout; W's rows (outputs) and columns (inputs)
 * in head-minor order over H_out and H_in heads (1: as they are).  A
 * permutation of the outputs changes no bit of them: each is its own
 * chain of fmaf. */
static void panel_put(float *P, int out, int col, const tensor *W, int H_out, int H_in)
{
    const int rows = W->shape[0], in = W->shape[1];
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < in; i++)
            P[panel_at(in, out, head_minor(i, in, H_in), col + head_minor(r, rows, H_out))] =
                W->data[(size_t)r * in + i];
}

/* y[r][o0 + o] (+)= sum_i x[r][i] P[i][o] for `lanes` lanes and `width`
 * columns of one panel (stored `stride` wide).  Every output is one chain
 * of fmaf over i in order, from 0 or from y: the same bits whatever the
 * lanes beside it, so a name's logits do not depend on the batch it is
 * computed in.  Always inlined: each caller below is its own copy, with
 * its constants. */
static inline __attribute__((always_inline)) void
panel_lanes(float *const *y, const float *const *x, const float *restrict panel, int in, int o0,
            int lanes, int width, int stride, bool accumulate)
{
    float acc[LANE_BLOCK][VECMAT_BLOCK];
    for (int r = 0; r < lanes; r++) {   /* row by row: not gathered across the lanes */
        const float *restrict yr = y[r] + o0;
        for (int o = 0; o < stride; o++) acc[r][o] = accumulate && o < width ? yr[o] : 0.0f;
    }
    for (int i = 0; i < in; i++) {
        const float *restrict p = panel + (size_t)i * stride;
        for (int r = 0; r < lanes; r++) {
            const float xi = x[r][i];
            for (int o = 0; o < stride; o++) acc[r][o] = fmaf(xi, p[o], acc[r][o]);
        }
    }
    for (int r = 0; r < lanes; r++) memcpy(y[r] + o0, acc[r], (size_t)width * sizeof acc[r][0]);
}

/* A whole panel for LANE_BLOCK lanes: the constants let the compiler keep
 * the outputs in registers. */
static void panel_full(float *const *y, const float *const *x, const float *panel, int in, int o0,
                       bool accumulate)
{
    panel_lanes(y, x, panel, in, o0, LANE_BLOCK, VECMAT_BLOCK, VECMAT_BLOCK, accumulate);
}

/* A whole panel for one lane (a batch of one: steer, the last names). */
static void panel_one(float *const *y, const float *const *x, const float *panel, int in, int o0,
                      bool accumulate)
{
    panel_lanes(y, x, panel, in, o0, 1, VECMAT_BLOCK, VECMAT_BLOCK, accumulate);
}

/* A narrower panel (the lm_head's, V < 64) for LANE_BLOCK lanes. */
static void panel_narrow(float *const *y, const float *const *x, const float *panel, int in, int o0,
                         int width, int stride, bool accumulate)
{
    panel_lanes(y, x, panel, in, o0, LANE_BLOCK, width, stride, accumulate);
}

static void panel_part(float *const *y, const float *const *x, const float *panel, int in, int o0,
                       int lanes, int width, int stride, bool accumulate)
{
    if (lanes == 1 && width == VECMAT_BLOCK) panel_one(y, x, panel, in, o0, accumulate);
    else if (lanes == LANE_BLOCK) panel_narrow(y, x, panel, in, o0, width, stride, accumulate);
    else panel_lanes(y, x, panel, in, o0, lanes, width, stride, accumulate);
}

/* y[j] (out) (+)= x[j] (in) . P for the n lanes j, P an (in, out) panel
 * matrix read once per step: each panel, kept in cache, serves every lane. */
static void lanes_vecmat(float *const *y, float *const *x, int n, const float *P, int in, int out,
                         bool accumulate)
{
    const float *const *xc = (const float *const *)x;
    for (int o0 = 0; o0 < out; o0 += VECMAT_BLOCK) {
        const int width = panel_width(out, o0), stride = panel_stride(out, o0);
        const float *panel = P + (size_t)o0 * in;
        for (int r = 0; r < n; r += LANE_BLOCK) {
            const int lanes = n - r < LANE_BLOCK ? n - r : LANE_BLOCK;
            if (lanes == LANE_BLOCK && width == VECMAT_BLOCK)
                panel_full(y + r, xc + r, panel, in, o0, accumulate);
            else
                panel_part(y + r, xc + r, panel, in, o0, lanes, width, stride, accumulate);
        }
    }
}

/* Hand out n floats of an allocation. */
static float *take(float **cursor, size_t n)
{
    float *p = *cursor;
    *cursor += n;
    return p;
}

static void step_free(tf_step *w)
{
    if (!w) return;
    free(w->mem);
    free(w);
}

/* The panels of m's current weights; NULL with err_set. */
static tf_step *step_new(const tf_model *m)
{
    const size_t d = (size_t)m->c.d_model, L = (size_t)m->c.n_layers, V = (size_t)m->c.vocab_size;
    const int H = m->c.n_heads;
    tf_step *w = calloc(1, sizeof *w);
    const int di = (int)d;
    const size_t layer = panel_size(di, 3 * di) + panel_size(di, di) + panel_size(di, 8 * di) +
                         panel_size(4 * di, di);
    float *mem = w ? calloc(L * layer + panel_size(di, (int)V), sizeof *mem) : NULL;   /* zero padded */
    if (!mem) {
        free(w);
        err_set(ERR_NOMEM, "out of memory for a transformer's generation weights");
        return NULL;
    }
    w->mem = mem;
    for (size_t l = 0; l < L; l++) {
        const tf_layer *W = &m->layer[l];
        step_layer *S = &w->layer[l];
        S->qkv = take(&mem, panel_size(di, 3 * di));
        S->o = take(&mem, panel_size(di, di));
        S->fc13 = take(&mem, panel_size(di, 8 * di));
        S->fc2 = take(&mem, panel_size(4 * di, di));
        panel_put(S->qkv, 3 * (int)d, 0, W->wq, H, 1);
        panel_put(S->qkv, 3 * (int)d, (int)d, W->wk, H, 1);
        panel_put(S->qkv, 3 * (int)d, 2 * (int)d, W->wv, H, 1);
        panel_put(S->o, (int)d, 0, W->wo, 1, H);
        panel_put(S->fc13, 8 * (int)d, 0, W->fc1, 1, 1);
        panel_put(S->fc13, 8 * (int)d, 4 * (int)d, W->fc3, 1, 1);
        panel_put(S->fc2, (int)d, 0, W->fc2, 1, 1);
    }
    w->emb_t = take(&mem, panel_size(di, (int)V));
    panel_put(w->emb_t, (int)V, 0, m->emb, 1, 1);
    return w;
}

tf_state *tf_state_new(const tf_model *m)
{
    const size_t d = (size_t)m->c.d_model, L = (size_t)m->c.n_layers;
    const size_t cache = L * m->c.max_len * d;
    const size_t n = 2 * cache + 3 * d + 3 * d + 8 * d + (size_t)m->c.max_len * m->c.n_heads;
    tf_state *s = calloc(1, sizeof *s);
    /* Not cleared: every buffer is written before it is read, the caches
     * up to the position read (clearing 96 states was 2-3% of a run). */
    float *mem = s ? malloc(n * sizeof *mem) : NULL;
    if (s) s->own = mem && !m->step ? step_new(m) : NULL;
    if (!mem || (!m->step && !s->own)) {
        free(s);
        free(mem);
        err_set(ERR_NOMEM, "out of memory for a transformer state");
        return NULL;
    }
    s->m = m;
    s->w = m->step ? m->step : s->own;
    s->mem = mem;
    s->k = take(&mem, cache);
    s->v = take(&mem, cache);
    s->x = take(&mem, d);
    s->xn = take(&mem, d);
    s->att = take(&mem, d);
    s->qkv = take(&mem, 3 * d);
    s->h13 = take(&mem, 8 * d);
    s->w_att = take(&mem, (size_t)m->c.max_len * m->c.n_heads);
    return s;
}

void tf_state_free(tf_state *s)
{
    if (!s) return;
    step_free(s->own);
    free(s->mem);
    free(s);
}

void tf_state_start(tf_state *s) { s->pos = 0; }
int  tf_state_pos(const tf_state *s) { return s ? s->pos : 0; }

err_code tf_state_set_hook(tf_state *s, int layer, tf_hook_fn fn, void *ctx)
{
    if (fn && (layer < 0 || layer > s->m->c.n_layers))
        return err_set(ERR_ARG, "hook layer %d out of range [0, %d]", layer, s->m->c.n_layers);
    s->hook = fn;
    s->hook_ctx = ctx;
    s->hook_layer = layer;
    return ERR_OK;
}

/* Cache the key and value of qkv (3d: q | k | v) as position n - 1 of kc,
 * vc (max_len, d), then att (d) = causal attention of the query over the n
 * cached keys and values of the layer, every vector head-minor (channel i
 * of head h at i H + h): each loop runs along the H heads, H independent
 * chains side by side in a vector register.  w: (n, H) scores, then
 * weights.  Inline, so that the common shape (8 heads of 8) is unrolled. */
static inline void attend_heads(float *restrict att, float *restrict w, const float *restrict qkv,
                                float *restrict kc, float *restrict vc, int n, int H, int dh)
{
    const int d = H * dh;
    const float scale = 1.0f / sqrtf((float)dh), *q = qkv;
    memcpy(kc + (size_t)(n - 1) * d, qkv + d, (size_t)d * sizeof *kc);
    memcpy(vc + (size_t)(n - 1) * d, qkv + 2 * d, (size_t)d * sizeof *vc);
    float acc[TF_MAX_DIM], mx[TF_MAX_DIM], sum[TF_MAX_DIM];
    for (int h = 0; h < H; h++) {
        mx[h] = -INFINITY;
        sum[h] = 0.0f;
    }
    for (int t = 0; t < n; t++) {
        const float *k = kc + (size_t)t * d;
        for (int h = 0; h < H; h++) acc[h] = 0.0f;
        for (int i = 0; i < dh; i++)
            for (int h = 0; h < H; h++) acc[h] = fmaf(q[i * H + h], k[i * H + h], acc[h]);
        for (int h = 0; h < H; h++) w[(size_t)t * H + h] = acc[h] * scale;
    }
    for (int t = 0; t < n; t++)
        for (int h = 0; h < H; h++) mx[h] = w[(size_t)t * H + h] > mx[h] ? w[(size_t)t * H + h] : mx[h];
    for (int t = 0; t < n; t++)
        for (int h = 0; h < H; h++) {
            float *e = &w[(size_t)t * H + h];
            *e = vec_expf(*e - mx[h]);
            sum[h] += *e;
        }
    for (int c = 0; c < d; c++) att[c] = 0.0f;
    for (int t = 0; t < n; t++) {
        const float *v = vc + (size_t)t * d, *wt = w + (size_t)t * H;
        for (int i = 0; i < dh; i++)
            for (int h = 0; h < H; h++) att[i * H + h] = fmaf(wt[h], v[i * H + h], att[i * H + h]);
    }
    for (int i = 0; i < dh; i++)
        for (int h = 0; h < H; h++) att[i * H + h] /= sum[h];
}

/* Lane s at layer l, position pos: its key and value cached, s->att its attention. */
static void attend(tf_state *s, float *k, float *v, int pos)
{
    const int H = s->m->c.n_heads, dh = s->m->c.d_model / H;
    if (H == 8 && dh == 8) attend_heads(s->att, s->w_att, s->qkv, k, v, pos + 1, 8, 8);
    else attend_heads(s->att, s->w_att, s->qkv, k, v, pos + 1, H, dh);
}

/* The streams of one batched step that compute (the others have no room
 * left), and the rows of their buffers, for lanes_vecmat. */
enum { TF_LANES = MDL_BATCH_MAX };
typedef struct lanes {
    int       n;
    tf_state *s[TF_LANES];
    float    *x[TF_LANES], *xn[TF_LANES], *att[TF_LANES], *qkv[TF_LANES], *h13[TF_LANES];
    float    *logits[TF_LANES];
} lanes;

static void run_hooks(const lanes *B, int layer)
{
    for (int j = 0; j < B->n; j++) {
        tf_state *s = B->s[j];
        if (s->hook && s->hook_layer == layer)
            s->hook(s->hook_ctx, layer, s->pos - 1, s->x, s->m->c.d_model);
    }
}

static void norm_lanes(const lanes *B, const tensor *weight)
{
    for (int j = 0; j < B->n; j++)
        vec_rmsnorm(B->xn[j], B->x[j], weight->data, B->s[j]->m->c.d_model, TF_NORM_EPS);
}

/* Block l on every lane's residual at its position, caching keys and values. */
static void block_lanes(const lanes *B, int l)
{
    const tf_model *m = B->s[0]->m;
    const tf_layer *L = &m->layer[l];
    const step_layer *W = &B->s[0]->w->layer[l];
    const int d = m->c.d_model, h = 4 * d, n = B->n;

    norm_lanes(B, L->attn_norm);
    lanes_vecmat(B->qkv, B->xn, n, W->qkv, d, 3 * d, false);
    for (int j = 0; j < n; j++) {
        tf_state *s = B->s[j];
        const int pos = s->pos - 1;
        float *k = s->k + (size_t)l * m->c.max_len * d, *v = s->v + (size_t)l * m->c.max_len * d;
        attend(s, k, v, pos);
    }
    lanes_vecmat(B->x, B->att, n, W->o, d, d, true);              /* x += c_proj(att) */

    norm_lanes(B, L->mlp_norm);
    lanes_vecmat(B->h13, B->xn, n, W->fc13, d, 2 * h, false);
    for (int j = 0; j < n; j++) {
        float *h13 = B->h13[j];
        for (int i = 0; i < h; i++) {
            const float a = h13[i];
            h13[i] = a / (1.0f + vec_expf(-a)) * h13[h + i];   /* silu(fc_1 n) * fc_3 n */
        }
    }
    lanes_vecmat(B->x, B->h13, n, W->fc2, h, d, true);            /* x += fc_2(...) */
}

/* Lane s fed tok: its embedded input in s->x, true; or, with no room left
 * (or no such token), logits that allow only <EOS>, false. */
static bool embed_lane(tf_state *s, int tok, float *logits)
{
    const tf_model *m = s->m;
    const int d = m->c.d_model, V = m->c.vocab_size, pos = s->pos++;
    if (pos >= m->c.max_len || tok < 0 || tok >= V) {
        for (int i = 0; i < V; i++) logits[i] = -INFINITY;
        logits[TOK_EOS] = 0.0f;
        return false;
    }
    const float *e = m->emb->data + (size_t)tok * d, *p = m->pe->data + (size_t)pos * d;
    for (int i = 0; i < d; i++) s->x[i] = e[i] + p[i];
    return true;
}

/* At most TF_LANES streams. */
static void next_lanes(tf_state *const *s, int n, const int *tok, float *logits)
{
    const tf_model *m = s[0]->m;
    const int d = m->c.d_model, V = m->c.vocab_size;
    lanes B;
    B.n = 0;
    for (int i = 0; i < n; i++) {
        if (!embed_lane(s[i], tok[i], logits + (size_t)i * V)) continue;
        const int j = B.n++;
        B.s[j] = s[i];
        B.x[j] = s[i]->x;
        B.xn[j] = s[i]->xn;
        B.att[j] = s[i]->att;
        B.qkv[j] = s[i]->qkv;
        B.h13[j] = s[i]->h13;
        B.logits[j] = logits + (size_t)i * V;
    }
    if (!B.n) return;
    run_hooks(&B, 0);
    for (int l = 0; l < m->c.n_layers; l++) {
        block_lanes(&B, l);
        run_hooks(&B, l + 1);
    }
    norm_lanes(&B, m->out_norm);
    lanes_vecmat(B.logits, B.xn, B.n, B.s[0]->w->emb_t, d, V, false);
}

void tf_state_next_batch(tf_state *const *s, int n, const int *tok, float *logits)
{
    const size_t V = n > 0 ? (size_t)s[0]->m->c.vocab_size : 0;
    for (int first = 0; first < n; first += TF_LANES)
        next_lanes(s + first, n - first < TF_LANES ? n - first : TF_LANES, tok + first,
                   logits + first * V);
}

void tf_state_next(tf_state *s, int tok, float *logits) { tf_state_next_batch(&s, 1, &tok, logits); }

/* ---- The generic model interface ---------------------------------------- */

/* A model loaded through the registry is for generation: its weights are
 * final, so its states share one copy of the panels. */
static err_code load_for_generation(tf_model *m, const ck_file *f, const char *path, bool optim)
{
    err_code e = tf_load(m, f, path, optim);
    if (!e && !(m->step = step_new(m))) {
        tf_free(m);
        e = ERR_NOMEM;
    }
    return e;
}

static void tf_kind_next_batch(const void *impl, void *const *st, const int *tok, int n, float *logits)
{
    tf_state *s[MDL_BATCH_MAX];
    for (int i = 0; i < n; i++) s[i] = st[i];
    tf_state_next_batch(s, n, tok, logits);
}

MDL_KIND_FUNCS(tf, tf_model, tf_state, load_for_generation)
const mdl_kind tf_kind = { MDL_KIND_MEMBERS(tf, TF_KIND), .next_batch = tf_kind_next_batch };

const tf_model *tf_of_mdl(const mdl *m)
{
    if (!m || m->kind != &tf_kind) {
        err_set(ERR_MISMATCH, "the model is a '%s', not a '%s'",
                m && m->kind ? m->kind->name : "nothing", TF_KIND);
        return NULL;
    }
    return m->impl;
}

tf_state *tf_state_of(const mdl_state *s)
{
    return s && tf_of_mdl(s->m) ? s->st : NULL;
}
