/* mix.c - mixtures of language models; see mix.h.
 *
 * The one kind that includes kinds.h: its components are models of any
 * kind, loaded through the registry (model.h's exceptions). */
#include "mix.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinds.h"
#include "sampling.h"

const char *const mix_mode_names[] = { "linear", "loglinear", NULL };
const char *const mix_bucket_names[] = { "none", "position", "evidence", "known", NULL };

enum { EM_ITERATIONS = 500, NEWTON_ITERATIONS = 50 };

/* ---- config ----------------------------------------------------------------- */

int mix_n_buckets(const mix_config *c)
{
    static const int n[] = { [MIX_ONE_BUCKET] = 1, [MIX_BY_POSITION] = MIX_POSITION_BUCKETS,
                             [MIX_BY_EVIDENCE] = MIX_EVIDENCE_BUCKETS,
                             [MIX_BY_KNOWN] = MIX_KNOWN_BUCKETS };
    return n[c->buckets];
}

int mix_n_weights(const mix_config *c)
{
    return c->n_components + (c->eos_bias ? 1 : 0);
}

static int position_bucket(int pos)
{
    static const int first[MIX_POSITION_BUCKETS] = { 0, 1, 2, 3, 5, 8, 12 };
    int b = 0;
    while (b + 1 < MIX_POSITION_BUCKETS && pos >= first[b + 1]) b++;
    return b;
}

int mix_bucket(const mix_config *c, mix_where w)
{
    switch (c->buckets) {
    case MIX_ONE_BUCKET: return 0;
    case MIX_BY_POSITION: return position_bucket(w.pos);
    case MIX_BY_EVIDENCE:
        return w.evidence < 0 ? 0 : w.evidence < MIX_EVIDENCE_BUCKETS ? w.evidence : MIX_EVIDENCE_BUCKETS - 1;
    case MIX_BY_KNOWN: return position_bucket(w.pos) + (w.known ? MIX_POSITION_BUCKETS : 0);
    }
    return 0;
}

int mix_evidence_component(const mdl *components, int K)
{
    for (int k = 0; k < K; k++)
        if (components[k].kind && components[k].kind->evidence) return k;
    return -1;
}

/* An <EOS> bias is a log-linear weight: it has no meaning in a linear mixture. */
static bool bias_fits_mode(const mix_config *c)
{
    return !c->eos_bias || c->mode == MIX_LOGLINEAR;
}

err_code mix_config_check(const mix_config *c)
{
    if (c->n_components < 1 || c->n_components > MIX_MAX_COMPONENTS)
        return err_set(ERR_ARG, "n_components %d out of range (1..%d)", c->n_components,
                       MIX_MAX_COMPONENTS);
    if (c->vocab_size < TOK_FIRST + 1)
        return err_set(ERR_ARG, "vocab_size %d out of range", c->vocab_size);
    if ((unsigned)c->mode > MIX_LOGLINEAR || (unsigned)c->buckets > MIX_BY_KNOWN)
        return err_set(ERR_ARG, "unknown mixing mode");
    if (!bias_fits_mode(c)) return err_set(ERR_ARG, "an <EOS> bias needs log-linear weights");
    return ERR_OK;
}

err_code mix_config_to_json(const mix_config *c, char **json)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size) &&
              cJSON_AddNumberToObject(o, "n_components", c->n_components) &&
              cJSON_AddStringToObject(o, "mode", mix_mode_names[c->mode]) &&
              cJSON_AddStringToObject(o, "buckets", mix_bucket_names[c->buckets]) &&
              cJSON_AddNumberToObject(o, "n_buckets", mix_n_buckets(c)) &&
              cJSON_AddBoolToObject(o, "eos_bias", c->eos_bias);
    *json = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return *json ? ERR_OK : err_set(ERR_NOMEM, "cannot build the mix config JSON");
}

/* The index of the string member key in words, or -1. */
static int json_word(const cJSON *o, const char *key, const char *const *words)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    for (int i = 0; cJSON_IsString(v) && words[i]; i++)
        if (!strcmp(v->valuestring, words[i])) return i;
    return -1;
}

