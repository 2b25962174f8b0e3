/* test_bpe.c - the BPE tokenizer: merges learned on a tiny corpus checked
 * by hand (tie-breaking included), words never merged across, round trips
 * of arbitrary UTF-8 text, the learner's segmentation against encoding,
 * the JSON form and its rejects. */
#include "bpe.h"
#include "rng.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* The vocabulary and character tokens of a UTF-8 string (*tok malloc'ed). */
static void chars_of(const char *s, txt_vocab *v, int **tok, size_t *n)
{
    /* txt_decode refuses newlines (names have none): decode by hand */
    size_t len = strlen(s);
    int32_t *cp = malloc((len + 1) * sizeof *cp);
    *n = 0;
    for (size_t i = 0; i < len; (*n)++) {
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                              (utf8proc_ssize_t)(len - i), &cp[*n]);
        CHECK(k > 0);
        i += k > 0 ? (size_t)k : 1;
    }
    CHECK(txt_vocab_build(v, cp, *n) == ERR_OK);
    *tok = malloc((*n + 1) * sizeof **tok);
    CHECK(txt_vocab_encode(v, cp, *n, *tok) == ERR_OK);
    free(cp);
}

/* A text's characters and the tokenizer learned from them. */
typedef struct fixture {
    txt_vocab v;
    int      *tok;   /* (n) character tokens */
    size_t    n;
    bpe       b;
} fixture;

/* Learn at most `merges` merges from text. */
static void learn(fixture *f, const char *text, int merges)
{
    chars_of(text, &f->v, &f->tok, &f->n);
    CHECK(bpe_init(&f->b, &f->v) == ERR_OK);
    CHECK(bpe_learn(&f->b, f->tok, f->n, f->v.size + merges) == ERR_OK);
}

static void fixture_free(fixture *f)
{
    free(f->tok);
    bpe_free(&f->b);
    txt_vocab_free(&f->v);
}

/* Decode tokens back to UTF-8 into out. */
static void decode(const bpe *b, const int *tok, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) out += bpe_token_utf8(b, tok[i], out);
    *out = 0;
}

TEST(merges_by_hand)
{
    /* Words "abab", " abab", " ab" (tokens ' ' 3, a 4, b 5).  (a,b) occurs
     * 5 times: token 6.  Then (' ',6) and (6,6) both twice: the tie goes to
     * the pair first in token order, (3,6): token 7.  Then no pair occurs
     * twice, so learning stops below the 90 merges asked for. */
    fixture f;
    learn(&f, "abab abab ab", 90);
    const bpe b = f.b;
    CHECK(b.n_merges == 2 && bpe_n_tokens(&b) == 8);
    CHECK(b.left[0] == 4 && b.right[0] == 5);
    CHECK(b.left[1] == 3 && b.right[1] == 6);
    char *json;
    CHECK(bpe_to_json(&b, &json) == ERR_OK);
    CHECK(!strcmp(json, "[[4,5],[3,6]]"));
    int *enc;
    size_t m;
    CHECK(bpe_encode(&b, f.tok, f.n, &enc, &m) == ERR_OK);
    const int want[] = { 6, 6, 7, 6, 7 };
    CHECK(m == 5 && !memcmp(enc, want, sizeof want));
    char s[64];
    CHECK(bpe_token_utf8(&b, 7, s) == 3 && !strcmp(s, " ab"));
    CHECK(bpe_token_chars(&b, 7) == 3 && bpe_token_chars(&b, TOK_EOS) == 0);
    free(enc);
    free(json);
    fixture_free(&f);
}

TEST(vocab_size_stops_learning)
{
    fixture f;
    learn(&f, "abab abab ab", 1);
    CHECK(f.b.n_merges == 1);
    CHECK(bpe_learn(&f.b, f.tok, f.n, f.v.size - 1) == ERR_ARG);
    fixture_free(&f);
}

TEST(no_merge_across_words)
{
    /* "e." and ". " and "\n\n" are frequent but cross word classes. */
    fixture f;
    learn(&f, "le.\n\nle.\n\nle.\n\nle.\n\n", 40);
    CHECK(f.b.n_merges == 1);   /* only (l, e) */
    char s[64];
    bpe_token_utf8(&f.b, f.b.n_base, s);
    CHECK(!strcmp(s, "le"));
    fixture_free(&f);
}

