/* steer - generate from a Transformer while clamping or adding SAE features
 * at the SAE's layer (sae.h: sae_steer_hook on the cached generation path).
 *
 * Everything after the hook is generate's (generation.h): the same flags
 * and the same runs on the hooked state, so with no intervention the output
 * is generate's, seed for seed, and --score scores under the steered model.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "generation.h"
#include "kinds.h"
#include "sae.h"
#include "sweep.h"
#include "transformer.h"

enum { OPT_SAE = GEN_OPT_END, OPT_CLAMP, OPT_ADD, OPT_SWEEP, OPT_SWEEP_ADD, OPT_MATCH, OPT_CONTAINS,
       OPT_DATA };
enum { MAX_EDITS = 256 };

static _Noreturn void usage(void)
{
    printf("Usage: steer [-m TRANSFORMER] [--sae SAE] [--clamp F=V]... [--add F=V]... [OPTION]...\n"
           "   or: steer [-m TRANSFORMER] [--sae SAE] [--clamp F=V]... [--add F=V]... --score FILE\n"
           "   or: steer [-m TRANSFORMER] [--sae SAE] --sweep F=LO:HI:STEP (--match RE | --contains S)\n"
           "Sample names from a Transformer while steering the features of a sparse\n"
           "autoencoder trained on it: at every position, the residual stream x at the\n"
           "SAE's layer becomes decode(f') + (x - decode(f)), f = encode(x) and f' = f\n"
           "edited (the reconstruction error is kept); the rest of the pass follows.\n"
           "The sampling flags are generate's; with no --clamp or --add the output is\n"
           "generate's with the same flags.  --score scores names under the steered model.\n"
"Names are sampled one at a time (--batch and --threads do not apply).\n"
           "\n"
           "  -m, --model FILE      the Transformer; default: the one shipped in\n"
           "                        weights/transformer.safetensors\n"
           "      --sae FILE        the SAE trained on it; default: the one shipped in\n"
           "                        weights/sae.safetensors\n"
           "      --clamp F=V       set feature F to V at every position\n"
           "      --add F=V         add V times feature F's decoder direction\n"
           "                        (both repeatable; features count from 0)\n"
           "\n"
           "Dose-response (a TSV, one row per value; the other edits stay):\n"
           "      --sweep F=LO:HI:STEP  clamp feature F to LO, LO+STEP, ..., HI in turn and\n"
           "                        sample -n names (default %d) with the same --seed at\n"
           "                        each; columns: value, share of names that match\n"
           "                        (matching), share distinct, share copied from --data,\n"
           "                        mean loss (nats/char) of the names under the unsteered\n"
           "                        model (loss: plausibility), mean length in characters\n"
           "      --sweep-add       add V times F's decoder direction instead of clamping\n"
           "      --match REGEX     what counts as matching: a POSIX extended regex on the\n"
           "                        name's UTF-8 bytes, e.g. '^saint-' or 'ville$'\n"
           "      --contains STR    ... or names containing STR\n"
           "      --data FILE       training names, for the copied share (default %s)\n",
           SW_DEFAULT_COUNT, SW_DEFAULT_DATA);
    gen_print_usage(stdout);
    printf("\n"
           "Exit status: 0 on success, 1 on a runtime error (unreadable files, an SAE\n"
           "trained on another model, a feature out of range, ...), 2 on a usage error.\n"
           "\n"
           "Examples: steer --clamp 142=3 -n 10 --seed 7\n"
           "          steer --sweep 142=0:20:2 --match 'ville$'\n");
    exit(fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}

typedef struct options {
    gen_options gen;
    const char *sae;      /* NULL = the shipped SAE */
    sae_edit    edit[MAX_EDITS];
    int         n_edit;
    sw_options  sweep;
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
        GEN_LONG_OPTIONS,
        { "sae",   required_argument, NULL, OPT_SAE },
        { "clamp", required_argument, NULL, OPT_CLAMP },
        { "add",   required_argument, NULL, OPT_ADD },
        { "sweep", required_argument, NULL, OPT_SWEEP },
        { "sweep-add", no_argument, NULL, OPT_SWEEP_ADD },
        { "match", required_argument, NULL, OPT_MATCH },
        { "contains", required_argument, NULL, OPT_CONTAINS },
        { "data",  required_argument, NULL, OPT_DATA },
        { 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, GEN_SHORT_OPTIONS, longs, NULL)) != -1) {
        if (gen_parse_option(&o->gen, ch, optarg)) continue;
        switch (ch) {
        case OPT_SAE: o->sae = optarg; break;
        case OPT_CLAMP: parse_edit(o, "--clamp", optarg, true); break;
        case OPT_ADD: parse_edit(o, "--add", optarg, false); break;
        case OPT_SWEEP: sw_parse_range(&o->sweep, optarg); break;
        case OPT_SWEEP_ADD: o->sweep.add = true; break;
        case OPT_MATCH: sw_set_match(&o->sweep, optarg); break;
        case OPT_CONTAINS: o->sweep.contains = optarg; break;
        case OPT_DATA: o->sweep.data = optarg; break;
        case 'h': usage();
        case 'V': cli_version();
        default: cli_bad_flag();
        }
    }
    gen_check_args(&o->gen, argc, argv, optind);
    /* The SAE hook sits on one stream and its scratch serves one name at a
     * time: names one after another, on that stream (the same names). */
    o->gen.batch = 1;
    o->gen.threads = 1;
    sw_check(&o->sweep, &o->gen);
    if (o->gen.count < 0) o->gen.count = o->sweep.on ? SW_DEFAULT_COUNT : GEN_DEFAULT_COUNT;
}

int main(int argc, char **argv)
{
    cli_init("steer", argv);
    static options o;   /* static: the compiled --match stays reachable on an early exit */
    o.sweep = SW_DEFAULTS;
    gen_options_init(&o.gen);
    o.gen.count = -1;   /* not given: the default depends on --sweep */
    parse(&o, argc, argv);
    char model_path[4096], sae_path[4096];   /* cli_default_weights reuses one buffer */
    snprintf(model_path, sizeof model_path, "%s", o.gen.model);
    snprintf(sae_path, sizeof sae_path, "%s", o.sae ? o.sae : cli_default_weights(CLI_DEFAULT_SAE));
    o.gen.model = model_path;

    mdl m;
    mdl_state st;
    sae_model s;
    sae_steerer steerer;
    if (mdl_load(&m, model_path)) cli_die_err();
    const tf_model *tf = tf_of_mdl(&m);
    if (!tf) cli_die("%s: %s", model_path, err_msg());
    if (sae_read(&s, sae_path) || sae_check_pair(&s, sae_path, tf, model_path)) cli_die_err();
    if (sae_steerer_init(&steerer, &s, o.edit, o.n_edit)) cli_die("%s: %s", sae_path, err_msg());
    if (mdl_state_new(&st, &m)) cli_die_err();
    /* no edit, no hook: the generation path is generate's, bit for bit */
    if (!o.sweep.on && o.n_edit && tf_state_set_hook(tf_state_of(&st), s.c.layer, sae_steer_hook, &steerer))
        cli_die_err();
    err_code e = o.sweep.on ? sw_run(&st, &s, o.edit, o.n_edit, &o.gen, &o.sweep, stdout)
                            : gen_run(&st, &o.gen, stdout, stderr);
    sw_free(&o.sweep);
    mdl_state_free(&st);
    sae_steerer_free(&steerer);
    sae_free(&s);
    mdl_free(&m);
    if (e || cli_close(stdout, "-")) cli_die_err();
    return EXIT_SUCCESS;
}