err_code mix_config_from_json(mix_config *c, const char *json)
{
    cJSON *o = mdl_config_object(json, MIX_KIND);
    if (!o) return ERR_FORMAT;
    mix_config k = { 0 };
    err_code e = mdl_config_int(o, "mix", "vocab_size", &k.vocab_size);
    if (!e) e = mdl_config_int(o, "mix", "n_components", &k.n_components);
    int mode = json_word(o, "mode", mix_mode_names), buckets = json_word(o, "buckets", mix_bucket_names);
    if (!e && (mode < 0 || buckets < 0))
        e = err_set(ERR_FORMAT, "mix config: 'mode' or 'buckets' is missing or unknown");
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(o, "eos_bias");   /* absent in older files */
    if (!e && bias && !cJSON_IsBool(bias)) e = err_set(ERR_FORMAT, "mix config: 'eos_bias' is not true or false");
    k.eos_bias = cJSON_IsTrue(bias);
    cJSON_Delete(o);
    k.mode = (mix_mode)mode;
    k.buckets = (mix_buckets)buckets;
    if (!e && mix_config_check(&k)) e = err_prefix(ERR_FORMAT, "mix config");
    if (!e) *c = k;
    return e;
}

/* ---- the model ------------------------------------------------------------------- */

static bool same_vocab(const txt_vocab *a, const txt_vocab *b)
{
    return a->size == b->size && !memcmp(a->cp, b->cp, (size_t)a->size * sizeof *a->cp);
}

static void uniform_weights(mix_model *m)
{
    const int K = m->c.n_components, W = mix_n_weights(&m->c);
    for (int i = 0; i < mix_n_buckets(&m->c) * W; i++) m->w[i] = i % W < K ? 1.0f / (float)K : 0.0f;
}

err_code mix_init(mix_model *m, const mix_config *c, mdl *components)
{
    memset(m, 0, sizeof *m);
    err_code e = mix_config_check(c);
    for (int k = 0; !e && k < c->n_components; k++)   /* their logits are not characters' */
        if (components[k].tokens.n_merges)
            e = err_set(ERR_MISMATCH, "component %d is a model of running text in subwords", k);
    for (int k = 1; !e && k < c->n_components; k++)
        if (!same_vocab(&components[k].vocab, &components[0].vocab))
            e = err_set(ERR_MISMATCH, "component %d has another vocabulary than component 0 "
                        "(%d and %d tokens): mix models trained on the same names", k,
                        components[k].vocab.size, components[0].vocab.size);
    if (!e && c->buckets == MIX_BY_EVIDENCE && mix_evidence_component(components, c->n_components) < 0)
        e = err_set(ERR_ARG, "weights by evidence need a component that has some (an n-gram)");
    if (e) return e;
    m->c = *c;
    m->c.vocab_size = components[0].vocab.size;
    for (int k = 0; k < c->n_components; k++) {
        m->comp[k] = components[k];
        components[k] = (mdl){ 0 };
    }
    uniform_weights(m);
    return ERR_OK;
}

void mix_free(mix_model *m)
{
    if (!m) return;
    for (int k = 0; k < m->c.n_components; k++) mdl_free(&m->comp[k]);
    free(m->known);
    memset(m, 0, sizeof *m);
}

/* ---- known names ------------------------------------------------------------------- */

uint64_t mix_hash_token(uint64_t h, int tok)
{
    int32_t t = tok;
    return ck_fnv1a(h, &t, sizeof t);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

err_code mix_known_from_names(const ds_names *names, uint64_t **set, size_t *n)
{
    *n = 0;
    *set = malloc((names->n + 1) * sizeof **set);
    if (!*set) return err_set(ERR_NOMEM, "out of memory for %zu known names", names->n);
    for (size_t i = 0; i < names->n; i++) {
        uint64_t h = MIX_HASH_START;
        for (int p = 0; p < ds_len(names, i); p++) h = mix_hash_token(h, ds_name(names, i)[p]);
        (*set)[i] = h;
    }
    qsort(*set, names->n, sizeof **set, cmp_u64);
    for (size_t i = 0; i < names->n; i++)
        if (*n == 0 || (*set)[*n - 1] != (*set)[i]) (*set)[(*n)++] = (*set)[i];
    return ERR_OK;
}

bool mix_known_has(const uint64_t *set, size_t n, uint64_t h)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (set[mid] < h) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && set[lo] == h;
}

/* "mix.known": present exactly when the weights are by known names; the
 * hashes strictly ascending (so sorted and distinct), copied out. */
static err_code load_known(mix_model *m, const ck_file *f, const char *path)
{
    const ck_tensor *t = ck_get(f, "mix.known");
    if (m->c.buckets != MIX_BY_KNOWN)
        return t ? err_set(ERR_FORMAT, "%s: mix.known without weights by known names", path) : ERR_OK;
    if (!t || t->dtype != CK_I32 || t->ndim != 2 || t->shape[1] != 2 || t->shape[0] < 1 ||
        t->shape[0] > MIX_MAX_KNOWN)
        return err_set(ERR_FORMAT, "%s: weights by known names need mix.known, I32 (n, 2) with "
                       "1 <= n <= %d", path, MIX_MAX_KNOWN);
    size_t n = (size_t)t->shape[0];
    if (!(m->known = malloc(n * sizeof *m->known))) return err_set(ERR_NOMEM, "out of memory");
    memcpy(m->known, t->data, n * sizeof *m->known);
    m->n_known = n;
    for (size_t i = 1; i < n; i++)
        if (m->known[i - 1] >= m->known[i])
            return err_set(ERR_FORMAT, "%s: mix.known is not sorted and distinct", path);
    return ERR_OK;
}

