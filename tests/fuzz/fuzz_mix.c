/* fuzz_mix.c - libFuzzer target for loading a model checkpoint of any kind
 * through the registry, a mixture's above all: its components' metadata
 * and tensors under "components.K.", each loaded by its own kind.
 *
 * Any input must load (ERR_OK) or be refused with a one-line message, never
 * crash; a model that loads must generate a short name and score it.
 * Build and run: make fuzz (seeds in tests/fuzz/seeds-fuzz_mix/: small
 * mixtures of n-gram models, and an MLP). */
#include <stdlib.h>
#include <string.h>

#include "kinds.h"

static void drive(const mdl *m)
{
    mdl_state st;
    if (mdl_state_new(&st, m)) return;
    int V = mdl_vocab_size(m), tok[8], n_pred;
    float *scratch = malloc(3 * (size_t)V * sizeof *scratch);
    rng r;
    rng_seed(&r, 1);
    smp_config c = SMP_DEFAULTS;
    int n = scratch ? mdl_sample_name(&st, &c, &r, NULL, 0, 8, tok, scratch) : -1;
    if (n > 8) abort();
    if (n >= 0) mdl_score_name(&st, tok, n, &n_pred, scratch);
    free(scratch);
    mdl_state_free(&st);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    ck_file f;
    mdl m;
    err_code e = ck_parse("fuzz", data, size, &f);
    if (!e) e = mdl_load_file(&m, &f, "fuzz");
    if (e) {
        if (strchr(err_msg(), '\n')) abort();
        return 0;
    }
    drive(&m);
    mdl_free(&m);
    return 0;
}
