/* mlp.c - the Bengio MLP: training graph, fused first layer, generation;
 * see mlp.h. */
#include "mlp.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "text.h"

/* ---- config ---------------------------------------------------------- */

enum { MLP_MAX_DIM = 1 << 16, MLP_MAX_VOCAB = 1 << 21 };

err_code mlp_config_check(const mlp_config *c)
{
    if (c->vocab_size <= TOK_FIRST || c->vocab_size > MLP_MAX_VOCAB)
        return err_set(ERR_ARG, "vocab_size %d out of range (%d..%d)", c->vocab_size,
                       TOK_FIRST + 1, MLP_MAX_VOCAB);
    if (c->d_model < 1 || c->d_model > MLP_MAX_DIM || c->d_hidden < 1 ||
        c->d_hidden > MLP_MAX_DIM || c->n_context < 1 || c->n_context > 4096)
        return err_set(ERR_ARG, "d_model %d, d_hidden %d, n_context %d out of range",
                       c->d_model, c->d_hidden, c->n_context);
    /* fc1 and the fused op's (n, V, H) buffers must stay within int counts */
    long long in = (long long)c->n_context * c->d_model;
    if (in * c->d_hidden > (1LL << 31) - 1 ||
        (long long)c->n_context * c->vocab_size * c->d_hidden > (1LL << 31) - 1)
        return err_set(ERR_ARG, "model too large (n_context*d_model*d_hidden)");
    return ERR_OK;
}

err_code mlp_config_to_json(const mlp_config *c, char **json)
{
    char buf[160];
    snprintf(buf, sizeof buf, "{\"vocab_size\":%d,\"d_model\":%d,\"d_hidden\":%d,\"n_context\":%d}",
             c->vocab_size, c->d_model, c->d_hidden, c->n_context);
    *json = strdup(buf);
    return *json ? ERR_OK : err_set(ERR_NOMEM, "cannot build the mlp config JSON");
}

err_code mlp_config_from_json(mlp_config *c, const char *json)
{
    cJSON *o = mdl_config_object(json, MLP_KIND);
    if (!o) return ERR_FORMAT;
    mlp_config r;
    err_code rc = mdl_config_int(o, MLP_KIND, "vocab_size", &r.vocab_size);
    if (!rc) rc = mdl_config_int(o, MLP_KIND, "d_model", &r.d_model);
    if (!rc) rc = mdl_config_int(o, MLP_KIND, "d_hidden", &r.d_hidden);
    if (!rc) rc = mdl_config_int(o, MLP_KIND, "n_context", &r.n_context);
    cJSON_Delete(o);
    if (!rc && mlp_config_check(&r)) rc = err_prefix(ERR_FORMAT, "mlp config");
    if (!rc) *c = r;
    return rc;
}

/* ---- parameters ------------------------------------------------------ */

/* Check c and declare the parameters (not allocated yet). */
static err_code declare(mlp_model *m, const mlp_config *c)
{
    memset(m, 0, sizeof *m);
    err_code rc = mlp_config_check(c);
    if (rc) return rc;
    m->c = *c;
    int V = c->vocab_size, d = c->d_model, H = c->d_hidden, in = c->n_context * c->d_model;
    tn_params_init(&m->p);
    m->emb = tn_param(&m->p, "embedding.weight", true, 2, (int[]){ V, d });
    m->w1 = tn_param(&m->p, "fc1.weight", true, 2, (int[]){ H, in });
    m->b1 = tn_param(&m->p, "fc1.bias", false, 1, (int[]){ H });
    m->w2 = tn_param(&m->p, "fc2.weight", true, 2, (int[]){ V, H });
    m->b2 = tn_param(&m->p, "fc2.bias", false, 1, (int[]){ V });
    return !m->emb || !m->w1 || !m->b1 || !m->w2 || !m->b2 ? ERR_ARG : ERR_OK;
}

MDL_REPLICA(mlp, mlp_model, declare)

err_code mlp_init(mlp_model *m, const mlp_config *c)
{
    err_code rc = declare(m, c);
    return rc ? rc : tn_params_alloc(&m->p);
}

static void fill_uniform(tensor *t, rng *r, float bound)
{
    for (int i = 0; i < t->n; i++) t->data[i] = (float)((2.0 * rng_uniform(r) - 1.0) * bound);
}

void mlp_init_weights(mlp_model *m, rng *r)
{
    float b1 = 1.0f / sqrtf((float)(m->c.n_context * m->c.d_model));
    float b2 = 1.0f / sqrtf((float)m->c.d_hidden);
    tn_fill_normal(m->emb, r, 0.0f, 1.0f);
    fill_uniform(m->w1, r, b1);
    fill_uniform(m->b1, r, b1);
    fill_uniform(m->w2, r, b2);
    fill_uniform(m->b2, r, b2);
}