/* Component k of f: its tensors and metadata under "components.k.". */
static err_code load_component(mdl *out, const ck_file *f, const char *path, int k)
{
    char prefix[32], where[4200];
    snprintf(prefix, sizeof prefix, "components.%d.", k);
    snprintf(where, sizeof where, "%.4000s (component %d)", path, k);
    ck_file sub;
    err_code e = ck_sub(f, prefix, &sub);
    if (!e && sub.n_meta == 0) {
        ck_free(&sub);
        return err_set(ERR_FORMAT, "%s: component %d is missing", path, k);
    }
    return e ? e : mdl_load_file(out, &sub, where);
}

err_code mix_load(mix_model *m, const ck_file *f, const char *path, bool optim)
{
    (void)optim;   /* a mixture is not trained: it has no optimiser state */
    const char *json;
    mix_config c;
    mdl comp[MIX_MAX_COMPONENTS] = { { 0 } };
    memset(m, 0, sizeof *m);
    err_code e = mdl_read_meta(f, path, MIX_KIND, &json, NULL);
    if (e) return e;
    if ((e = mix_config_from_json(&c, json))) return err_prefix(e, path);
    for (int k = 0; !e && k < c.n_components; k++) e = load_component(&comp[k], f, path, k);
    const float *w;
    const int64_t shape[2] = { mix_n_buckets(&c), mix_n_weights(&c) };
    if (!e) e = ck_get_f32(f, "mix.weights", 2, shape, &w);   /* names the file itself */
    if (!e && (e = mix_init(m, &c, comp))) e = err_prefix(e, path);
    if (!e) memcpy(m->w, w, (size_t)(shape[0] * shape[1]) * sizeof *w);
    if (!e) e = load_known(m, f, path);
    for (int k = 0; k < c.n_components; k++) mdl_free(&comp[k]);   /* emptied when moved */
    if (e) mix_free(m);
    return e;
}

/* Every tensor but the optimiser state, and every metadata entry, of
 * component k under its prefix. */
static err_code put_component(ck_writer *w, const ck_file *f, int k)
{
    char name[512];
    err_code e = ERR_OK;
    for (int i = 0; !e && i < f->n; i++) {
        const ck_tensor *t = &f->t[i];
        if (!strncmp(t->name, "optim.", 6)) continue;
        snprintf(name, sizeof name, "components.%d.%s", k, t->name);
        e = ck_put(w, name, t->dtype, t->ndim, t->shape, t->data);
    }
    for (int i = 0; !e && i < f->n_meta; i++) {
        snprintf(name, sizeof name, "components.%d.%s", k, f->key[i]);
        e = ck_put_meta(w, name, f->val[i]);
    }
    return e;
}

err_code mix_save(const mix_model *m, const char *path)
{
    ck_writer *w = ck_writer_new();
    char *config = NULL;
    err_code e = mix_config_to_json(&m->c, &config);
    if (!e) e = mdl_put_meta(w, MIX_KIND, config, &m->comp[0].vocab);
    const int64_t shape[2] = { mix_n_buckets(&m->c), mix_n_weights(&m->c) };
    if (!e) e = ck_put(w, "mix.weights", CK_F32, 2, shape, m->w);
    if (!e && m->c.buckets == MIX_BY_KNOWN) {
        const int64_t known_shape[2] = { (int64_t)m->n_known, 2 };
        e = m->n_known ? ck_put(w, "mix.known", CK_I32, 2, known_shape, m->known)
                       : err_set(ERR_ARG, "weights by known names without known names");
    }
    for (int k = 0; !e && k < m->c.n_components; k++) e = put_component(w, &m->comp[k].file, k);
    if (!e) e = ck_write(w, path);
    free(config);
    ck_writer_free(w);
    return e;
}

/* ---- combining distributions --------------------------------------------------------- */

/* The mixture's log-probabilities (V) from the components' floored
 * log-probabilities lp (K, V) with the weights wb (mix_n_weights) of one bucket. */
