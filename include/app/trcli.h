/* trcli.h - the trainers' command line: the flags every trainer shares,
 * model flags declared as a table, usage text, the progress line, Ctrl-C,
 * the summary and the exit status.  The loop itself is the engine's
 * (include/core/train.h); this module is what turns it into a program.
 *
 * A trainer's main (src/cmd/transformer-train.c is the model to copy):
 *
 *   static const trc_flag flags[] = {            // its model flags
 *       TRC_INT_FLAG("d-model", "d_model", 1, TF_MAX_DIM),
 *       TRC_REAL_FLAG("dropout", "dropout", 0, 0.99),
 *       TRC_END_FLAGS
 *   };
 *   tr_options o;
 *   tr_options_init(&o, TF_KIND, "transformer.safetensors");
 *   cJSON *given = trc_parse(argc, argv, &o, flags, usage);   // usage errors exit 2
 *   trc_check_args(&o, argc, argv, optind);
 *   tr_session s;
 *   trc_open(&s, &o);                            // runtime errors exit 1
 *   cJSON *config = trc_config(&s, defaults_json, given, flags);   // flags + defaults,
 *                                                //   or the checkpoint's on --resume
 *   trc_load_names(&s);
 *   char *text = trc_config_finish(&s, config, given);     // + vocab_size
 *   if (tf_config_from_json(&cfg, text)) trc_config_error(&s);
 *   ... build the model from cfg, initialise it with seed s.o.seed ...
 *   return trc_exit_status(trc_run(&s, &m, NULL));
 *
 * Model flags: each table row is a flag --NAME whose value goes, checked
 * against [min, max] (or the list of words), into the JSON object trc_parse
 * returns under KEY: the flags given, nothing else.  A fresh model's config
 * is the kind's defaults with these on top; on --resume the config is the
 * checkpoint's, and a model flag given must agree with it (a usage error
 * otherwise).  A row whose key is not a config member (rnn-train's --text)
 * is taken out of the object by the program before trc_config.
 */
#ifndef VILLES_TRCLI_H
#define VILLES_TRCLI_H

#include <cjson/cJSON.h>
#include <getopt.h>   /* optind, for trc_check_args */
#include <stdbool.h>
#include <stdio.h>

#include "train.h"

/* getopt_long codes of the common flags; model flags get TRC_OPT_END + row. */
enum {
    TRC_OPT_DATA = 0x100, TRC_OPT_VAL_DATA, TRC_OPT_SEED, TRC_OPT_SPLIT_SEED, TRC_OPT_STEPS,
    TRC_OPT_BATCH_SIZE, TRC_OPT_LR, TRC_OPT_WEIGHT_DECAY, TRC_OPT_SCHEDULE, TRC_OPT_WARMUP,
    TRC_OPT_CLIP, TRC_OPT_EVAL_EVERY, TRC_OPT_LOG, TRC_OPT_RESUME, TRC_OPT_KEEP_BEST,
    TRC_OPT_THREADS, TRC_OPT_DUMP_SPLIT, TRC_OPT_EMA, TRC_OPT_MODEL_ONLY, TRC_OPT_SAMPLES,
    TRC_OPT_FOLD, TRC_OPT_TEACHER, TRC_OPT_DISTILL_WEIGHT, TRC_OPT_SWA_START,
    TRC_OPT_INPUT_NOISE, TRC_OPT_STOP_AFTER,
    TRC_OPT_END = 0x200
};

enum { TRC_MAX_FLAGS = 16 };

typedef enum trc_type {
    TRC_INT,     /* an integer in [min, max] -> JSON number */
    TRC_REAL,    /* a number in [min, max] -> JSON number */
    TRC_WORD,    /* one of words -> JSON string */
    TRC_STRING,  /* any text (a file name) -> JSON string */
    TRC_LIST,    /* any text, the flag repeatable -> JSON array of strings */
    TRC_SWITCH,  /* no value -> JSON true */
} trc_type;

/* One model flag (build rows with the macros below); a table ends with a
 * row whose name is NULL. */
typedef struct trc_flag {
    const char        *name;    /* "d-model" for --d-model */
    const char        *key;     /* "d_model", its config JSON member */
    trc_type           type;
    double             min, max;
    const char *const *words;   /* TRC_WORD: NULL-terminated */
    char               short_name;   /* e.g. 'm' for -m, 0 = none */
} trc_flag;