/* Random text from an alphabet of one- to four-byte characters, spaces,
 * newlines and punctuation; its learned tokenizer round-trips it, and
 * encoding the training text is the learner's own segmentation (the
 * number of tokens matches the count of merges applied). */
TEST(round_trip_random_utf8)
{
    static const char *const pieces[] = { "a", "b", "é", "ß", " ", " ", "\n", ",", "'",
                                          "€", "😀", "ø", "--", "1" };
    enum { N_PIECES = sizeof pieces / sizeof pieces[0] };
    rng r;
    rng_seed(&r, 5);
    for (int round = 0; round < 20; round++) {
        size_t cap = 4000, k = 0;
        char *text = malloc(cap * 4 + 1), *back = malloc(cap * 4 + 1);
        int words = 50 + (int)(rng_u64(&r) % 800);
        for (int i = 0; i < words; i++) {
            const char *p = pieces[rng_u64(&r) % N_PIECES];
            memcpy(text + k, p, strlen(p));
            k += strlen(p);
        }
        text[k] = 0;
        txt_vocab v;
        int *tok;
        size_t n;
        chars_of(text, &v, &tok, &n);
        bpe b;
        CHECK(bpe_init(&b, &v) == ERR_OK);
        CHECK(bpe_learn(&b, tok, n / 2, v.size + 40) == ERR_OK);   /* on half */
        int *enc;
        size_t m;
        CHECK(bpe_encode(&b, tok, n, &enc, &m) == ERR_OK);
        CHECK(m <= n);
        size_t chars = 0;
        for (size_t i = 0; i < m; i++) chars += bpe_token_chars(&b, enc[i]);
        CHECK(chars == n);
        decode(&b, enc, m, back);
        CHECK(!strcmp(back, text));
        free(enc);
        free(tok);
        free(text);
        free(back);
        bpe_free(&b);
        txt_vocab_free(&v);
    }
}

TEST(deterministic_and_json_round_trip)
{
    const char *text = "Le petit chat dort. Le petit chien dort aussi, et le chat rit.\n"
                       "Qu'il est doux de ne rien faire quand tout s'agite autour de nous !\n";
    fixture f, g;
    learn(&f, text, 30);
    learn(&g, text, 30);
    char *ja, *jb;
    CHECK(bpe_to_json(&f.b, &ja) == ERR_OK && bpe_to_json(&g.b, &jb) == ERR_OK);
    CHECK(!strcmp(ja, jb));
    bpe c;
    CHECK(bpe_from_json(&c, &f.v, ja) == ERR_OK);
    CHECK(c.n_merges == f.b.n_merges);
    int *ea, *ec;
    size_t na, nc;
    CHECK(bpe_encode(&f.b, f.tok, f.n, &ea, &na) == ERR_OK);
    CHECK(bpe_encode(&c, f.tok, f.n, &ec, &nc) == ERR_OK);
    CHECK(na == nc && !memcmp(ea, ec, na * sizeof *ea));
    free(ea);
    free(ec);
    free(ja);
    free(jb);
    bpe_free(&c);
    fixture_free(&f);
    fixture_free(&g);
}

TEST(json_rejects)
{
    txt_vocab v;
    int *tok;
    size_t n;
    chars_of("abc", &v, &tok, &n);   /* tokens 3, 4, 5 */
    static const char *const bad[] = {
        "", "{}", "[1]", "[[3]]", "[[3,4,5]]", "[[0,3]]", "[[3,6]]", "[[3,4],[3,4]]",
        "[[3,4.5]]", "[[\"a\",3]]", "[[3,4],[7,3]]", NULL
    };
    for (int i = 0; bad[i]; i++) {
        bpe b;
        CHECK(bpe_from_json(&b, &v, bad[i]) == ERR_FORMAT);
    }
    /* Doubling a token five times makes 32 characters, six times 64: refused. */
    bpe b;
    CHECK(bpe_from_json(&b, &v, "[[3,3],[6,6],[7,7],[8,8],[9,9]]") == ERR_OK);
    CHECK(bpe_token_chars(&b, 10) == 32);
    bpe_free(&b);
    CHECK(bpe_from_json(&b, &v, "[[3,3],[6,6],[7,7],[8,8],[9,9],[10,10]]") == ERR_FORMAT);
    CHECK(bpe_from_json(&b, &v, "[]") == ERR_OK && b.n_merges == 0);
    bpe_free(&b);
    free(tok);
    txt_vocab_free(&v);
}
