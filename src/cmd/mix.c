/* mix - combine trained models of any kinds into one mixture (mix.h): fit
 * the mixture weights on held-out names, report honest losses, write the
 * mixture as one checkpoint that generate, --score and friends read. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dataset.h"
#include "kinds.h"
#include "mix.h"
#include "prov.h"

enum { OPT_DEV = 0x100, OPT_DATA, OPT_MODE, OPT_BUCKETS, OPT_EOS_BIAS, OPT_SPLIT_SEED, OPT_HALVES_SEED, OPT_THREADS };
enum { AUTO = MIX_ANY };

typedef struct options {
    const char *model[MIX_MAX_COMPONENTS];
    int         n_models;
    const char *dev, *data, *out;
    int         mode, buckets, eos_bias;   /* AUTO: try each, keep the lowest cross-fitted loss */
    uint64_t    split_seed, halves_seed;
} options;

static _Noreturn void usage(void)
{
    printf("Usage: mix -m MODEL -m MODEL [-m MODEL]... --data FILE [-o OUT] [OPTION]...\n"
           "   or: mix -m MODEL -m MODEL [-m MODEL]... --dev FILE [-o OUT] [OPTION]...\n"
           "Combine trained models of any kinds (n-gram, MLP, RNN, Transformer, mixtures)\n"
           "sharing one vocabulary into a mixture: fit its weights on the names of --dev,\n"
           "print the losses, write the mixture to OUT.\n"
           "\n"
           "  -m, --model FILE      a component (2 to %d); give the flag once per model\n"
           "      --data FILE       the names the components were trained on: the weights are\n"
           "                        fitted on the validation side of the trainers' 90/10\n"
           "                        split of its distinct names (--split-seed N; default 0)\n"
           "      --dev FILE        or: the names to fit on, one per line (e.g. the val.txt\n"
           "                        of a trainer's --dump-split DIR)\n"
           "      --mode M          linear (p = sum w_k p_k), loglinear (p ~ prod p_k^w_k),\n"
           "                        or auto: both, keeping the better (default auto)\n"
           "      --buckets B       none (one set of weights), position (a set per position\n"
           "                        predicted: 1, 2, 3, 4-5, 6-8, 9-12, 13+), evidence (per\n"
           "                        longest context an n-gram component saw: 0-7, 8+),\n"
           "                        known (per position and per whether the name so far\n"
           "                        is a training name of --data's split, which the\n"
           "                        mixture stores), or auto: each that applies (default)\n"
           "      --eos-bias B      no, yes (log-linear weights gain a bias per bucket on\n"
           "                        ending the name: with known buckets it learns that\n"
           "                        held-out names never end at a training name, and the\n"
           "                        mixture copies far fewer), or auto: both (default)\n"
           "      --halves-seed N   seed of the two halves that cross-fit (default 0)\n"
           "  -o, --output FILE     the mixture (default mix.safetensors)\n"
           "      --threads N       bound the threads used\n"
           "  -h, --help            show this help and exit\n"
           "  -V, --version         show the version and exit\n"
           "\n"
           "Honest numbers: the names fitted on are cut into two seeded halves; weights\n"
           "fitted on one half score the other: crossfit_loss (comparable with the\n"
           "trainers' val_loss).  The mixture written has weights fitted on all of them\n"
           "(fit_loss, what 'generate --score' gives on them); judge it by crossfit_loss.\n"
           "\n"
           "Output (TSV, losses in nats per character, <EOS> included): a row per\n"
           "component, then per mixture tried:\n"
           "  model mode buckets eos_bias fit_loss crossfit_loss chosen\n"
           "\n"
           "Exit status: 0 on success, 1 on a runtime error (unreadable model, other\n"
           "vocabularies, a --dev name too long for a component), 2 on a usage error.\n"
           "\n"
           "Example: mix -m ngram-7.safetensors -m transformer.safetensors --data data/villes.txt\n",
           MIX_MAX_COMPONENTS);
    exit(fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}

static const char *const no_yes[] = { "no", "yes", NULL };
/* A word of words, or "auto" -> AUTO. */
static int word_or_auto(const char *flag, const char *s, const char *const *words)
{
    return strcmp(s, "auto") ? cli_choice(flag, s, words) : AUTO;
}

static void parse(options *o, int argc, char **argv)
{
    static const struct option longs[] = {
        { "model", required_argument, NULL, 'm' },      { "dev", required_argument, NULL, OPT_DEV },
        { "eos-bias", required_argument, NULL, OPT_EOS_BIAS },
        { "mode", required_argument, NULL, OPT_MODE },  { "buckets", required_argument, NULL, OPT_BUCKETS },
        { "split-seed", required_argument, NULL, OPT_SPLIT_SEED },
        { "halves-seed", required_argument, NULL, OPT_HALVES_SEED }, { "data", required_argument, NULL, OPT_DATA },
        { "output", required_argument, NULL, 'o' },     { "threads", required_argument, NULL, OPT_THREADS },
        { "help", no_argument, NULL, 'h' },             { "version", no_argument, NULL, 'V' },
        { 0 }
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "m:o:hV", longs, NULL)) != -1) {
        switch (ch) {
        case 'm':
            if (o->n_models == MIX_MAX_COMPONENTS) cli_usage("at most %d models", MIX_MAX_COMPONENTS);
            o->model[o->n_models++] = optarg;
            break;
        case OPT_DEV: o->dev = optarg; break;
        case OPT_MODE: o->mode = word_or_auto("--mode", optarg, mix_mode_names); break;
        case OPT_BUCKETS: o->buckets = word_or_auto("--buckets", optarg, mix_bucket_names); break;
        case OPT_EOS_BIAS: o->eos_bias = word_or_auto("--eos-bias", optarg, no_yes); break;
        case OPT_DATA: o->data = optarg; break;
        case OPT_SPLIT_SEED: o->split_seed = cli_u64("--split-seed", optarg); break;
        case OPT_HALVES_SEED: o->halves_seed = cli_u64("--halves-seed", optarg); break;
        case 'o': o->out = optarg; break;
        case OPT_THREADS: cli_set_threads((int)cli_long("--threads", optarg, 0, 1024)); break;
        case 'h': usage();
        case 'V': cli_version();
        default: cli_bad_flag();
        }
    }
    if (optind < argc) cli_usage("unexpected argument '%s'", argv[optind]);
    if (o->n_models < 2) cli_usage("give at least two models (-m FILE -m FILE)");
    if (!o->dev == !o->data) cli_usage("give --data FILE (the components' training names) or --dev FILE");
    if (!strcmp(o->out, "-")) cli_usage("-o: give a file, not '-' (stdout has the table)");
    if (o->dev && o->buckets == MIX_BY_KNOWN)
        cli_usage("--buckets known needs --data (the training names), not --dev");
    if (o->eos_bias == 1 && o->mode == MIX_LINEAR) cli_usage("--eos-bias yes needs --mode loglinear or auto");
}

