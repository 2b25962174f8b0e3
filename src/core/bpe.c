/* bpe.c - the byte-pair-encoding subword tokenizer; see bpe.h. */
#include "bpe.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static err_code no_memory(void) { return err_set(ERR_NOMEM, "out of memory for the tokenizer"); }

/* ---- a map from token pairs to integers ----------------------------------- */

/* Open addressing; key 0 marks an empty slot (a pair of non-special tokens
 * is never 0). */
struct bpe_pair_map {
    uint64_t *key;
    int      *val;
    size_t    cap, n;   /* cap a power of two, n < cap / 2 */
};

static uint64_t pair_key(int l, int r) { return (uint64_t)(uint32_t)l << 32 | (uint32_t)r; }

static size_t slot_of(const bpe_pair_map *m, uint64_t k)
{
    uint64_t h = k ^ k >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    size_t i = (size_t)h & (m->cap - 1);
    while (m->key[i] && m->key[i] != k) i = (i + 1) & (m->cap - 1);
    return i;
}

/* The value of k, or -1. */
static int pm_get(const bpe_pair_map *m, uint64_t k)
{
    if (!m || !m->cap) return -1;
    size_t i = slot_of(m, k);
    return m->key[i] ? m->val[i] : -1;
}

static void pm_free(bpe_pair_map *m)
{
    if (!m) return;
    free(m->key);
    free(m->val);
    free(m);
}

static err_code pm_put(bpe_pair_map *m, uint64_t k, int v);

static err_code pm_grow(bpe_pair_map *m)
{
    bpe_pair_map old = *m;
    m->cap = old.cap ? 2 * old.cap : 64;   /* small: a short text has few pairs */
    m->n = 0;
    m->key = calloc(m->cap, sizeof *m->key);
    m->val = malloc(m->cap * sizeof *m->val);
    err_code rc = m->key && m->val ? ERR_OK : no_memory();
    for (size_t i = 0; !rc && i < old.cap; i++)
        if (old.key[i]) rc = pm_put(m, old.key[i], old.val[i]);
    free(old.key);
    free(old.val);
    return rc;
}

static err_code pm_put(bpe_pair_map *m, uint64_t k, int v)
{
    if (2 * (m->n + 1) > m->cap) {
        err_code rc = pm_grow(m);
        if (rc) return rc;
    }
    size_t i = slot_of(m, k);
    if (!m->key[i]) m->n++;
    m->key[i] = k;
    m->val[i] = v;
    return ERR_OK;
}

/* ---- the tokenizer -------------------------------------------------------- */

err_code bpe_init(bpe *b, const txt_vocab *v)
{
    memset(b, 0, sizeof *b);
    if (!v || v->size < TOK_FIRST || v->size > BPE_MAX_TOKENS)
        return err_set(ERR_ARG, "bpe_init: no vocabulary");
    b->n_base = v->size;
    b->cp = malloc((size_t)v->size * sizeof *b->cp);
    b->start = malloc(((size_t)v->size + 1) * sizeof *b->start);
    b->rank = calloc(1, sizeof *b->rank);
    if (!b->cp || !b->start || !b->rank) {
        bpe_free(b);
        return no_memory();
    }
    size_t n = 0;
    for (int t = 0; t < v->size; t++) {
        b->start[t] = n;
        if (t >= TOK_FIRST) b->cp[n++] = v->cp[t];
    }
    b->start[v->size] = n;
    b->cap_cp = (size_t)v->size;
    return ERR_OK;
}

void bpe_free(bpe *b)
{
    if (!b) return;
    free(b->left);
    free(b->right);
    free(b->cp);
    free(b->start);
    pm_free(b->rank);
    memset(b, 0, sizeof *b);
}

int bpe_n_tokens(const bpe *b) { return b->n_base + b->n_merges; }

size_t bpe_token_chars(const bpe *b, int t)
{
    return t >= 0 && t < bpe_n_tokens(b) ? b->start[t + 1] - b->start[t] : 0;
}

