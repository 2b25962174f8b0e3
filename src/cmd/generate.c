/* generate - sample names from any model checkpoint, or score names under it.
 *
 * The flags and the runs are the generation module's (generation.h), shared
 * with steer; everything goes through the model interface (model.h), so this
 * program never knows which kind of model it drives.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "generation.h"
#include "kinds.h"

static _Noreturn void usage(void)
{
    printf("Usage: generate [-m CHECKPOINT] [OPTION]...\n"
           "   or: generate [-m CHECKPOINT] --score FILE\n"
           "Sample names, one per line, from a model of any kind (n-gram, MLP, RNN,\n"
           "Transformer); or score the names of FILE under it.\n"
           "\n"
           "  -m, --model FILE      the model checkpoint (.safetensors); default: the\n"
           "                        Transformer shipped in weights/transformer.safetensors\n");
    gen_print_usage(stdout);
    printf("\n"
           "Exit status: 0 on success, 1 on a runtime error (unreadable or invalid model,\n"
           "a --prefix character outside the model's vocabulary, ...), 2 on a usage\n"
           "error (unknown flag, value out of range).\n"
           "\n"
           "Example: generate -m weights/ngram-7.safetensors -n 20 --seed 7 --prefix saint-\n");
    exit(fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}

static void parse(gen_options *o, int argc, char **argv)
{
    static const struct option longs[] = { GEN_LONG_OPTIONS, { 0 } };
    int ch;
    while ((ch = getopt_long(argc, argv, GEN_SHORT_OPTIONS, longs, NULL)) != -1) {
        if (gen_parse_option(o, ch, optarg)) continue;
        switch (ch) {
        case 'h': usage();
        case 'V': cli_version();
        default: cli_bad_flag();
        }
    }
    gen_check_args(o, argc, argv, optind);
}

int main(int argc, char **argv)
{
    cli_init("generate", argv);
    gen_options o;
    gen_options_init(&o);
    parse(&o, argc, argv);

    mdl m;
    mdl_state st;
    if (mdl_load(&m, o.model) || mdl_state_new(&st, &m)) cli_die_err();
    err_code e = gen_run(&st, &o, stdout, stderr);
    mdl_state_free(&st);
    mdl_free(&m);
    if (e || cli_close(stdout, "-")) cli_die_err();
    return EXIT_SUCCESS;
}
