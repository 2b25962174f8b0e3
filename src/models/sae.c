/* sae.c - the sparse autoencoder on a Transformer's residual stream; see
 * sae.h.
 *
 * The training loss is one fused op with a hand-written backward (the
 * checkpoint's layouts, W_enc (d, F) and W_dec (F, d), are (in, out), the
 * transpose of op_linear's).  Everything else - evaluation, steering,
 * attribution - is plain loops and cblas over the same encode / decode.
 */
#include "sae.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "sampling.h"
#include "text.h"

static const char *const variant_names[] = { "l1", "topk" };

/* ---- Config ------------------------------------------------------------- */

err_code sae_config_check(const sae_config *c)
{
    if (c->d_model < 1 || c->d_model > TF_MAX_DIM)
        return err_set(ERR_ARG, "d_model %d out of range [1, %d]", c->d_model, TF_MAX_DIM);
    if (c->n_features < 1 || c->n_features > SAE_MAX_FEATURES)
        return err_set(ERR_ARG, "n_features %d out of range [1, %d]", c->n_features,
                       SAE_MAX_FEATURES);
    if (c->layer < 0 || c->layer > TF_MAX_LAYERS)
        return err_set(ERR_ARG, "layer %d out of range [0, %d]", c->layer, TF_MAX_LAYERS);
    if (c->variant != SAE_L1 && c->variant != SAE_TOPK)
        return err_set(ERR_ARG, "unknown variant %d", (int)c->variant);
    if (!(c->l1 >= 0.0f && c->l1 < 1e6f))
        return err_set(ERR_ARG, "l1 %g out of range [0, 1e6)", (double)c->l1);
    if (c->variant == SAE_TOPK && (c->k < 1 || c->k > c->n_features))
        return err_set(ERR_ARG, "k %d out of range [1, n_features %d]", c->k, c->n_features);
    if (c->variant == SAE_L1 && c->k != 0)
        return err_set(ERR_ARG, "k %d given for the l1 variant (must be 0)", c->k);
    return ERR_OK;
}

err_code sae_config_to_json(const sae_config *c, char **json)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf,
                     "{\"d_model\":%d,\"n_features\":%d,\"layer\":%d,\"variant\":\"%s\","
                     "\"l1\":%.9g,\"k\":%d}",
                     c->d_model, c->n_features, c->layer, variant_names[c->variant],
                     (double)c->l1, c->k);
    *json = (n > 0 && (size_t)n < sizeof buf) ? strdup(buf) : NULL;
    return *json ? ERR_OK : err_set(ERR_NOMEM, "out of memory");
}

static err_code json_int(const cJSON *o, const char *key, int *out)
{
    return mdl_config_int(o, "sae", key, out);
}

err_code sae_config_from_json(sae_config *c, const char *json)
{
    cJSON *o = mdl_config_object(json, SAE_KIND);
    if (!o) return ERR_FORMAT;
    sae_config k = SAE_DEFAULTS;
    err_code e = json_int(o, "d_model", &k.d_model);
    if (!e) e = json_int(o, "n_features", &k.n_features);
    if (!e) e = json_int(o, "layer", &k.layer);
    if (!e) e = json_int(o, "k", &k.k);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "variant");
    const cJSON *l1 = cJSON_GetObjectItemCaseSensitive(o, "l1");
    if (!e && !cJSON_IsNumber(l1)) e = err_set(ERR_FORMAT, "sae config: 'l1' is not a number");
    if (!e) k.l1 = (float)l1->valuedouble;
    if (!e && cJSON_IsString(v) && !strcmp(v->valuestring, "l1")) k.variant = SAE_L1;
    else if (!e && cJSON_IsString(v) && !strcmp(v->valuestring, "topk")) k.variant = SAE_TOPK;
    else if (!e) e = err_set(ERR_FORMAT, "sae config: 'variant' is not \"l1\" or \"topk\"");
    cJSON_Delete(o);
    if (!e && sae_config_check(&k)) e = err_prefix(ERR_FORMAT, "sae config");
    if (!e) *c = k;
    return e;
}

int sae_aux_k(const sae_config *c)
{
    int k = c->d_model / 2;
    if (k < 1) k = 1;
    return k < c->n_features ? k : c->n_features;
}

/* ---- Parameters --------------------------------------------------------- */

/* Check c and declare the parameters (not allocated yet). */
static err_code declare(sae_model *m, const sae_config *c)
{
    memset(m, 0, sizeof *m);
    err_code e = sae_config_check(c);
    if (e) return e;
    m->c = *c;
    m->l1_ramp = 1.0f;
    tn_params_init(&m->p);
    const int d = c->d_model, F = c->n_features;
    /* the matrices may take AdamW's decay (sae-train defaults it to 0: Adam) */
    bool ok = (m->W_enc = tn_param(&m->p, "W_enc", true, 2, (const int[]){ d, F })) &&
              (m->b_enc = tn_param(&m->p, "b_enc", false, 1, (const int[]){ F })) &&
              (m->W_dec = tn_param(&m->p, "W_dec", true, 2, (const int[]){ F, d })) &&
              (m->b_dec = tn_param(&m->p, "b_dec", false, 1, (const int[]){ d }));
    return ok ? ERR_OK : ERR_ARG;
}

err_code sae_init(sae_model *m, const sae_config *c)
{
    err_code e = declare(m, c);
    return e ? e : tn_params_alloc(&m->p);
}

void sae_init_weights(sae_model *m, rng *r)
{
    const int d = m->c.d_model, F = m->c.n_features;
    tn_fill_normal(m->W_dec, r, 0.0f, 1.0f);
    sae_normalize_decoder(m);
    for (int i = 0; i < F; i++)
        for (int j = 0; j < d; j++) m->W_enc->data[(size_t)j * F + i] = m->W_dec->data[(size_t)i * d + j];
    tn_fill(m->b_enc, 0.0f);
    tn_fill(m->b_dec, 0.0f);
}