int bpe_token_utf8(const bpe *b, int t, char *buf)
{
    int n = 0;
    size_t len = bpe_token_chars(b, t);
    for (size_t i = 0; i < len; i++) n += txt_encode_cp(b->cp[b->start[t] + i], buf + n);
    buf[n] = '\0';
    return n;
}

/* Room for merge n_merges and its ll code points: the arrays grow by
 * doubling (cap_merges, cap_cp), so learning or reading k merges copies
 * O(k) entries, not O(k^2). */
static err_code reserve_merge(bpe *b, size_t ll)
{
    int T = bpe_n_tokens(b);
    size_t need_cp = b->start[T] + ll;
    if (b->n_merges == b->cap_merges) {
        int cap = b->cap_merges ? 2 * b->cap_merges : 16;
        int *left = realloc(b->left, (size_t)cap * sizeof *left);
        if (left) b->left = left;
        int *right = left ? realloc(b->right, (size_t)cap * sizeof *right) : NULL;
        if (right) b->right = right;
        size_t *start = right ? realloc(b->start, ((size_t)b->n_base + cap + 1) * sizeof *start)
                              : NULL;
        if (!start) return no_memory();
        b->start = start;
        b->cap_merges = cap;
    }
    if (need_cp > b->cap_cp) {
        size_t cap = 2 * need_cp;
        int32_t *cp = realloc(b->cp, cap * sizeof *cp);
        if (!cp) return no_memory();
        b->cp = cp;
        b->cap_cp = cap;
    }
    return ERR_OK;
}

/* Append merge (l, r) as token n_base + n_merges: its code points, its rank. */
static err_code add_merge(bpe *b, int l, int r)
{
    int n = b->n_merges, T = bpe_n_tokens(b);
    size_t ll = bpe_token_chars(b, l), lr = bpe_token_chars(b, r);
    err_code rc = reserve_merge(b, ll + lr);
    if (rc) return rc;
    size_t *start = b->start;
    memcpy(b->cp + start[T], b->cp + start[l], ll * sizeof *b->cp);
    memcpy(b->cp + start[T] + ll, b->cp + start[r], lr * sizeof *b->cp);
    start[T + 1] = start[T] + ll + lr;
    b->left[n] = l;
    b->right[n] = r;
    b->n_merges++;
    return pm_put(b->rank, pair_key(l, r), n);
}

/* ---- words ---------------------------------------------------------------- */

enum { CLS_SPECIAL, CLS_WORD, CLS_SPACE, CLS_NEWLINE, CLS_OTHER };

static uint8_t class_of(int32_t c)
{
    if (c == '\n') return CLS_NEWLINE;
    if (c == ' ' || c == '\t') return CLS_SPACE;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return CLS_WORD;
    default:
        return CLS_OTHER;
    }
}

/* The class of every character token of b (n_base bytes, malloc'ed). */
static uint8_t *classes(const bpe *b)
{
    uint8_t *cls = malloc((size_t)b->n_base);
    for (int t = 0; cls && t < b->n_base; t++)
        cls[t] = t < TOK_FIRST ? CLS_SPECIAL : class_of(b->cp[b->start[t]]);
    return cls;
}

/* The end of the word of character tokens starting at tok[i] (see bpe.h). */
static size_t word_end(const uint8_t *cls, const int *tok, size_t n, size_t i)
{
    uint8_t c = cls[tok[i]];
    size_t j = i + 1;
    if (c == CLS_SPACE && j < n && cls[tok[j]] == CLS_WORD) c = cls[tok[j++]];   /* " word" */
    if (c != CLS_NEWLINE && c != CLS_SPECIAL)
        while (j < n && j - i < BPE_MAX_CHARS && cls[tok[j]] == c) j++;
    return j;
}

/* Check the character tokens before using them as indices. */
static err_code check_chars(const bpe *b, const int *tok, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (tok[i] < 0 || tok[i] >= b->n_base)
            return err_set(ERR_ARG, "token %d at %zu is not a character of the vocabulary",
                           tok[i], i);
    return ERR_OK;
}

