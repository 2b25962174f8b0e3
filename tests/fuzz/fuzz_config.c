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

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    char *json = malloc(size + 1);
    if (!json) return 0;
    memcpy(json, data, size);
    json[size] = '\0';
    mlp_config mlp;
    rnn_config rnn;
    tf_config tf;
    sae_config sae;
    ng_config ng;
    mix_config mix;
    err_code e;
    if (!(e = mlp_config_from_json(&mlp, json)) && mlp_config_check(&mlp)) abort();
    one_line(e);
    if (!(e = rnn_config_from_json(&rnn, json)) && rnn_config_check(&rnn)) abort();
    one_line(e);
    if (!(e = tf_config_from_json(&tf, json)) && tf_config_check(&tf)) abort();
    one_line(e);
    if (!(e = sae_config_from_json(&sae, json)) && sae_config_check(&sae)) abort();
    one_line(e);
    if (!(e = ng_config_from_json(&ng, json)) && ng_config_check(&ng)) abort();
    one_line(e);
    if (!(e = mix_config_from_json(&mix, json)) && mix_config_check(&mix)) abort();
    one_line(e);
    vocab(json);
    free(json);
    return 0;
}