err_code sae_load(sae_model *m, const ck_file *f, const char *path, bool optim)
{
    memset(m, 0, sizeof *m);
    const char *json;
    sae_config c;
    err_code e = mdl_read_meta(f, path, SAE_KIND, &json, NULL);
    if (e) return e;
    if ((e = sae_config_from_json(&c, json)) || (e = declare(m, &c)) ||
        (e = tn_params_alloc_load(&m->p, f, optim))) {
        sae_free(m);
        return err_prefix(e, path);
    }
    const char *file = ck_meta(f, "model_file"), *hash = ck_meta(f, "model_hash");
    if (file && !(m->model_file = strdup(file))) {
        sae_free(m);
        return err_set(ERR_NOMEM, "out of memory");
    }
    if (hash) snprintf(m->model_hash, sizeof m->model_hash, "%s", hash);
    return ERR_OK;
}

err_code sae_read(sae_model *m, const char *path)
{
    ck_file f;
    memset(m, 0, sizeof *m);
    err_code e = ck_read(path, &f);
    if (!e) e = sae_load(m, &f, path, false);
    ck_free(&f);
    return e;
}

err_code sae_save(const sae_model *m, const txt_vocab *v, const char *path)
{
    char *config = NULL;
    ck_writer *w = ck_writer_new();
    err_code e = sae_config_to_json(&m->c, &config);
    if (!e) e = mdl_put_meta(w, SAE_KIND, config, v);
    if (!e) e = sae_put_meta(m, w);
    if (!e) e = tn_params_save(&m->p, w, false);
    if (!e) e = ck_write(w, path);
    free(config);
    ck_writer_free(w);
    return e;
}

void sae_free(sae_model *m)
{
    if (!m) return;
    tn_params_free(&m->p);
    free(m->model_file);
    m->model_file = NULL;
}

err_code sae_set_model_file(sae_model *m, const char *model_path)
{
    err_code e = ck_file_hash(model_path, m->model_hash);
    if (e) return e;
    free(m->model_file);
    m->model_file = strdup(model_path);
    return m->model_file ? ERR_OK : err_set(ERR_NOMEM, "out of memory");
}

err_code sae_put_meta(const sae_model *m, ck_writer *w)
{
    char layer[16];
    snprintf(layer, sizeof layer, "%d", m->c.layer);
    err_code e = ck_put_meta(w, "layer", layer);
    if (!e && m->model_file) e = ck_put_meta(w, "model_file", m->model_file);
    if (!e && m->model_hash[0]) e = ck_put_meta(w, "model_hash", m->model_hash);
    return e;
}

err_code sae_check_pair(const sae_model *s, const char *sae_path, const tf_model *tf,
                        const char *model_path)
{
    char hash[17];
    err_code e = ck_file_hash(model_path, hash);
    if (e) return e;
    const char *named = s->model_file ? s->model_file : "an unnamed model";
    if (strcmp(hash, s->model_hash) != 0)
        return err_set(ERR_MISMATCH, "%s was trained on another model (%s, hash %s), not on %s "
                       "(hash %s)", sae_path, named, s->model_hash[0] ? s->model_hash : "none",
                       model_path, hash);
    if (s->c.d_model != tf_d_model(tf))
        return err_set(ERR_MISMATCH, "%s reads %d-wide activations, %s has d_model %d",
                       sae_path, s->c.d_model, model_path, tf_d_model(tf));
    if (s->c.layer > tf_n_layers(tf))
        return err_set(ERR_MISMATCH, "%s reads layer %d, %s has %d layers", sae_path,
                       s->c.layer, model_path, tf_n_layers(tf));
    return ERR_OK;
}

/* ---- Encode / decode ------------------------------------------------------ */

/* The k-th largest of a[0..n) (1 <= k <= n); reorders a.  Quickselect. */
static float kth_largest(float *a, int n, int k)
{
    int lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float pivot = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] > pivot) i++;
            while (a[j] < pivot) j--;
            if (i <= j) {
                float tmp = a[i];
                a[i++] = a[j];
                a[j--] = tmp;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return a[want];
    }
    return a[want];
}

/* One row of features from its pre-activations (F), in place: ReLU, after
 * keeping the k largest when k > 0 (ties at the threshold: lowest indices).
 * Only positive values survive the ReLU, so the selection runs among them
 * alone (usually far fewer than F).  scratch (F) for the selection. */
static void activate_row(float *f, int F, int k, float *scratch)
{
    if (k <= 0 || k >= F) {
        for (int i = 0; i < F; i++) f[i] = f[i] > 0.0f ? f[i] : 0.0f;
        return;
    }
    int n_pos = 0;
    for (int i = 0; i < F; i++)
        if (f[i] > 0.0f) scratch[n_pos++] = f[i];
        else f[i] = 0.0f;
    if (n_pos <= k) return;
    float th = kth_largest(scratch, n_pos, k);
    int above = 0;
    for (int i = 0; i < F; i++) above += f[i] > th;
    int ties = k - above;
    for (int i = 0; i < F; i++) {
        if (f[i] > th) continue;
        if (f[i] == th && ties > 0) ties--;
        else f[i] = 0.0f;
    }
}

/* pre (N, F) = (x - b_dec) W_enc + b_enc, as x W_enc + (b_enc - b_dec W_enc);
 * c (F) scratch. */
static void pre_activations(const sae_model *m, const float *x, int N, float *pre, float *c)
{
    const int d = m->c.d_model, F = m->c.n_features;
    memcpy(c, m->b_enc->data, (size_t)F * sizeof *c);
    cblas_sgemv(CblasRowMajor, CblasTrans, d, F, -1.0f, m->W_enc->data, F, m->b_dec->data, 1,
                1.0f, c, 1);
    for (int i = 0; i < N; i++) memcpy(pre + (size_t)i * F, c, (size_t)F * sizeof *c);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, F, d, 1.0f, x, d, m->W_enc->data,
                F, 1.0f, pre, F);
}

static int active_k(const sae_config *c) { return c->variant == SAE_TOPK ? c->k : 0; }