static void combine(const mix_config *c, const float *wb, const float *lp, int V, float *out)
{
    const int K = c->n_components;
    for (int y = 0; y < V; y++) {
        double acc = 0;
        for (int k = 0; k < K; k++)
            acc += c->mode == MIX_LINEAR ? wb[k] * exp(lp[k * V + y]) : wb[k] * lp[k * V + y];
        if (c->eos_bias && y == TOK_EOS) acc += wb[K];
        out[y] = c->mode == MIX_LINEAR ? (float)log(acc) : (float)acc;
    }
    if (c->mode == MIX_LOGLINEAR) smp_log_softmax(out, V, out);
}

/* Floored log-softmax of logits, in place. */
static void floored_log_softmax(float *x, int V)
{
    smp_log_softmax(x, V, x);
    for (int y = 0; y < V; y++)
        if (!(x[y] >= MIX_LOG_FLOOR)) x[y] = MIX_LOG_FLOOR;   /* -inf and NaN too */
}

/* ---- generation -------------------------------------------------------------------- */

struct mix_state {
    const mix_model *m;
    int        pos;                          /* predictions made since start */
    uint64_t   hash;                         /* of the name so far (mix_hash_token) */
    int        evidence;                     /* the component giving evidence, or -1 */
    mdl_state  st[MIX_MAX_COMPONENTS];
    float      lp[];                         /* (K, V) */
};

void mix_state_free(mix_state *s)
{
    if (!s) return;
    for (int k = 0; k < s->m->c.n_components; k++) mdl_state_free(&s->st[k]);
    free(s);
}

mix_state *mix_state_new(const mix_model *m)
{
    const int K = m->c.n_components, V = m->c.vocab_size;
    mix_state *s = calloc(1, sizeof *s + (size_t)K * V * sizeof(float));
    if (!s) {
        err_set(ERR_NOMEM, "mix: out of memory for a generation state");
        return NULL;
    }
    s->m = m;
    s->evidence = mix_evidence_component(m->comp, K);
    for (int k = 0; k < K; k++)
        if (mdl_state_new(&s->st[k], &m->comp[k])) {
            mix_state_free(s);
            return NULL;
        }
    return s;
}

void mix_state_start(mix_state *s)
{
    s->pos = 0;
    s->hash = MIX_HASH_START;
    for (int k = 0; k < s->m->c.n_components; k++) mdl_start(&s->st[k]);
}

/* The components' logits for the token after tok are in s->lp: floor
 * them, combine them. */
static void mix_lane(mix_state *s, int tok, float *logits)
{
    const mix_model *m = s->m;
    const int K = m->c.n_components, V = m->c.vocab_size;
    for (int k = 0; k < K; k++) floored_log_softmax(s->lp + (size_t)k * V, V);
    bool by_known = m->c.buckets == MIX_BY_KNOWN && s->pos > 0;   /* <SOS> comes first */
    if (by_known) s->hash = mix_hash_token(s->hash, tok);
    mix_where w = { s->pos, s->evidence < 0 ? -1 : mdl_evidence(&s->st[s->evidence]),
                    by_known && mix_known_has(m->known, m->n_known, s->hash) };
    s->pos++;
    combine(&m->c, m->w + (size_t)mix_bucket(&m->c, w) * mix_n_weights(&m->c), s->lp, V, logits);
}

/* Every component advances its own state; the mixture combines them. */
void mix_state_next(mix_state *s, int tok, float *logits)
{
    const int V = s->m->c.vocab_size;
    for (int k = 0; k < s->m->c.n_components; k++) mdl_next(&s->st[k], tok, s->lp + (size_t)k * V);
    mix_lane(s, tok, logits);
}

/* n streams: each component takes its n states in one batched step (its
 * logits lent the output rows), then each stream combines its own. */
static void mix_kind_next_batch(const void *impl, void *const *st, const int *tok, int n, float *logits)
{
    const mix_model *m = impl;
    const size_t V = (size_t)m->c.vocab_size;
    mdl_state *comp[MDL_BATCH_MAX];
    for (int k = 0; k < m->c.n_components; k++) {
        for (int i = 0; i < n; i++) comp[i] = &((mix_state *)st[i])->st[k];
        mdl_next_batch(comp, n, tok, logits);
        for (int i = 0; i < n; i++)
            memcpy(((mix_state *)st[i])->lp + k * V, logits + i * V, V * sizeof *logits);
    }
    for (int i = 0; i < n; i++) mix_lane(st[i], tok[i], logits + i * V);
}

/* The shortest limit of the components (0 = none has one). */
int mix_max_len(const mix_model *m)
{
    int best = 0;
    for (int k = 0; k < m->c.n_components; k++) {
        int L = mdl_max_len(&m->comp[k]);
        if (L > 0 && (best == 0 || L < best)) best = L;
    }
    return best;
}

