/* fuzz_config.c - libFuzzer target for the JSON that checkpoints carry in
 * their metadata: every kind's config parser and the vocabulary parser.
 *
 * The input is the JSON text itself (a NUL-terminated copy), handed to
 * each parser in turn.  Any input must give ERR_OK, or an error with a
 * one-line message; a config that parses must pass its kind's check, and
 * a vocabulary that parses must survive writing and reading back.
 * Build and run: make fuzz (seeds in tests/fuzz/seeds-fuzz_config/). */
#include <stdlib.h>
#include <string.h>

#include "mix.h"
#include "mlp.h"
#include "ngram.h"
#include "rnn.h"
#include "sae.h"
#include "text.h"
#include "transformer.h"

static void one_line(err_code e)
{
    if (e && strchr(err_msg(), '\n')) abort();
}

static void vocab(const char *json)
{
    txt_vocab v, back;
    err_code e = txt_vocab_from_json(&v, json);
    one_line(e);
    if (e) return;
    char *out = NULL;
    if (txt_vocab_to_json(&v, &out) || txt_vocab_from_json(&back, out)) abort();
    if (back.size != v.size) abort();
    txt_vocab_free(&back);
    txt_vocab_free(&v);
    free(out);
}

/* Kind P's parser on json: a config it accepts passes its check. */
#define PARSE(P)                                                                 \
    do {                                                                         \
        P##_config c_;                                                           \
        err_code e_ = P##_config_from_json(&c_, json);                           \
        if (!e_ && P##_config_check(&c_)) abort();                               \
        one_line(e_);                                                            \
    } while (0)

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char *json = malloc(size + 1);
    if (!json) return 0;
    memcpy(json, data, size);
    json[size] = '\0';
    PARSE(mlp);
    PARSE(rnn);
    PARSE(tf);
    PARSE(sae);
    PARSE(ng);
    PARSE(mix);
    vocab(json);
    free(json);
    return 0;
}