void sae_encode(const sae_model *m, const float *x, int N, float *f, float *scratch)
{
    const int F = m->c.n_features;
    if (N <= 0) return;
    pre_activations(m, x, N, f, scratch);
    for (int i = 0; i < N; i++) activate_row(f + (size_t)i * F, F, active_k(&m->c), scratch + F);
}

void sae_decode(const sae_model *m, const float *f, int N, float *xhat)
{
    const int d = m->c.d_model, F = m->c.n_features;
    if (N <= 0) return;
    for (int i = 0; i < N; i++) memcpy(xhat + (size_t)i * d, m->b_dec->data, (size_t)d * sizeof *xhat);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, d, F, 1.0f, f, F, m->W_dec->data,
                d, 1.0f, xhat, d);
}

static double dot(const float *a, const float *b, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

void sae_feature_logits(const sae_model *s, const tf_model *tf, int feature, float *out)
{
    const int d = s->c.d_model, V = tf_vocab_size(tf);
    const float *w = tf_out_norm_weight(tf), *emb = tf_embedding(tf);
    const float *dir = s->W_dec->data + (size_t)feature * d;
    for (int v = 0; v < V; v++) {
        double acc = 0.0;
        for (int j = 0; j < d; j++) acc += (double)dir[j] * w[j] * emb[(size_t)v * d + j];
        out[v] = (float)acc;
    }
}

/* ---- Training graph ------------------------------------------------------ */

/* What the loss op keeps for backward (arena memory). */
typedef struct loss_saved {
    const sae_model *m;
    const float *x;          /* (N, d) input rows */
    float *f, *xhat;         /* (N, F), (N, d) */
    float *z_aux, *ehat;     /* AuxK: (N, F) dead features kept, (N, d); NULL without */
    float *dxhat, *df;       /* backward scratch (N, d), (N, F) */
    int    N;
} loss_saved;

/* AuxK: z (N, F) = ReLU of the k_aux largest pre-activations among the dead
 * features of each row (0 elsewhere).  pre is reordered per row (scratch). */
static int aux_select(const sae_model *m, float *pre, const uint8_t *dead, int N, float *z,
                      float *scratch)
{
    const int F = m->c.n_features, k = sae_aux_k(&m->c);
    int n_dead = 0;
    for (int i = 0; i < F; i++) n_dead += dead[i] != 0;
    if (n_dead == 0) return 0;
    for (int r = 0; r < N; r++) {
        float *p = pre + (size_t)r * F, *zr = z + (size_t)r * F;
        for (int i = 0; i < F; i++) zr[i] = dead[i] ? p[i] : -INFINITY;
        activate_row(zr, F, k < n_dead ? k : n_dead, scratch);
    }
    return n_dead;
}

/* sum over rows and columns of (a - b)^2, a and b (n) */
static double sq_dist(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - b[i];
        s += e * e;
    }
    return s;
}

/* d/d(W_enc, b_enc, b_dec) of the pre-activations' gradient dpre (N, F):
 * pre = x W_enc - b_dec W_enc + b_enc.  colsum (F) scratch. */
static void pre_backward(const loss_saved *s, const float *dpre, float *colsum)
{
    const sae_model *m = s->m;
    const int d = m->c.d_model, F = m->c.n_features, N = s->N;
    memset(colsum, 0, (size_t)F * sizeof *colsum);
    for (int r = 0; r < N; r++)
        for (int i = 0; i < F; i++) colsum[i] += dpre[(size_t)r * F + i];
    if (m->W_enc->grad) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, F, N, 1.0f, s->x, d, dpre, F,
                    1.0f, m->W_enc->grad, F);
        cblas_sger(CblasRowMajor, d, F, -1.0f, m->b_dec->data, 1, colsum, 1, m->W_enc->grad, F);
    }
    if (m->b_enc->grad)
        for (int i = 0; i < F; i++) m->b_enc->grad[i] += colsum[i];
    if (m->b_dec->grad)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, d, F, -1.0f, m->W_enc->data, F, colsum, 1, 1.0f,
                    m->b_dec->grad, 1);
}

/* Through x^ = f W_dec + b_dec (or e^ = z W_dec): dW_dec += f^T dout, and
 * df = (dout W_dec^T) where f > 0 (f is ReLU's output: the mask), written
 * to df (overwrite) or added (accumulate). */
static void decode_backward(const loss_saved *s, const float *f, const float *dout, float *df,
                            bool accumulate)
{
    const sae_model *m = s->m;
    const int d = m->c.d_model, F = m->c.n_features, N = s->N;
    if (m->W_dec->grad)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, F, d, N, 1.0f, f, F, dout, d, 1.0f,
                    m->W_dec->grad, d);
    size_t n = (size_t)N * F;
    float *tmp = accumulate ? s->df + n : df;   /* the second half of the scratch */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, F, d, 1.0f, dout, d, m->W_dec->data,
                d, 0.0f, tmp, F);
    for (size_t i = 0; i < n; i++) {
        float g = f[i] > 0.0f ? tmp[i] : 0.0f;
        df[i] = accumulate ? df[i] + g : g;
    }
}

static void loss_backward(ag_node *nd)
{
    const loss_saved *s = nd->saved;
    const sae_model *m = s->m;
    const int d = m->c.d_model, F = m->c.n_features, N = s->N;
    const float g = ag_grad(nd->out)[0], l1 = nd->farg[0], aux = nd->farg[1];
    const size_t nd_ = (size_t)N * d, nf = (size_t)N * F;
    /* reconstruction: d/dx^ of mean_rows sum (x - x^)^2 */
    for (size_t i = 0; i < nd_; i++) s->dxhat[i] = g * 2.0f * (s->xhat[i] - s->x[i]) / (float)N;
    if (m->b_dec->grad)
        for (int r = 0; r < N; r++)
            for (int j = 0; j < d; j++) m->b_dec->grad[j] += s->dxhat[(size_t)r * d + j];
    decode_backward(s, s->f, s->dxhat, s->df, false);
    if (l1 > 0.0f)   /* |f| = f on the active features, whose mask is f > 0 */
        for (size_t i = 0; i < nf; i++)
            if (s->f[i] > 0.0f) s->df[i] += g * l1 / (float)N;
    if (s->z_aux) {  /* AuxK: d/de^ of aux * mean_rows sum (e - e^)^2, e constant */
        for (int r = 0; r < N; r++)
            for (int j = 0; j < d; j++) {
                size_t i = (size_t)r * d + j;
                float e = s->x[i] - s->xhat[i];
                s->dxhat[i] = g * aux * 2.0f * (s->ehat[i] - e) / (float)N;
            }
        decode_backward(s, s->z_aux, s->dxhat, s->df, true);
    }
    pre_backward(s, s->df, s->dxhat);   /* dxhat, no longer needed, holds the column sums */
}

