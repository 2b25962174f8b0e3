/* fuzz_bpe.c - libFuzzer target for the BPE tokenizer (bpe.h).
 *
 * The input is read twice.  As the merges of a checkpoint (JSON) over a
 * fixed vocabulary: when they parse, they must survive their JSON round
 * trip, and encoding a text must keep its characters.  As a text (each
 * byte one of the vocabulary's characters): the tokenizer learned from it
 * must encode it back to the same characters, the same way after its JSON
 * round trip.  Any broken property aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"

static void require(int ok)
{
    if (!ok) abort();
}

/* 16 characters: letters, a space, a newline, punctuation, an accent. */
static const int32_t CHARS[] = { '\n', ' ', '!', ',', '.', 'a', 'b', 'c', 'd', 'e', 'l', 'q', 's',
                                 'u', 'z', 0xE9 };
enum { N_CHARS = sizeof CHARS / sizeof CHARS[0] };

/* Built once: txt_vocab_build clears a bitmap of every code point
 * (136 KiB), which under ASan cost a third of each execution. */
static const txt_vocab *vocab(void)
{
    static txt_vocab v;
    if (!v.size) require(txt_vocab_build(&v, CHARS, N_CHARS) == ERR_OK);
    return &v;
}

/* Encode tok (n) with b: the characters of the tokens are those of tok. */
static int *check_encode(const bpe *b, const int *tok, size_t n, size_t *m)
{
    int *enc;
    require(bpe_encode(b, tok, n, &enc, m) == ERR_OK);
    size_t k = 0;
    for (size_t i = 0; i < *m; i++) {
        size_t len = bpe_token_chars(b, enc[i]);
        require(len >= 1 && k + len <= n);
        for (size_t j = 0; j < len; j++)
            require(b->cp[b->start[enc[i]] + j] == b->cp[b->start[tok[k + j]]]);
        k += len;
    }
    require(k == n);
    return enc;
}

/* The JSON round trip: same merges, same encoding of tok. */
static void check_round_trip(const bpe *b, const txt_vocab *v, const int *tok, size_t n)
{
    char *json, *again;
    bpe c;
    require(bpe_to_json(b, &json) == ERR_OK);
    require(bpe_from_json(&c, v, json) == ERR_OK);
    require(bpe_to_json(&c, &again) == ERR_OK && !strcmp(json, again));
    size_t m1, m2;
    int *e1 = check_encode(b, tok, n, &m1), *e2 = check_encode(&c, tok, n, &m2);
    require(m1 == m2 && !memcmp(e1, e2, m1 * sizeof *e1));
    free(e1);
    free(e2);
    free(json);
    free(again);
    bpe_free(&c);
}

/* Inputs are read up to MAX_INPUT bytes (make fuzz passes -max_len the
 * same): room for the JSON of 40 merges and for texts with words past the
 * BPE_MAX_CHARS cut.  Under ASan an input costs ~1.5 us a byte (learning,
 * four encodings, two JSON round trips): a corpus drifting to 4 KiB inputs
 * ran at 870 executions/s. */
enum { MAX_INPUT = 256 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT) size = MAX_INPUT;
    const txt_vocab *v = vocab();
    int *tok = malloc((size + 1) * sizeof *tok);
    for (size_t i = 0; i < size; i++) tok[i] = TOK_FIRST + data[i] % N_CHARS;

    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    bpe b;
    if (bpe_from_json(&b, v, s) == ERR_OK) {
        require(b.n_base == v->size && bpe_n_tokens(&b) <= BPE_MAX_TOKENS);
        check_round_trip(&b, v, tok, size);
        bpe_free(&b);
    }
    free(s);

    require(bpe_init(&b, v) == ERR_OK);
    require(bpe_learn(&b, tok, size, v->size + 40) == ERR_OK);
    check_round_trip(&b, v, tok, size);
    bpe_free(&b);
    free(tok);
    return 0;
}
