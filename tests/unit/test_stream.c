/* test_stream.c - running text as a training source: the corpus and its
 * errors, tracks and windows, the walk with a carried state, whole-stream
 * evaluation, the checkpointed walk, and training through tr_run with an
 * exact resume.  The model is a toy whose loss depends on the carried
 * state: logits = W[x] + 0.1 * (counts of the track's inputs so far). */
#include "ops.h"
#include "stream.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* ---- harness ------------------------------------------------------------ */

/* Write text to a file of the temporary directory; its path. */
static const char *write_file(const char *name, const char *text)
{
    const char *path = test_path(name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return path;
}

/* A running text of n characters from a small alphabet (no line ends). */
static const char *write_text(const char *name, size_t n, unsigned seed)
{
    static const char alphabet[] = "abcdefgh ,.";
    char *text = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        text[i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
    }
    text[n] = 0;
    const char *path = write_file(name, text);
    free(text);
    return path;
}


/* ---- a toy model with a carried state ----------------------------------- */

enum { TOY_LAYERS = 2 };
#define TOY_MIX 0.1f

/* The state of row r is (TOY_LAYERS, B, V): layer l holds (l + 1) x the
 * counts of the inputs the row's track has seen. */
typedef struct toy {
    tn_params p;
    tensor   *W;       /* (V, V) */
    int       V;
    long      calls;
    long      starts;  /* calls with h_in == NULL */
} toy;

static void toy_init(toy *m, int V, uint64_t seed)
{
    memset(m, 0, sizeof *m);
    m->V = V;
    tn_params_init(&m->p);
    m->W = tn_param(&m->p, "W", true, 2, (const int[]){ V, V });
    CHECK(tn_params_alloc(&m->p) == ERR_OK);
    rng r;
    rng_seed(&r, seed);
    tn_fill_normal(m->W, &r, 0.0f, 0.5f);
}

static tensor *toy_loss_state(void *impl, ag_tape *t, const ds_batch *b, const float *h_in,
                              float *h_out)
{
    toy *m = impl;
    const int B = b->B, T = b->T, V = m->V;
    float *h = ag_alloc(t, (size_t)B * V * sizeof *h);
    float *mix = ag_alloc(t, (size_t)B * T * V * sizeof *mix);
    m->calls++;
    m->starts += h_in == NULL;
    for (int r = 0; r < B; r++) {
        float *hr = h + (size_t)r * V;
        for (int v = 0; v < V; v++) hr[v] = h_in ? h_in[(size_t)r * V + v] : 0.0f;
        for (int i = 0; i < T; i++) {
            for (int v = 0; v < V; v++) mix[((size_t)r * T + i) * V + v] = TOY_MIX * hr[v];
            if (b->y[r * T + i] != TOK_PAD) hr[b->x[r * T + i]] += 1.0f;
        }
    }
    for (int l = 0; h_out && l < TOY_LAYERS; l++)
        for (size_t i = 0; i < (size_t)B * V; i++) h_out[(size_t)l * B * V + i] = (float)(l + 1) * h[i];
    tensor *logits = op_embedding(t, m->W, b->x, B * T, 0, NULL);
    tensor *c = ag_wrap(t, mix, 2, (const int[]){ B * T, V });
    return op_cross_entropy(t, op_add(t, logits, c), b->y, TOK_PAD);
}

static char *toy_config(const void *impl)
{
    (void)impl;
    return strdup("{\"toy\":1}");
}

static stm_model toy_stm(toy *m)
{
    return (stm_model){ .kind = "toy", .params = &m->p, .impl = m, .loss_state = toy_loss_state,
                        .config_json = toy_config, .state_layers = TOY_LAYERS, .state_width = m->V };
}

/* The toy's summed loss over a track walked in one go (the reference the
 * windowed walk must reproduce): tok[start .. start + len]. */
static double toy_track_loss(const toy *m, const int *tok, size_t len)
{
    const int V = m->V;
    double *h = calloc((size_t)V, sizeof *h), sum = 0;
    for (size_t i = 0; i < len; i++) {
        const float *w = m->W->data + (size_t)tok[i] * V;
        double mx = -INFINITY, z = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, w[v] + TOY_MIX * h[v]);
        for (int v = 0; v < V; v++) z += exp(w[v] + TOY_MIX * h[v] - mx);
        sum += mx + log(z) - (w[tok[i + 1]] + TOY_MIX * h[tok[i + 1]]);
        h[tok[i]] += 1;
    }
    free(h);
    return sum;
}