tensor *sae_loss(const sae_model *m, ag_tape *t, tensor *x, const uint8_t *dead,
                 tensor **features)
{
    if (!m || !x) return NULL;
    const int d = m->c.d_model, F = m->c.n_features;
    if (tn_cols(x) != d) {
        err_set(ERR_ARG, "sae_loss: rows of %d values for an SAE of d_model %d", tn_cols(x), d);
        return NULL;
    }
    const int N = tn_rows(x);
    const size_t nf = (size_t)N * F, nd_ = (size_t)N * d;
    tensor *ft = ag_wrap(t, ag_alloc(t, nf * sizeof(float)), 2, (const int[]){ N, F });
    float *pre = ag_alloc(t, nf * sizeof(float)), *xhat = ag_alloc(t, nd_ * sizeof(float));
    float *scratch = ag_alloc(t, 2 * (size_t)F * sizeof(float));
    if (!ft) return NULL;
    float *f = ft->data;
    pre_activations(m, x->data, N, pre, scratch);
    memcpy(f, pre, nf * sizeof *f);
    for (int r = 0; r < N; r++) activate_row(f + (size_t)r * F, F, active_k(&m->c), scratch);
    sae_decode(m, f, N, xhat);

    double loss = N ? sq_dist(x->data, xhat, nd_) / N : 0.0;
    const float l1 = m->c.variant == SAE_L1 ? m->c.l1 * m->l1_ramp : 0.0f;
    if (l1 > 0.0f && N) {
        double sum = 0.0;
        for (size_t i = 0; i < nf; i++) sum += f[i];
        loss += (double)l1 * sum / N;
    }
    float *z_aux = NULL, *ehat = NULL;
    if (m->c.variant == SAE_TOPK && dead && N) {
        z_aux = ag_alloc(t, nf * sizeof(float));
        if (aux_select(m, pre, dead, N, z_aux, scratch)) {
            ehat = ag_alloc(t, nd_ * sizeof(float));
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, d, F, 1.0f, z_aux, F,
                        m->W_dec->data, d, 0.0f, ehat, d);
            double a = 0.0;
            for (size_t i = 0; i < nd_; i++) {
                double e = (double)x->data[i] - xhat[i] - ehat[i];
                a += e * e;
            }
            loss += (double)SAE_AUX_COEF * a / N;
        } else {
            z_aux = NULL;
        }
    }
    tensor *out = ag_tensor(t, 1, (const int[]){ 1 });
    if (!out) return NULL;
    out->data[0] = (float)loss;
    if (features) *features = ft;
    ag_node *nd = ag_record(t, "sae_loss", out->grad ? loss_backward : NULL, out);
    if (nd) {
        loss_saved *s = ag_alloc(t, sizeof *s);
        /* dxhat needs max(N d, F) floats: it doubles as pre_backward's colsum */
        size_t nx = nd_ > (size_t)F ? nd_ : (size_t)F;
        *s = (loss_saved){ .m = m, .x = x->data, .f = f, .xhat = xhat, .z_aux = z_aux,
                           .ehat = ehat, .dxhat = ag_alloc(t, nx * sizeof(float)),
                           .df = ag_alloc(t, 2 * nf * sizeof(float)), .N = N };
        nd->saved = s;
        nd->farg[0] = l1;
        nd->farg[1] = SAE_AUX_COEF;
        nd->in[0] = x;
    }
    return out;
}

void sae_project_decoder_grad(sae_model *m)
{
    const int d = m->c.d_model, F = m->c.n_features;
    float *g = m->W_dec->grad;
    const float *w = m->W_dec->data;
    if (!g) return;
    for (int i = 0; i < F; i++) {
        float *gi = g + (size_t)i * d;
        const float *wi = w + (size_t)i * d;
        float along = (float)dot(gi, wi, d);
        for (int j = 0; j < d; j++) gi[j] -= along * wi[j];
    }
}

void sae_normalize_decoder(sae_model *m)
{
    const int d = m->c.d_model, F = m->c.n_features;
    for (int i = 0; i < F; i++) {
        float *wi = m->W_dec->data + (size_t)i * d;
        double n = sqrt(dot(wi, wi, d));
        if (n > 0)
            for (int j = 0; j < d; j++) wi[j] = (float)(wi[j] / n);
    }
}

/* ---- Residual activations of many names ---------------------------------- */

static err_code check_fits(const tf_model *m, const ds_names *names)
{
    if (names->max_len + 1 > tf_max_len(m))
        return err_set(ERR_ARG, "a name of %d characters does not fit the transformer "
                       "(max_len %d: at most %d characters)", names->max_len, tf_max_len(m),
                       tf_max_len(m) - 1);
    return ERR_OK;
}

enum { ACTS_BATCH = 256 };

