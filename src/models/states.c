/* states.c - residual paths and attention weights of one name; see states.h. */
#include "states.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "interp.h"
#include "text.h"
#include "vec.h"

enum { TAPE_BYTES = 1 << 16 };

static double dotf(const float *a, const float *b, int d)
{
    double s = 0;
    for (int j = 0; j < d; j++) s += (double)a[j] * b[j];
    return s;
}

static double cosine(const float *a, const float *b, int d)
{
    double na = sqrt(dotf(a, a, d)), nb = sqrt(dotf(b, b, d));
    return na > 0 && nb > 0 ? dotf(a, b, d) / (na * nb) : 0.0;
}

/* The residual states (n_layers + 1, T, d) of <SOS> tok (n) into h. */
static err_code all_states(const tf_model *tf, const int *tok, int n, float *h)
{
    const int T = n + 1, d = tf_d_model(tf), NL = tf_n_layers(tf);
    int *x = malloc((size_t)T * sizeof *x);
    ag_tape t;
    if (!x) return err_set(ERR_NOMEM, "out of memory for %d positions", T);
    err_code e = ag_init(&t, TAPE_BYTES);
    if (e) {
        free(x);
        return e;
    }
    t.grad = false;
    x[0] = TOK_SOS;
    memcpy(x + 1, tok, (size_t)n * sizeof *x);
    for (int L = 0; !e && L <= NL; L++) {
        ag_reset(&t);
        tensor *r = tf_residual(tf, &t, x, 1, T, L);
        if (!r) e = ERR_ARG;
        else memcpy(h + (size_t)L * T * d, r->data, (size_t)T * d * sizeof *h);
    }
    ag_free(&t);
    free(x);
    return e;
}

static err_code check_len(const tf_model *tf, int n)
{
    if (n < 0 || n + 1 > tf_max_len(tf))
        return err_set(ERR_ARG, "%d letters: the model takes at most %d", n, tf_max_len(tf) - 1);
    return ERR_OK;
}

void st_path_free(st_path *s)
{
    if (!s) return;
    free(s->in);
    free(s->next);
    free(s->pred);
    free(s->norm);
    free(s->cos_next);
    free(s->cos_in);
    free(s->cos_pred);
    free(s->rank_pred);
    free(s->rank_next);
    free(s->emb_xy);
    free(s->dir_xy);
    free(s->state_xy);
    free(s->tok_xy);
    memset(s, 0, sizeof *s);
}

static err_code path_alloc(st_path *s)
{
    const size_t T = (size_t)s->T, cells = (size_t)(s->n_layers + 1) * T;
    s->in = malloc(T * sizeof *s->in);
    s->next = malloc(T * sizeof *s->next);
    s->pred = malloc(T * sizeof *s->pred);
    s->norm = malloc(cells * sizeof *s->norm);
    s->cos_next = malloc(cells * sizeof *s->cos_next);
    s->cos_in = malloc(cells * sizeof *s->cos_in);
    s->cos_pred = malloc(cells * sizeof *s->cos_pred);
    s->rank_pred = malloc(cells * sizeof *s->rank_pred);
    s->rank_next = malloc(cells * sizeof *s->rank_next);
    s->emb_xy = malloc(2 * cells * sizeof *s->emb_xy);
    s->dir_xy = malloc(2 * cells * sizeof *s->dir_xy);
    s->state_xy = malloc(2 * cells * sizeof *s->state_xy);
    s->tok_xy = calloc(2 * (size_t)s->V, sizeof *s->tok_xy);
    if (!s->in || !s->next || !s->pred || !s->norm || !s->cos_next || !s->cos_in || !s->cos_pred ||
        !s->rank_pred || !s->rank_next || !s->emb_xy || !s->dir_xy || !s->state_xy || !s->tok_xy)
        return err_set(ERR_NOMEM, "out of memory for a path of %d positions", s->T);
    return ERR_OK;
}

