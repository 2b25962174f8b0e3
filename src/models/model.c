/* model.c - the code every kind shares: the helpers of the contract's
 * functions, streams, sampling a name, scoring a name; see model.h.  It
 * knows no kind: the list of kinds is kinds.c's. */
#include "model.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The config's vocab_size member into *size; false when it has none (or
 * is not JSON: its kind's parser says so). */
static bool config_vocab_size(const char *config, double *size)
{
    cJSON *cfg = cJSON_Parse(config);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "vocab_size");
    bool has = cJSON_IsNumber(v);
    if (has) *size = v->valuedouble;
    cJSON_Delete(cfg);
    return has;
}

/* Tokens beyond the characters v: the merges of a subword tokenizer. */
static err_code merge_count(const ck_file *f, const txt_vocab *v, int *n)
{
    *n = 0;
    const char *tokenizer = ck_meta(f, "tokenizer");
    if (!tokenizer || strcmp(tokenizer, "bpe")) return ERR_OK;
    bpe b;
    err_code e = bpe_from_json(&b, v, ck_meta(f, "merges"));
    if (!e) *n = b.n_merges;
    bpe_free(&b);
    return e;
}

err_code mdl_read_meta(const ck_file *f, const char *path, const char *kind,
                       const char **config, txt_vocab *v)
{
    err_code e = ck_expect_model(f, path, kind);
    if (e) return e;
    const char *cfg = ck_meta(f, "config"), *vocab = ck_meta(f, "vocab");
    if (!cfg || !vocab)
        return err_set(ERR_FORMAT, "%s: no %s in the metadata", path,
                       cfg ? "vocabulary" : "config");
    txt_vocab parsed;
    if ((e = txt_vocab_from_json(&parsed, vocab))) return err_prefix(e, path);
    double size;
    int merges = 0;
    if ((e = merge_count(f, &parsed, &merges))) e = err_prefix(e, path);
    else if (config_vocab_size(cfg, &size) && size != parsed.size + merges)
        e = err_set(ERR_FORMAT, "%s: the config says %g tokens, the vocabulary has %d", path,
                    size, parsed.size + merges);
    if (!e && v) *v = parsed;
    else txt_vocab_free(&parsed);
    if (!e && config) *config = cfg;
    return e;
}

err_code mdl_put_meta(ck_writer *w, const char *kind, const char *config, const txt_vocab *v)
{
    if (!w) return err_set(ERR_NOMEM, "out of memory for a checkpoint writer");
    double size;
    if (config_vocab_size(config, &size) && size != v->size)
        return err_set(ERR_ARG, "a vocabulary of %d tokens for a %s of %g", v->size, kind, size);
    char *vocab = NULL;
    err_code e = txt_vocab_to_json(v, &vocab);
    if (!e) e = ck_put_meta(w, "format", CK_FORMAT);
    if (!e) e = ck_put_meta(w, "format_version", CK_FORMAT_VERSION);
    if (!e) e = ck_put_meta(w, "model", kind);
    if (!e) e = ck_put_meta(w, "config", config);
    if (!e) e = ck_put_meta(w, "vocab", vocab);
    free(vocab);
    return e;
}

err_code mdl_save_params(const char *path, const char *kind, const char *config,
                         const txt_vocab *v, const tn_params *p)
{
    ck_writer *w = ck_writer_new();
    err_code e = mdl_put_meta(w, kind, config, v);
    if (!e) e = tn_params_save(p, w, false);
    if (!e) e = ck_write(w, path);
    ck_writer_free(w);
    return e;
}

cJSON *mdl_config_object(const char *json, const char *what)
{
    cJSON *o = json ? cJSON_Parse(json) : NULL;
    if (cJSON_IsObject(o)) return o;
    cJSON_Delete(o);
    err_set(ERR_FORMAT, "%s config is not a JSON object", what);
    return NULL;
}

err_code mdl_config_int(const cJSON *config, const char *what, const char *key, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(config, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        fabs(v->valuedouble) > 1e9)
        return err_set(ERR_FORMAT, "%s config: '%s' is missing or not an integer", what, key);
    *out = (int)v->valuedouble;
    return ERR_OK;
}

void mdl_free(mdl *m)
{
    if (!m) return;
    if (m->kind && m->impl) m->kind->free(m->impl);
    txt_vocab_free(&m->vocab);
    bpe_free(&m->tokens);
    ck_free(&m->file);
    *m = (mdl){ 0 };
}

int mdl_vocab_size(const mdl *m) { return m ? m->vocab.size + m->tokens.n_merges : 0; }

int mdl_max_len(const mdl *m) { return m && m->kind ? m->kind->max_len(m->impl) : 0; }

int mdl_max_chars(const mdl *m)
{
    int L = mdl_max_len(m);
    return L > 0 ? L - 1 : INT_MAX;
}

