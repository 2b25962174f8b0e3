/* fuzz_text.c - libFuzzer target for the text module.
 *
 * The input is read as a names file; when it decodes, the vocabulary built
 * from it must encode every character back to itself, the decoding must be
 * idempotent (NFC of NFC text is the same text), and the vocabulary must
 * survive its JSON round-trip.  The same bytes are also fed to the JSON
 * vocabulary reader and to txt_decode.  Any broken property aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

static void require(int ok)
{
    if (!ok) abort();
}

static int vocab_equal(const txt_vocab *a, const txt_vocab *b)
{
    return a->size == b->size && memcmp(a->cp, b->cp, (size_t)a->size * sizeof *a->cp) == 0;
}

static void check_json_round_trip(const txt_vocab *v)
{
    char *json;
    require(txt_vocab_to_json(v, &json) == ERR_OK);
    txt_vocab w;
    require(txt_vocab_from_json(&w, json) == ERR_OK);
    require(vocab_equal(v, &w));
    txt_vocab_free(&w);
    free(json);
}

/* Re-encode the lines as UTF-8 and decode again: the same code points.
 * The text gets a byte-order mark, in case its first character is U+FEFF
 * (a second BOM in the input), which would otherwise be taken for one. */
static void check_idempotent(const txt_lines *t)
{
    size_t total = t->start[t->n];
    char *buf = malloc(3 + 4 * total + t->n), *p = buf;
    memcpy(p, "\xEF\xBB\xBF", 3);
    p += 3;
    for (size_t i = 0; i < t->n; i++) {
        for (size_t k = t->start[i]; k < t->start[i + 1]; k++) {
            int len = txt_encode_cp(t->cp[k], p);
            require(len > 0);
            p += len;
        }
        *p++ = '\n';
    }
    txt_lines again;
    require(txt_parse_lines("again", (const uint8_t *)buf, (size_t)(p - buf), &again) == ERR_OK);
    require(again.n == t->n);
    require(memcmp(again.start, t->start, (t->n + 1) * sizeof *t->start) == 0);
    require(memcmp(again.cp, t->cp, total * sizeof *t->cp) == 0);
    txt_lines_free(&again);
    free(buf);
}

static void fuzz_lines(const uint8_t *data, size_t size)
{
    txt_lines t;
    if (txt_parse_lines("fuzz", data, size, &t) != ERR_OK) return;
    require(t.start[0] == 0);
    for (size_t i = 0; i < t.n; i++) require(t.start[i] <= t.start[i + 1]);
    size_t total = t.start[t.n];

    txt_vocab v;
    require(txt_vocab_build(&v, t.cp, total) == ERR_OK);
    int *tok = malloc((total ? total : 1) * sizeof *tok);
    require(txt_vocab_encode(&v, t.cp, total, tok) == ERR_OK);
    for (size_t k = 0; k < total; k++)
        require(tok[k] >= TOK_FIRST && tok[k] < v.size && v.cp[tok[k]] == t.cp[k]);
    free(tok);
    check_json_round_trip(&v);
    check_idempotent(&t);
    txt_vocab_free(&v);
    txt_lines_free(&t);
}

static void fuzz_string(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';

    txt_vocab v;
    if (txt_vocab_from_json(&v, s) == ERR_OK) {
        for (int t = TOK_FIRST + 1; t < v.size; t++) require(v.cp[t - 1] < v.cp[t]);
        check_json_round_trip(&v);
        txt_vocab_free(&v);
    }
    int32_t *cp;
    size_t n;
    if (txt_decode(s, &cp, &n) == ERR_OK) free(cp);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_lines(data, size);
    fuzz_string(data, size);
    return 0;
}
