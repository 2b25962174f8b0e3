/* explore - look inside a trained Transformer and the sparse autoencoder
 * trained on it: top activating names of residual neurons and SAE
 * features, activation frequencies, the letters a feature pushes, letter
 * embeddings, the logit lens, attribution of one prediction to features,
 * and the SAE's evaluation.
 *
 * Every subcommand prints TSV (the default when stdout is not a terminal)
 * or a view for people with per-letter heat-map shading; features,
 * attribute, path and attention can also write a self-contained HTML page,
 * and dashboard writes a directory of them (a page per SAE feature with its
 * automatic label; path follows one name's residual states layer by layer,
 * attention shows its attention weights).  This program
 * parses the command and its flags; the subcommands are explore.h's.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "explore.h"
#include "sae.h"
#include "transformer.h"

/* getopt_long codes of the long flags; F(X) is OPT_X as a bit, so that each
 * command lists the flags it takes (-m, --format, --color, --threads: all). */
enum { OPT_SAE = 0x100, OPT_DATA, OPT_VAL_DATA, OPT_SPLIT_SEED, OPT_LAYER, OPT_TOP, OPT_ID,
       OPT_POS, OPT_TARGET, OPT_HTML, OPT_SORT, OPT_SUMMARY, OPT_HISTOGRAM, OPT_NEIGHBOURS,
       OPT_SVG, OPT_FORMAT, OPT_COLOR, OPT_THREADS, OPT_BEAM, OPT_COUNT, OPT_WEIGHT };
#define F(X) (1u << (OPT_##X - OPT_SAE))
#define F_COMMON (F(FORMAT) | F(COLOR) | F(THREADS))

typedef struct command {
    const char *name;
    unsigned    flags;                 /* F() of the flags it takes beyond F_COMMON */
    bool        operand;               /* takes NAME */
    void      (*run)(const xp_options *);
} command;

static const command commands[] = {
    { "features", F(SAE) | F(DATA) | F(TOP) | F(ID) | F(HTML), false, xp_features },
    { "neurons", F(DATA) | F(LAYER) | F(TOP) | F(ID), false, xp_neurons },
    { "freq", F(SAE) | F(DATA) | F(SORT) | F(SUMMARY), false, xp_freq },
    { "logits", F(SAE) | F(ID), false, xp_logits },
    { "embeddings", F(NEIGHBOURS), false, xp_embeddings },
    { "lens", F(TOP), true, xp_lens },
    { "attribute", F(SAE) | F(POS) | F(TARGET) | F(HTML), true, xp_attribute },
    { "sae-stats", F(SAE) | F(DATA) | F(VAL_DATA) | F(SPLIT_SEED) | F(HISTOGRAM), false, xp_sae_stats },
    { "synth", F(SAE) | F(DATA) | F(ID) | F(BEAM) | F(COUNT) | F(WEIGHT), false, xp_synth },
    { "dashboard", F(SAE) | F(DATA) | F(TOP) | F(HTML), false, xp_dashboard },
    { "path", F(POS) | F(HTML) | F(SVG), true, xp_path },
    { "attention", F(HTML), true, xp_attention },
};

static _Noreturn void usage(void)
{
    xp_print_usage(stdout);
    exit(fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}

static const struct option longs[] = {
    { "model", required_argument, NULL, 'm' },
    { "sae", required_argument, NULL, OPT_SAE },
    { "data", required_argument, NULL, OPT_DATA },
    { "val-data", required_argument, NULL, OPT_VAL_DATA },
    { "split-seed", required_argument, NULL, OPT_SPLIT_SEED },
    { "layer", required_argument, NULL, OPT_LAYER },
    { "top", required_argument, NULL, OPT_TOP },
    { "id", required_argument, NULL, OPT_ID },
    { "pos", required_argument, NULL, OPT_POS },
    { "target", required_argument, NULL, OPT_TARGET },
    { "html", required_argument, NULL, OPT_HTML },
    { "sort", required_argument, NULL, OPT_SORT },
    { "summary", no_argument, NULL, OPT_SUMMARY },
    { "histogram", no_argument, NULL, OPT_HISTOGRAM },
    { "neighbours", required_argument, NULL, OPT_NEIGHBOURS },
    { "svg", required_argument, NULL, OPT_SVG },
    { "format", required_argument, NULL, OPT_FORMAT },
    { "color", required_argument, NULL, OPT_COLOR },
    { "threads", required_argument, NULL, OPT_THREADS },
    { "beam", required_argument, NULL, OPT_BEAM },
    { "count", required_argument, NULL, OPT_COUNT },
    { "weight", required_argument, NULL, OPT_WEIGHT },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { 0 },
};

/* The command argv[1] names; usage error when none. */
static const command *find_command(int argc, char **argv)
{
    static const char list[] = "(features, neurons, freq, logits, embeddings, lens, attribute, sae-stats,"
                               " synth, dashboard, path, attention)";
    if (argc < 2) cli_usage("no command given %s", list);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) usage();
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) cli_version();
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(commands[i].name, argv[1])) return &commands[i];
    cli_usage("unknown command '%s' %s", argv[1], list);
}