/* ---- the corpus --------------------------------------------------------- */

/* stm_corpus_load of one book, a validation file or NULL, a given
 * character vocabulary or NULL. */
static err_code load(stm_corpus *c, const char *path, const char *val, const txt_vocab *vocab)
{
    bpe given;
    if (vocab) CHECK(bpe_init(&given, vocab) == ERR_OK);
    stm_text_options o = { .books = &path, .n_books = 1, .val_path = val,
                           .given = vocab ? &given : NULL };
    err_code rc = stm_corpus_load(c, &o);
    if (vocab) bpe_free(&given);
    return rc;
}

TEST(corpus_last_tenth_validates)
{
    const char *path = write_text("c.txt", 1005, 1);
    stm_corpus c;
    CHECK(load(&c, path, NULL, NULL) == ERR_OK);
    CHECK(c.n_val == 100 && c.n_train == 905);
    CHECK(c.vocab.size == TOK_FIRST + 11);
    /* the validation stream is the tail of the file, in order */
    int32_t *cp = NULL;
    size_t n = 0;
    CHECK(txt_read_stream(path, &cp, &n) == ERR_OK && n == 1005);
    bool same = true;
    for (size_t i = 0; i < c.n_val; i++) same &= c.val[i] == txt_vocab_token(&c.vocab, cp[905 + i]);
    for (size_t i = 0; i < c.n_train; i++) same &= c.train[i] == txt_vocab_token(&c.vocab, cp[i]);
    CHECK(same);
    free(cp);
    stm_corpus_free(&c);
}

TEST(corpus_vocabulary_from_both_streams_or_given)
{
    const char *train = write_file("t.txt", "aaaa bbbb aaaa");
    const char *val = write_file("v.txt", "zz\r\nab");
    stm_corpus c;
    CHECK(load(&c, train, val, NULL) == ERR_OK);
    CHECK(c.n_train == 14 && c.n_val == 5);   /* CRLF read as "\n" */
    CHECK(c.vocab.size == TOK_FIRST + 5);     /* "\n", " ", a, b, z */
    CHECK(txt_vocab_token(&c.vocab, 'z') >= TOK_FIRST && c.val[0] == txt_vocab_token(&c.vocab, 'z'));
    /* a given vocabulary is used as it is (a copy) */
    stm_corpus d;
    const char *few = write_file("few.txt", "ab ab ab ab ab ab ab ab ab ab");   /* no z, no \n */
    CHECK(load(&d, few, NULL, &c.vocab) == ERR_OK);
    CHECK(d.vocab.size == c.vocab.size && d.vocab.cp && d.vocab.cp != c.vocab.cp);
    CHECK(d.vocab.cp && !memcmp(d.vocab.cp, c.vocab.cp, (size_t)c.vocab.size * sizeof *c.vocab.cp));
    stm_corpus_free(&d);
    /* a character outside it names the file */
    stm_corpus e;
    const char *other = write_file("o.txt", "aaaa qqqq aaaa bbbb aaaa");
    CHECK(load(&e, other, NULL, &c.vocab) == ERR_ARG);
    CHECK(!strncmp(err_msg(), other, strlen(other)) && strstr(err_msg(), "'q'"));
    CHECK(e.train == NULL && e.vocab.cp == NULL);   /* left empty */
    stm_corpus_free(&c);
}

