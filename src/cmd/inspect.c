/* inspect - what a checkpoint holds: kind, configuration, parameters,
 * training state, provenance and tensors (inspect.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "inspect.h"

static _Noreturn void usage(void)
{
    printf("Usage: inspect [OPTION]... CHECKPOINT...\n"
           "Show what a villes checkpoint holds: its kind, configuration, parameter\n"
           "count, vocabulary, training (steps, losses, settings, whether --resume can\n"
           "continue it), provenance (the program and version that wrote it, its command\n"
           "line, the data files with their size and FNV-1a hash) and its tensors.  Every\n"
           "kind: ngram, mlp, rnn, transformer, mix, sae.  The model is built, so a file\n"
           "that would not load is refused with one line.\n"
           "\n"
           "      --tsv          field/value rows (TSV with a header): file, bytes, kind,\n"
           "                     params, tensors, optimiser_state, train_loss, config.KEY,\n"
           "                     provenance.KEY, meta.KEY for the other metadata\n"
           "      --tensors      the tensor table (TSV): name dtype shape numel fnv1a64\n"
           "  -h, --help         show this help and exit\n"
           "  -V, --version      show the version and exit\n"
           "\n"
           "Several checkpoints are shown one after the other (TSV: one header).\n"
           "Exit status: 0 on success, 1 when a checkpoint cannot be read or built\n"
           "(the others are still shown), 2 on a usage error.\n"
           "\n"
           "Example: inspect --tsv transformer.safetensors | grep '^provenance'\n");
    exit(fflush(stdout) == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}

enum { OPT_TSV = 0x100, OPT_TENSORS };

int main(int argc, char **argv)
{
    cli_init("inspect", argv);
    static const struct option longs[] = {
        { "tsv", no_argument, NULL, OPT_TSV },   { "tensors", no_argument, NULL, OPT_TENSORS },
        { "help", no_argument, NULL, 'h' },      { "version", no_argument, NULL, 'V' },
        { 0 },
    };
    isp_format format = ISP_TEXT;
    int ch;
    while ((ch = getopt_long(argc, argv, "hV", longs, NULL)) != -1) {
        switch (ch) {
        case OPT_TSV: format = ISP_TSV; break;
        case OPT_TENSORS: format = ISP_TENSORS; break;
        case 'h': usage();
        case 'V': cli_version();
        default: cli_bad_flag();
        }
    }
    if (optind == argc) cli_usage("give a checkpoint (inspect FILE)");
    int status = EXIT_SUCCESS;
    if (format == ISP_TSV) printf("field\tvalue\n");
    for (int i = optind; i < argc; i++) {
        if (format == ISP_TEXT && i > optind) putchar('\n');
        if (isp_print(argv[i], format, stdout)) {
            fflush(stdout);
            fprintf(stderr, "%s: %s\n", cli_prog(), err_msg());
            status = EXIT_FAILURE;
        }
    }
    if (fflush(stdout) != 0) cli_die("standard output: write error");
    return status;
}