/* A usage error unless flag ch applies to cmd. */
static void check_applies(int ch, const command *cmd)
{
    unsigned bit = ch >= OPT_SAE && ch <= OPT_WEIGHT ? 1u << (ch - OPT_SAE) : 0;
    if (!(bit & ~(cmd->flags | F_COMMON))) return;
    for (const struct option *l = longs; l->name; l++)
        if (l->val == ch) cli_usage("--%s does not apply to 'explore %s'", l->name, cmd->name);
}

static void parse(xp_options *o, int argc, char **argv, const command *cmd)
{
    static const char *const sorts[] = { "id", "freq", NULL };
    int ch;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "m:n:hV", longs, NULL)) != -1) {
        if (ch == 'n') ch = OPT_COUNT;
        check_applies(ch, cmd);
        switch (ch) {
        case 'm': o->model = optarg; break;
        case OPT_SAE: o->sae = optarg; break;
        case OPT_DATA: o->data = optarg; break;
        case OPT_VAL_DATA: o->val_data = optarg; break;
        case OPT_SPLIT_SEED:
            o->split_seed = cli_u64("--split-seed", optarg);
            o->split_seed_given = true;
            break;
        case OPT_LAYER: o->layer = (int)cli_long("--layer", optarg, 0, TF_MAX_LAYERS); break;
        case OPT_TOP: o->top = (int)cli_long("--top", optarg, 1, 100000); break;
        case OPT_ID: o->id = (int)cli_long("--id", optarg, 0, SAE_MAX_FEATURES); break;
        case OPT_POS: o->pos = (int)cli_long("--pos", optarg, 0, TF_MAX_LEN); break;
        case OPT_TARGET: o->target = optarg; break;
        case OPT_HTML: o->html = optarg; break;
        case OPT_SVG: o->svg = optarg; break;
        case OPT_SORT: o->by_freq = cli_choice("--sort", optarg, sorts) == 1; break;
        case OPT_SUMMARY: o->summary = true; break;
        case OPT_HISTOGRAM: o->histogram = true; break;
        case OPT_NEIGHBOURS: o->neighbours = (int)cli_long("--neighbours", optarg, 0, 1000); break;
        case OPT_FORMAT: o->format = vw_format_flag(optarg); break;
        case OPT_COLOR: o->color = cli_color_flag(optarg); break;
        case OPT_THREADS: cli_set_threads((int)cli_long("--threads", optarg, 0, 1024)); break;
        case OPT_BEAM: o->beam = (int)cli_long("--beam", optarg, 1, 4096); break;
        case OPT_COUNT: o->count = (int)cli_long("-n", optarg, 1, 100000); break;
        case OPT_WEIGHT: o->weight = cli_double("--weight", optarg, 1e-3, 1e6); break;
        case 'h': usage();
        case 'V': cli_version();
        default: cli_bad_flag();
        }
    }
    if (cmd->operand) {
        if (optind >= argc) cli_usage("'explore %s' needs a NAME", cmd->name);
        o->name = argv[optind++];
    }
    if (optind < argc) cli_usage("unexpected argument '%s'", argv[optind]);
    if (cmd->run == xp_logits && o->id < 0) cli_usage("'explore logits' needs --id N");
    if (cmd->run == xp_synth && o->id < 0) cli_usage("'explore synth' needs --id N");
    if (cmd->run == xp_attribute && o->pos < 0) cli_usage("'explore attribute' needs --pos I");
    if (cmd->run == xp_dashboard && (!o->html || !strcmp(o->html, "-")))
        cli_usage("'explore dashboard' needs --html DIR (a directory)");
    if (o->html && o->svg) cli_usage("--html and --svg: choose one");
}

int main(int argc, char **argv)
{
    cli_init("explore", argv);
    xp_options o = { .data = XP_DEFAULT_DATA, .layer = -1, .id = -1, .pos = -1,
                     .neighbours = XP_DEFAULT_NEIGHBOURS, .color = CLI_COLOR_AUTO };
    const command *cmd = find_command(argc, argv);
    o.format = vw_default_format(stdout);
    parse(&o, argc, argv, cmd);
    cmd->run(&o);
    if (cli_close(stdout, "-")) cli_die_err();
    return EXIT_SUCCESS;
}