TEST(corpus_errors)
{
    stm_corpus c;
    char want[256];
    /* 19 characters: the last 10% is one character */
    const char *shortish = write_file("s.txt", "abcdefghijabcdefghi");
    CHECK(load(&c, shortish, NULL, NULL) == ERR_ARG);
    snprintf(want, sizeof want, "%s: the validation stream is too short", shortish);
    CHECK(!strcmp(err_msg(), want));
    const char *train = write_text("t2.txt", 200, 2), *one = write_file("one.txt", "a");
    CHECK(load(&c, train, one, NULL) == ERR_ARG);
    snprintf(want, sizeof want, "%s: the validation stream is too short", one);
    CHECK(!strcmp(err_msg(), want));
    CHECK(load(&c, TEST_DATA("text_invalid.txt"), NULL, NULL) == ERR_UTF8);
    CHECK(strstr(err_msg(), "text_invalid.txt:") && strstr(err_msg(), "invalid UTF-8 at byte"));
    CHECK(load(&c, train, TEST_DATA("text_invalid.txt"), NULL) == ERR_UTF8);
    CHECK(strstr(err_msg(), "text_invalid.txt:") != NULL);
    CHECK(load(&c, test_path("missing.txt"), NULL, NULL) == ERR_IO);
    CHECK(load(&c, TEST_DATA("text_empty.txt"), NULL, NULL) == ERR_ARG);
}

TEST(gutenberg_header_and_footer)
{
    const char *book = "The Project Gutenberg eBook\nlicence\n"
                       "*** START OF THE PROJECT GUTENBERG EBOOK TARTUFFE ***\n"
                       "Acte premier.\nScene 1.\n"
                       "***END OF THE PROJECT GUTENBERG EBOOK TARTUFFE ***\nmore licence\n";
    const char *path = write_file("g.txt", book);
    int32_t *cp;
    size_t n;
    CHECK(txt_read_stream(path, &cp, &n) == ERR_OK);
    CHECK(stm_strip_gutenberg(cp, &n) == 2);
    const char *want = "Acte premier.\nScene 1.\n";
    CHECK(n == strlen(want));
    bool same = n == strlen(want);
    for (size_t i = 0; same && i < n; i++) same = cp[i] == want[i];
    CHECK(same);
    CHECK(stm_strip_gutenberg(cp, &n) == 0 && n == strlen(want));   /* nothing else to drop */
    free(cp);
    /* a footer alone: only the footer goes */
    const char *tail = write_file("g2.txt", "abc\n*** END OF IT\nxyz");
    CHECK(txt_read_stream(tail, &cp, &n) == ERR_OK);
    CHECK(stm_strip_gutenberg(cp, &n) == 1 && n == 4);
    free(cp);
}

TEST(corpus_books_joined_gutenberg_dropped_or_kept)
{
    const char *a = write_file("a.txt", "x\n*** START OF A\naaaa aaaa aaaa\n*** END OF A\nx\n");
    const char *b = write_file("b.txt", "bbbb bbbb bbbb bbbb bbbb\n");
    const char *val = write_file("bv.txt", "ab ba ab");
    const char *books[] = { a, b };
    stm_corpus c;
    stm_text_options o = { .books = books, .n_books = 2, .val_path = val };
    CHECK(stm_corpus_load(&c, &o) == ERR_OK);
    CHECK(c.n_train == 15 + 25 && c.n_val == 8 && c.val_chars == 7);
    CHECK(txt_vocab_token(&c.vocab, 'x') < 0 && txt_vocab_token(&c.vocab, '*') < 0);
    CHECK(c.train[15] == txt_vocab_token(&c.vocab, 'b'));   /* b.txt after a.txt */
    stm_corpus_free(&c);
    o.keep_gutenberg = true;
    CHECK(stm_corpus_load(&c, &o) == ERR_OK);
    CHECK(txt_vocab_token(&c.vocab, '*') >= TOK_FIRST && c.n_train > 40);
    stm_corpus_free(&c);
    o.n_books = 0;
    CHECK(stm_corpus_load(&c, &o) == ERR_ARG);
}

/* BPE: learned from the training stream only (a pair frequent only in the
 * validation file is no merge), the characters per token counted. */
