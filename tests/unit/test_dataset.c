/* test_dataset.c - names from lines, the length order, distinct names, the
 * split of distinct names, explicit validation files, fixed vocabularies
 * and batches. */
#include "dataset.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

#define VILLES "data/villes.txt"
#define NAMES TEST_DATA("text_names.txt")   /* 20 distinct names, 28 rows */

/* ---- helpers ------------------------------------------------------------ */

/* A name of d as UTF-8 text (static buffer). */
static const char *name_str(const ds_names *d, const txt_vocab *v, size_t i)
{
    static char buf[512];
    size_t k = 0;
    char tok[8];
    for (int j = 0; j < ds_len(d, i) && k + 8 < sizeof buf; j++) {
        txt_token_str(v, ds_name(d, i)[j], tok);
        strcpy(buf + k, tok);
        k += strlen(tok);
    }
    buf[k] = '\0';
    return buf;
}

typedef struct row { const int *tok; int len; int side; } row;

static int row_cmp(const void *pa, const void *pb)
{
    const row *a = pa, *b = pb;
    int len = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->tok, b->tok, (size_t)len * sizeof *a->tok);
    if (c) return c;
    if (a->len != b->len) return a->len - b->len;
    return a->side - b->side;
}

/* All rows of c, train (side 0) then val (side 1), sorted by name. */
static row *sorted_rows(const ds_corpus *c, size_t *n)
{
    *n = c->train.n + c->val.n;
    row *r = malloc(*n * sizeof *r);
    for (size_t i = 0; i < c->train.n; i++)
        r[i] = (row){ ds_name(&c->train, i), ds_len(&c->train, i), 0 };
    for (size_t i = 0; i < c->val.n; i++)
        r[c->train.n + i] = (row){ ds_name(&c->val, i), ds_len(&c->val, i), 1 };
    qsort(r, *n, sizeof *r, row_cmp);
    return r;
}

static int same_name(const row *a, const row *b)
{
    return a->len == b->len && memcmp(a->tok, b->tok, (size_t)a->len * sizeof *a->tok) == 0;
}

/* Distinct names of c, and whether any name is on both sides. */
static size_t distinct_names(const ds_corpus *c, int *leaks)
{
    size_t n, distinct = 0;
    row *r = sorted_rows(c, &n);
    *leaks = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || !same_name(&r[i - 1], &r[i])) distinct++;
        else if (r[i - 1].side != r[i].side) *leaks = 1;
    }
    free(r);
    return distinct;
}

static int names_equal(const ds_names *a, const ds_names *b)
{
    return a->n == b->n && memcmp(a->start, b->start, (a->n + 1) * sizeof *a->start) == 0 &&
           memcmp(a->tok, b->tok, a->start[a->n] * sizeof *a->tok) == 0;
}

/* ds_names of n names of the given lengths, tokens from tok (concatenated). */
static ds_names names_of(const int *len, size_t n, const int *tok)
{
    ds_names d = { .n = n, .start = malloc((n + 1) * sizeof(size_t)) };
    d.start[0] = 0;
    for (size_t i = 0; i < n; i++) {
        d.start[i + 1] = d.start[i] + (size_t)len[i];
        if (len[i] > d.max_len) d.max_len = len[i];
    }
    d.tok = malloc((d.start[n] + 1) * sizeof *d.tok);
    memcpy(d.tok, tok, d.start[n] * sizeof *d.tok);
    return d;
}

/* Names i and j of d are the same. */
static int same_row(const ds_names *d, size_t i, size_t j)
{
    return ds_len(d, i) == ds_len(d, j) &&
           memcmp(ds_name(d, i), ds_name(d, j), (size_t)ds_len(d, i) * sizeof(int)) == 0;
}

/* The kept rows of a file, unsplit. */
static ds_names rows_of(const char *path)
{
    txt_lines l;
    txt_vocab v;
    ds_names d = { 0 };
    CHECK(txt_read_lines(path, &l) == ERR_OK);
    CHECK(txt_vocab_build(&v, l.cp, l.start[l.n]) == ERR_OK);
    CHECK(ds_from_lines(&d, &l, &v) == ERR_OK);
    txt_vocab_free(&v);
    txt_lines_free(&l);
    return d;
}

/* ---- names from lines --------------------------------------------------- */

