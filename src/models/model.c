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

/* max_chars within the model's limit. */
static int char_limit(const mdl *m, int max_chars)
{
    int limit = mdl_max_chars(m);
    return max_chars > limit ? limit : max_chars;
}

int mdl_sample_name(mdl_state *s, const smp_config *c, rng *r, const int *prefix,
                    int n_prefix, int max_chars, int *tok, float *scratch)
{
    float *logits = scratch, *smp_scratch = scratch + mdl_vocab_size(s->m);
    max_chars = char_limit(s->m, max_chars);
    mdl_start(s);
    mdl_next(s, TOK_SOS, logits);
    int n = 0;
    for (; n < n_prefix && n < max_chars; n++) {
        tok[n] = prefix[n];
        if (n + 1 < max_chars) mdl_next(s, prefix[n], logits);
    }
    while (n < max_chars) {
        logits[TOK_PAD] = logits[TOK_SOS] = -INFINITY;
        int t = smp_sample(logits, mdl_vocab_size(s->m), c, r, smp_scratch);
        if (t < 0) return -1;   /* every token has probability 0 */
        if (t == TOK_EOS) break;
        tok[n++] = t;
        if (n < max_chars) mdl_next(s, t, logits);
    }
    return n;
}

double mdl_score_name(mdl_state *s, const int *tok, int n, int *n_pred, float *scratch)
{
    int V = mdl_vocab_size(s->m);
    if (n != char_limit(s->m, n)) {   /* longer than the model can take */
        *n_pred = 0;
        return NAN;
    }
    mdl_start(s);
    mdl_next(s, TOK_SOS, scratch);
    double nll = 0;
    for (int i = 0; i <= n; i++) {
        int target = i < n ? tok[i] : TOK_EOS;
        /* The whole softmax, <pad> and <SOS> included, as the trainers' loss. */
        smp_log_softmax(scratch, V, scratch);
        nll -= scratch[target];
        if (i < n) mdl_next(s, tok[i], scratch);
    }
    *n_pred = n + 1;
    return nll;
}
