/* test_generation.c - the runs generate and steer share: flags, names (the
 * same as mdl_sample_name's for the seed, --novel, --stats, limits), running
 * text, scoring (the same sum as mdl_score_name's), errors before output. */
#include "cli.h"
#include "dataset.h"
#include "generation.h"
#include "kinds.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

static const char *MLP = TEST_DATA("fixtures/mlp.safetensors");                 /* unbounded */
static const char *TRANSFORMER = TEST_DATA("fixtures/transformer.safetensors"); /* 11 chars */
static const char *VAL = TEST_DATA("gen_val.txt");

__attribute__((constructor)) static void init(void) { cli_init("test_generation", NULL); }

/* A loaded model, its state, and the default options for it. */
typedef struct loaded { mdl m; mdl_state st; gen_options o; } loaded;

static bool load(loaded *l, const char *path)
{
    gen_options_init(&l->o);
    l->o.model = path;
    bool ok = mdl_load(&l->m, path) == ERR_OK && mdl_state_new(&l->st, &l->m) == ERR_OK;
    CHECK(ok);
    return ok;
}

static void unload(loaded *l)
{
    mdl_state_free(&l->st);
    mdl_free(&l->m);
}

/* gen_run with out and info captured into the two buffers (NUL-terminated). */
typedef struct output { char out[16384], info[1024]; } output;