err_code sae_acts_compute(sae_acts *a, const tf_model *m, const ds_names *names, int layer)
{
    memset(a, 0, sizeof *a);
    const int d = tf_d_model(m);
    err_code e = check_fits(m, names);
    if (e) return e;
    a->d = d;
    a->n_names = names->n;
    a->n_rows = names->start[names->n] + names->n;   /* each name and its <SOS> */
    a->row = malloc((names->n + 1) * sizeof *a->row);
    a->x = malloc((a->n_rows ? a->n_rows : 1) * (size_t)d * sizeof *a->x);
    size_t *order = NULL;   /* by length, so that batches waste little on padding */
    ag_tape t;
    bool tape = false;
    ds_batch b = { 0 };
    if (!a->row || !a->x) e = err_set(ERR_NOMEM, "out of memory for the activations");
    if (!e) e = ds_length_order(names, &order);
    if (!e && !(e = ag_init(&t, (size_t)1 << 20))) tape = true;
    for (size_t i = 0; !e && i <= names->n; i++) a->row[i] = names->start[i] + i;
    if (tape) t.grad = false;
    for (size_t i = 0; !e && i < names->n; i += ACTS_BATCH) {
        int B = names->n - i < ACTS_BATCH ? (int)(names->n - i) : ACTS_BATCH;
        if ((e = ds_batch_fill(&b, names, order + i, B))) break;
        ag_reset(&t);
        tensor *h = tf_residual(m, &t, b.x, B, b.T, layer);
        if (!h) {
            e = ERR_ARG;
            break;
        }
        for (int r = 0; r < B; r++) {
            size_t name = order[i + (size_t)r];
            size_t rows = a->row[name + 1] - a->row[name];
            memcpy(a->x + a->row[name] * d, h->data + (size_t)r * b.T * d, rows * d * sizeof(float));
        }
    }
    if (tape) ag_free(&t);
    ds_batch_free(&b);
    free(order);
    if (e) sae_acts_free(a);
    return e;
}

void sae_acts_free(sae_acts *a)
{
    if (!a) return;
    free(a->x);
    free(a->row);
    memset(a, 0, sizeof *a);
}

void sae_acts_mean(const sae_acts *a, float *mean)
{
    const int d = a->d;
    double *acc = calloc((size_t)d, sizeof *acc);
    for (size_t r = 0; acc && r < a->n_rows; r++)
        for (int j = 0; j < d; j++) acc[j] += a->x[r * d + j];
    for (int j = 0; j < d; j++) mean[j] = acc && a->n_rows ? (float)(acc[j] / (double)a->n_rows) : 0.0f;
    free(acc);
}

/* ---- Evaluation ---------------------------------------------------------- */

/* Sums over the rows evaluated. */
typedef struct eval_acc {
    double l0, sq_err, sq_x, *sum_x;     /* sum_x (d) */
    double cos, ratio;                   /* sums of cos(x, x^) and |x^| / |x| */
    size_t rows, *active;                /* active (F): rows where the feature fired */
    double ce[3];                        /* clean, sae, zero: loss * targets */
    double kl[2];                        /* sae, zero: sums of KL(clean || .) */
    size_t targets;
} eval_acc;

/* KL(p || q) of two log-distributions (V). */
static double kl_div(const float *lp, const float *lq, int V)
{
    double s = 0.0;
    for (int v = 0; v < V; v++)
        if (isfinite(lp[v])) s += exp((double)lp[v]) * ((double)lp[v] - lq[v]);
    return s;
}

/* The batch's losses from the residuals h[3] (clean, sae, zero) after layer
 * L: cross-entropy of each (times the targets) and the KL of the last two
 * from the clean distribution, summed over the targets. */
static err_code ce_kl(const tf_model *tf, ag_tape *t, tensor *h[3], int L, const ds_batch *b,
                      eval_acc *acc)
{
    const int V = tf_vocab_size(tf), BT = b->B * b->T;
    tensor *logits[3];
    float *lp = ag_alloc(t, 3 * (size_t)V * sizeof *lp);
    for (int k = 0; k < 3; k++) {
        logits[k] = lp ? tf_logits_from(tf, t, h[k], L, b->B, b->T) : NULL;
        tensor *loss = logits[k] ? op_cross_entropy(t, logits[k], b->y, TOK_PAD) : NULL;
        if (!loss) return ERR_ARG;
        acc->ce[k] += (double)loss->data[0] * (double)b->n_tokens;
    }
    for (int i = 0; i < BT; i++) {
        if (b->y[i] == TOK_PAD) continue;
        for (int k = 0; k < 3; k++)
            smp_log_softmax(logits[k]->data + (size_t)i * V, V, lp + (size_t)k * V);
        acc->kl[0] += kl_div(lp, lp + V, V);
        acc->kl[1] += kl_div(lp, lp + 2 * (size_t)V, V);
    }
    return ERR_OK;
}

/* cos(x, x^) and |x^| / |x| of one row (1 and 1 for two zero rows). */
static void row_geometry(const float *x, const float *xhat, int d, eval_acc *acc)
{
    double xx = dot(x, x, d), hh = dot(xhat, xhat, d), xh = dot(x, xhat, d);
    acc->cos += xx > 0 && hh > 0 ? xh / sqrt(xx * hh) : (double)(xx == hh);
    acc->ratio += xx > 0 ? sqrt(hh / xx) : 1.0;
}