/* Join every occurrence of (l, r) in w (len) into t, left to right; the new length. */
static int join(int *w, int len, int l, int r, int t)
{
    int k = 0;
    for (int j = 0; j < len; j++) {
        if (j + 1 < len && w[j] == l && w[j + 1] == r) {
            w[k++] = t;
            j++;
        } else {
            w[k++] = w[j];
        }
    }
    return k;
}

/* ---- encoding ------------------------------------------------------------- */

/* Apply the merges to one word w (len <= BPE_MAX_CHARS); its new length. */
static int encode_word(const bpe *b, int *w, int len)
{
    for (;;) {
        int best = INT_MAX;
        for (int j = 0; j + 1 < len; j++) {
            int r = pm_get(b->rank, pair_key(w[j], w[j + 1]));
            if (r >= 0 && r < best) best = r;
        }
        if (best == INT_MAX) return len;
        len = join(w, len, b->left[best], b->right[best], b->n_base + best);
    }
}

err_code bpe_encode(const bpe *b, const int *chars, size_t n, int **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    err_code rc = check_chars(b, chars, n);
    if (rc) return rc;
    uint8_t *cls = classes(b);
    int *o = malloc((n ? n : 1) * sizeof *o);
    if (!cls || !o) {
        free(cls);
        free(o);
        return no_memory();
    }
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t end = word_end(cls, chars, n, i);
        memcpy(o + k, chars + i, (end - i) * sizeof *o);
        k += (size_t)encode_word(b, o + k, (int)(end - i));
        i = end;
    }
    free(cls);
    *out = o;
    *n_out = k;
    return ERR_OK;
}

/* ---- learning ------------------------------------------------------------- */

typedef struct word {
    size_t  off;     /* its tokens: sym[off .. off + len) */
    int     len;
    int64_t count;   /* occurrences in the text */
    int     stamp;   /* the last merge that visited it */
} word;

typedef struct pair_entry {
    int     l, r;
    int64_t count;   /* occurrences inside words, weighted by word counts */
    int    *words;   /* words that contained the pair when it was listed */
    int     n_words, cap_words;
} pair_entry;

typedef struct learner {
    bpe          *b;
    int          *sym;
    size_t        n_sym;
    word         *w;
    int           n_w, cap_w;
    pair_entry   *e;
    int           n_e, cap_e;
    bpe_pair_map  index;   /* pair -> entry */
} learner;

static void learner_free(learner *L)
{
    for (int i = 0; i < L->n_e; i++) free(L->e[i].words);
    free(L->e);
    free(L->w);
    free(L->sym);
    free(L->index.key);
    free(L->index.val);
}

/* Room for one more distinct word: a text has far fewer than characters. */
static err_code grow_words(learner *L)
{
    int cap = L->cap_w ? 2 * L->cap_w : 256;
    word *w = realloc(L->w, (size_t)cap * sizeof *w);
    if (!w) return no_memory();
    L->w = w;
    L->cap_w = cap;
    return ERR_OK;
}

/* The distinct words of tok with their counts, via a table of word indices. */
static err_code collect_words(learner *L, const int *tok, size_t n, const uint8_t *cls)
{
    size_t cap = 64;
    while (cap < 2 * n + 16) cap *= 2;   /* at most n words: load < 1/2 */
    int *table = malloc(cap * sizeof *table);
    L->sym = malloc((n ? n : 1) * sizeof *L->sym);
    if (!table || !L->sym) {
        free(table);
        return no_memory();
    }
    memset(table, -1, cap * sizeof *table);
    for (size_t i = 0; i < n;) {
        size_t end = word_end(cls, tok, n, i), len = end - i;
        uint64_t h = 1469598103934665603ull;
        for (size_t j = i; j < end; j++) h = (h ^ (uint64_t)tok[j]) * 1099511628211ull;
        size_t s = (size_t)h & (cap - 1);
        while (table[s] >= 0 && !((size_t)L->w[table[s]].len == len &&
                                  !memcmp(L->sym + L->w[table[s]].off, tok + i, len * sizeof *tok)))
            s = (s + 1) & (cap - 1);
        if (table[s] < 0) {
            if (L->n_w == L->cap_w && grow_words(L)) {
                free(table);
                return no_memory();
            }
            table[s] = L->n_w;
            L->w[L->n_w++] = (word){ .off = L->n_sym, .len = (int)len, .count = 0, .stamp = -1 };
            memcpy(L->sym + L->n_sym, tok + i, len * sizeof *tok);
            L->n_sym += len;
        }
        L->w[table[s]].count++;
        i = end;
    }
    free(table);
    return ERR_OK;
}