static void read_all(FILE *f, char *buf, size_t cap)
{
    rewind(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
}

static err_code run(loaded *l, output *r)
{
    FILE *out = tmpfile(), *info = tmpfile();
    err_code rc = gen_run(&l->st, &l->o, out, info);
    read_all(out, r->out, sizeof r->out);
    read_all(info, r->info, sizeof r->info);
    return rc;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

TEST(gen_options_defaults_and_parsing)
{
    gen_options o;
    gen_options_init(&o);
    CHECK(o.count == GEN_DEFAULT_COUNT && o.seed == 0 && o.chars == -1 && !o.model);
    CHECK(o.smp.temperature == 1.0f && o.smp.top_k == 0 && o.smp.top_p == 1.0f);
    CHECK(gen_parse_option(&o, 'm', "x.safetensors"));
    CHECK(gen_parse_option(&o, 'n', "7"));
    CHECK(gen_parse_option(&o, GEN_OPT_SEED, "42"));
    CHECK(gen_parse_option(&o, GEN_OPT_TEMPERATURE, "0.5"));
    CHECK(gen_parse_option(&o, GEN_OPT_TOP_K, "3"));
    CHECK(gen_parse_option(&o, GEN_OPT_TOP_P, "0.9"));
    CHECK(gen_parse_option(&o, GEN_OPT_PREFIX, "saint-"));
    CHECK(gen_parse_option(&o, GEN_OPT_MAX_LEN, "12"));
    CHECK(gen_parse_option(&o, GEN_OPT_NOVEL, "a.txt"));
    CHECK(gen_parse_option(&o, GEN_OPT_STATS, "b.txt"));
    CHECK(!strcmp(o.model, "x.safetensors") && o.count == 7 && o.seed == 42);
    CHECK(o.smp.temperature == 0.5f && o.smp.top_k == 3 && o.smp.top_p == 0.9f);
    CHECK(!strcmp(o.prefix, "saint-") && o.max_len == 12);
    CHECK(!strcmp(o.novel, "a.txt") && !strcmp(o.stats, "b.txt"));
    CHECK(gen_parse_option(&o, GEN_OPT_CHARS, "30") && o.chars == 30);
    CHECK(gen_parse_option(&o, GEN_OPT_SCORE, "-") && !strcmp(o.score, "-"));
    CHECK(!gen_parse_option(&o, 'h', NULL));
    CHECK(!gen_parse_option(&o, 'V', NULL));
    CHECK(!gen_parse_option(&o, GEN_OPT_END, "1"));
}

/* The names are mdl_sample_name's, seed for seed, one per line. */
TEST(gen_names_are_the_model_samples)
{
    loaded l;
    if (!load(&l, MLP)) return;
    l.o.count = 6;
    l.o.seed = 11;
    l.o.prefix = "sa";
    output r;
    CHECK(run(&l, &r) == ERR_OK);
    CHECK(count_lines(r.out) == 6 && r.info[0] == 0);

    int V = mdl_vocab_size(&l.m), prefix[2] = { txt_vocab_token(&l.m.vocab, 's'),
                                                txt_vocab_token(&l.m.vocab, 'a') };
    float *scratch = malloc(3 * (size_t)V * sizeof *scratch);
    int tok[GEN_DEFAULT_MAX_CHARS];
    char want[16384] = "", *p = want, utf8[8];
    rng r2;
    for (int i = 0; i < 6; i++) {
        rng_seed(&r2, rng_at(11, (uint64_t)i));   /* each name its own stream */
        int n = mdl_sample_name(&l.st, &l.o.smp, &r2, prefix, 2, GEN_DEFAULT_MAX_CHARS, tok, scratch);
        CHECK(n >= 2);
        for (int j = 0; j < n; j++) p += sprintf(p, "%s", txt_token_str(&l.m.vocab, tok[j], utf8));
        p += sprintf(p, "\n");
    }
    CHECK(!strcmp(r.out, want));
    free(scratch);

    output again;
    CHECK(run(&l, &again) == ERR_OK && !strcmp(again.out, r.out));
    l.o.batch = 1;   /* on l.st itself */
    CHECK(run(&l, &again) == ERR_OK && !strcmp(again.out, r.out));
    l.o.batch = 4;
    l.o.threads = 2;
    CHECK(run(&l, &again) == ERR_OK && !strcmp(again.out, r.out));
    l.o.count = 0;
    CHECK(run(&l, &again) == ERR_OK && again.out[0] == 0);
    unload(&l);
}

/* --novel skips the names of the file; --stats describes what was printed. */
TEST(gen_novel_and_stats)
{
    loaded l;
    if (!load(&l, MLP)) return;
    l.o.count = 20;
    l.o.seed = 3;
    l.o.max_len = 3;   /* short names: repeats are likely */
    output first;
    CHECK(run(&l, &first) == ERR_OK);
    char path[] = "/tmp/villes-test-gen.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(first.out, f);   /* every name of the first run */
    fclose(f);

    l.o.novel = l.o.stats = path;
    output r;
    CHECK(run(&l, &r) == ERR_OK);
    CHECK(count_lines(r.out) == 20);
    int found = 0;
    for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n")) {
        char *hit = strstr(first.out, line);
        found += hit && (hit == first.out || hit[-1] == '\n') && hit[strlen(line)] == '\n';
    }
    CHECK(found == 0);
    static const char header[] = "generated\tdistinct_share\tin_file_share\tmean_length\n";
    CHECK(!strncmp(r.info, header, sizeof header - 1));
    int n = 0;
    double distinct = -1, in_file = -1, mean_len = -1;
    CHECK(sscanf(r.info + sizeof header - 1, "%d\t%lf\t%lf\t%lf", &n, &distinct, &in_file, &mean_len) == 4);
    CHECK(n == 20 && distinct > 0 && distinct <= 1 && in_file == 0 && mean_len > 0 && mean_len <= 3);

    l.o.novel = NULL;   /* --stats alone: the first run again, all of it in the file */
    CHECK(run(&l, &r) == ERR_OK);
    CHECK(sscanf(r.info + sizeof header - 1, "%d\t%lf\t%lf\t%lf", &n, &distinct, &in_file, &mean_len) == 4);
    CHECK(n == 20 && in_file == 1);
    remove(path);
    unload(&l);
}

/* Errors come before any output, with err_set. */
TEST(gen_errors_before_output)
{
    loaded l;
    if (!load(&l, TRANSFORMER)) return;
    output r;
    l.o.max_len = 12;
    CHECK(run(&l, &r) == ERR_ARG && r.out[0] == 0);
    CHECK(strstr(err_msg(), "takes at most 11 characters") != NULL);
    l.o.max_len = 3;
    l.o.prefix = "abcd";
    CHECK(run(&l, &r) == ERR_ARG && r.out[0] == 0);
    CHECK(strstr(err_msg(), "--prefix has 4 characters, more than the 3 of --max-len") != NULL);
    l.o.max_len = 0;
    l.o.prefix = "\xc3\x9f";   /* ß */
    CHECK(run(&l, &r) == ERR_ARG && r.out[0] == 0);
    CHECK(strstr(err_msg(), "--prefix: character 'ß'") != NULL);
    l.o.prefix = NULL;
    l.o.novel = "/nonexistent/names.txt";
    CHECK(run(&l, &r) != ERR_OK && r.out[0] == 0);
    CHECK(strstr(err_msg(), "/nonexistent/names.txt") != NULL);
    l.o.novel = NULL;
    l.o.chars = 40;   /* past the 12 positions: the window slides (textgen.h) */
    CHECK(run(&l, &r) == ERR_OK && count_lines(r.out) == 1);
    unload(&l);
}

/* --chars: N characters of running text after the prefix, on one line. */
TEST(gen_running_text)
{
    loaded l;
    if (!load(&l, MLP)) return;
    l.o.chars = 40;
    l.o.prefix = "saint";
    l.o.seed = 5;
    output r;
    CHECK(run(&l, &r) == ERR_OK);
    CHECK(!strncmp(r.out, "saint", 5) && count_lines(r.out) == 1);
    r.out[strlen(r.out) - 1] = 0;
    int32_t *cp;
    size_t n;
    CHECK(txt_decode(r.out, &cp, &n) == ERR_OK && n == 45);
    free(cp);
    unload(&l);
}

/* --score: a row per name of at least 3 characters; the mean loss on info
 * is mdl_score_name's over those names. */
TEST(gen_score_is_the_model_loss)
{
    loaded l;
    if (!load(&l, MLP)) return;
    l.o.score = VAL;
    output r;
    CHECK(run(&l, &r) == ERR_OK);
    CHECK(!strncmp(r.out, "name\tchars\ttotal_loss\tloss_per_char\n", 36));

    txt_lines lines;
    CHECK(txt_read_lines(VAL, &lines) == ERR_OK);
    int V = mdl_vocab_size(&l.m), tok[256], rows = 0;
    float *scratch = malloc((size_t)V * sizeof *scratch);
    double total = 0;
    size_t n_pred = 0;
    for (size_t i = 0; i < lines.n; i++) {
        size_t len = lines.start[i + 1] - lines.start[i];
        if (len < DS_MIN_NAME_LEN || len > 256) continue;
        CHECK(txt_vocab_encode(&l.m.vocab, lines.cp + lines.start[i], len, tok) == ERR_OK);
        int k;
        total += mdl_score_name(&l.st, tok, (int)len, &k, scratch);
        n_pred += (size_t)k;
        rows++;
    }
    CHECK(count_lines(r.out) == rows + 1);
    char want[128];
    snprintf(want, sizeof want, "mean loss: %.6f nats/char over %d names\n", total / (double)n_pred, rows);
    CHECK(!strcmp(r.info, want));
    free(scratch);
    txt_lines_free(&lines);
    unload(&l);
}