TEST(ds_from_lines_skips_short_lines)
{
    const char *text = "abc\nde\n\nfghij\nxy\nbad\n";
    txt_lines l;
    CHECK(txt_parse_lines("mem", (const uint8_t *)text, strlen(text), &l) == ERR_OK);
    txt_vocab v;
    CHECK(txt_vocab_build(&v, l.cp, l.start[l.n]) == ERR_OK);
    ds_names d;
    CHECK(ds_from_lines(&d, &l, &v) == ERR_OK);
    CHECK(d.n == 3);
    CHECK(d.max_len == 5);
    if (d.n == 3) {
        CHECK(strcmp(name_str(&d, &v, 0), "abc") == 0);
        CHECK(strcmp(name_str(&d, &v, 1), "fghij") == 0);
        CHECK(strcmp(name_str(&d, &v, 2), "bad") == 0);
        CHECK(ds_name(&d, 0)[0] == txt_vocab_token(&v, 'a'));
    }
    ds_free(&d);
    txt_vocab_free(&v);

    /* An unknown character names its line. */
    CHECK(txt_vocab_build(&v, (const int32_t[]){ 'a', 'b', 'c' }, 3) == ERR_OK);
    CHECK(ds_from_lines(&d, &l, &v) == ERR_ARG);
    CHECK(strcmp(err_msg(), "line 4: character 'f' (U+0066) is not in the vocabulary") == 0);
    CHECK(d.n == 0 && d.tok == NULL);
    txt_vocab_free(&v);
    txt_lines_free(&l);
}

/* ---- length order and distinct names ------------------------------------ */

/* order is a permutation of d's names, by length then index. */
static int is_length_order(const ds_names *d, const size_t *order)
{
    char *seen = calloc(d->n + 1, 1);
    int ok = 1;
    for (size_t k = 0; k < d->n; k++) {
        ok &= order[k] < d->n && !seen[order[k]];
        if (!ok) break;
        seen[order[k]] = 1;
        if (k > 0) {
            int a = ds_len(d, order[k - 1]), b = ds_len(d, order[k]);
            ok &= a < b || (a == b && order[k - 1] < order[k]);
        }
    }
    free(seen);
    return ok;
}

TEST(ds_length_order_by_length_then_index)
{
    const int len[] = { 3, 2, 3, 4, 2, 3 };
    const int tok[17] = { 0 };
    ds_names d = names_of(len, 6, tok);
    size_t *order = NULL;
    CHECK(ds_length_order(&d, &order) == ERR_OK);
    const size_t want[] = { 1, 4, 0, 2, 5, 3 };
    CHECK(order && !memcmp(order, want, sizeof want));
    free(order);
    ds_free(&d);

    d = rows_of(VILLES);
    CHECK(ds_length_order(&d, &order) == ERR_OK);
    CHECK(order && is_length_order(&d, order));
    free(order);
    ds_free(&d);

    ds_names empty = names_of(len, 0, tok);
    CHECK(ds_length_order(&empty, &order) == ERR_OK && order != NULL);
    free(order);
    ds_free(&empty);
    CHECK(ds_length_order(&empty, NULL) == ERR_ARG);
}

TEST(ds_distinct_keeps_the_first_row_of_each)
{
    /* abc, ab, abc, abcd, ab, x y z */
    const int len[] = { 3, 2, 3, 4, 2, 3 };
    const int tok[] = { 5, 6, 7, 5, 6, 5, 6, 7, 5, 6, 7, 8, 5, 6, 9, 10, 11 };
    ds_names all = names_of(len, 6, tok), d;
    CHECK(ds_distinct(&d, &all) == ERR_OK);
    CHECK(d.n == 4 && d.max_len == 4);
    const int want_len[] = { 3, 2, 4, 3 }, want[] = { 5, 6, 7, 5, 6, 5, 6, 7, 8, 9, 10, 11 };
    for (size_t i = 0; i < d.n && i < 4; i++) CHECK(ds_len(&d, i) == want_len[i]);
    CHECK(d.start[d.n] == 12 && !memcmp(d.tok, want, sizeof want));
    ds_free(&d);
    ds_free(&all);

    all = names_of(len, 0, tok);
    CHECK(ds_distinct(&d, &all) == ERR_OK && d.n == 0);
    ds_free(&d);
    ds_free(&all);
}