bool mix_weighs_known_names(const mdl *m)
{
    if (m->kind != &mix_kind) return false;
    const mix_model *x = m->impl;
    bool known = x->c.buckets == MIX_BY_KNOWN;
    for (int k = 0; !known && k < x->c.n_components; k++) known = mix_weighs_known_names(&x->comp[k]);
    return known;
}

MDL_KIND_FUNCS(mix, mix_model, mix_state, mix_load)
const mdl_kind mix_kind = { MDL_KIND_MEMBERS(mix, MIX_KIND), .next_batch = mix_kind_next_batch };

/* ---- the data the weights are fitted on ----------------------------------------------- */

void mix_data_free(mix_data *d)
{
    if (!d) return;
    free(d->first);
    free(d->where);
    free(d->target);
    free(d->logp);
    memset(d, 0, sizeof *d);
}

static err_code data_alloc(mix_data *d, int K, int V, const ds_names *names)
{
    memset(d, 0, sizeof *d);
    d->K = K;
    d->V = V;
    d->n_names = names->n;
    for (size_t i = 0; i < names->n; i++) d->n += (size_t)ds_len(names, i) + 1;
    d->first = malloc((names->n + 1) * sizeof *d->first);
    d->where = malloc((d->n + 1) * sizeof *d->where);
    d->target = malloc((d->n + 1) * sizeof *d->target);
    d->logp = malloc((d->n * K * V + 1) * sizeof *d->logp);
    if (d->first && d->where && d->target && d->logp) return ERR_OK;
    mix_data_free(d);
    return err_set(ERR_NOMEM, "out of memory for the mixture's data (%zu targets)", d->n);
}

/* Component k over name i: its floored log-probabilities at every target
 * (and, from the evidence component, the evidence). */
static err_code collect_name(mix_data *d, mdl_state *st, int k, bool evidence, const ds_names *names,
                             size_t i)
{
    const int V = d->V, K = d->K, n = ds_len(names, i);
    const int *tok = ds_name(names, i);
    if (n > mdl_max_chars(st->m))
        return err_set(ERR_ARG, "name %zu has %d characters: component %d takes at most %d", i + 1,
                       n, k, mdl_max_chars(st->m));
    mdl_start(st);
    int prev = TOK_SOS;
    for (int p = 0; p <= n; p++) {
        size_t t = d->first[i] + (size_t)p;
        float *lp = d->logp + (t * K + (size_t)k) * V;
        mdl_next(st, prev, lp);
        floored_log_softmax(lp, V);
        if (k == 0) d->where[t] = (mix_where){ .pos = p, .evidence = -1, .known = 0 };
        if (evidence) d->where[t].evidence = mdl_evidence(st);
        d->target[t] = p < n ? tok[p] : TOK_EOS;
        prev = d->target[t];
    }
    return ERR_OK;
}

err_code mix_data_collect(mix_data *d, const mdl *components, int K, const ds_names *names)
{
    for (int k = 1; k < K; k++)
        if (mdl_vocab_size(&components[k]) != mdl_vocab_size(&components[0]))
            return err_set(ERR_MISMATCH, "component %d has another vocabulary than component 0", k);
    err_code e = data_alloc(d, K, mdl_vocab_size(&components[0]), names);
    if (e) return e;
    d->first[0] = 0;
    for (size_t i = 0; i < names->n; i++) d->first[i + 1] = d->first[i] + (size_t)ds_len(names, i) + 1;
    for (int k = 0; !e && k < K; k++) {
        mdl_state st;
        if ((e = mdl_state_new(&st, &components[k]))) break;
        bool evidence = k == mix_evidence_component(components, K);
        for (size_t i = 0; !e && i < names->n; i++) e = collect_name(d, &st, k, evidence, names, i);
        mdl_state_free(&st);
    }
    if (e) mix_data_free(d);
    return e;
}

void mix_data_mark_known(mix_data *d, const ds_names *names, const uint64_t *set, size_t n)
{
    for (size_t i = 0; i < d->n_names; i++) {
        uint64_t h = MIX_HASH_START;
        for (size_t t = d->first[i]; t < d->first[i + 1]; t++) {
            int p = (int)(t - d->first[i]);
            if (p > 0) h = mix_hash_token(h, ds_name(names, i)[p - 1]);
            d->where[t].known = p > 0 && mix_known_has(set, n, h);
        }
    }
}

err_code mix_known_attach(mix_model *m, mix_data *d, const ds_names *known_names, const ds_names *names)
{
    free(m->known);
    m->known = NULL;
    err_code e = mix_known_from_names(known_names, &m->known, &m->n_known);
    if (!e) mix_data_mark_known(d, names, m->known, m->n_known);
    return e;
}