err_code mlp_load(mlp_model *m, const ck_file *f, const char *path, bool optim)
{
    memset(m, 0, sizeof *m);   /* mlp_free below may see it before mlp_init */
    const char *json;
    mlp_config c;
    err_code rc = mdl_read_meta(f, path, MLP_KIND, &json, NULL);
    if (rc) return rc;
    if ((rc = mlp_config_from_json(&c, json)) || (rc = declare(m, &c)) ||
        (rc = tn_params_alloc_load(&m->p, f, optim))) {
        mlp_free(m);
        return err_prefix(rc, path);
    }
    return ERR_OK;
}

err_code mlp_save(const mlp_model *m, const txt_vocab *v, const char *path)
{
    char *config = NULL;
    err_code rc = mlp_config_to_json(&m->c, &config);
    if (!rc) rc = mdl_save_params(path, MLP_KIND, config, v, &m->p);
    free(config);
    return rc;
}

void mlp_free(mlp_model *m)
{
    if (!m) return;
    tn_params_free(&m->p);
    memset(m, 0, sizeof *m);
}

/* ---- the fused first layer ------------------------------------------- */

/* Scratch of the node: G (n, V, H), the output gradient gathered per
 * context slot and token. */
static void context_linear_backward(ag_node *nd)
{
    tensor *E = nd->in[0], *W = nd->in[1], *b = nd->in[2], *y = nd->out;
    const int *ctx = nd->idx;
    int N = nd->iarg[0], n = nd->iarg[1];
    int V = E->shape[0], d = E->shape[1], H = W->shape[0];
    float *G = nd->saved, *dY = ag_grad(y), *dE = ag_grad(E), *dW = ag_grad(W), *db = ag_grad(b);
    memset(G, 0, (size_t)n * V * H * sizeof *G);
    for (int r = 0; r < N; r++) {
        const float *dy = dY + (size_t)r * H;
        for (int j = 0; j < n; j++) {
            float *g = G + ((size_t)j * V + ctx[(size_t)r * n + j]) * H;
            for (int h = 0; h < H; h++) g[h] += dy[h];
        }
        if (db)
            for (int h = 0; h < H; h++) db[h] += dy[h];
    }
    for (int j = 0; j < n; j++) {
        const float *Gj = G + (size_t)j * V * H;
        if (dW)   /* dW_j (H, d) += G_j^T (H, V) E (V, d) */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, H, d, V, 1.0f, Gj, H,
                        E->data, d, 1.0f, dW + (size_t)j * d, n * d);
        if (dE)   /* dE (V, d) += G_j (V, H) W_j (H, d) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, V, d, H, 1.0f, Gj, H,
                        W->data + (size_t)j * d, n * d, 1.0f, dE, d);
    }
}

tensor *mlp_context_linear(ag_tape *t, tensor *E, tensor *W, tensor *b, const int *ctx,
                           int N, int n)
{
    int V = E->shape[0], d = E->shape[1], H = W->shape[0];
    if (W->shape[1] != n * d || (b && b->n != H)) {
        err_set(ERR_ARG, "mlp_context_linear: W (%d, %d) does not fit n %d * d %d",
                W->shape[0], W->shape[1], n, d);
        return NULL;
    }
    for (size_t i = 0; i < (size_t)N * n; i++)
        if (ctx[i] < 0 || ctx[i] >= V) {
            err_set(ERR_ARG, "mlp: token %d out of range (vocabulary of %d)", ctx[i], V);
            return NULL;
        }
    bool need = t->grad && (E->grad || W->grad || (b && b->grad));
    tensor *y = need ? ag_tensor2(t, N, H)
                     : ag_wrap(t, ag_alloc(t, (size_t)N * H * sizeof(float)), 2,
                               (const int[]){ N, H });
    /* P_j (V, H) = E (V, d) W_j^T: token v's contribution from context slot j */
    float *P = ag_alloc(t, (size_t)n * V * H * sizeof *P);
    for (int j = 0; j < n; j++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, V, H, d, 1.0f, E->data, d,
                    W->data + (size_t)j * d, n * d, 0.0f, P + (size_t)j * V * H, H);
    for (int r = 0; r < N; r++) {
        float *yr = y->data + (size_t)r * H;
        if (b) memcpy(yr, b->data, (size_t)H * sizeof *yr);
        else memset(yr, 0, (size_t)H * sizeof *yr);
        for (int j = 0; j < n; j++) {
            const float *p = P + ((size_t)j * V + ctx[(size_t)r * n + j]) * H;
            for (int h = 0; h < H; h++) yr[h] += p[h];
        }
    }
    ag_node *nd = ag_record(t, "context_linear", need ? context_linear_backward : NULL, y);
    if (nd) {
        nd->in[0] = E;
        nd->in[1] = W;
        nd->in[2] = b;
        nd->idx = ag_ints(t, ctx, (size_t)N * n);
        nd->iarg[0] = N;
        nd->iarg[1] = n;
        nd->saved = ag_alloc(t, (size_t)n * V * H * sizeof(float));
    }
    return y;
}

/* ---- forward --------------------------------------------------------- */