TEST(corpus_subwords)
{
    const char *train = write_file("st.txt", "le chat le chien le chat le rat le chat\n");
    const char *val = write_file("sv.txt", "zz zz zz zz le chat");
    const char *books[] = { train };
    stm_corpus c;
    stm_text_options o = { .books = books, .n_books = 1, .val_path = val, .vocab_size = 200 };
    CHECK(stm_corpus_load(&c, &o) == ERR_OK);
    CHECK(c.subwords && c.tok.n_merges > 0);
    CHECK(c.n_train < 40);
    char s[4 * BPE_MAX_CHARS + 1];
    bool zz = false;
    for (int t = c.tok.n_base; t < bpe_n_tokens(&c.tok); t++) {
        bpe_token_utf8(&c.tok, t, s);
        zz |= strstr(s, "zz") != NULL;
    }
    CHECK(!zz);
    CHECK(c.val_chars == 19 - bpe_token_chars(&c.tok, c.val[0]));
    /* too small a vocabulary */
    stm_corpus d;
    o.vocab_size = 5;
    CHECK(stm_corpus_load(&d, &o) == ERR_ARG);
    /* the tokenizer given (a checkpoint's): the same tokens */
    o.vocab_size = 0;
    o.given = &c.tok;
    CHECK(stm_corpus_load(&d, &o) == ERR_OK);
    CHECK(d.subwords && d.n_train == c.n_train && !memcmp(d.train, c.train, c.n_train * sizeof *c.train));
    stm_corpus_free(&d);
    stm_corpus_free(&c);
}

/* ---- tracks and windows ------------------------------------------------- */

/* Every (input, target) pair of a stream of n distinct tokens appears in
 * exactly one window row, and a track's windows follow on from each other. */
static void check_cover(size_t n, int B, int W)
{
    int *tok = malloc(n * sizeof *tok);
    int *seen = calloc(n, sizeof *seen);
    int *last = malloc((size_t)B * sizeof *last);   /* last target of each row */
    for (size_t i = 0; i < n; i++) tok[i] = (int)i + TOK_FIRST;
    stm_tracks k;
    ds_batch b = { 0 };
    CHECK(stm_tracks_init(&k, n, B) == ERR_OK);
    size_t total = 0, longer = (n - 1) % (size_t)B;
    for (int r = 0; r < B; r++) {
        last[r] = -1;
        CHECK(k.len[r] == (n - 1) / (size_t)B + ((size_t)r < longer));
    }
    bool pairs_ok = true, follows = true;
    for (size_t w = 0; w < stm_n_windows(&k, W); w++) {
        CHECK(stm_fill_window(&b, tok, &k, w, W) == ERR_OK);
        CHECK(b.B == B && b.T <= W && b.T > 0);
        total += b.n_tokens;
        for (int r = 0; r < B; r++) {
            const int *x = b.x + (size_t)r * b.T, *y = b.y + (size_t)r * b.T;
            if (x[0] != TOK_PAD && last[r] >= 0) follows &= x[0] == last[r];
            for (int i = 0; i < b.T && x[i] != TOK_PAD; i++) {
                pairs_ok &= y[i] == x[i] + 1;
                seen[x[i] - TOK_FIRST]++;
                last[r] = y[i];
            }
        }
    }
    CHECK(pairs_ok && follows && total == n - 1);
    bool once = true;
    for (size_t i = 0; i + 1 < n; i++) once &= seen[i] == 1;
    CHECK(once);
    stm_tracks_free(&k);
    ds_batch_free(&b);
    free(tok);
    free(seen);
    free(last);
}

TEST(tracks_cover_every_pair_once)
{
    check_cover(2, 1, 1);
    check_cover(100, 1, 7);
    check_cover(100, 7, 5);
    check_cover(101, 10, 3);
    check_cover(64, 9, 100);
    check_cover(1000, 33, 16);
}

TEST(windows_pad_past_a_track_end)
{
    int tok[12];
    for (int i = 0; i < 12; i++) tok[i] = 10 + i;
    stm_tracks k;
    ds_batch b = { 0 };
    CHECK(stm_tracks_init(&k, 12, 3) == ERR_OK);   /* 11 pairs: tracks of 4, 4, 3 */
    CHECK(k.longest == 4 && k.len[2] == 3 && k.start[2] == 8);
    CHECK(stm_n_windows(&k, 3) == 2);
    CHECK(stm_fill_window(&b, tok, &k, 1, 3) == ERR_OK);
    CHECK(b.T == 1 && b.n_tokens == 2);   /* the last window is as long as the longest rest */
    CHECK(b.x[0] == 13 && b.y[0] == 14 && b.x[1] == 17 && b.y[1] == 18);
    CHECK(b.x[2] == TOK_PAD && b.y[2] == TOK_PAD);
    CHECK(stm_n_windows(&k, 2) == 2);
    CHECK(stm_fill_window(&b, tok, &k, 1, 2) == ERR_OK);
    CHECK(b.T == 2 && b.n_tokens == 5);
    CHECK(b.x[4] == 20 && b.y[4] == 21 && b.x[5] == TOK_PAD && b.y[5] == TOK_PAD);
    stm_tracks_free(&k);
    ds_batch_free(&b);
}