/* The names to fit on, encoded with the components' vocabulary: --dev, or
 * the validation side of --data's split. */
static void load_dev(const options *o, const mdl *m, ds_corpus *c)
{
    memset(c, 0, sizeof *c);
    if (o->data && ds_load_with_vocab(c, &m->vocab, o->data, NULL, o->split_seed, 0.1)) cli_die_err();
    if (o->dev) {
        txt_lines lines;
        if (txt_read_lines(o->dev, &lines)) cli_die_err();
        if (ds_from_lines(&c->val, &lines, &m->vocab)) cli_die("%s: %s", o->dev, err_msg());
        txt_lines_free(&lines);
    }
    if (prv_add_data(o->data ? o->data : o->dev)) cli_die_err();
    if (c->val.n < 2)
        cli_die("%s: fewer than two names to fit on", o->dev ? o->dev : o->data);
}

static void print_row(const char *model, const char *mode, const char *buckets, const char *eos_bias,
                      double fit, double crossfit, int chosen)
{
    printf("%s\t%s\t%s\t%s\t%.6f\t%.6f\t%d\n", model, mode, buckets, eos_bias, fit, crossfit, chosen);
}

/* Fit every mixture the flags allow and keep, in m, the one of lowest
 * cross-fitted loss; a row for each.  known: d is marked against the
 * training names, whose set m holds. */
static void fit_all(const options *o, const mix_data *d, bool known, const uint8_t *side, mix_model *m)
{
    mix_trial t[MIX_MAX_TRIALS];
    int n, best;
    const mix_choices ch = { .mode = o->mode, .buckets = o->buckets, .eos_bias = o->eos_bias,
                             .evidence = mix_evidence_component(m->comp, m->c.n_components) >= 0,
                             .known = known };
    if (mix_search(d, &m->c, &ch, side, t, &n, &best)) cli_die_err();
    for (int i = 0; i < n; i++)
        print_row("mix", mix_mode_names[t[i].c.mode], mix_bucket_names[t[i].c.buckets],
                  no_yes[t[i].c.eos_bias], t[i].fit_loss, t[i].crossfit_loss, i == best);
    m->c = t[best].c;
    memcpy(m->w, t[best].w, sizeof t[best].w);
}

int main(int argc, char **argv)
{
    cli_init("mix", argv);
    static options o = { .mode = AUTO, .buckets = AUTO, .eos_bias = AUTO, .out = "mix.safetensors" };
    parse(&o, argc, argv);
    static mdl comp[MIX_MAX_COMPONENTS];
    for (int k = 0; k < o.n_models; k++)
        if (mdl_load(&comp[k], o.model[k])) cli_die_err();
    static mix_model m;   /* takes the components: one vocabulary */
    mix_config c = { .vocab_size = comp[0].vocab.size, .n_components = o.n_models };
    if (mix_init(&m, &c, comp)) cli_die("%s", err_msg());
    ds_corpus names;
    load_dev(&o, &m.comp[0], &names);
    const ds_names *dev = &names.val;
    mix_data d;
    uint8_t *side;
    if (mix_data_collect(&d, m.comp, o.n_models, dev) || mix_halves(dev->n, o.halves_seed, &side))
        cli_die_err();
    bool known = o.data && names.train.n > 0;   /* the training names, for --buckets known */
    if (known && mix_known_attach(&m, &d, &names.train, dev)) cli_die_err();

    printf("model\tmode\tbuckets\teos_bias\tfit_loss\tcrossfit_loss\tchosen\n");
    for (int k = 0; k < o.n_models; k++) {
        size_t n;
        double loss = mix_component_nll(&d, k, NULL, 0, &n) / (double)n;
        print_row(o.model[k], m.comp[k].kind->name, "-", "-", loss, loss, 0);
    }
    fit_all(&o, &d, known, side, &m);
    if (mix_save(&m, o.out) || cli_close(stdout, "-")) cli_die_err();
    mix_data_free(&d);
    free(side);
    ds_corpus_free(&names);
    mix_free(&m);
    return EXIT_SUCCESS;
}