err_code mdl_state_new(mdl_state *s, const mdl *m)
{
    if (!s || !m || !m->kind) return err_set(ERR_ARG, "mdl_state_new: no model");
    s->m = m;
    s->st = m->kind->state_new(m->impl);
    return s->st ? ERR_OK : ERR_NOMEM;
}

void mdl_state_free(mdl_state *s)
{
    if (!s || !s->m) return;
    s->m->kind->state_free(s->st);
    *s = (mdl_state){ 0 };
}

void mdl_start(mdl_state *s) { s->m->kind->start(s->m->impl, s->st); }

int mdl_evidence(const mdl_state *s)
{
    return s->m->kind->evidence ? s->m->kind->evidence(s->m->impl, s->st) : -1;
}

void mdl_next(mdl_state *s, int tok, float *logits)
{
    s->m->kind->next(s->m->impl, s->st, tok, logits);
}

void mdl_next_batch(mdl_state *const *s, int n, const int *tok, float *logits)
{
    if (n <= 0) return;
    const mdl *m = s[0]->m;
    const size_t V = (size_t)mdl_vocab_size(m);
    if (!m->kind->next_batch) {
        for (int i = 0; i < n; i++) mdl_next(s[i], tok[i], logits + i * V);
        return;
    }
    void *st[MDL_BATCH_MAX];
    for (int first = 0; first < n; first += MDL_BATCH_MAX) {
        const int count = n - first < MDL_BATCH_MAX ? n - first : MDL_BATCH_MAX;
        for (int i = 0; i < count; i++) st[i] = s[first + i]->st;
        m->kind->next_batch(m->impl, st, tok + first, count, logits + first * V);
    }
}

/* max_chars within the model's limit. */
static int char_limit(const mdl *m, int max_chars)
{
    int limit = mdl_max_chars(m);
    return max_chars > limit ? limit : max_chars;
}

int mdl_sampler_start(mdl_sampler *s, const mdl *m, const smp_config *c, const int *prefix,
                      int n_prefix, int max_chars, int *tok)
{
    *s = (mdl_sampler){ .c = c, .prefix = prefix, .n_prefix = n_prefix,
                        .max_chars = char_limit(m, max_chars), .V = mdl_vocab_size(m), .tok = tok };
    return TOK_SOS;
}

/* The next token to feed after character t, or the end of the name. */
static int fed_next(const mdl_sampler *s, int t) { return s->n < s->max_chars ? t : MDL_NAME_DONE; }

int mdl_sampler_step(mdl_sampler *s, float *logits, rng *r, float *scratch)
{
    if (s->n < s->n_prefix && s->n < s->max_chars) {   /* forced: the logits are not used */
        s->tok[s->n] = s->prefix[s->n];
        s->n++;
        return fed_next(s, s->tok[s->n - 1]);
    }
    if (s->n >= s->max_chars) return MDL_NAME_DONE;
    logits[TOK_PAD] = logits[TOK_SOS] = -INFINITY;
    int t = smp_sample(logits, s->V, s->c, r, scratch);
    if (t < 0) return MDL_NAME_IMPOSSIBLE;
    if (t == TOK_EOS) return MDL_NAME_DONE;
    s->tok[s->n++] = t;
    return fed_next(s, t);
}

int mdl_sample_name(mdl_state *s, const smp_config *c, rng *r, const int *prefix,
                    int n_prefix, int max_chars, int *tok, float *scratch)
{
    mdl_sampler sm;
    float *logits = scratch;
    int t = mdl_sampler_start(&sm, s->m, c, prefix, n_prefix, max_chars, tok);
    mdl_start(s);
    while (t >= 0) {
        mdl_next(s, t, logits);
        t = mdl_sampler_step(&sm, logits, r, scratch + sm.V);
    }
    return t == MDL_NAME_DONE ? sm.n : -1;
}

int mdl_scorer_start(mdl_scorer *s, const int *tok, int n)
{
    *s = (mdl_scorer){ .tok = tok, .n = n };
    return TOK_SOS;
}

int mdl_scorer_step(mdl_scorer *s, int V, float *logits)
{
    int target = s->i < s->n ? s->tok[s->i] : TOK_EOS;
    /* The whole softmax, <pad> and <SOS> included, as the trainers' loss. */
    smp_log_softmax(logits, V, logits);
    s->nll -= logits[target];
    return s->i++ < s->n ? target : MDL_NAME_DONE;
}

double mdl_score_name(mdl_state *s, const int *tok, int n, int *n_pred, float *scratch)
{
    if (n != char_limit(s->m, n)) {   /* longer than the model can take */
        *n_pred = 0;
        return NAN;
    }
    mdl_scorer sc;
    int t = mdl_scorer_start(&sc, tok, n);
    mdl_start(s);
    while (t >= 0) {
        mdl_next(s, t, scratch);
        t = mdl_scorer_step(&sc, mdl_vocab_size(s->m), scratch);
    }
    *n_pred = n + 1;
    return sc.nll;
}
