/* test_hostile.c - hostile but well-formed checkpoints, of every kind: a
 * config claiming a huge model (d_model 10^6, a vocabulary of 10^7 tokens,
 * parameters of gigabytes) beside the small tensors of a real model, and
 * shapes whose products overflow 32 bits.  Each is refused with one
 * ERR_FORMAT line before any large allocation: outside the sanitizers, the
 * address space is capped at 1 GB above what the process uses, so a loader
 * that allocated what the config asks for would fail with ERR_NOMEM
 * instead (and the test with it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "checkpoint.h"
#include "dataset.h"
#include "kinds.h"
#include "mlp.h"
#include "ngram.h"
#include "rnn.h"
#include "sae.h"
#include "test.h"
#include "transformer.h"

#if defined(__SANITIZE_ADDRESS__)
#define CAP_MEMORY 0   /* AddressSanitizer reserves terabytes of shadow memory */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CAP_MEMORY 0
#endif
#endif
#ifndef CAP_MEMORY
#define CAP_MEMORY 1
#endif

static struct rlimit saved;

/* Cap the address space at 1 GB above the current size (CAP_MEMORY). */
static void cap_memory(void)
{
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f && fscanf(f, "%ld", &pages) != 1) pages = 0;
    if (f) fclose(f);
    getrlimit(RLIMIT_AS, &saved);
    if (!CAP_MEMORY || pages <= 0) return;
    struct rlimit cap = saved;
    cap.rlim_cur = (rlim_t)pages * 4096 + ((rlim_t)1 << 30);
    if (saved.rlim_cur == RLIM_INFINITY || cap.rlim_cur < saved.rlim_cur) setrlimit(RLIMIT_AS, &cap);
}

static void uncap_memory(void) { setrlimit(RLIMIT_AS, &saved); }

/* dst: src with metadata entry key set to value (added when absent), and
 * tensor `shaped` (when not NULL) given shape instead, with no data. */
static void rewrite(const char *src, const char *dst, const char *key, const char *value,
                    const char *shaped, int ndim, const int64_t *shape)
{
    ck_file f;
    CHECK(ck_read(src, &f) == ERR_OK);
    ck_writer *w = ck_writer_new();
    bool put = false;
    for (int i = 0; i < f.n_meta; i++) {
        bool mine = key && !strcmp(f.key[i], key);
        CHECK(ck_put_meta(w, f.key[i], mine ? value : f.val[i]) == ERR_OK);
        put |= mine;
    }
    if (key && !put) CHECK(ck_put_meta(w, key, value) == ERR_OK);
    for (int i = 0; i < f.n; i++) {
        const ck_tensor *t = &f.t[i];
        if (shaped && !strcmp(t->name, shaped))
            CHECK(ck_put(w, t->name, t->dtype, ndim, shape, NULL) == ERR_OK);
        else
            CHECK(ck_put(w, t->name, t->dtype, t->ndim, t->shape, t->data) == ERR_OK);
    }
    CHECK(ck_write(w, dst) == ERR_OK);
    ck_writer_free(w);
    ck_free(&f);
}

/* Loading path (any kind, an SAE too) fails with ERR_FORMAT, message
 * mentioning `why`, never ERR_NOMEM. */
static void refused(const char *path, const char *why)
{
    cap_memory();
    ck_file f;
    err_code e = ck_read(path, &f);
    if (!e) {
        const char *kind = ck_meta(&f, "model");
        if (kind && !strcmp(kind, SAE_KIND)) {
            sae_model s;
            e = sae_load(&s, &f, path, false);
            if (!e) sae_free(&s);
            ck_free(&f);
        } else {
            mdl m;
            e = mdl_load_file(&m, &f, path);
            if (!e) mdl_free(&m);
        }
    }
    uncap_memory();
    CHECK(e == ERR_FORMAT);
    if (!strstr(err_msg(), why)) {
        fprintf(stderr, "  %s: message '%s' lacks '%s'\n", path, err_msg(), why);
        CHECK(!"the message names the problem");
    }
}