TEST(tracks_too_short)
{
    stm_tracks k;
    CHECK(stm_tracks_init(&k, 5, 5) == ERR_ARG);
    CHECK(!strcmp(err_msg(), "a stream of 5 characters is too short for 5 tracks"));
    CHECK(stm_tracks_init(&k, 0, 1) == ERR_ARG);
    CHECK(stm_tracks_init(&k, 6, 5) == ERR_OK && k.longest == 1);
    stm_tracks_free(&k);
}

/* ---- the source ---------------------------------------------------------- */

typedef struct fixture {
    stm_corpus c;
    toy        m;
    stm_source s;
} fixture;

static bool fixture_init(fixture *f, size_t n, int B, int W)
{
    memset(f, 0, sizeof *f);
    const char *path = write_text("f.txt", n, 7);
    if (load(&f->c, path, NULL, NULL)) return false;
    toy_init(&f->m, f->c.vocab.size, 3);
    stm_model sm = toy_stm(&f->m);
    return stm_source_init(&f->s, &sm, &f->c, W, B) == ERR_OK;
}

static void fixture_free(fixture *f)
{
    stm_source_free(&f->s);
    stm_corpus_free(&f->c);
    tn_params_free(&f->m.p);
}

/* Sum of row r of layer l of a state of B rows of width V. */
static double state_sum(const float *state, int l, int B, int r, int V)
{
    double s = 0;
    for (int v = 0; v < V; v++) s += state[((size_t)l * B + r) * V + v];
    return s;
}

TEST(source_walks_the_tracks_carrying_the_state)
{
    fixture f;
    CHECK(fixture_init(&f, 500, 4, 16));
    tr_model m = stm_tr_model(&f.s);
    tr_source src = stm_tr_source(&f.s);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 16) == ERR_OK);
    t.grad = false;
    ds_batch b = { 0 };
    size_t nw = stm_n_windows(&f.s.tracks, 16);   /* 450 characters: tracks of 113, 112, 112, 112 */
    CHECK(nw == 8);
    for (size_t w = 0; w < nw; w++) {
        CHECK(src.next(src.ctx, NULL, 4, &b) == ERR_OK);
        ag_reset(&t);
        CHECK(m.loss(m.impl, &t, &b) != NULL);
    }
    /* one pass: the state counts every input of each track, from h0 once */
    CHECK(f.m.starts == 1 && f.s.pos == nw);
    for (int r = 0; r < 4; r++) {
        CHECK(state_sum(f.s.state, 0, 4, r, f.m.V) == (double)f.s.tracks.len[r]);
        CHECK(state_sum(f.s.state, 1, 4, r, f.m.V) == 2.0 * (double)f.s.tracks.len[r]);
    }
    /* a new pass starts again from h0 */
    CHECK(src.next(src.ctx, NULL, 4, &b) == ERR_OK);
    ag_reset(&t);
    CHECK(m.loss(m.impl, &t, &b) != NULL);
    CHECK(f.m.starts == 2 && f.s.pos == 1 && state_sum(f.s.state, 0, 4, 3, f.m.V) == 16.0);
    char *json = m.config_json(m.impl);
    CHECK(json && !strcmp(json, "{\"toy\":1}") && !strcmp(m.kind, "toy") && m.params == &f.m.p);
    free(json);
    ds_batch_free(&b);
    ag_free(&t);
    fixture_free(&f);
}

/* The validation loss is the sum over every validation pair, the state
 * carried along each track exactly as if it were walked in one go, and
 * the training walk is left as it was. */
