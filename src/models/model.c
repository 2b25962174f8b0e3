/* model.c - the registry of model kinds and the code every kind shares:
 * loading a checkpoint, sampling a name, scoring a name; see model.h. */
#include "model.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mix.h"
#include "mlp.h"
#include "ngram.h"
#include "rnn.h"
#include "transformer.h"

/* Every kind generate / explore / steer can load.  A new kind adds one line
 * here (and includes its header above); nothing else switches on kinds. */
static const mdl_kind *const kinds[] = {
    &ng_kind,
    &mlp_kind,
    &rnn_kind,
    &tf_kind,
    &mix_kind,
};

enum { N_KINDS = sizeof kinds / sizeof kinds[0] };

const mdl_kind *mdl_find_kind(const char *name)
{
    for (int i = 0; name && i < N_KINDS; i++)
        if (strcmp(kinds[i]->name, name) == 0) return kinds[i];
    return NULL;
}

/* A metadata string as it may be shown in a message: at most 40 bytes,
 * control characters replaced, so a hostile file cannot garble the line. */
static const char *shown(const char *s, char out[48])
{
    size_t i = 0;
    for (; s[i] && i < 40; i++) out[i] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
    strcpy(out + i, s[i] ? "..." : "");
    return out;
}

static err_code unknown_kind(const char *path, const char *name)
{
    char known[256] = "", b[48];
    for (int i = 0; i < N_KINDS; i++) {
        size_t used = strlen(known);
        snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "", kinds[i]->name);
    }
    return err_set(ERR_FORMAT, "%s: unknown model kind '%s' (this build generates with: %s)",
                   path, shown(name, b), known);
}

/* The config's vocab_size, when there is one, must match the vocabulary. */
static err_code check_vocab_size(const ck_file *f, const char *path, int size)
{
    cJSON *cfg = cJSON_Parse(ck_meta(f, "config") ? ck_meta(f, "config") : "");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "vocab_size");
    bool bad = cJSON_IsNumber(v) && v->valuedouble != size;
    double got = bad ? v->valuedouble : 0;
    cJSON_Delete(cfg);
    if (bad)
        return err_set(ERR_FORMAT, "%s: the config says %g tokens, the vocabulary has %d", path,
                       got, size);
    return ERR_OK;
}

err_code mdl_load(mdl *m, const char *path)
{
    if (!m || !path) return err_set(ERR_ARG, "mdl_load: NULL argument");
    *m = (mdl){ 0 };
    ck_file f;
    err_code e = ck_read(path, &f);
    return e ? e : mdl_load_file(m, &f, path);
}

err_code mdl_load_file(mdl *m, ck_file *f, const char *path)
{
    *m = (mdl){ .file = *f };
    *f = (ck_file){ 0 };
    const char *name = ck_meta(&m->file, "model");
    /* Format and version first, so that a foreign file is called that. */
    err_code e = ck_expect_model(&m->file, path, name ? name : "");
    if (!e && !(m->kind = mdl_find_kind(name))) e = unknown_kind(path, name);
    const char *vocab = ck_meta(&m->file, "vocab");
    if (!e && !vocab) e = err_set(ERR_FORMAT, "%s: no vocabulary in the metadata", path);
    if (!e && (e = txt_vocab_from_json(&m->vocab, vocab))) e = err_prefix(e, path);
    if (!e) e = check_vocab_size(&m->file, path, m->vocab.size);
    if (!e) e = m->kind->load(&m->file, path, &m->impl);
    if (e) {
        m->impl = NULL;
        mdl_free(m);
    }
    return e;
}

err_code mdl_load_struct(const ck_file *f, const char *path, void **impl, size_t size,
                         err_code (*fill)(void *m, const ck_file *f, const char *path),
                         void (*kind_free)(void *impl))
{
    *impl = NULL;
    void *m = calloc(1, size);
    if (!m) return err_set(ERR_NOMEM, "%s: out of memory for the model", path);
    err_code e = fill(m, f, path);
    if (e) {
        kind_free(m);
        return e;
    }
    *impl = m;
    return ERR_OK;
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
    ck_free(&m->file);
    *m = (mdl){ 0 };
}

int mdl_vocab_size(const mdl *m) { return m ? m->vocab.size : 0; }

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