/* Kind P's model of config cfg, initialised and saved to test_path(name). */
#define SAVE_SMALL(P, cfg, name)                                                 \
    do {                                                                         \
        P##_model m_;                                                            \
        CHECK(P##_init(&m_, &(cfg)) == ERR_OK);                                  \
        CHECK(P##_save(&m_, v, test_path(name)) == ERR_OK);                      \
        P##_free(&m_);                                                           \
    } while (0)

/* A small real model of each kind, saved to test_path(KIND.safetensors). */
static void small_models(void)
{
    ds_corpus c;
    CHECK(ds_load(&c, TEST_DATA("gen_names.txt"), NULL, 0, 0.1) == ERR_OK);
    const txt_vocab *v = &c.vocab;
    int V = v->size;
    mlp_config mc = { .vocab_size = V, .d_model = 4, .d_hidden = 8, .n_context = 3 };
    SAVE_SMALL(mlp, mc, "mlp.safetensors");
    rnn_config rc = RNN_DEFAULTS;
    rc.vocab_size = V;
    rc.d_model = 8;
    SAVE_SMALL(rnn, rc, "rnn.safetensors");
    tf_config tc = TF_DEFAULTS;
    tc.vocab_size = V;
    tc.d_model = 8;
    tc.n_heads = 2;
    tc.max_len = 16;
    SAVE_SMALL(tf, tc, "transformer.safetensors");
    sae_config sc = SAE_DEFAULTS;
    sc.d_model = 8;
    sc.n_features = 16;
    sc.layer = 2;
    SAVE_SMALL(sae, sc, "sae.safetensors");
    ng_config nc = NG_DEFAULTS;
    nc.vocab_size = V;
    nc.order = 3;
    ng_model *ng = NULL;
    CHECK(ng_fit(&ng, &nc, &c.train) == ERR_OK);
    CHECK(ng_save(ng, v, test_path("ngram.safetensors")) == ERR_OK);
    ng_free(ng);
    ds_corpus_free(&c);
}

/* The small models load as they are: the rewrites below are what fails. */
TEST(small_models_load)
{
    small_models();
    static const char *const kinds[] = { "mlp", "rnn", "transformer", "ngram" };
    char name[64];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.safetensors", kinds[i]);
        mdl m;
        CHECK(mdl_load(&m, test_path(name)) == ERR_OK);
        mdl_free(&m);
    }
    sae_model s;
    CHECK(sae_read(&s, test_path("sae.safetensors")) == ERR_OK);
    sae_free(&s);
}

/* The vocabulary size of the small models. */
static int vocab_size(void)
{
    mdl m;
    CHECK(mdl_load(&m, test_path("mlp.safetensors")) == ERR_OK);
    int V = mdl_vocab_size(&m);
    mdl_free(&m);
    return V;
}

/* Configs asking for gigabytes of parameters, within every range check. */
TEST(huge_configs_refused_before_allocating)
{
    small_models();
    const char *h = test_path("hostile.safetensors");
    char cfg[256];
    int V = vocab_size();
    /* mlp: fc1 (1023, 4096 * 512), 2.1 G floats */
    snprintf(cfg, sizeof cfg, "{\"vocab_size\":%d,\"d_model\":512,\"d_hidden\":1023,\"n_context\":4096}", V);
    rewrite(test_path("mlp.safetensors"), h, "config", cfg, NULL, 0, NULL);
    refused(h, "has shape");
    /* rnn: 32 GRU layers of width 8192, 13 G floats */
    snprintf(cfg, sizeof cfg, "{\"vocab_size\":%d,\"cell\":\"gru\",\"d_model\":8192,\"n_layers\":32,\"dropout\":0}", V);
    rewrite(test_path("rnn.safetensors"), h, "config", cfg, NULL, 0, NULL);
    refused(h, "has shape");
    /* transformer: 32 blocks of width 8192, 34 G floats */
    snprintf(cfg, sizeof cfg, "{\"vocab_size\":%d,\"d_model\":8192,\"n_heads\":8,\"n_layers\":32,"
             "\"max_len\":4096}", V);
    rewrite(test_path("transformer.safetensors"), h, "config", cfg, NULL, 0, NULL);
    refused(h, "has shape");
    /* sae: 2^20 features on width 1024, 2 G floats */
    rewrite(test_path("sae.safetensors"), h, "config",
            "{\"d_model\":1024,\"n_features\":1048576,\"layer\":2,\"variant\":\"l1\",\"l1\":0.0003,\"k\":0}",
            NULL, 0, NULL);
    refused(h, "has shape");
}

/* d_model 10^6 and a vocabulary of 10^7 in the config: out of range. */
TEST(absurd_sizes_refused)
{
    small_models();
    const char *h = test_path("hostile.safetensors");
    static const struct { const char *kind, *config, *why; } cases[] = {
        { "mlp", "{\"vocab_size\":V,\"d_model\":1000000,\"d_hidden\":8,\"n_context\":3}", "d_model 1000000" },
        { "rnn", "{\"vocab_size\":V,\"cell\":\"rnn\",\"d_model\":1000000,\"n_layers\":1,\"dropout\":0}",
          "1000000" },
        { "transformer", "{\"vocab_size\":V,\"d_model\":1000000,\"n_heads\":2,\"n_layers\":1,\"max_len\":16}",
          "1000000" },
        { "sae", "{\"d_model\":1000000,\"n_features\":16,\"layer\":2,\"variant\":\"l1\",\"l1\":0.0003,\"k\":0}",
          "d_model 1000000" },
        { "mlp", "{\"vocab_size\":10000000,\"d_model\":4,\"d_hidden\":8,\"n_context\":3}", "1e+07 tokens" },
        { "transformer", "{\"vocab_size\":10000000,\"d_model\":8,\"n_heads\":2,\"n_layers\":1,\"max_len\":16}",
          "1e+07 tokens" },
        { "ngram", "{\"vocab_size\":10000000,\"order\":3,\"smoothing\":\"kn\",\"k\":0.05,\"discount\":-1}",
          "1e+07 tokens" },
    };
    char src[64], cfg[256];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(src, sizeof src, "%s.safetensors", cases[i].kind);
        /* V: the model's own vocabulary size, so that only the size is wrong */
        const char *v = strchr(cases[i].config, 'V');
        if (v) snprintf(cfg, sizeof cfg, "%.*s%d%s", (int)(v - cases[i].config), cases[i].config,
                        vocab_size(), v + 1);
        else snprintf(cfg, sizeof cfg, "%s", cases[i].config);
        rewrite(test_path(src), h, "config", cfg, NULL, 0, NULL);
        refused(h, cases[i].why);
    }
}