/* One batch: reconstruct its real rows, splice, zero-ablate, accumulate. */
static err_code eval_batch(const sae_model *s, const tf_model *tf, ag_tape *t, const ds_batch *b,
                           eval_acc *acc)
{
    const int d = s->c.d_model, F = s->c.n_features, L = s->c.layer, BT = b->B * b->T;
    tensor *h = tf_residual(tf, t, b->x, b->B, b->T, L);
    if (!h) return ERR_ARG;
    tensor *hs = ag_tensor(t, h->ndim, h->shape), *hz = ag_tensor(t, h->ndim, h->shape);
    float *f = ag_alloc(t, (size_t)BT * F * sizeof *f), *xhat = ag_alloc(t, (size_t)BT * d * sizeof *xhat);
    float *rows = ag_alloc(t, (size_t)BT * d * sizeof *rows);
    float *scratch = ag_alloc(t, sae_scratch_floats(&s->c) * sizeof *scratch);
    int *where = ag_alloc(t, (size_t)BT * sizeof *where), n = 0;
    for (int i = 0; i < BT; i++)
        if (b->x[i] != TOK_PAD) {
            memcpy(rows + (size_t)n * d, h->data + (size_t)i * d, (size_t)d * sizeof *rows);
            where[n++] = i;
        }
    sae_encode(s, rows, n, f, scratch);
    sae_decode(s, f, n, xhat);
    memcpy(hs->data, h->data, (size_t)h->n * sizeof *h->data);
    memcpy(hz->data, h->data, (size_t)h->n * sizeof *h->data);
    for (int r = 0; r < n; r++) {
        const float *x = rows + (size_t)r * d, *xr = xhat + (size_t)r * d, *fr = f + (size_t)r * F;
        memcpy(hs->data + (size_t)where[r] * d, xr, (size_t)d * sizeof *xr);
        memset(hz->data + (size_t)where[r] * d, 0, (size_t)d * sizeof *xr);
        acc->sq_err += sq_dist(x, xr, (size_t)d);
        row_geometry(x, xr, d, acc);
        for (int j = 0; j < d; j++) {
            acc->sum_x[j] += x[j];
            acc->sq_x += (double)x[j] * x[j];
        }
        for (int i = 0; i < F; i++)
            if (fr[i] > 0.0f) {
                acc->active[i]++;
                acc->l0 += 1;
            }
    }
    acc->rows += (size_t)n;
    acc->targets += b->n_tokens;
    err_code e = ce_kl(tf, t, (tensor *[3]){ h, hs, hz }, L, b, acc);
    if (e) return e;
    return isfinite(acc->ce[0] + acc->ce[1] + acc->ce[2] + acc->kl[0] + acc->kl[1]) ? ERR_OK
           : err_set(ERR_NAN, "the loss is not finite while evaluating the SAE");
}

static void eval_finish(const sae_model *s, const eval_acc *acc, sae_stats *o, double *freq)
{
    const int d = s->c.d_model, F = s->c.n_features;
    double rows = acc->rows ? (double)acc->rows : 1.0, targets = acc->targets ? (double)acc->targets : 1.0;
    double var = acc->sq_x;   /* sum |x - mean|^2 = sum |x|^2 - rows |mean|^2 */
    for (int j = 0; j < d; j++) var -= acc->sum_x[j] * acc->sum_x[j] / rows;
    *o = (sae_stats){ .n_rows = acc->rows, .l0 = acc->l0 / rows,
                      .explained_var = var > 0 ? 1.0 - acc->sq_err / var : 0.0,
                      .mse = acc->sq_err / (rows * d), .ce_clean = acc->ce[0] / targets,
                      .ce_sae = acc->ce[1] / targets, .ce_zero = acc->ce[2] / targets };
    double gap = o->ce_zero - o->ce_clean;
    o->ce_score = gap != 0 ? (o->ce_zero - o->ce_sae) / gap : 0.0;
    o->kl_sae = acc->kl[0] / targets;
    o->kl_zero = acc->kl[1] / targets;
    o->kl_score = o->kl_zero > 0 ? 1.0 - o->kl_sae / o->kl_zero : 0.0;
    o->cos_sim = acc->cos / rows;
    o->l2_ratio = acc->ratio / rows;
    for (int i = 0; i < F; i++) {
        double fr = (double)acc->active[i] / rows;
        if (freq) freq[i] = fr;
        o->n_dead += acc->active[i] == 0;
        o->n_dense += fr * 100.0 > SAE_DENSE_PERCENT;
    }
    o->dead_frac = (double)o->n_dead / F;
    o->dense_frac = (double)o->n_dense / F;
}

err_code sae_evaluate(const sae_model *s, const tf_model *tf, const ds_names *names,
                      int batch_size, sae_stats *out, double *freq)
{
    memset(out, 0, sizeof *out);
    err_code e = check_fits(tf, names);
    if (e) return e;
    if (batch_size < 1) batch_size = 64;
    eval_acc acc = { .sum_x = calloc((size_t)s->c.d_model, sizeof(double)),
                     .active = calloc((size_t)s->c.n_features, sizeof(size_t)) };
    size_t *order = NULL;   /* by length, so that batches waste little on padding */
    ag_tape t;
    bool tape = false;
    ds_batch b = { 0 };
    if (!acc.sum_x || !acc.active) e = err_set(ERR_NOMEM, "out of memory");
    if (!e) e = ds_length_order(names, &order);
    if (!e && !(e = ag_init(&t, (size_t)1 << 20))) tape = true;
    if (tape) t.grad = false;
    for (size_t i = 0; !e && i < names->n; i += (size_t)batch_size) {
        int B = names->n - i < (size_t)batch_size ? (int)(names->n - i) : batch_size;
        if ((e = ds_batch_fill(&b, names, order + i, B))) break;
        ag_reset(&t);
        e = eval_batch(s, tf, &t, &b, &acc);
    }
    if (!e) eval_finish(s, &acc, out, freq);
    if (tape) ag_free(&t);
    ds_batch_free(&b);
    free(order);
    free(acc.sum_x);
    free(acc.active);
    return e;
}

void sae_stats_write_tsv(FILE *f, const sae_stats *s)
{
    for (const char *c = SAE_STATS_COLUMNS; *c; c++) fputc(*c == ' ' ? '\t' : *c, f);
    fprintf(f, "\n%.3f\t%.6f\t%.6g\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f"
            "\t%.6f\n", s->l0, s->explained_var, s->mse, s->ce_clean, s->ce_sae, s->ce_zero,
            s->ce_score, s->dead_frac, s->dense_frac, s->kl_sae, s->kl_zero, s->kl_score, s->cos_sim,
            s->l2_ratio);
}

void sae_hist_bounds(int i, double *lo, double *hi)
{
    *lo = -6.0 + 0.5 * (i - 1);
    *hi = *lo + 0.5;
}

