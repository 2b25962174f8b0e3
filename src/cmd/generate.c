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
#include "explore.h"
#include "generation.h"
#include "kinds.h"
#include "serve.h"

enum { OPT_SERVE = GEN_OPT_END };

static _Noreturn void usage(void)
{
    printf("Usage: generate [-m CHECKPOINT] [OPTION]...\n"
           "   or: generate [-m CHECKPOINT] --score FILE\n"
           "   or: generate [-m CHECKPOINT] --serve [ADDR:]PORT\n"
           "Sample names, one per line, from a model of any kind (n-gram, MLP, RNN,\n"
           "Transformer); or score the names of FILE under it.\n"
           "\n"
           "  -m, --model FILE      the model checkpoint (.safetensors); default: the\n"
           "                        mixture shipped in weights/mix.safetensors (a 7-gram,\n"
           "                        a Transformer and two RNNs; see the README's results)\n");
    gen_print_usage(stdout);
    printf("      --serve [ADDR:]PORT  serve a web page and a JSON API on ADDR (default\n"
           "                        127.0.0.1; PORT 0 = any free port, printed on stderr):\n"
           "                        names, scores letter by letter, explore's views, for\n"
           "                        the models of the directory of -m (GET /api/generate,\n"
           "                        /api/score, /api/models; see the README)%s\n",
           srv_available() ? "" : "; not built in\n                        (needs libmicrohttpd-dev)");
    printf("\n"
           "Exit status: 0 on success, 1 on a runtime error (unreadable or invalid model,\n"
           "a --prefix character outside the model's vocabulary, ...), 2 on a usage\n"
           "error (unknown flag, value out of range).\n"
           "\n"
           "Example: generate -m weights/ngram-7.safetensors -n 20 --seed 7 --prefix saint-\n");
    exit(fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}

static void parse(gen_options *o, const char **serve, int argc, char **argv)
{
    static const struct option longs[] = {
        GEN_LONG_OPTIONS, { "serve", required_argument, NULL, OPT_SERVE }, { 0 }
    };
    int ch;
    while ((ch = getopt_long(argc, argv, GEN_SHORT_OPTIONS, longs, NULL)) != -1) {
        if (gen_parse_option(o, ch, optarg)) continue;
        switch (ch) {
        case OPT_SERVE: *serve = optarg; break;
        case 'h': usage();
        case 'V': cli_version();
        default: cli_bad_flag();
        }
    }
    if (!o->model) o->model = cli_default_weights(CLI_DEFAULT_GENERATOR);
    gen_check_args(o, argc, argv, optind);
    if (*serve && (o->score || o->chars >= 0 || o->novel || o->stats))
        cli_usage("--serve cannot be combined with --score, --chars, --novel or --stats");
}

int main(int argc, char **argv)
{
    cli_init("generate", argv);
    gen_options o;
    const char *serve = NULL;
    gen_options_init(&o);
    parse(&o, &serve, argc, argv);
    if (serve) {
        srv_config c = { .listen = serve, .model = o.model, .data = XP_DEFAULT_DATA, .info = stderr };
        if (srv_run(&c)) cli_die_err();
        return EXIT_SUCCESS;
    }

    mdl m;
    mdl_state st;
    if (mdl_load(&m, o.model) || mdl_state_new(&st, &m)) cli_die_err();
    err_code e = gen_run(&st, &o, stdout, stderr);
    mdl_state_free(&st);
    mdl_free(&m);
    if (e || cli_close(stdout, "-")) cli_die_err();
    return EXIT_SUCCESS;
}