TEST(ds_distinct_against_brute_force)
{
    /* Every row whose name has no earlier row, in file order. */
    ds_names all = rows_of(NAMES), d;
    CHECK(ds_distinct(&d, &all) == ERR_OK);
    size_t k = 0;
    int ok = 1;
    for (size_t i = 0; i < all.n; i++) {
        int first = 1;
        for (size_t j = 0; j < i && first; j++) first = !same_row(&all, i, j);
        if (!first) continue;
        ok &= k < d.n && ds_len(&d, k) == ds_len(&all, i) &&
              !memcmp(ds_name(&d, k), ds_name(&all, i), (size_t)ds_len(&all, i) * sizeof(int));
        k++;
    }
    CHECK(ok && k == d.n && d.n == 20);
    ds_free(&d);
    ds_free(&all);

    /* villes.txt: as many names as distinct_names counts, none twice. */
    all = rows_of(VILLES);
    CHECK(ds_distinct(&d, &all) == ERR_OK);
    int leaks;
    CHECK(distinct_names(&(ds_corpus){ .train = all }, &leaks) == d.n);
    CHECK(distinct_names(&(ds_corpus){ .train = d }, &leaks) == d.n);
    CHECK(d.n < all.n);
    ds_free(&d);
    ds_free(&all);
}

/* ---- villes.txt --------------------------------------------------------- */

TEST(ds_villes_vocab_and_split)
{
    ds_corpus c;
    CHECK(ds_load(&c, VILLES, NULL, 0, 0.1) == ERR_OK);
    CHECK(c.vocab.size == 46);   /* 43 characters + 3 specials */
    CHECK(c.vocab.cp[TOK_FIRST] == ' ' && c.vocab.cp[45] == 0x153);   /* ' ' .. 'œ' */

    /* Every kept line is on exactly one side. */
    txt_lines l;
    CHECK(txt_read_lines(VILLES, &l) == ERR_OK);
    size_t kept = 0;
    for (size_t i = 0; i < l.n; i++) kept += l.start[i + 1] - l.start[i] >= DS_MIN_NAME_LEN;
    txt_lines_free(&l);
    CHECK(c.train.n + c.val.n == kept);

    int leaks;
    size_t distinct = distinct_names(&c, &leaks);
    CHECK(!leaks);   /* no validation name is a training name */
    size_t n_val_names;
    {
        ds_corpus only_val = { .val = c.val };   /* distinct names of the val side */
        n_val_names = distinct_names(&only_val, &leaks);
    }
    CHECK(n_val_names == (size_t)llround(0.1 * (double)distinct));
    ds_corpus_free(&c);
}

TEST(ds_villes_split_deterministic_per_seed)
{
    ds_corpus a, b, other;
    CHECK(ds_load(&a, VILLES, NULL, 0, 0.1) == ERR_OK);
    CHECK(ds_load(&b, VILLES, NULL, 0, 0.1) == ERR_OK);
    CHECK(ds_load(&other, VILLES, NULL, 1, 0.1) == ERR_OK);
    CHECK(names_equal(&a.train, &b.train) && names_equal(&a.val, &b.val));
    CHECK(!names_equal(&a.val, &other.val));
    CHECK(a.split_seed == 0 && other.split_seed == 1);
    int leaks;
    distinct_names(&other, &leaks);
    CHECK(!leaks);
    ds_corpus_free(&a);
    ds_corpus_free(&b);
    ds_corpus_free(&other);
}

/* ---- small files -------------------------------------------------------- */

TEST(ds_duplicates_stay_together)
{
    /* 20 distinct names, 4 of them on 3 rows; 0.25 -> 5 validation names. */
    int seen_dup_in_val = 0;
    for (uint64_t seed = 0; seed < 20; seed++) {
        ds_corpus c;
        CHECK(ds_load(&c, NAMES, NULL, seed, 0.25) == ERR_OK);
        CHECK(c.train.n + c.val.n == 28);
        int leaks;
        CHECK(distinct_names(&c, &leaks) == 20);
        CHECK(!leaks);
        ds_corpus val_only = { .val = c.val };
        CHECK(distinct_names(&val_only, &leaks) == 5);
        seen_dup_in_val |= c.val.n > 5;   /* a 3-row name went to validation */
        ds_corpus_free(&c);
    }
    CHECK(seen_dup_in_val);
}