void sae_freq_histogram(const double *freq, int F, int count[SAE_HIST_BINS])
{
    memset(count, 0, SAE_HIST_BINS * sizeof *count);
    for (int i = 0; i < F; i++) {
        if (!(freq[i] >= 1e-6)) {
            count[0]++;
            continue;
        }
        int bin = 1 + (int)floor((log10(freq[i]) + 6.0) / 0.5);
        count[bin < 1 ? 1 : bin > SAE_HIST_BINS - 1 ? SAE_HIST_BINS - 1 : bin]++;
    }
}

/* ---- Steering ------------------------------------------------------------ */

err_code sae_steerer_init(sae_steerer *st, const sae_model *s, const sae_edit *edit, int n_edit)
{
    memset(st, 0, sizeof *st);
    for (int i = 0; i < n_edit; i++)
        if (edit[i].feature < 0 || edit[i].feature >= s->c.n_features)
            return err_set(ERR_ARG, "feature %d out of range [0, %d)", edit[i].feature,
                           s->c.n_features);
    st->f = malloc(((size_t)s->c.n_features + sae_scratch_floats(&s->c)) * sizeof *st->f);
    if (!st->f) return err_set(ERR_NOMEM, "out of memory");
    st->s = s;
    st->edit = edit;
    st->n_edit = n_edit;
    return ERR_OK;
}

void sae_steerer_free(sae_steerer *st)
{
    if (!st) return;
    free(st->f);
    st->f = NULL;
}

void sae_steer_hook(void *ctx, int layer, int pos, float *x, int d)
{
    const sae_steerer *st = ctx;
    const sae_model *s = st->s;
    sae_encode(s, x, 1, st->f, st->f + s->c.n_features);
    /* decode(f') + (x - decode(f)) = x + sum_i (f'_i - f_i) W_dec[i]: only the
     * edited features move, so nothing else is rounded differently */
    for (int e = 0; e < st->n_edit; e++) {
        const sae_edit *ed = &st->edit[e];
        float delta = ed->clamp ? ed->value - st->f[ed->feature] : ed->value;
        const float *w = s->W_dec->data + (size_t)ed->feature * d;
        for (int j = 0; j < d; j++) x[j] += delta * w[j];
    }
}

/* ---- Attribution --------------------------------------------------------- */

/* A scalar op: out = x[i].  Backward adds the gradient to x's element i. */
static void pick_backward(ag_node *nd)
{
    if (nd->in[0]->grad) ag_grad(nd->in[0])[nd->iarg[0]] += ag_grad(nd->out)[0];
}

static tensor *pick(ag_tape *t, tensor *x, int i)
{
    tensor *out = ag_tensor(t, 1, (const int[]){ 1 });
    if (!out) return NULL;
    out->data[0] = x->data[i];
    ag_node *nd = ag_record(t, "pick", pick_backward, out);
    if (nd) {
        nd->in[0] = x;
        nd->iarg[0] = i;
    }
    return out;
}

/* Adds delta (d) to the residual at one position: an ablation. */
typedef struct ablate_ctx { int pos; const float *delta; } ablate_ctx;

static void ablate_hook(void *ctx, int layer, int pos, float *x, int d)
{
    const ablate_ctx *a = ctx;
    if (pos != a->pos) return;
    for (int j = 0; j < d; j++) x[j] += a->delta[j];
}

/* log p(target) at position pos of token row x, with delta (d, or NULL)
 * added to the residual after `layer` at pos; logits (V) scratch. */
static double logprob_with(tf_state *st, const int *x, int pos, int target, int layer,
                           const float *delta, float *logits, int V)
{
    ablate_ctx a = { .pos = pos, .delta = delta };
    tf_state_set_hook(st, layer, delta ? ablate_hook : NULL, &a);
    tf_state_start(st);
    for (int p = 0; p <= pos; p++) tf_state_next(st, x[p], logits);
    tf_state_set_hook(st, layer, NULL, NULL);
    smp_log_softmax(logits, V, logits);
    return logits[target];
}

static int by_abs_dla(const void *a, const void *b)
{
    const sae_part *p = a, *q = b;
    double x = fabs(p->dla), y = fabs(q->dla);
    if (x != y) return x > y ? -1 : 1;
    return p->id < q->id ? -1 : p->id > q->id;
}

/* Everything attribution needs about one position (arena or malloc'ed). */
typedef struct attr_work {
    const sae_model *s;
    const tf_model  *tf;
    int    d, V, L, pos, target;
    int   *x;             /* <SOS> + the name, n + 1 tokens */
    float *u;             /* (d) out_norm.weight * emb[target] */
    float *grad;          /* (d) d logit / d residual after L at pos */
    double r;             /* 1 / rms of the final residual at pos */
    float *vec, *logits;  /* (d) a part's vector, (V) scratch */
    tf_state *st;
    double lp0;           /* log p(target) with nothing ablated */
} attr_work;

/* dla, act_grad and ablation of the part whose vector at pos is w->vec. */
static void attr_part(attr_work *w, sae_part *p)
{
    p->dla = w->r * dot(w->vec, w->u, w->d);
    p->act_grad = dot(w->vec, w->grad, w->d);
    for (int j = 0; j < w->d; j++) w->vec[j] = -w->vec[j];
    p->ablation = logprob_with(w->st, w->x, w->pos, w->target, w->L, w->vec, w->logits, w->V) - w->lp0;
}