/* The rank (from 1) of token `want` among the predictable tokens by cos
 * (V); ties rank the lower token first. */
static int rank_of(const double *cos, int V, int want)
{
    int r = 1;
    for (int v = TOK_EOS; v < V; v++)
        r += cos[v] > cos[want] || (cos[v] == cos[want] && v < want);
    return r;
}

/* The model's prediction at each position: argmax of the final logits
 * over the predictable tokens.  last (T, d): the states after the last layer. */
static void predictions(st_path *s, const tf_model *tf, const float *last, float *logits)
{
    for (int p = 0; p < s->T; p++) {
        tf_unembed(tf, last + (size_t)p * s->d, logits);
        int best = TOK_EOS;
        for (int v = TOK_EOS + 1; v < s->V; v++)
            if (logits[v] > logits[best]) best = v;
        s->pred[p] = best;
    }
}

/* Norms, cosines and ranks of every state h (n_layers + 1, T, d); cos (V) scratch. */
static void geometry(st_path *s, const tf_model *tf, const float *h, double *cos)
{
    const float *E = tf_embedding(tf);
    const int d = s->d;
    for (int L = 0; L <= s->n_layers; L++)
        for (int p = 0; p < s->T; p++) {
            const size_t at = st_at(s, L, p);
            const float *x = h + at * d;
            for (int v = 0; v < s->V; v++) cos[v] = cosine(x, E + (size_t)v * d, d);
            s->norm[at] = sqrt(dotf(x, x, d));
            s->cos_next[at] = cos[s->next[p]];
            s->cos_in[at] = cos[s->in[p]];
            s->cos_pred[at] = cos[s->pred[p]];
            s->rank_pred[at] = rank_of(cos, s->V, s->pred[p]);
            s->rank_next[at] = rank_of(cos, s->V, s->next[p]);
        }
}

/* The mean norm of the embeddings of every token but <pad>. */
static double mean_norm(const float *E, int V, int d)
{
    double s = 0;
    for (int v = 1; v < V; v++) s += sqrt(dotf(E + (size_t)v * d, E + (size_t)v * d, d));
    return V > 1 ? s / (V - 1) : 0.0;
}

/* The 2-D coordinates: on the embeddings' axes (tokens, states and their
 * directions), and on the axes of the states themselves.  x (d) scratch. */
static err_code coordinates(st_path *s, const tf_model *tf, const float *h, float *x)
{
    const int d = s->d, n_states = (s->n_layers + 1) * s->T;
    const float *E = tf_embedding(tf);
    const double scale = mean_norm(E, s->V, d);
    double *mean = malloc((size_t)d * sizeof *mean), *axes = malloc(2 * (size_t)d * sizeof *axes);
    err_code e = mean && axes ? ip_pca2_axes(E + d, s->V - 1, d, mean, axes)
                              : err_set(ERR_NOMEM, "out of memory for the PCA of %d dimensions", d);
    for (int v = 1; !e && v < s->V; v++) ip_pca2_project(mean, axes, d, E + (size_t)v * d, s->tok_xy + 2 * v);
    for (int i = 0; !e && i < n_states; i++) {
        const float *state = h + (size_t)i * d;
        ip_pca2_project(mean, axes, d, state, s->emb_xy + 2 * i);
        for (int j = 0; j < d; j++) x[j] = s->norm[i] > 0 ? (float)(state[j] * scale / s->norm[i]) : 0.0f;
        ip_pca2_project(mean, axes, d, x, s->dir_xy + 2 * i);
    }
    if (!e) e = ip_pca2(h, n_states, d, s->state_xy);
    free(mean);
    free(axes);
    return e;
}