static void check_eval(int batch_size, int W)
{
    fixture f;
    CHECK(fixture_init(&f, 400, 3, W));   /* 40 validation characters */
    tr_model m = stm_tr_model(&f.s);
    tr_source src = stm_tr_source(&f.s);
    ag_tape t;
    CHECK(ag_init(&t, 1 << 16) == ERR_OK);
    t.grad = false;
    f.s.pos = 2;
    f.s.state[5] = 42.0f;
    double sum = 0;
    size_t n = 0;
    CHECK(src.eval(src.ctx, &m, &t, batch_size, &sum, &n) == ERR_OK);
    CHECK(n == f.c.n_val - 1);
    int B = batch_size < (int)f.c.n_val - 1 ? batch_size : (int)f.c.n_val - 1;
    stm_tracks k;
    CHECK(stm_tracks_init(&k, f.c.n_val, B) == ERR_OK);
    double want = 0;
    for (int r = 0; r < B; r++) want += toy_track_loss(&f.m, f.c.val + k.start[r], k.len[r]);
    CHECK_NEAR(sum, want, 1e-4 * (double)n);
    CHECK(f.s.pos == 2 && f.s.state[5] == 42.0f);
    stm_tracks_free(&k);
    ag_free(&t);
    fixture_free(&f);
}

TEST(eval_predicts_every_validation_character_once)
{
    check_eval(4, 5);
    check_eval(1, 100);
    check_eval(64, 3);   /* more tracks asked for than pairs: one pair each */
}

/* Save the source into a checkpoint file (metadata and state only). */
static err_code save_source(const tr_source *src, const char *path)
{
    ck_writer *w = ck_writer_new();
    err_code rc = w ? src->save(src->ctx, w) : ERR_NOMEM;
    if (!rc) rc = ck_write(w, path);
    ck_writer_free(w);
    return rc;
}

TEST(save_load_round_trip)
{
    fixture a, b, c, d;
    CHECK(fixture_init(&a, 300, 4, 8) && fixture_init(&b, 300, 4, 8));
    rng r;
    rng_seed(&r, 5);
    a.s.pos = 3;
    for (size_t i = 0; i < (size_t)TOY_LAYERS * 4 * (size_t)a.m.V; i++) a.s.state[i] = rng_normal(&r);
    tr_source sa = stm_tr_source(&a.s), sb = stm_tr_source(&b.s);
    const char *path = test_path("walk.safetensors");
    CHECK(save_source(&sa, path) == ERR_OK);
    ck_file f;
    CHECK(ck_read(path, &f) == ERR_OK);
    const ck_tensor *st = ck_get(&f, "source.state");
    CHECK(st && st->ndim == 3 && st->shape[0] == TOY_LAYERS && st->shape[1] == 4 &&
          st->shape[2] == a.m.V);
    CHECK(!strcmp(ck_meta(&f, "source.pos"), "3") && !strcmp(ck_meta(&f, "source.window"), "8"));
    CHECK(sb.load(sb.ctx, &f) == ERR_OK);
    CHECK(b.s.pos == 3);
    CHECK(!memcmp(a.s.state, b.s.state, (size_t)TOY_LAYERS * 4 * (size_t)a.m.V * sizeof(float)));
    CHECK(stm_window(&f, 0) == 8 && stm_window(&f, 5) == 5);
    /* another window, another number of tracks */
    CHECK(fixture_init(&c, 300, 4, 16) && fixture_init(&d, 300, 5, 8));
    tr_source sc = stm_tr_source(&c.s), sd = stm_tr_source(&d.s);
    CHECK(sc.load(sc.ctx, &f) == ERR_ARG);
    CHECK(!strcmp(err_msg(), "the checkpoint was trained with --window 8, not 16"));
    CHECK(sd.load(sd.ctx, &f) == ERR_ARG);
    CHECK(!strcmp(err_msg(), "the checkpoint carries no state for 5 tracks: keep its "
                             "--batch-size and --text file"));
    ck_free(&f);
    /* a position past the pass, or none */
    a.s.pos = stm_n_windows(&a.s.tracks, 8) + 1;
    CHECK(save_source(&sa, path) == ERR_OK && ck_read(path, &f) == ERR_OK);
    CHECK(sb.load(sb.ctx, &f) == ERR_FORMAT);
    CHECK(!strcmp(err_msg(), "no valid running-text position (source.pos)"));
    ck_free(&f);
    ck_file empty = { 0 };
    CHECK(sb.load(sb.ctx, &empty) == ERR_FORMAT);
    CHECK(stm_window(&empty, 0) == STM_DEFAULT_WINDOW && stm_window(NULL, 0) == STM_DEFAULT_WINDOW);
    fixture_free(&a);
    fixture_free(&b);
    fixture_free(&c);
    fixture_free(&d);
}

