/* ngram - fit an n-gram model, report its train / validation loss, save it. */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dataset.h"
#include "ngram.h"
#include "prov.h"

enum { OPT_SMOOTHING = 0x100, OPT_K, OPT_DISCOUNT, OPT_DATA, OPT_VAL_DATA, OPT_SEED,
       OPT_SPLIT_SEED, OPT_THREADS, OPT_FOLD };

static const double VAL_FRACTION = 0.1;

static _Noreturn void usage(void)
{
    printf("Usage: ngram [OPTION]...\n"
           "Fit an n-gram model of characters on names, one per line, and print a two-line\n"
           "TSV summary: model, order, smoothing, params (distinct n-grams), steps (0),\n"
           "train_loss, val_loss (nats/char over the whole sets, <EOS> included; 'inf'\n"
           "when a name has probability 0) and seconds (fitting time).\n"
           "\n"
           "  -n, --order N        order: the context is the previous N-1 characters;\n"
           "                       0 = uniform, 1 = unigram (default 3)\n"
           "      --smoothing S    none, addk or kn (interpolated Kneser-Ney); default kn,\n"
           "                       none for order 0\n"
           "      --k K            add-k pseudo-count (default %g)\n"
           "      --discount D     one Kneser-Ney discount, 0 to 1, for every order and\n"
           "                       count (default: modified Kneser-Ney, three discounts\n"
           "                       per order estimated from the counts of counts)\n"
           "      --data FILE      training names, '-' = stdin (default data/villes.txt)\n"
           "      --val-data FILE  validation names (default: a seeded 90/10 split of the\n"
           "                       distinct names of --data)\n"
           "      --split-seed N   seed of that split (default 0, as the trainers)\n"
           "      --fold K/N       fit without fold K of N of the training names (as the\n"
           "                       trainers' --fold: a teacher for their --teacher)\n"
           "      --seed N         accepted for symmetry with the trainers: a fit draws no\n"
           "                       random numbers\n"
           "  -o, --output FILE    write the model to FILE (safetensors) for generate\n"
           "      --threads N      accepted; fitting uses one thread\n"
           "  -h, --help           show this help and exit\n"
           "  -V, --version        show the version and exit\n"
           "\n"
           "Example: ngram -n 7 --data data/villes.txt -o weights/ngram-7.safetensors\n",
           NG_DEFAULT_K);
    exit(fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}

typedef struct options {
    ng_config   c;
    const char *data, *val_data, *out;
    uint64_t    split_seed;
    int         smoothing;   /* -1 = the default for the order */
    const char *fold;        /* --fold K/N, NULL = none */
    int         fold_k, n_folds;
} options;

static void parse(options *o, int argc, char **argv)
{
    static const struct option longs[] = {
        { "order", required_argument, NULL, 'n' },
        { "smoothing", required_argument, NULL, OPT_SMOOTHING },
        { "k", required_argument, NULL, OPT_K },
        { "discount", required_argument, NULL, OPT_DISCOUNT },
        { "data", required_argument, NULL, OPT_DATA },
        { "val-data", required_argument, NULL, OPT_VAL_DATA },
        { "seed", required_argument, NULL, OPT_SEED },
        { "split-seed", required_argument, NULL, OPT_SPLIT_SEED },
        { "output", required_argument, NULL, 'o' },
        { "threads", required_argument, NULL, OPT_THREADS },
        { "fold", required_argument, NULL, OPT_FOLD },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "n:o:hV", longs, NULL)) != -1) {
        switch (ch) {
        case 'n': o->c.order = (int)cli_long("-n", optarg, 0, INT_MAX); break;
        case OPT_SMOOTHING: o->smoothing = cli_choice("--smoothing", optarg, ng_smoothing_names); break;
        case OPT_K: o->c.k = cli_double("--k", optarg, 1e-12, 1e12); break;
        case OPT_DISCOUNT: o->c.discount = cli_double("--discount", optarg, 0, 1); break;
        case OPT_DATA: o->data = optarg; break;
        case OPT_VAL_DATA: o->val_data = optarg; break;
        case OPT_SEED: cli_u64("--seed", optarg); break;
        case OPT_SPLIT_SEED: o->split_seed = cli_u64("--split-seed", optarg); break;
        case 'o': o->out = optarg; break;
        case OPT_FOLD:
            if (ds_fold_parse(optarg, &o->fold_k, &o->n_folds)) cli_usage("--fold: %s", err_msg());
            o->fold = optarg;
            break;
        case OPT_THREADS: cli_set_threads((int)cli_long("--threads", optarg, 0, 1024)); break;
        case 'h': usage();
        case 'V': cli_version();
        default: cli_bad_flag();
        }
    }
    if (optind < argc) cli_usage("unexpected argument '%s'", argv[optind]);
    if (o->smoothing >= 0) o->c.smoothing = (ng_smoothing)o->smoothing;
    else o->c.smoothing = o->c.order == 0 ? NG_NONE : NG_KN;
}

int main(int argc, char **argv)
{
    cli_init("ngram", argv);
    options o = {
        .c = NG_DEFAULTS,
        .data = "data/villes.txt",
        .smoothing = -1,
    };
    parse(&o, argc, argv);

    ds_corpus corpus;
    if (ds_load(&corpus, o.data, o.val_data, o.split_seed, VAL_FRACTION) || prv_add_data(o.data) ||
        prv_add_data(o.val_data))
        cli_die_err();
    if (o.fold && ds_drop_fold(&corpus, o.fold_k, o.n_folds)) cli_die_err();
    double t0 = cli_now();
    ng_model *m;
    o.c.vocab_size = corpus.vocab.size;
    if (ng_fit(&m, &o.c, &corpus.train)) cli_die_err();
    double seconds = cli_now() - t0;
    size_t n_train, n_val;
    double train_loss = ng_nll(m, &corpus.train, &n_train) / (double)n_train;
    double val_loss = ng_nll(m, &corpus.val, &n_val) / (double)n_val;
    char seed[32], fold[32];   /* for distillation (distill.h) */
    snprintf(seed, sizeof seed, "%" PRIu64, o.split_seed);
    snprintf(fold, sizeof fold, "%d/%d", o.fold_k, o.n_folds);
    const char *const meta[][2] = { { "fold", fold }, { "split_seed", seed } };
    if (o.out && ng_save_meta(m, &corpus.vocab, o.out, meta, o.fold ? 2 : 0)) cli_die_err();

    /* With -o -, the model is the data on stdout: the summary moves to stderr. */
    FILE *out = o.out && strcmp(o.out, "-") == 0 ? stderr : stdout;
    fprintf(out, "model\torder\tsmoothing\tparams\tsteps\ttrain_loss\tval_loss\tseconds\n");
    fprintf(out, "ngram\t%d\t%s\t%zu\t0\t%.6f\t%.6f\t%.3f\n", o.c.order,
            ng_smoothing_names[o.c.smoothing], ng_size(m), train_loss, val_loss, seconds);
    ng_free(m);
    ds_corpus_free(&corpus);
    if (cli_close(stdout, "-")) cli_die_err();
    return EXIT_SUCCESS;
}