TEST(ds_split_independent_of_line_order)
{
    /* The same names in reverse order split the same way. */
    txt_lines l;
    CHECK(txt_read_lines(NAMES, &l) == ERR_OK);
    char path[] = "/tmp/villes-test-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    for (size_t i = l.n; i-- > 0;) {
        for (size_t k = l.start[i]; k < l.start[i + 1]; k++) {
            char b[8];
            txt_encode_cp(l.cp[k], b);
            fputs(b, f);
        }
        fputc('\n', f);
    }
    fclose(f);
    txt_lines_free(&l);

    ds_corpus a, b;
    CHECK(ds_load(&a, NAMES, NULL, 5, 0.25) == ERR_OK);
    CHECK(ds_load(&b, path, NULL, 5, 0.25) == ERR_OK);
    remove(path);
    CHECK(a.val.n == b.val.n);
    for (size_t i = 0; i < a.val.n && i < b.val.n; i++) {   /* same names, reversed */
        char name[512];
        strcpy(name, name_str(&a.val, &a.vocab, i));
        CHECK(strcmp(name, name_str(&b.val, &b.vocab, b.val.n - 1 - i)) == 0);
    }
    ds_corpus_free(&a);
    ds_corpus_free(&b);
}

TEST(ds_explicit_validation_file)
{
    ds_corpus c;
    CHECK(ds_load(&c, NAMES, TEST_DATA("text_names_val.txt"), 0, 0.1) == ERR_OK);
    CHECK(c.train.n == 28);   /* the whole data file trains */
    CHECK(c.val.n == 2);      /* "yo" is too short */
    CHECK(txt_vocab_token(&c.vocab, 0xDF) >= 0);   /* 'ß' only appears in val */
    CHECK(txt_vocab_token(&c.vocab, '-') >= 0);
    if (c.val.n == 2) CHECK(strcmp(name_str(&c.val, &c.vocab, 0), "großdorf") == 0);
    ds_corpus_free(&c);
}

TEST(ds_fixed_vocabulary)
{
    ds_corpus a, b;
    CHECK(ds_load(&a, NAMES, NULL, 3, 0.25) == ERR_OK);
    CHECK(ds_load_with_vocab(&b, &a.vocab, NAMES, NULL, 3, 0.25) == ERR_OK);
    CHECK(b.vocab.size == a.vocab.size && b.vocab.cp != a.vocab.cp);   /* a copy */
    CHECK(names_equal(&a.train, &b.train) && names_equal(&a.val, &b.val));
    ds_corpus_free(&b);

    /* A character outside the vocabulary names the file and line. */
    CHECK(ds_load_with_vocab(&b, &a.vocab, NAMES, TEST_DATA("text_names_val.txt"), 3, 0.25) == ERR_ARG);
    CHECK(strcmp(err_msg(), "tests/data/text_names_val.txt:1: character 'ß' (U+00DF) is not in the vocabulary") == 0);
    CHECK(b.train.n == 0 && b.vocab.cp == NULL);
    ds_corpus_free(&a);
}

TEST(ds_load_errors)
{
    ds_corpus c;
    CHECK(ds_load(&c, TEST_DATA("text_empty.txt"), NULL, 0, 0.1) == ERR_FORMAT);
    CHECK(strcmp(err_msg(), "tests/data/text_empty.txt: no names of at least 3 characters") == 0);
    CHECK(ds_load(&c, TEST_DATA("text_short.txt"), NULL, 0, 0.1) == ERR_FORMAT);
    CHECK(ds_load(&c, NAMES, TEST_DATA("text_short.txt"), 0, 0.1) == ERR_FORMAT);
    CHECK(strstr(err_msg(), "text_short.txt") != NULL);
    CHECK(ds_load(&c, TEST_DATA("text_invalid.txt"), NULL, 0, 0.1) == ERR_UTF8);
    CHECK(ds_load(&c, "tests/data/no-such-file.txt", NULL, 0, 0.1) == ERR_IO);

    /* 20 distinct names: 0.01 leaves no validation name, 0.99 no training name. */
    CHECK(ds_load(&c, NAMES, NULL, 0, 0.01) == ERR_ARG);
    CHECK(strstr(err_msg(), "validation set empty") != NULL);
    CHECK(ds_load(&c, NAMES, NULL, 0, 0.99) == ERR_ARG);
    CHECK(strstr(err_msg(), "training set empty") != NULL);
    CHECK(ds_load(&c, NAMES, NULL, 0, 0.0) == ERR_ARG);
    CHECK(ds_load(&c, NAMES, NULL, 0, 1.0) == ERR_ARG);
    CHECK(ds_load(&c, NAMES, NULL, 0, NAN) == ERR_ARG);
    CHECK(c.train.n == 0 && c.val.n == 0 && c.vocab.cp == NULL);
    ds_corpus_free(&c);
}