/* A vocabulary of 10^7 tokens: refused before cJSON builds it. */
TEST(ten_million_tokens_refused_before_parsing)
{
    const size_t n = 10 * 1000 * 1000;
    char *json = malloc(4 * n + 64);
    CHECK(json != NULL);
    if (!json) return;
    char *p = json + sprintf(json, "[\"<pad>\",\"<SOS>\",\"<EOS>\"");
    for (size_t i = 0; i < n; i++) { memcpy(p, ",\"a\"", 4); p += 4; }
    strcpy(p, "]");
    txt_vocab v;
    cap_memory();
    err_code e = txt_vocab_from_json(&v, json);
    uncap_memory();
    CHECK(e == ERR_FORMAT);
    CHECK(strstr(err_msg(), "more than") != NULL);
    free(json);
}

/* Tensors whose shapes multiply past 2^32 (empty, so the file is small;
 * or claiming 2^62 values): refused by the reader or the shape check. */
TEST(overflowing_shapes_refused)
{
    small_models();
    const char *h = test_path("hostile.safetensors");
    const int64_t empty[3] = { 65536, 65537, 0 };
    rewrite(test_path("transformer.safetensors"), h, NULL, NULL, "embedding.weight", 3, empty);
    refused(h, "embedding.weight");
    rewrite(test_path("mlp.safetensors"), h, NULL, NULL, "fc1.weight", 3, empty);
    refused(h, "fc1.weight");
    rewrite(test_path("sae.safetensors"), h, NULL, NULL, "W_enc", 3, empty);
    refused(h, "W_enc");
    /* a header claiming a (2^31, 2^31) tensor: the reader refuses it */
    static const char head[] = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],"
                               "\"data_offsets\":[0,4]}}";
    uint8_t buf[sizeof head + 8 + 4] = { 0 };
    buf[0] = (uint8_t)(sizeof head - 1);
    memcpy(buf + 8, head, sizeof head - 1);
    ck_file f;
    CHECK(ck_parse("big", buf, 8 + sizeof head - 1 + 4, &f) == ERR_FORMAT);
}

/* A mixture whose component claims a huge Transformer. */
TEST(mix_with_a_hostile_component_refused)
{
    const char *h = test_path("hostile.safetensors");
    rewrite("weights/mix.safetensors", h, "components.1.config",
            "{\"vocab_size\":46,\"d_model\":8192,\"n_heads\":8,\"n_layers\":32,\"max_len\":4096}",
            NULL, 0, NULL);
    refused(h, "has shape");
}