#define TRC_INT_FLAG(name, key, lo, hi)  { name, key, TRC_INT, lo, hi, NULL, 0 }
#define TRC_REAL_FLAG(name, key, lo, hi) { name, key, TRC_REAL, lo, hi, NULL, 0 }
#define TRC_WORD_FLAG(name, key, words)  { name, key, TRC_WORD, 0, 0, words, 0 }
#define TRC_STRING_FLAG(name, key, letter) { name, key, TRC_STRING, 0, 0, NULL, letter }
#define TRC_LIST_FLAG(name, key)         { name, key, TRC_LIST, 0, 0, NULL, 0 }
#define TRC_SWITCH_FLAG(name, key)       { name, key, TRC_SWITCH, 0, 0, NULL, 0 }
#define TRC_END_FLAGS                    { NULL, NULL, TRC_INT, 0, 0, NULL, 0 }

/* Handle one getopt_long code of a common flag (cli_usage() on a bad
 * value); false when the code is not a common flag. */
bool trc_parse_option(tr_options *o, int code, const char *arg);
/* After the getopt loop: no operands, --data given (or defaulted), flags
 * consistent; cli_usage() otherwise. */
void trc_check_args(const tr_options *o, int argc, char **argv, int optind_);
/* The "Training:" part of --help, showing the defaults in o (--data is
 * "required" when o->data is NULL, else its default). */
void trc_print_usage(FILE *f, const tr_options *o);

/* The whole command line: common flags into o, model flags into the
 * returned object (never NULL), --help -> usage(o) (which exits), --version,
 * bad flags and values -> exit 2.  The program then checks what it adds
 * and calls trc_check_args(o, argc, argv, optind). */
cJSON *trc_parse(int argc, char **argv, tr_options *o, const trc_flag *flags,
                 void (*usage)(const tr_options *o));

/* tr_open with --threads applied, the data files added to the provenance
 * of the checkpoints (prov.h); exit 1 with the message on error. */
void trc_open(tr_session *s, const tr_options *o);
/* tr_load_names, then --dump-split DIR: DIR/train.txt and DIR/val.txt
 * (every row, one name per line), then the teachers' soft targets
 * (distill.h); exit 1 on error. */
void trc_load_names(tr_session *s);

/* The config of the model to train, as a JSON object the caller deletes:
 *   fresh: defaults_json with every member of given on top;
 *   --resume: the checkpoint's config, where every member of given must
 *     equal the checkpoint's (else a usage error, "model flags differ from
 *     the configuration in FILE").  A member the checkpoint's config lacks
 *     is at its default: defaults_json's, or, for a member written only
 *     when not at its default (attn_dropout, dropout_mode), 0 or the first
 *     word of its row in flags (list such a flag's default first).
 * A checkpoint without a config is a runtime error (exit 1). */
cJSON *trc_config(const tr_session *s, const char *defaults_json, const cJSON *given,
                  const trc_flag *flags);
/* For a fresh model, set member key of config (a value the data decides,
 * e.g. vocab_size) unless the flags gave it; on --resume, nothing. */
void trc_config_fresh(const tr_session *s, cJSON *config, const cJSON *given, const char *key,
                      double value);
/* The config as text for a kind's X_config_from_json, after
 * trc_config_fresh of vocab_size from the session's vocabulary (unless the
 * program set it already, e.g. to a subword vocabulary's size); config is
 * deleted.  Exit 1 when out of memory.  The caller frees the text. */
char *trc_config_finish(const tr_session *s, cJSON *config, const cJSON *given);
/* X_config_from_json refused it: on --resume "FILE: message" (exit 1),
 * else a usage error (the flags asked for it). */
_Noreturn void trc_config_error(const tr_session *s);

/* tr_run with a progress line on stderr when it is a terminal, Ctrl-C and
 * SIGTERM asking the loop to stop (a second one kills at once: files on
 * disk are always whole), and on success the two-line TSV summary on
 * stdout:
 *   model params steps train_loss val_loss best_val_loss best_step seconds
 *   steps_per_s tokens_per_s
 * followed by m->summary_columns' columns, if any (an error there is the
 * run's: no summary).  With --samples N (o.samples), N names sampled at each
 * evaluation (trsamples.h) add their columns to the --log and are shown
 * under the progress line; a model that does not generate names (or a
 * custom source: running text) makes --samples a usage error. */
err_code trc_run(tr_session *s, const tr_model *m, const tr_source *src);

/* Exit status for trc_run's result, printing "PROG: message" on error:
 * ERR_OK 0, ERR_INTERRUPT 128 + the signal (130 for Ctrl-C), else 1. */
int trc_exit_status(err_code e);

#endif