/* ---- batches ------------------------------------------------------------ */

TEST(ds_batch_layout)
{
    const char *text = "abcd\nabcdefg\nbca\n";
    txt_lines l;
    CHECK(txt_parse_lines("mem", (const uint8_t *)text, strlen(text), &l) == ERR_OK);
    txt_vocab v;
    CHECK(txt_vocab_build(&v, l.cp, l.start[l.n]) == ERR_OK);   /* a..g = 3..9 */
    ds_names d;
    CHECK(ds_from_lines(&d, &l, &v) == ERR_OK);
    txt_lines_free(&l);

    ds_batch b = { 0 };
    size_t idx[] = { 2, 0 };   /* "bca", "abcd": T = 4 + 1 */
    CHECK(ds_batch_fill(&b, &d, idx, 2) == ERR_OK);
    CHECK(b.B == 2 && b.T == 5);
    const int x_want[] = { 1, 4, 5, 3, 0,    1, 3, 4, 5, 6 };
    const int y_want[] = { 4, 5, 3, 2, 0,    3, 4, 5, 6, 2 };
    CHECK(memcmp(b.x, x_want, sizeof x_want) == 0);
    CHECK(memcmp(b.y, y_want, sizeof y_want) == 0);
    CHECK(b.n_tokens == 4 + 5);

    /* A longer name grows T; a shorter batch trims it again without
     * reallocating, and leaves no stale tokens behind. */
    size_t idx3[] = { 0, 1, 2 };
    CHECK(ds_batch_fill(&b, &d, idx3, 3) == ERR_OK);
    CHECK(b.T == 8 && b.n_tokens == 5 + 8 + 4);
    CHECK(b.x[8] == TOK_SOS && b.y[8 + 7] == TOK_EOS);
    int *x_buf = b.x, *y_buf = b.y;
    size_t one[] = { 2 };
    CHECK(ds_batch_fill(&b, &d, one, 1) == ERR_OK);
    CHECK(b.B == 1 && b.T == 4 && b.n_tokens == 4);
    CHECK(b.x == x_buf && b.y == y_buf);
    const int x1[] = { 1, 4, 5, 3 }, y1[] = { 4, 5, 3, 2 };
    CHECK(memcmp(b.x, x1, sizeof x1) == 0 && memcmp(b.y, y1, sizeof y1) == 0);
    CHECK(ds_batch_fill(&b, &d, idx, 2) == ERR_OK);
    CHECK(b.x == x_buf && memcmp(b.y, y_want, sizeof y_want) == 0);

    /* Bad arguments are errors, not crashes. */
    size_t out_of_range[] = { 3 };
    CHECK(ds_batch_fill(&b, &d, out_of_range, 1) == ERR_ARG);
    CHECK(ds_batch_fill(&b, &d, idx, 0) == ERR_ARG);
    CHECK(ds_batch_fill(&b, &d, NULL, 2) == ERR_ARG);
    ds_batch_free(&b);
    ds_free(&d);
    txt_vocab_free(&v);
}

TEST(ds_batch_villes_pad_and_count)
{
    ds_corpus c;
    CHECK(ds_load(&c, VILLES, NULL, 0, 0.1) == ERR_OK);
    enum { B = 64 };
    size_t idx[B];
    for (int i = 0; i < B; i++) idx[i] = (size_t)i * 97 % c.train.n;
    ds_batch b = { 0 };
    CHECK(ds_batch_fill(&b, &c.train, idx, B) == ERR_OK);
    int longest = 0, ok = 1;
    size_t tokens = 0;
    for (int i = 0; i < B; i++) {
        int n = ds_len(&c.train, idx[i]);
        if (n > longest) longest = n;
        tokens += (size_t)n + 1;
        const int *x = b.x + i * b.T, *y = b.y + i * b.T;
        ok &= x[0] == TOK_SOS && y[n] == TOK_EOS;
        ok &= memcmp(x + 1, ds_name(&c.train, idx[i]), (size_t)n * sizeof *x) == 0;
        ok &= memcmp(y, ds_name(&c.train, idx[i]), (size_t)n * sizeof *y) == 0;
        for (int t = n + 1; t < b.T; t++) ok &= x[t] == TOK_PAD && y[t] == TOK_PAD;
    }
    CHECK(ok);
    CHECK(b.T == longest + 1);
    CHECK(b.T < c.train.max_len + 1);   /* trimmed to the batch, not the data */
    CHECK(b.n_tokens == tokens);
    ds_batch_free(&b);
    ds_corpus_free(&c);
}