/* The entry of pair (l, r), created with count 0 when new; -1 when out of memory. */
static int entry_of(learner *L, int l, int r)
{
    int i = pm_get(&L->index, pair_key(l, r));
    if (i >= 0) return i;
    if (L->n_e == L->cap_e) {
        int cap = L->cap_e ? 2 * L->cap_e : 64;
        pair_entry *e = realloc(L->e, (size_t)cap * sizeof *e);
        if (!e) return -1;
        L->e = e;
        L->cap_e = cap;
    }
    L->e[L->n_e] = (pair_entry){ .l = l, .r = r };
    if (pm_put(&L->index, pair_key(l, r), L->n_e)) return -1;
    return L->n_e++;
}

static err_code list_word(pair_entry *e, int w)
{
    if (e->n_words && e->words[e->n_words - 1] == w) return ERR_OK;
    if (e->n_words == e->cap_words) {
        int cap = e->cap_words ? 2 * e->cap_words : 4;
        int *p = realloc(e->words, (size_t)cap * sizeof *p);
        if (!p) return no_memory();
        e->words = p;
        e->cap_words = cap;
    }
    e->words[e->n_words++] = w;
    return ERR_OK;
}

/* Add sign * count(w) to the pairs of word w; list w under those that
 * contain token `with` (every pair when with < 0). */
static err_code count_pairs(learner *L, int w, int sign, int with)
{
    const word *x = &L->w[w];
    const int *s = L->sym + x->off;
    for (int j = 0; j + 1 < x->len; j++) {
        int i = entry_of(L, s[j], s[j + 1]);
        if (i < 0) return no_memory();
        L->e[i].count += sign * x->count;
        if (sign > 0 && (with < 0 || s[j] == with || s[j + 1] == with)) {
            err_code rc = list_word(&L->e[i], w);
            if (rc) return rc;
        }
    }
    return ERR_OK;
}

/* The most frequent pair (ties: first in token order), -1 if none occurs twice. */
static int best_pair(const learner *L)
{
    int best = -1;
    for (int i = 0; i < L->n_e; i++) {
        const pair_entry *e = &L->e[i];
        if (e->count < 2) continue;
        if (best < 0 || e->count > L->e[best].count ||
            (e->count == L->e[best].count &&
             (e->l < L->e[best].l || (e->l == L->e[best].l && e->r < L->e[best].r))))
            best = i;
    }
    return best;
}

static bool has_pair(const int *s, int len, int l, int r)
{
    for (int j = 0; j + 1 < len; j++)
        if (s[j] == l && s[j + 1] == r) return true;
    return false;
}

/* Make entry i's pair the next token and update the counts of its words. */
static err_code merge_best(learner *L, int i)
{
    int l = L->e[i].l, r = L->e[i].r, t = bpe_n_tokens(L->b), stamp = L->b->n_merges;
    err_code rc = add_merge(L->b, l, r);
    int *ws = L->e[i].words, n = L->e[i].n_words;   /* entries may move below */
    L->e[i].words = NULL;
    L->e[i].n_words = L->e[i].cap_words = 0;
    for (int k = 0; !rc && k < n; k++) {
        word *x = &L->w[ws[k]];
        int *s = L->sym + x->off;
        if (x->stamp == stamp || !has_pair(s, x->len, l, r)) continue;
        x->stamp = stamp;
        rc = count_pairs(L, ws[k], -1, -1);
        x->len = join(s, x->len, l, r, t);
        if (!rc) rc = count_pairs(L, ws[k], +1, t);
    }
    free(ws);
    return rc;
}

