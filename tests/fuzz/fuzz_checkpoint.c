/* fuzz_checkpoint.c - libFuzzer target for the safetensors reader.
 *
 * Any input must give ERR_OK or ERR_FORMAT with a one-line message and an
 * empty ck_file; a file that parses must be safe to walk: every tensor's
 * bytes, every metadata entry, and the model loaders' checked accessors.
 * Build and run: make fuzz (seeds in tests/fuzz/seeds-fuzz_checkpoint/). */
#include "checkpoint.h"

#include <stdlib.h>
#include <string.h>

static volatile unsigned sink;   /* keeps the reads of the tensor bytes */

static void walk(const ck_file *f)
{
    unsigned sum = 0;
    for (int i = 0; i < f->n; i++) {
        const ck_tensor *t = &f->t[i];
        if (ck_get(f, t->name) != t) abort();   /* names are unique */
        for (size_t k = 0; k < t->numel * 4; k++) sum += ((const unsigned char *)t->data)[k];
        const float *data;
        err_code err = ck_get_f32(f, t->name, t->ndim, t->shape, &data);
        if ((err == ERR_OK) != (t->dtype == CK_F32)) abort();
    }
    for (int i = 0; i < f->n_meta; i++) {
        if (ck_meta(f, f->key[i]) != f->val[i]) abort();   /* keys are unique */
        sum += (unsigned)strlen(f->val[i]);
    }
    ck_expect_model(f, "fuzz", "transformer");
    sink += sum;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    ck_file f;
    err_code err = ck_parse("fuzz", data, size, &f);
    if (err == ERR_OK) {
        walk(&f);
    } else {
        if (err != ERR_FORMAT || strncmp(err_msg(), "fuzz: ", 6) || strchr(err_msg(), '\n')) abort();
        if (f.t || f.n || f.key || f.val || f.n_meta || f.mem) abort();
    }
    ck_free(&f);
    return 0;
}