/* ---- folds (--fold K/N) ------------------------------------------------------- */

#define FOLD_DATA TEST_DATA("train_villes400.txt")

/* Rows of d whose name is also in e (by tokens). */
static size_t rows_in(const ds_names *d, const ds_names *e)
{
    size_t n = 0;
    for (size_t i = 0; i < d->n; i++)
        for (size_t j = 0; j < e->n; j++)
            if (ds_len(d, i) == ds_len(e, j) &&
                !memcmp(ds_name(d, i), ds_name(e, j), (size_t)ds_len(d, i) * sizeof(int))) {
                n++;
                break;
            }
    return n;
}

TEST(ds_folds_deterministic_disjoint_covering)
{
    for (int n_folds = 2; n_folds <= 3; n_folds++) {
        ds_corpus full;
        CHECK(ds_load(&full, FOLD_DATA, NULL, 0, 0.1) == ERR_OK);
        size_t dropped = 0;
        for (int k = 0; k < n_folds; k++) {
            ds_corpus a, b;
            CHECK(ds_load(&a, FOLD_DATA, NULL, 0, 0.1) == ERR_OK);
            CHECK(ds_load(&b, FOLD_DATA, NULL, 0, 0.1) == ERR_OK);
            CHECK(ds_drop_fold(&a, k, n_folds) == ERR_OK);
            CHECK(ds_drop_fold(&b, k, n_folds) == ERR_OK);
            CHECK(names_equal(&a.train, &b.train));          /* deterministic */
            CHECK(names_equal(&a.val, &full.val));           /* validation unchanged */
            CHECK(a.train.n > 0 && a.train.n < full.train.n);
            for (size_t i = 0; i < a.train.n; i++)            /* fold k is gone */
                CHECK(ds_fold_of(&a.vocab, ds_name(&a.train, i), ds_len(&a.train, i), 0, n_folds) != k);
            CHECK(rows_in(&a.train, &full.train) == a.train.n);   /* only training names */
            dropped += full.train.n - a.train.n;
            ds_corpus_free(&a);
            ds_corpus_free(&b);
        }
        CHECK(dropped == full.train.n);   /* every training row in exactly one fold */
        ds_corpus_free(&full);
    }
}

TEST(ds_fold_of_depends_on_the_name_only)
{
    ds_corpus a, wide;
    CHECK(ds_load(&a, FOLD_DATA, NULL, 0, 0.1) == ERR_OK);
    CHECK(ds_load(&wide, VILLES, NULL, 5, 0.1) == ERR_OK);   /* another vocabulary */
    int *tok = malloc(64 * sizeof *tok), same = 1, ones = 0;
    for (size_t i = 0; i < a.train.n; i++) {
        int len = ds_len(&a.train, i);
        int32_t cp[64];
        for (int j = 0; j < len; j++) cp[j] = a.vocab.cp[ds_name(&a.train, i)[j]];
        CHECK(txt_vocab_encode(&wide.vocab, cp, (size_t)len, tok) == ERR_OK);
        int f = ds_fold_of(&a.vocab, ds_name(&a.train, i), len, 0, 2);
        same &= f == ds_fold_of(&wide.vocab, tok, len, 0, 2);
        ones += f;
    }
    CHECK(same);
    /* about half of the names in each of two folds */
    CHECK(ones > (int)a.train.n / 3 && ones < 2 * (int)a.train.n / 3);
    free(tok);
    ds_corpus_free(&a);
    ds_corpus_free(&wide);
}

TEST(ds_fold_parse_and_rejects)
{
    int k, n;
    CHECK(ds_fold_parse("1/2", &k, &n) == ERR_OK && k == 1 && n == 2);
    CHECK(ds_fold_parse("0/5", &k, &n) == ERR_OK && k == 0 && n == 5);
    const char *bad[] = { "2/2", "0/1", "a/2", "1/2x", "-1/2", "1", "", "1/65" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) CHECK(ds_fold_parse(bad[i], &k, &n) == ERR_ARG);
    ds_corpus c;
    CHECK(ds_load(&c, FOLD_DATA, NULL, 0, 0.1) == ERR_OK);
    CHECK(ds_drop_fold(&c, 2, 2) == ERR_ARG);
    ds_corpus_free(&c);
}