err_code bpe_learn(bpe *b, const int *tok, size_t n, int vocab_size)
{
    if (vocab_size < b->n_base || vocab_size > BPE_MAX_TOKENS)
        return err_set(ERR_ARG, "a vocabulary of %d tokens: give %d (the characters) to %d",
                       vocab_size, b->n_base, BPE_MAX_TOKENS);
    err_code rc = check_chars(b, tok, n);
    if (rc) return rc;
    uint8_t *cls = classes(b);
    learner L = { .b = b };
    rc = cls ? collect_words(&L, tok, n, cls) : no_memory();
    free(cls);
    for (int w = 0; !rc && w < L.n_w; w++) rc = count_pairs(&L, w, +1, -1);
    while (!rc && bpe_n_tokens(b) < vocab_size) {
        int i = best_pair(&L);
        if (i < 0) break;
        rc = merge_best(&L, i);
    }
    learner_free(&L);
    return rc;
}

/* ---- JSON ----------------------------------------------------------------- */

err_code bpe_to_json(const bpe *b, char **json)
{
    size_t cap = 3 + (size_t)b->n_merges * 26, k = 0;
    char *s = malloc(cap);
    if (!s) return no_memory();
    s[k++] = '[';
    for (int i = 0; i < b->n_merges; i++)
        k += (size_t)snprintf(s + k, cap - k, "%s[%d,%d]", i ? "," : "", b->left[i], b->right[i]);
    snprintf(s + k, cap - k, "]");
    *json = s;
    return ERR_OK;
}

/* Token number j (0 or 1) of merge i, checked: an integer naming an earlier
 * non-special token. */
static err_code merge_token(const bpe *b, const cJSON *pair, int i, int j, int *out)
{
    const cJSON *v = cJSON_GetArrayItem(pair, j);
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (d != floor(d) || d < TOK_FIRST || d >= bpe_n_tokens(b))
        return err_set(ERR_FORMAT, "merge %d: token %d is not an earlier token", i, j);
    *out = (int)d;
    return ERR_OK;
}

static err_code read_merges(bpe *b, const cJSON *arr)
{
    if (!cJSON_IsArray(arr)) return err_set(ERR_FORMAT, "the merges are not a JSON array");
    int i = 0;
    const cJSON *pair;
    cJSON_ArrayForEach(pair, arr) {
        int l = 0, r = 0;
        if (bpe_n_tokens(b) >= BPE_MAX_TOKENS)
            return err_set(ERR_FORMAT, "more than %d tokens", BPE_MAX_TOKENS);
        if (!cJSON_IsArray(pair) || cJSON_GetArraySize(pair) != 2)
            return err_set(ERR_FORMAT, "merge %d is not a pair", i);
        err_code rc = merge_token(b, pair, i, 0, &l);
        if (!rc) rc = merge_token(b, pair, i, 1, &r);
        if (rc) return rc;
        if (bpe_token_chars(b, l) + bpe_token_chars(b, r) > BPE_MAX_CHARS)
            return err_set(ERR_FORMAT, "merge %d makes a token of more than %d characters", i,
                           BPE_MAX_CHARS);
        if (pm_get(b->rank, pair_key(l, r)) >= 0)
            return err_set(ERR_FORMAT, "merge %d repeats an earlier one", i);
        if ((rc = add_merge(b, l, r))) return rc;
        i++;
    }
    return ERR_OK;
}

err_code bpe_from_json(bpe *b, const txt_vocab *v, const char *json)
{
    err_code rc = bpe_init(b, v);
    if (rc) return rc;
    cJSON *arr = json ? cJSON_Parse(json) : NULL;
    rc = arr ? read_merges(b, arr) : err_set(ERR_FORMAT, "the merges are not valid JSON");
    cJSON_Delete(arr);
    if (rc) bpe_free(b);
    return rc;
}