/* ---- fitting ---------------------------------------------------------------------------- */

/* Loop over the targets t of the names with side[i] == which (every name
 * when side is NULL) that fall in bucket b (-1: every bucket). */
#define FOR_TARGETS(d, c, side, which, b, t)                                              \
    for (size_t name_ = 0; name_ < (d)->n_names; name_++)                                  \
        if (!(side) || (side)[name_] == (which))                                           \
            for (size_t t = (d)->first[name_]; t < (d)->first[name_ + 1]; t++)             \
                if ((b) < 0 || mix_bucket((c), (d)->where[t]) == (b))

/* The same computation as generation (combine), so that a name's loss
 * here is the loss generate --score gives it. */
double mix_nll(const mix_data *d, const mix_config *c, const float *w, const uint8_t *side,
               int which, size_t *n)
{
    double nll = 0;
    float *out = malloc((size_t)d->V * sizeof *out);
    *n = 0;
    if (!out) return NAN;
    FOR_TARGETS(d, c, side, which, -1, t) {
        combine(c, w + (size_t)mix_bucket(c, d->where[t]) * mix_n_weights(c), d->logp + t * d->K * d->V,
                d->V, out);
        nll -= out[d->target[t]];
        (*n)++;
    }
    free(out);
    return nll;
}

double mix_component_nll(const mix_data *d, int k, const uint8_t *side, int which, size_t *n)
{
    const mix_config one = { .buckets = MIX_ONE_BUCKET };
    double nll = 0;
    *n = 0;
    FOR_TARGETS(d, &one, side, which, -1, t) {
        nll -= d->logp[(t * d->K + (size_t)k) * d->V + d->target[t]];
        (*n)++;
    }
    return nll;
}

/* EM for the linear weights wb (K) of bucket b. */
static void fit_linear(const mix_data *d, const mix_config *c, const uint8_t *side, int which, int b,
                       float *wb)
{
    const int K = d->K;
    double w[MIX_MAX_COMPONENTS], acc[MIX_MAX_COMPONENTS];
    for (int k = 0; k < K; k++) w[k] = 1.0 / K;
    for (int it = 0; it < EM_ITERATIONS; it++) {
        double total = 0, change = 0;
        for (int k = 0; k < K; k++) acc[k] = 0;
        FOR_TARGETS(d, c, side, which, b, t) {
            double p[MIX_MAX_COMPONENTS], z = 0;
            for (int k = 0; k < K; k++) z += p[k] = w[k] * exp(d->logp[(t * K + k) * d->V + d->target[t]]);
            for (int k = 0; k < K; k++) acc[k] += p[k] / z;
            total += 1;
        }
        if (total == 0) break;   /* no target in this bucket: keep uniform */
        for (int k = 0; k < K; k++) {
            change = fmax(change, fabs(acc[k] / total - w[k]));
            w[k] = acc[k] / total;
        }
        if (change < 1e-9) break;
    }
    for (int k = 0; k < K; k++) wb[k] = (float)w[k];
}

/* The features x (W, V) the log-linear weights of target t multiply:
 * the components' log-probabilities, then (with an <EOS> bias) the
 * indicator of <EOS>. */
static void features(const mix_data *d, const mix_config *c, size_t t, double *x)
{
    const size_t KV = (size_t)d->K * d->V;
    const float *lp = d->logp + t * KV;
    for (size_t i = 0; i < KV; i++) x[i] = lp[i];
    if (!c->eos_bias) return;
    for (int y = 0; y < d->V; y++) x[KV + y] = y == TOK_EOS;
}

/* Negative log-likelihood of bucket b's targets under log-linear weights
 * w (W = mix_n_weights), with its gradient g and Hessian h (W x W) when
 * they are not NULL. */