/* The residuals after L and at the end, the logits, and d logit / d residual. */
static err_code attr_forward(attr_work *w, ag_tape *t, int T, float *resid, sae_attribution *out)
{
    const tf_model *tf = w->tf;
    const int d = w->d, V = w->V, nl = tf_n_layers(tf);
    t->grad = false;
    tensor *h = tf_residual(tf, t, w->x, 1, T, w->L);
    tensor *hf = h && w->L != nl ? tf_residual(tf, t, w->x, 1, T, nl) : h;
    if (!hf) return ERR_ARG;
    const float *xf = hf->data + (size_t)w->pos * d;
    w->r = 1.0 / sqrt(dot(xf, xf, d) / d + TF_NORM_EPS);
    t->grad = true;
    tensor *xl = ag_tensor(t, 3, (const int[]){ 1, T, d });
    memcpy(xl->data, h->data, (size_t)h->n * sizeof *h->data);
    memcpy(resid, h->data + (size_t)w->pos * d, (size_t)d * sizeof *resid);
    tensor *logits = tf_logits_from(tf, t, xl, w->L, 1, T);
    if (!logits) return ERR_ARG;
    const float *row = logits->data + (size_t)w->pos * V;
    out->predicted = TOK_EOS;
    for (int v = TOK_EOS; v < V; v++)   /* <pad> and <SOS> are never predicted */
        if (row[v] > row[out->predicted]) out->predicted = v;
    if (w->target < 0) w->target = out->predicted;
    out->logit = row[w->target];
    memcpy(w->logits, row, (size_t)V * sizeof *row);
    smp_log_softmax(w->logits, V, w->logits);
    out->logprob = w->logits[w->target];
    ag_backward(t, pick(t, logits, w->pos * V + w->target));
    memcpy(w->grad, ag_grad(xl) + (size_t)w->pos * d, (size_t)d * sizeof *w->grad);
    return ERR_OK;
}

/* The parts: active features, the error, the bias (and the later blocks). */
static err_code attr_parts(attr_work *w, const float *resid, sae_attribution *out)
{
    const sae_model *s = w->s;
    const int d = w->d, F = s->c.n_features;
    float *f = malloc(((size_t)F + sae_scratch_floats(&s->c) + d) * sizeof *f);
    if (!f) return err_set(ERR_NOMEM, "out of memory");
    float *xhat = f + F + sae_scratch_floats(&s->c);
    sae_encode(s, resid, 1, f, f + F);
    sae_decode(s, f, 1, xhat);
    int n_active = 0;
    for (int i = 0; i < F; i++) n_active += f[i] > 0.0f;
    out->n_parts = n_active + 2 + !out->exact;
    out->part = calloc((size_t)out->n_parts, sizeof *out->part);
    if (!out->part) {
        free(f);
        return err_set(ERR_NOMEM, "out of memory");
    }
    const float *wd = s->W_dec->data;
    double sum = 0.0;
    int n = 0;
    for (int i = 0; i < F; i++) {
        if (!(f[i] > 0.0f)) continue;
        sae_part *p = &out->part[n++];
        *p = (sae_part){ .kind = SAE_PART_FEATURE, .id = i, .act = f[i] };
        for (int j = 0; j < d; j++) w->vec[j] = f[i] * wd[(size_t)i * d + j];
        attr_part(w, p);
    }
    qsort(out->part, (size_t)n_active, sizeof *out->part, by_abs_dla);
    sae_part *err = &out->part[n++], *bias = &out->part[n++];
    *err = (sae_part){ .kind = SAE_PART_ERROR, .id = -1 };
    for (int j = 0; j < d; j++) w->vec[j] = resid[j] - xhat[j];
    attr_part(w, err);
    *bias = (sae_part){ .kind = SAE_PART_BIAS, .id = -1 };
    memcpy(w->vec, s->b_dec->data, (size_t)d * sizeof *w->vec);
    attr_part(w, bias);
    for (int i = 0; i < n; i++) sum += out->part[i].dla;
    if (!out->exact)   /* what the blocks after L add, beyond the direct path */
        out->part[n++] = (sae_part){ .kind = SAE_PART_LATER, .id = -1, .dla = out->logit - sum,
                                     .act_grad = NAN, .ablation = NAN };
    free(f);
    return ERR_OK;
}

err_code sae_attribute(const sae_model *s, const tf_model *tf, const int *tok, int n, int pos,
                       int target, sae_attribution *out)
{
    memset(out, 0, sizeof *out);
    const int d = tf_d_model(tf), V = tf_vocab_size(tf), T = n + 1;
    if (n < 0 || T > tf_max_len(tf))
        return err_set(ERR_ARG, "a name of %d characters does not fit the transformer "
                       "(max_len %d)", n, tf_max_len(tf));
    if (pos < 0 || pos > n)
        return err_set(ERR_ARG, "position %d is past the end of the name (positions 0..%d: "
                       "0 is before the first character, %d after the last)", pos, n, n);
    if (target < -1 || target >= V) return err_set(ERR_ARG, "target token %d out of range", target);
    attr_work w = { .s = s, .tf = tf, .d = d, .V = V, .L = s->c.layer, .pos = pos, .target = target };
    out->pos = pos;
    out->exact = s->c.layer == tf_n_layers(tf);
    w.x = malloc((size_t)T * sizeof *w.x);
    float *buf = malloc(((size_t)4 * d + V) * sizeof *buf);
    w.st = tf_state_new(tf);
    ag_tape t;
    err_code e = w.x && buf && w.st ? ag_init(&t, (size_t)1 << 20)
                                   : err_set(ERR_NOMEM, "out of memory");
    if (!e) {
        w.x[0] = TOK_SOS;
        memcpy(w.x + 1, tok, (size_t)n * sizeof *tok);
        w.u = buf;
        w.grad = buf + d;
        w.vec = buf + 2 * d;
        w.logits = buf + 4 * d;
        float *resid = buf + 3 * d;
        e = attr_forward(&w, &t, T, resid, out);
        ag_free(&t);
        if (!e) {
            out->target = w.target;
            const float *wn = tf_out_norm_weight(tf), *emb = tf_embedding(tf) + (size_t)w.target * d;
            for (int j = 0; j < d; j++) w.u[j] = wn[j] * emb[j];
            w.lp0 = logprob_with(w.st, w.x, pos, w.target, w.L, NULL, w.logits, V);
            e = attr_parts(&w, resid, out);
        }
    }
    tf_state_free(w.st);
    free(buf);
    free(w.x);
    if (e) sae_attribution_free(out);
    return e;
}

void sae_attribution_free(sae_attribution *a)
{
    if (!a) return;
    free(a->part);
    a->part = NULL;
    a->n_parts = 0;
}