/* The n tokens before and at position pos of row x, oldest first, <SOS>
 * before the row start. */
static void context_of(const int *x, int pos, int n, int *out)
{
    for (int j = 0; j < n; j++) {
        int p = pos - n + 1 + j;
        out[j] = p >= 0 ? x[p] : TOK_SOS;
    }
}

/* Logits (N, V) for N contexts (N, n_context). */
static tensor *head(mlp_model *m, ag_tape *t, const int *ctx, int N)
{
    tensor *h = mlp_context_linear(t, m->emb, m->w1, m->b1, ctx, N, m->c.n_context);
    if (!h) return NULL;
    return op_linear(t, op_tanh(t, h), m->w2, m->b2);
}

tensor *mlp_logits(mlp_model *m, ag_tape *t, const int *x, int B, int T)
{
    int n = m->c.n_context, N = B * T;
    int *ctx = ag_alloc(t, (size_t)N * n * sizeof *ctx);
    for (int b = 0; b < B; b++)
        for (int p = 0; p < T; p++) context_of(x + (size_t)b * T, p, n, ctx + ((size_t)b * T + p) * n);
    return head(m, t, ctx, N);
}

tensor *mlp_loss(mlp_model *m, ag_tape *t, const ds_batch *b)
{
    /* Only positions with a real target are computed: a batch trimmed to its
     * longest name is still about half padding. */
    int n = m->c.n_context, N = 0;
    int *ctx = ag_alloc(t, (b->n_tokens ? b->n_tokens : 1) * n * sizeof *ctx);
    int *pos = ag_alloc(t, (b->n_tokens ? b->n_tokens : 1) * sizeof *pos);   /* batch positions */
    for (int r = 0; r < b->B; r++) {
        const int *x = b->x + (size_t)r * b->T, *y = b->y + (size_t)r * b->T;
        for (int p = 0; p < b->T; p++) {
            if (y[p] == TOK_PAD) continue;
            context_of(x, p, n, ctx + (size_t)N * n);
            pos[N++] = r * b->T + p;
        }
    }
    if (N == 0) {   /* no target: one ignored row keeps the graph well-formed */
        context_of(b->x, 0, n, ctx);
        pos[N++] = -1;
    }
    tensor *logits = head(m, t, ctx, N);
    return logits ? op_batch_cross_entropy(t, logits, b, pos) : NULL;
}

/* ---- generation ------------------------------------------------------ */

/* One allocation: the struct, then e, h and ctx. */
struct mlp_state {
    const mlp_model *m;
    int   *ctx;   /* the last n_context tokens fed, oldest first */
    float *h;     /* (H) hidden layer */
    float  e[];   /* (n_context * d) concatenated embeddings */
};

mlp_state *mlp_state_new(const mlp_model *m)
{
    int n = m->c.n_context, in = n * m->c.d_model;
    mlp_state *s = malloc(sizeof *s + (size_t)(in + m->c.d_hidden) * sizeof(float) +
                          (size_t)n * sizeof(int));
    if (!s) {
        err_set(ERR_NOMEM, "mlp: out of memory for a generation state");
        return NULL;
    }
    s->m = m;
    s->h = s->e + in;
    s->ctx = (int *)(s->h + m->c.d_hidden);
    return s;
}

void mlp_state_free(mlp_state *s) { free(s); }

void mlp_state_start(mlp_state *s)
{
    for (int j = 0; j < s->m->c.n_context; j++) s->ctx[j] = TOK_SOS;
}

/* One position without the tape: h = tanh(W1 e + b1), logits = W2 h + b2. */
void mlp_state_next(mlp_state *s, int tok, float *logits)
{
    const mlp_model *m = s->m;
    int n = m->c.n_context, d = m->c.d_model, H = m->c.d_hidden, V = m->c.vocab_size;
    memmove(s->ctx, s->ctx + 1, (size_t)(n - 1) * sizeof *s->ctx);
    s->ctx[n - 1] = tok >= 0 && tok < V ? tok : TOK_PAD;
    for (int j = 0; j < n; j++)
        memcpy(s->e + (size_t)j * d, m->emb->data + (size_t)s->ctx[j] * d, (size_t)d * sizeof(float));
    memcpy(s->h, m->b1->data, (size_t)H * sizeof(float));
    cblas_sgemv(CblasRowMajor, CblasNoTrans, H, n * d, 1.0f, m->w1->data, n * d, s->e, 1,
                1.0f, s->h, 1);
    for (int i = 0; i < H; i++) s->h[i] = tanhf(s->h[i]);
    memcpy(logits, m->b2->data, (size_t)V * sizeof(float));
    cblas_sgemv(CblasRowMajor, CblasNoTrans, V, H, 1.0f, m->w2->data, H, s->h, 1, 1.0f,
                logits, 1);
}

int mlp_max_len(const mlp_model *m) { return 0; }

MDL_KIND(mlp, MLP_KIND, mlp_model, mlp_state);