static double loglinear_nll(const mix_data *d, const mix_config *c, const uint8_t *side, int which,
                            int b, const double *w, double *g, double *h)
{
    const int W = mix_n_weights(c), V = d->V;
    double nll = 0, *q = malloc((size_t)V * sizeof *q), *x = malloc((size_t)W * V * sizeof *x);
    if (!q || !x) {
        free(q);
        free(x);
        return NAN;
    }
    if (g) memset(g, 0, (size_t)W * sizeof *g);
    if (h) memset(h, 0, (size_t)W * W * sizeof *h);
    FOR_TARGETS(d, c, side, which, b, t) {
        features(d, c, t, x);
        double mx = -INFINITY, z = 0, mean[MIX_MAX_WEIGHTS] = { 0 };
        for (int y = 0; y < V; y++) {
            q[y] = 0;
            for (int k = 0; k < W; k++) q[y] += w[k] * x[k * V + y];
            mx = fmax(mx, q[y]);
        }
        for (int y = 0; y < V; y++) z += q[y] = exp(q[y] - mx);
        double s_target = 0;
        for (int k = 0; k < W; k++) s_target += w[k] * x[k * V + d->target[t]];
        nll += mx + log(z) - s_target;
        if (!g) continue;
        for (int y = 0; y < V; y++) {
            q[y] /= z;
            for (int k = 0; k < W; k++) mean[k] += q[y] * x[k * V + y];
        }
        for (int k = 0; k < W; k++) g[k] += mean[k] - x[k * V + d->target[t]];
        for (int y = 0; h && y < V; y++)
            for (int k = 0; k < W; k++)
                for (int j = 0; j < W; j++)
                    h[k * W + j] += q[y] * (x[k * V + y] - mean[k]) * (x[j * V + y] - mean[j]);
    }
    free(q);
    free(x);
    return nll;
}

/* Solve h x = g (K x K, symmetric positive semi-definite, damped) by
 * Gaussian elimination; h and g are overwritten. */
static void solve(double *h, double *g, double *x, int K)
{
    for (int k = 0; k < K; k++) h[k * K + k] += 1e-9 * (1 + fabs(h[k * K + k]));
    for (int i = 0; i < K; i++)
        for (int r = i + 1; r < K; r++) {
            double f = h[r * K + i] / h[i * K + i];
            for (int j = i; j < K; j++) h[r * K + j] -= f * h[i * K + j];
            g[r] -= f * g[i];
        }
    for (int i = K - 1; i >= 0; i--) {
        double s = g[i];
        for (int j = i + 1; j < K; j++) s -= h[i * K + j] * x[j];
        x[i] = s / h[i * K + i];
    }
}

/* A ridge of MIX_RIDGE |w - onehot(anchor)|^2 nats (over the W weights:
 * the <EOS> bias is pulled to 0), anchor the component best alone on the
 * names fitted: nothing beside a bucket's thousands of
 * targets, but a bucket of a few dozen with many components would
 * otherwise fit them exactly (16 components with weights by evidence
 * scored 1.540 cross-fitted without it, 1.475 with it).  Anchored there,
 * the fitted mixture stays at least as good as that component, ridge
 * included. */
#define MIX_RIDGE 1.0

static double ridge(const double *w, double *g, double *h, int W, int anchor)
{
    double r = 0;
    for (int k = 0; k < W; k++) {
        double e = w[k] - (k == anchor);
        r += MIX_RIDGE * e * e;
        if (g) g[k] += 2 * MIX_RIDGE * e;
        if (h) h[k * W + k] += 2 * MIX_RIDGE;
    }
    return r;
}

/* The penalised objective of fit_loglinear. */
static double loglinear_objective(const mix_data *d, const mix_config *c, const uint8_t *side,
                                  int which, int b, int anchor, const double *w, double *g,
                                  double *h)
{
    double f = loglinear_nll(d, c, side, which, b, w, g, h);
    return f + ridge(w, g, h, mix_n_weights(c), anchor);
}

/* Newton's method with a halving line search for bucket b's log-linear weights. */
static void fit_loglinear(const mix_data *d, const mix_config *c, const uint8_t *side, int which,
                          int b, int anchor, float *wb)
{
    const int K = d->K, W = mix_n_weights(c);
    double w[MIX_MAX_WEIGHTS] = { 0 }, g[MIX_MAX_WEIGHTS], h[MIX_MAX_WEIGHTS * MIX_MAX_WEIGHTS];
    double step[MIX_MAX_WEIGHTS], trial[MIX_MAX_WEIGHTS];
    for (int k = 0; k < K; k++) w[k] = 1.0 / K;   /* the <EOS> bias from 0 */
    double f = loglinear_objective(d, c, side, which, b, anchor, w, g, h);
    for (int it = 0; it < NEWTON_ITERATIONS && isfinite(f); it++) {
        solve(h, g, step, W);
        double a = 1, ft = INFINITY;
        for (; a > 1e-6; a /= 2) {
            for (int k = 0; k < W; k++) trial[k] = w[k] - a * step[k];
            if ((ft = loglinear_objective(d, c, side, which, b, anchor, trial, NULL, NULL)) < f) break;
        }
        if (!(ft < f)) break;
        memcpy(w, trial, (size_t)W * sizeof *w);
        bool done = f - ft < 1e-10 * fmax(1, fabs(f));
        f = loglinear_objective(d, c, side, which, b, anchor, w, g, h);
        if (done) break;
    }
    for (int k = 0; k < W; k++) wb[k] = (float)w[k];
}