err_code st_path_compute(st_path *out, const tf_model *tf, const int *tok, int n)
{
    memset(out, 0, sizeof *out);
    err_code e = check_len(tf, n);
    if (e) return e;
    *out = (st_path){ .n_layers = tf_n_layers(tf), .T = n + 1, .d = tf_d_model(tf), .V = tf_vocab_size(tf) };
    const size_t states = (size_t)(out->n_layers + 1) * out->T;
    float *h = malloc(states * out->d * sizeof *h), *logits = malloc((size_t)(out->V + out->d) * sizeof *logits);
    double *cos = malloc((size_t)out->V * sizeof *cos);
    e = h && logits && cos ? path_alloc(out) : err_set(ERR_NOMEM, "out of memory for a path");
    if (!e) e = all_states(tf, tok, n, h);
    if (!e) {
        out->in[0] = TOK_SOS;
        memcpy(out->in + 1, tok, (size_t)n * sizeof *tok);
        memcpy(out->next, tok, (size_t)n * sizeof *tok);
        out->next[n] = TOK_EOS;
        predictions(out, tf, h + (size_t)out->n_layers * out->T * out->d, logits);
        geometry(out, tf, h, cos);
        e = coordinates(out, tf, h, logits);   /* logits (>= d floats) free again */
    }
    free(h);
    free(logits);
    free(cos);
    if (e) st_path_free(out);
    return e;
}

/* ---- Attention ------------------------------------------------------------ */

/* w (H, T, T) of one layer from its input states x (T, d): q = Wq n, k = Wk n,
 * n = RMSNorm(x; attn_norm), head h on dimensions h dh .. (h + 1) dh - 1.
 * q, k (T, d), nx (d) scratch. */
static void layer_weights(const tf_model *tf, const tf_layer *ly, const float *x, int T, float *w, float *q,
                          float *k, float *nx)
{
    const int d = tf_d_model(tf), H = tf_n_heads(tf), dh = d / H;
    const double scale = 1.0 / sqrt((double)dh);
    for (int p = 0; p < T; p++) {
        vec_rmsnorm(nx, x + (size_t)p * d, ly->attn_norm->data, d, TF_NORM_EPS);
        for (int o = 0; o < d; o++) {
            q[(size_t)p * d + o] = (float)dotf(ly->wq->data + (size_t)o * d, nx, d);
            k[(size_t)p * d + o] = (float)dotf(ly->wk->data + (size_t)o * d, nx, d);
        }
    }
    for (int hd = 0; hd < H; hd++)
        for (int i = 0; i < T; i++) {
            float *row = w + ((size_t)hd * T + i) * T;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j <= i; j++) {
                row[j] = (float)(dotf(q + (size_t)i * d + hd * dh, k + (size_t)j * d + hd * dh, dh) * scale);
                mx = fmax(mx, row[j]);
            }
            for (int j = 0; j <= i; j++) sum += row[j] = (float)exp(row[j] - mx);
            for (int j = 0; j < T; j++) row[j] = j <= i ? (float)(row[j] / sum) : 0.0f;
        }
}

err_code st_attention(const tf_model *tf, const int *tok, int n, float **w)
{
    *w = NULL;
    err_code e = check_len(tf, n);
    if (e) return e;
    const int T = n + 1, d = tf_d_model(tf), NL = tf_n_layers(tf), H = tf_n_heads(tf);
    float *h = malloc((size_t)(NL + 1) * T * d * sizeof *h), *q = malloc((size_t)T * d * sizeof *q);
    float *k = malloc((size_t)T * d * sizeof *k), *nx = malloc((size_t)d * sizeof *nx);
    *w = malloc((size_t)NL * H * T * T * sizeof **w);
    e = h && q && k && nx && *w ? all_states(tf, tok, n, h) : err_set(ERR_NOMEM, "out of memory for attention");
    for (int L = 0; !e && L < NL; L++)
        layer_weights(tf, &tf->layer[L], h + (size_t)L * T * d, T, *w + (size_t)L * H * T * T, q, k, nx);
    free(h);
    free(q);
    free(k);
    free(nx);
    if (e) {
        free(*w);
        *w = NULL;
    }
    return e;
}
