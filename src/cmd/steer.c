/* steer - generate names from a Transformer while clamping or adding SAE
 * features at the SAE's layer (sae.h: sae_steer_hook on the cached
 * generation path).  Sampling is generate's: mdl_sample_name with the same
 * flags, so with no intervention the names are generate's, seed for seed.
 */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model.h"
#include "rng.h"
#include "sae.h"
#include "sampling.h"
#include "text.h"
#include "transformer.h"

#define DEFAULT_MODEL "weights/transformer.safetensors"
#define DEFAULT_SAE "weights/sae.safetensors"

enum { OPT_SAE = 0x100, OPT_CLAMP, OPT_ADD, OPT_SEED, OPT_TEMPERATURE, OPT_TOP_K, OPT_TOP_P,
       OPT_PREFIX, OPT_MAX_LEN, OPT_THREADS };
enum { MAX_EDITS = 256 };

static _Noreturn void usage(void)
{
    printf("Usage: steer [-m TRANSFORMER] [--sae SAE] [--clamp F=V]... [--add F=V]... [OPTION]...\n"
           "Sample names from a Transformer while steering the features of a sparse\n"
           "autoencoder trained on it: at every position, the residual stream x at the\n"
           "SAE's layer becomes decode(f') + (x - decode(f)), f = encode(x) and f' = f\n"
           "edited (the reconstruction error is kept); the rest of the pass follows.\n"
           "\n"
           "  -m, --model FILE      the Transformer (default %s)\n"
           "      --sae FILE        the SAE trained on it (default %s)\n"
           "      --clamp F=V       set feature F to V at every position\n"
           "      --add F=V         add V times feature F's decoder direction\n"
           "                        (both repeatable; features count from 0)\n"
           "  -n, --count N         number of names (default 10)\n"
           "      --seed N          random seed (default 0): with no --clamp or --add, the\n"
           "                        names of 'generate' with the same flags\n"
           "      --temperature T   divide the logits by T (default 1; 0 = most probable)\n"
           "      --top-k K         draw among the K most probable tokens (default 0 = all)\n"
           "      --top-p P         draw among the most probable tokens whose mass reaches\n"
           "                        P, 0 < P <= 1 (default 1 = all)\n"
           "      --prefix STR      names that start with STR\n"
           "      --max-len N       at most N characters a name (default: the model's limit)\n"
           "      --threads N       bound the threads used\n"
           "  -h, --help            show this help and exit\n"
           "  -V, --version         show the version and exit\n"
           "\n"
           "Exit status: 0 on success, 1 on a runtime error (unreadable files, an SAE\n"
           "trained on another model, a feature out of range), 2 on a usage error.\n"
           "\n"
           "Example: steer --clamp 142=3 -n 10 --seed 7\n",
           DEFAULT_MODEL, DEFAULT_SAE);
    exit(fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}

typedef struct options {
    const char *model, *sae, *prefix;
    long        count, max_len;
    uint64_t    seed;
    smp_config  smp;
    sae_edit    edit[MAX_EDITS];
    int         n_edit;
} options;

/* "F=V" -> an edit; usage error when malformed. */
static void parse_edit(options *o, const char *flag, const char *arg, bool clamp)
{
    if (o->n_edit == MAX_EDITS) cli_usage("at most %d --clamp / --add", MAX_EDITS);
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) cli_usage("%s '%s': expected FEATURE=VALUE", flag, arg);
    char id[32];
    snprintf(id, sizeof id, "%.*s", (int)(eq - arg < 31 ? eq - arg : 31), arg);
    sae_edit *e = &o->edit[o->n_edit++];
    e->feature = (int)cli_long(flag, id, 0, SAE_MAX_FEATURES - 1);
    e->value = (float)cli_double(flag, eq + 1, -1e6, 1e6);
    e->clamp = clamp;
}

