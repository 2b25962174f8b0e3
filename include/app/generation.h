/* generation.h - what `generate` and `steer` share: the sampling flags, their
 * help text, and the three things a run does with a model (model.h): sample
 * names (with --novel and --stats), sample running text (--chars), or score
 * the names of a file (--score).
 *
 * Everything runs on an mdl_state, so a program may change the state before
 * the run (steer installs a residual hook on a Transformer's state) and the
 * run follows it.  A program's main:
 *
 *   static const struct option opts[] = {
 *       GEN_LONG_OPTIONS,
 *       { "sae", required_argument, NULL, OPT_SAE },   // OPT_SAE >= GEN_OPT_END
 *       { 0 }
 *   };
 *   gen_options o;
 *   gen_options_init(&o);
 *   while ((c = getopt_long(argc, argv, GEN_SHORT_OPTIONS, opts, NULL)) != -1) {
 *       if (gen_parse_option(&o, c, optarg)) continue;
 *       switch (c) { case OPT_SAE: ...; case 'h': usage(); case 'V': cli_version();
 *                    default: cli_bad_flag(); }
 *   }
 *   gen_check_args(&o, argc, argv, optind);   // usage errors (exit 2)
 *   mdl m; mdl_state st;
 *   if (mdl_load(&m, o.model) || mdl_state_new(&st, &m)) cli_die_err();
 *   ... (hooks on st)
 *   if (gen_run(&st, &o, stdout, stderr)) cli_die_err();
 */
#ifndef VILLES_GENERATION_H
#define VILLES_GENERATION_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"
#include "model.h"
#include "sampling.h"
#include "text.h"

/* getopt_long codes of the shared flags; a program's own flags use codes
 * >= GEN_OPT_END. */
enum {
    GEN_OPT_SEED = 0x100, GEN_OPT_TEMPERATURE, GEN_OPT_TOP_K, GEN_OPT_TOP_P, GEN_OPT_PREFIX,
    GEN_OPT_MAX_LEN, GEN_OPT_NOVEL, GEN_OPT_STATS, GEN_OPT_SCORE, GEN_OPT_CHARS,
    GEN_OPT_THREADS, GEN_OPT_BATCH,
    GEN_OPT_END = 0x200
};

enum {
    GEN_DEFAULT_COUNT = 10,
    GEN_DEFAULT_MAX_CHARS = 50,   /* names from a model without a length limit */
    GEN_NOVEL_ATTEMPTS = 1000,    /* samples per name before --novel gives up */
    GEN_DEFAULT_BATCH = 96,       /* names in flight on a thread (a multiple of the
                                     Transformer's block of 6 lanes) */
    GEN_MAX_BATCH = 4096,
};

#define GEN_SHORT_OPTIONS "m:n:hV"

/* The shared entries of a program's struct option table (no terminator):
 * --help ('h') and --version ('V') are listed here but handled by the
 * program (gen_parse_option returns false for them). */
#define GEN_LONG_OPTIONS                                                      \
    { "model",       required_argument, NULL, 'm' },                          \
    { "count",       required_argument, NULL, 'n' },                          \
    { "seed",        required_argument, NULL, GEN_OPT_SEED },                 \
    { "temperature", required_argument, NULL, GEN_OPT_TEMPERATURE },          \
    { "top-k",       required_argument, NULL, GEN_OPT_TOP_K },                \
    { "top-p",       required_argument, NULL, GEN_OPT_TOP_P },                \
    { "prefix",      required_argument, NULL, GEN_OPT_PREFIX },               \
    { "max-len",     required_argument, NULL, GEN_OPT_MAX_LEN },              \
    { "novel",       required_argument, NULL, GEN_OPT_NOVEL },                \
    { "stats",       required_argument, NULL, GEN_OPT_STATS },                \
    { "score",       required_argument, NULL, GEN_OPT_SCORE },                \
    { "chars",       required_argument, NULL, GEN_OPT_CHARS },                \
    { "threads",     required_argument, NULL, GEN_OPT_THREADS },              \
    { "batch",       required_argument, NULL, GEN_OPT_BATCH },                \
    { "help",        no_argument,       NULL, 'h' },                          \
    { "version",     no_argument,       NULL, 'V' }

typedef struct gen_options {
    const char *model;    /* -m FILE; gen_check_args sets the default Transformer */
    long        count;    /* -n: names to sample (GEN_DEFAULT_COUNT) */
    uint64_t    seed;     /* --seed (0): same seed, same names */
    smp_config  smp;      /* --temperature --top-k --top-p */
    const char *prefix;   /* --prefix STR (valid UTF-8), NULL = none */
    long        max_len;  /* --max-len: characters a name; 0 = the model's limit, or
                             GEN_DEFAULT_MAX_CHARS for a model without one */
    const char *novel;    /* --novel FILE: only names absent from FILE */
    const char *stats;    /* --stats FILE: a TSV line about the names, on the info stream */
    const char *score;    /* --score FILE ('-' = stdin): score its names instead */
    long        chars;    /* --chars N: running text instead of names; -1 = names */
    int         batch;    /* --batch: names in flight on a thread (GEN_DEFAULT_BATCH) */
    int         threads;  /* --threads (1) */
} gen_options;

void gen_options_init(gen_options *o);
/* Handle one getopt_long code of a shared flag (cli_usage() on a bad
 * value, an invalid UTF-8 --prefix included); false when the code is not a
 * shared flag. */
bool gen_parse_option(gen_options *o, int code, const char *arg);
/* After the getopt loop: no operands, flags consistent (cli_usage()
 * otherwise); o->model defaults to the shipped Transformer
 * (cli_default_weights). */
void gen_check_args(gen_options *o, int argc, char **argv, int optind_);
/* The help lines of the shared flags after -m (-n ... --threads, -h, -V). */
void gen_print_usage(FILE *f);

/* Run on st what o asks for: names (one per line), running text (--chars)
 * or a score table (--score), to out.  Names and scores run on o->threads
 * threads of o->batch streams of st's model each (lanes.h); with batch and
 * threads 1, on st itself (its hooks apply).  Name i is drawn from its own
 * random stream, seeded by o->seed and i, so the output does not depend on
 * batch or threads; the --stats line and the --score mean
 * loss go to info.  The --novel / --stats / --score files are read before
 * anything is written.  Errors (unreadable file, a --prefix character not
 * in the vocabulary, --max-len past the model's limit, --novel giving up,
 * probability 0 everywhere) are returned with err_set; the output written
 * so far stays.  The caller checks out for write errors (cli_close). */
err_code gen_run(mdl_state *st, const gen_options *o, FILE *out, FILE *info);

/* Character tokens to UTF-8 into out (>= 4 n + 1 bytes). */
void gen_toks_utf8(const txt_vocab *v, const int *tok, int n, char *out);

/* The lines of a file (after NFC, whatever their length), for membership
 * tests such as "copied from the training data". */
typedef struct gen_names gen_names;
err_code gen_names_load(gen_names **out, const char *path);
bool     gen_names_has(const gen_names *g, const char *name);
void     gen_names_free(gen_names *g);

#endif