err_code mix_fit(const mix_data *d, const mix_config *c, const uint8_t *side, int which, float *w)
{
    if (d->K != c->n_components) return err_set(ERR_ARG, "mix_fit: %d components, %d in the data", c->n_components, d->K);
    int anchor = 0;   /* the component best alone on these names (the ridge's centre) */
    double best = INFINITY;
    for (int k = 0; k < d->K; k++) {
        size_t n;
        double nll = mix_component_nll(d, k, side, which, &n);
        if (nll < best) best = nll, anchor = k;
    }
    for (int b = 0; b < mix_n_buckets(c); b++) {
        float *wb = w + (size_t)b * mix_n_weights(c);
        if (c->mode == MIX_LINEAR) fit_linear(d, c, side, which, b, wb);
        else fit_loglinear(d, c, side, which, b, anchor, wb);
    }
    return ERR_OK;
}

err_code mix_halves(size_t n_names, uint64_t seed, uint8_t **side)
{
    size_t *order = malloc((n_names + 1) * sizeof *order);
    *side = malloc(n_names + 1);
    if (!order || !*side) {
        free(order);
        free(*side);
        *side = NULL;
        return err_set(ERR_NOMEM, "out of memory");
    }
    rng r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n_names; i++) order[i] = i;
    for (size_t i = n_names; i > 1; i--) {   /* Fisher-Yates */
        size_t j = rng_below(&r, (uint32_t)i), tmp = order[i - 1];
        order[i - 1] = order[j];
        order[j] = tmp;
    }
    for (size_t i = 0; i < n_names; i++) (*side)[order[i]] = (uint8_t)(i % 2);
    free(order);
    return ERR_OK;
}

err_code mix_crossfit(const mix_data *d, const mix_config *c, const uint8_t *side, double *loss)
{
    float w[MIX_MAX_BUCKETS * MIX_MAX_WEIGHTS];
    double nll = 0;
    size_t n = 0, part;
    for (int half = 0; half < 2; half++) {
        err_code e = mix_fit(d, c, side, half, w);
        if (e) return e;
        nll += mix_nll(d, c, w, side, 1 - half, &part);
        n += part;
    }
    *loss = n ? nll / (double)n : NAN;
    return ERR_OK;
}

/* Cross-fit c, then fit it on every name. */
static err_code try_config(const mix_data *d, const mix_config *c, const uint8_t *side, mix_trial *t)
{
    size_t n;
    t->c = *c;
    err_code e = mix_crossfit(d, c, side, &t->crossfit_loss);
    if (!e) e = mix_fit(d, c, NULL, 0, t->w);
    if (!e) t->fit_loss = mix_nll(d, c, t->w, NULL, 0, &n) / (double)n;
    return e;
}

/* Whether ch allows the mixture c. */
static bool allowed(const mix_choices *ch, const mix_config *c)
{
    if (ch->mode != MIX_ANY && ch->mode != (int)c->mode) return false;
    if (ch->buckets != MIX_ANY && ch->buckets != (int)c->buckets) return false;
    if (ch->eos_bias != MIX_ANY && ch->eos_bias != (int)c->eos_bias) return false;
    if ((c->buckets == MIX_BY_EVIDENCE && !ch->evidence) || (c->buckets == MIX_BY_KNOWN && !ch->known))
        return false;
    return bias_fits_mode(c);
}

err_code mix_search(const mix_data *d, const mix_config *base, const mix_choices *ch,
                    const uint8_t *side, mix_trial *trials, int *n, int *best)
{
    *n = 0;
    *best = -1;
    for (int md = MIX_LINEAR; md <= MIX_LOGLINEAR; md++)
        for (int bias = 0; bias <= 1; bias++)
            for (int b = MIX_ONE_BUCKET; b <= MIX_BY_KNOWN; b++) {
                mix_config c = *base;
                c.mode = (mix_mode)md;
                c.buckets = (mix_buckets)b;
                c.eos_bias = bias;
                if (!allowed(ch, &c)) continue;
                err_code e = try_config(d, &c, side, &trials[*n]);
                if (e) return e;
                if (*best < 0 || trials[*n].crossfit_loss < trials[*best].crossfit_loss) *best = *n;
                (*n)++;
            }
    if (*n == 0) return err_set(ERR_ARG, "no mixture to try: weights by evidence need a component "
                                "that has some (an n-gram), weights by known names the training "
                                "names, an <EOS> bias log-linear weights");
    return ERR_OK;
}