static void parse(options *o, int argc, char **argv)
{
    static const struct option longs[] = {
        { "model", required_argument, NULL, 'm' },
        { "sae", required_argument, NULL, OPT_SAE },
        { "clamp", required_argument, NULL, OPT_CLAMP },
        { "add", required_argument, NULL, OPT_ADD },
        { "count", required_argument, NULL, 'n' },
        { "seed", required_argument, NULL, OPT_SEED },
        { "temperature", required_argument, NULL, OPT_TEMPERATURE },
        { "top-k", required_argument, NULL, OPT_TOP_K },
        { "top-p", required_argument, NULL, OPT_TOP_P },
        { "prefix", required_argument, NULL, OPT_PREFIX },
        { "max-len", required_argument, NULL, OPT_MAX_LEN },
        { "threads", required_argument, NULL, OPT_THREADS },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "m:n:hV", longs, NULL)) != -1) {
        switch (ch) {
        case 'm': o->model = optarg; break;
        case OPT_SAE: o->sae = optarg; break;
        case OPT_CLAMP: parse_edit(o, "--clamp", optarg, true); break;
        case OPT_ADD: parse_edit(o, "--add", optarg, false); break;
        case 'n': o->count = cli_long("-n", optarg, 0, LONG_MAX); break;
        case OPT_SEED: o->seed = cli_u64("--seed", optarg); break;
        case OPT_TEMPERATURE: o->smp.temperature = (float)cli_double("--temperature", optarg, 0, 1e6); break;
        case OPT_TOP_K: o->smp.top_k = (int)cli_long("--top-k", optarg, 0, INT_MAX); break;
        case OPT_TOP_P:
            o->smp.top_p = (float)cli_double("--top-p", optarg, 0, 1);
            if (o->smp.top_p <= 0) cli_usage("invalid value '%s' for --top-p (expected 0 < P <= 1)", optarg);
            break;
        case OPT_PREFIX: o->prefix = optarg; break;
        case OPT_MAX_LEN: o->max_len = cli_long("--max-len", optarg, 1, 1 << 20); break;
        case OPT_THREADS: cli_set_threads((int)cli_long("--threads", optarg, 0, 1024)); break;
        case 'h': usage();
        case 'V': cli_version();
        default: cli_bad_flag();
        }
    }
    if (optind < argc) cli_usage("unexpected argument '%s'", argv[optind]);
}

/* The characters of a --prefix in the model's vocabulary. */
static int *encode_prefix(const mdl *m, const char *s, int *n)
{
    int32_t *cp;
    size_t len;
    if (txt_decode(s, &cp, &len)) cli_usage("--prefix: %s", err_msg());
    int *tok = malloc((len ? len : 1) * sizeof *tok);
    if (!tok) cli_die("out of memory");
    if (txt_vocab_encode(&m->vocab, cp, len, tok)) cli_die("--prefix: %s", err_msg());
    free(cp);
    *n = (int)len;
    return tok;
}

static void sample(const mdl *m, mdl_state *st, const options *o)
{
    int V = mdl_vocab_size(m), n_prefix = 0, limit = mdl_max_len(m) - 1;
    int *prefix = o->prefix ? encode_prefix(m, o->prefix, &n_prefix) : NULL;
    if (o->max_len > limit) cli_die("--max-len %ld: %s takes at most %d characters", o->max_len, o->model, limit);
    if (o->max_len) limit = (int)o->max_len;
    if (n_prefix > limit) cli_die("--prefix has %d characters, more than the %d allowed", n_prefix, limit);
    float *scratch = malloc(3 * (size_t)V * sizeof *scratch);
    int *tok = malloc((size_t)limit * sizeof *tok);
    char *name = malloc(4 * (size_t)limit + 1);
    if (!scratch || !tok || !name) cli_die("out of memory");
    rng r;
    rng_seed(&r, o->seed);
    for (long i = 0; i < o->count && !ferror(stdout); i++) {
        int n = mdl_sample_name(st, &o->smp, &r, prefix, n_prefix, limit, tok, scratch);
        if (n < 0) cli_die("the model gives probability 0 to every continuation");
        char *p = name;
        for (int j = 0; j < n; j++) p += txt_encode_cp(m->vocab.cp[tok[j]], p);
        *p = 0;
        puts(name);
    }
    free(name);
    free(tok);
    free(scratch);
    free(prefix);
}

int main(int argc, char **argv)
{
    cli_init("steer");
    options o = { .model = DEFAULT_MODEL, .sae = DEFAULT_SAE, .count = 10, .smp = SMP_DEFAULTS };
    parse(&o, argc, argv);

    mdl m;
    mdl_state st;
    sae_model s;
    sae_steerer steerer;
    if (mdl_load(&m, o.model)) cli_die_err();
    const tf_model *tf = tf_of_mdl(&m);
    if (!tf) cli_die("%s: %s", o.model, err_msg());
    if (sae_read(&s, o.sae) || sae_check_pair(&s, o.sae, tf, o.model)) cli_die_err();
    if (sae_steerer_init(&steerer, &s, o.edit, o.n_edit)) cli_die("%s: %s", o.sae, err_msg());
    if (mdl_state_new(&st, &m)) cli_die_err();
    /* no edit, no hook: the generation path is generate's, bit for bit */
    if (o.n_edit && tf_state_set_hook(tf_state_of(&st), s.c.layer, sae_steer_hook, &steerer))
        cli_die_err();
    sample(&m, &st, &o);
    mdl_state_free(&st);
    sae_steerer_free(&steerer);
    sae_free(&s);
    mdl_free(&m);
    if (cli_close(stdout, "-")) cli_die_err();
    return EXIT_SUCCESS;
}