TEST(source_init_errors)
{
    fixture f;
    CHECK(!fixture_init(&f, 50, 45, 8));   /* 45 training characters: 44 pairs */
    CHECK(!strcmp(err_msg(), "a stream of 45 characters is too short for 45 tracks"));
    fixture_free(&f);
    CHECK(!fixture_init(&f, 50, 4, 0));
    fixture_free(&f);
}

/* ---- through the training loop ------------------------------------------ */

typedef struct run_result {
    err_code   rc;
    tr_summary sum;
} run_result;

static tr_options toy_options(const char *text, const char *out, long steps)
{
    tr_options o;
    tr_options_init(&o, "toy", out);
    o.data = text;
    o.steps = steps;
    o.batch_size = 4;
    o.eval_every = 5;
    o.opt.lr = 0.05f;
    return o;
}

/* Train the toy on the running text of o->data in windows of
 * stm_window(the checkpoint resumed, given). */
static run_result run(const tr_options *o, int given)
{
    run_result r = { 0 };
    tr_session s;
    stm_corpus c;
    toy m;
    stm_source st;
    memset(&st, 0, sizeof st);
    memset(&m, 0, sizeof m);
    r.rc = tr_open(&s, o);
    if (!r.rc) r.rc = load(&c, o->data, NULL, NULL);
    if (r.rc) {
        tr_close(&s);
        return r;
    }
    s.vocab = &c.vocab;
    toy_init(&m, c.vocab.size, 3);
    stm_model sm = toy_stm(&m);
    int W = stm_window(s.resuming ? &s.resume : NULL, given);
    r.rc = stm_source_init(&st, &sm, &c, W, s.o.batch_size);
    tr_model tm = stm_tr_model(&st);
    tr_source src = stm_tr_source(&st);
    if (!r.rc) r.rc = tr_run(&s, &tm, &src, NULL);
    r.sum = s.sum;
    tr_close(&s);
    stm_source_free(&st);
    stm_corpus_free(&c);
    tn_params_free(&m.p);
    return r;
}

TEST(trains_through_tr_run_and_resumes_exactly)
{
    /* 900 training characters in 4 tracks of ~225: 8 windows of 30 a pass,
     * so 20 steps go through a second pass */
    const char *text = write_text("run.txt", 1000, 11);
    tr_options none = toy_options(text, test_path("none.safetensors"), 0);
    run_result init = run(&none, 30);
    tr_options full = toy_options(text, test_path("full.safetensors"), 20);
    run_result a = run(&full, 30);
    CHECK(init.rc == ERR_OK && a.rc == ERR_OK && a.sum.steps == 20);
    CHECK(a.sum.val_loss < init.sum.val_loss);   /* it learns */
    tr_options half = toy_options(text, test_path("half.safetensors"), 11);
    run_result b = run(&half, 30);
    tr_options rest = toy_options(text, test_path("rest.safetensors"), 20);
    rest.resume_path = half.out_path;
    rest.set |= TR_SET_STEPS;
    run_result c = run(&rest, 0);   /* the checkpoint's window */
    CHECK(b.rc == ERR_OK && c.rc == ERR_OK && c.sum.run_steps == 9);
    CHECK(a.sum.val_loss == c.sum.val_loss && a.sum.train_loss == c.sum.train_loss);
    CHECK(test_same_file(full.out_path, rest.out_path));
    /* resumed with another window: refused */
    run_result d = run(&rest, 20);
    CHECK(d.rc == ERR_ARG && strstr(err_msg(), "--window 30, not 20"));
}
