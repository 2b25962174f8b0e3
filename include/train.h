/* train.h - the training loop shared by every trainer.
 *
 * A trainer's main is small: it parses the common flags with
 * tr_parse_option() (adding only its model flags), opens a session
 * (options resolved, --resume checkpoint read, data loaded), builds its
 * model, describes it in a tr_model, and calls tr_run():
 *
 *   static const struct option opts[] = {
 *       TR_LONG_OPTIONS,
 *       { "hidden", required_argument, NULL, OPT_HIDDEN },   // OPT_HIDDEN >= TR_OPT_END
 *       { 0 }
 *   };
 *   tr_options o; tr_options_init(&o, "mlp", "weights/mlp.safetensors");
 *   while ((c = getopt_long(argc, argv, TR_SHORT_OPTIONS, opts, NULL)) != -1) {
 *       if (tr_parse_option(&o, c, optarg)) continue;
 *       switch (c) { case OPT_HIDDEN: ...; case 'h': usage(); case 'V': cli_version();
 *                    default: cli_bad_flag(); }
 *   }
 *   tr_check_args(&o, argc, argv, optind);     // usage errors (exit 2)
 *   tr_session s;
 *   if (tr_open(&s, &o) || tr_load_names(&s)) cli_die_err();
 *   ... config from flags, or from ck_meta(&s.resume, "config") when s.resuming;
 *   ... build the model on s.vocab->size tokens, initialise it with an rng
 *       seeded with s.o.seed (the loop's own rng is seeded apart from it);
 *   tr_model m = { .kind = "mlp", .params = &net.params, .impl = &net,
 *                  .loss = net_loss, .config_json = net_config_json };
 *   err_code e = tr_run(&s, &m, NULL);        // prints the summary on success
 *   tr_close(&s);
 *   return tr_exit_status(e);                 // prints "PROG: message" unless ERR_OK
 *
 * The loop: batches drawn with a seeded rng (its state is in every
 * checkpoint), one ag_tape reused (ag_reset each step, nothing allocated
 * once warm), AdamW with the schedule and optional clipping (optim.h),
 * whole-validation-set evaluation without gradients every --eval-every
 * steps and at the end (mean over all non-pad targets, not a mean of batch
 * means), --log TSV learning curve, a \r progress line on stderr only when
 * it is a terminal, --keep-best, atomic checkpoints (ck_write).
 *
 * Checkpoints hold the parameters, the AdamW moments (optim.m.* / optim.v.*)
 * and metadata: format, format_version, model, config, vocab, step,
 * split_seed, rng, train_config (the resolved training flags, JSON),
 * train_window (recent training losses, JSON), best_val_loss and best_step, so that
 * an interrupted run resumed with --resume ends bit-for-bit where the
 * uninterrupted run ends.
 *
 * Where checkpoints go (-o FILE):
 *   - without --keep-best: FILE is rewritten at every evaluation, at the
 *     end, and when interrupted;
 *   - with --keep-best: FILE holds the state of lowest validation loss; the
 *     latest state is written to the "last" file (tr_last_path: x.safetensors
 *     -> x.last.safetensors) when interrupted, so the best one is kept.
 * Ctrl-C (SIGINT) or SIGTERM: the current step finishes, the checkpoint is
 * written, tr_run returns ERR_INTERRUPT ("interrupted at step N; resume
 * with --resume FILE") and the program exits 130 (143 for SIGTERM).  A
 * second Ctrl-C kills at once (files on disk are always whole).
 * A NaN or infinite loss: training stops before the update, nothing is
 * written (the last checkpoint written stays as it was), tr_run returns
 * ERR_NAN naming the step, exit 1.
 */
#ifndef VILLES_TRAIN_H
#define VILLES_TRAIN_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd.h"
#include "checkpoint.h"
#include "dataset.h"
#include "optim.h"
#include "rng.h"
#include "tensor.h"
#include "text.h"

/* ---- common flags ---------------------------------------------------- */

/* getopt_long codes of the common flags.  Model flags use codes >= TR_OPT_END. */
enum {
    TR_OPT_DATA = 0x100, TR_OPT_VAL_DATA, TR_OPT_SEED, TR_OPT_SPLIT_SEED, TR_OPT_STEPS,
    TR_OPT_BATCH_SIZE, TR_OPT_LR, TR_OPT_WEIGHT_DECAY, TR_OPT_SCHEDULE, TR_OPT_WARMUP,
    TR_OPT_CLIP, TR_OPT_EVAL_EVERY, TR_OPT_LOG, TR_OPT_RESUME, TR_OPT_KEEP_BEST,
    TR_OPT_THREADS, TR_OPT_DUMP_SPLIT,
    TR_OPT_END = 0x200
};

#define TR_SHORT_OPTIONS "o:hV"

/* The common entries of a trainer's struct option table (no terminator):
 * --help ('h') and --version ('V') are listed here but handled by the
 * program (tr_parse_option returns false for them). */
#define TR_LONG_OPTIONS                                                       \
    { "data",         required_argument, NULL, TR_OPT_DATA },                 \
    { "val-data",     required_argument, NULL, TR_OPT_VAL_DATA },             \
    { "seed",         required_argument, NULL, TR_OPT_SEED },                 \
    { "split-seed",   required_argument, NULL, TR_OPT_SPLIT_SEED },           \
    { "steps",        required_argument, NULL, TR_OPT_STEPS },                \
    { "batch-size",   required_argument, NULL, TR_OPT_BATCH_SIZE },           \
    { "lr",           required_argument, NULL, TR_OPT_LR },                   \
    { "weight-decay", required_argument, NULL, TR_OPT_WEIGHT_DECAY },         \
    { "schedule",     required_argument, NULL, TR_OPT_SCHEDULE },             \
    { "warmup",       required_argument, NULL, TR_OPT_WARMUP },               \
    { "clip",         required_argument, NULL, TR_OPT_CLIP },                 \
    { "eval-every",   required_argument, NULL, TR_OPT_EVAL_EVERY },           \
    { "log",          required_argument, NULL, TR_OPT_LOG },                  \
    { "output",       required_argument, NULL, 'o' },                         \
    { "resume",       required_argument, NULL, TR_OPT_RESUME },               \
    { "keep-best",    no_argument,       NULL, TR_OPT_KEEP_BEST },            \
    { "threads",      required_argument, NULL, TR_OPT_THREADS },             \
    { "dump-split",   required_argument, NULL, TR_OPT_DUMP_SPLIT },          \
    { "help",         no_argument,       NULL, 'h' },                         \
    { "version",      no_argument,       NULL, 'V' }

/* Which training settings were given on the command line: on --resume the
 * others are taken from the checkpoint's train_config. */
enum {
    TR_SET_SEED = 1u << 0, TR_SET_STEPS = 1u << 1, TR_SET_BATCH = 1u << 2,
    TR_SET_LR = 1u << 3, TR_SET_WD = 1u << 4, TR_SET_SCHEDULE = 1u << 5,
    TR_SET_WARMUP = 1u << 6, TR_SET_CLIP = 1u << 7, TR_SET_EVAL = 1u << 8,
    TR_SET_SPLIT_SEED = 1u << 9
};

typedef struct tr_options {
    const char *kind;         /* model kind written to checkpoints ("mlp") */
    const char *data;         /* --data; required unless the program sets a default */
    const char *val_data;     /* --val-data, NULL = seeded 90/10 split */
    uint64_t    seed;         /* --seed: initialisation and batch sampling (default 1) */
    uint64_t    split_seed;   /* --split-seed: the train/validation split (default 0,
                                 so the validation set does not change with --seed) */
    long        steps;        /* --steps: total optimiser steps, resumed ones included */
    int         batch_size;   /* --batch-size (64) */
    opt_config  opt;          /* --lr --weight-decay --schedule --warmup --clip */
    long        eval_every;   /* --eval-every (500); 0 = only at the end */
    const char *log_path;     /* --log FILE, NULL = none */
    const char *out_path;     /* -o FILE */
    const char *resume_path;  /* --resume FILE, NULL = fresh start */
    bool        keep_best;    /* --keep-best */
    int         threads;      /* --threads (0 = library default) */
    const char *dump_split;   /* --dump-split DIR: write DIR/train.txt, DIR/val.txt */
    unsigned    set;          /* TR_SET_* bits of the flags given */
} tr_options;

/* Defaults of the reference recipe; the program may change fields
 * afterwards (e.g. o->steps) to set its own defaults. */
void tr_options_init(tr_options *o, const char *kind, const char *default_out);
/* Handle one getopt_long code of a common flag (cli_usage() on a bad
 * value); false when the code is not a common flag. */
bool tr_parse_option(tr_options *o, int code, const char *arg);
/* After the getopt loop: no operands, --data given (or defaulted), flags
 * consistent; cli_usage() otherwise. */
void tr_check_args(const tr_options *o, int argc, char **argv, int optind_);
/* The "Training:" part of --help, showing the defaults in o (--data is
 * "required" when o->data is NULL, else its default). */
void tr_print_usage(FILE *f, const tr_options *o);

/* "x.safetensors" -> "x.last.safetensors" (otherwise "x" -> "x.last"), in
 * out (>= strlen(path) + 6 bytes). */
void tr_last_path(const char *path, char *out, size_t cap);

/* ---- the model and the data, as the loop sees them ------------------- */

typedef struct tr_model {
    const char *kind;           /* metadata "model" ("mlp", "rnn", ...) */
    tn_params  *params;         /* all trainable parameters */
    void       *impl;           /* passed back to the functions below */
    /* Build the graph of the mean loss over the non-pad targets of b on t
     * (t->grad tells whether gradients are wanted); return the scalar. */
    tensor   *(*loss)(void *impl, ag_tape *t, const ds_batch *b);
    /* The config JSON object of the checkpoint (malloc'ed), NULL on error. */
    char     *(*config_json)(const void *impl);
    /* Optional: more metadata (e.g. an SAE's model_file). */
    err_code  (*put_meta)(const void *impl, ck_writer *w);
    /* Optional: after backward, before clipping and the update (e.g. remove
     * gradient components), and after the update (e.g. renormalise rows). */
    void      (*after_backward)(void *impl);
    void      (*after_update)(void *impl);
    /* Optional: more columns for the summary, e.g. an evaluation of the
     * final weights.  Write a two-line TSV (header, values) to f; tr_run
     * prints its columns after the common ones, in the one summary.  Called
     * once, after the final evaluation; an error is tr_run's (no summary). */
    err_code  (*summary_columns)(const void *impl, FILE *f);
} tr_model;

/* Where batches and the validation loss come from.  NULL in tr_run = the
 * names of the session's corpus: each row a name drawn uniformly with
 * replacement from the training names with the loop's rng, batches trimmed
 * to their longest name; validation = every validation name once.
 * A custom source (e.g. running text cut into windows with a hidden state
 * carried across them) replaces both, and may keep its own position in the
 * checkpoint. */
typedef struct tr_source {
    void *ctx;
    /* Fill b with the next training batch of batch_size rows (b->n_tokens
     * set); all randomness from r, whose state the checkpoints keep. */
    err_code (*next)(void *ctx, rng *r, int batch_size, ds_batch *b);
    /* The whole validation set: sum of the per-target losses and the number
     * of targets.  Run m->loss on t with t->grad == false; t is reset
     * before each batch by the source (ag_reset). */
    err_code (*eval)(void *ctx, const tr_model *m, ag_tape *t, int batch_size,
                     double *loss_sum, size_t *n_targets);
    /* Optional: the source's own state, as metadata (keys prefixed "source."). */
    err_code (*save)(void *ctx, ck_writer *w);
    err_code (*load)(void *ctx, const ck_file *f);
} tr_source;

/* Validation loss of the names in d under m (sum over targets and count),
 * in batches of batch_size names sorted by length, on t without gradients.
 * The default evaluator; exposed so custom sources and tests can use it. */
err_code tr_eval_names(const tr_model *m, ag_tape *t, const ds_names *d, int batch_size,
                       double *loss_sum, size_t *n_targets);

/* ---- a training session ---------------------------------------------- */

typedef struct tr_summary {
    long   steps;             /* steps reached (resumed ones included) */
    double train_loss;        /* mean loss of the last (up to) TR_WINDOW batches */
    double val_loss;          /* whole validation set, final weights */
    double best_val_loss;     /* lowest evaluated (== val_loss without evaluations) */
    long   best_step;
    double seconds;           /* wall time of this run's training loop, evals included */
    double train_seconds;     /* time in training steps only (speed figures) */
    double tokens;            /* non-pad targets trained on in this run */
    long   run_steps;         /* steps done in this run */
} tr_summary;

enum { TR_WINDOW = 100 };     /* batches averaged into the reported train_loss */

typedef struct tr_session {
    tr_options       o;        /* resolved (checkpoint's train_config on --resume) */
    bool             resuming;
    ck_file          resume;   /* the --resume checkpoint (kind checked); empty otherwise */
    ds_corpus        corpus;   /* filled by tr_load_names */
    bool             have_corpus;
    const txt_vocab *vocab;    /* written to checkpoints: &corpus.vocab, or a custom
                                  source's vocabulary set by the program */
    tr_summary       sum;      /* filled by tr_run */
    /* Loop state, saved in every checkpoint and restored on --resume. */
    long             step;     /* optimiser steps done */
    rng              rng;      /* batch sampling and dropout */
    float            window[TR_WINDOW];   /* recent training losses (ring) */
    int              window_n;
    double           best_val; /* lowest validation loss so far (INFINITY: none) */
    long             best_step;
} tr_session;

/* Resolve o: read and check the --resume checkpoint (its model must be
 * o->kind, ERR_MISMATCH otherwise) and take its training settings for the
 * flags not given; check that -o's directory is writable; set --threads. */
err_code tr_open(tr_session *s, const tr_options *o);
/* Load --data / --val-data as names (ds_load with the split seed; on
 * --resume with the checkpoint's vocabulary) and set s->vocab; with
 * --dump-split DIR, write the two sides as DIR/train.txt and DIR/val.txt
 * (every row, one name per line) for `generate --score` and friends. */
err_code tr_load_names(tr_session *s);
/* Train to s->o.steps; on success print the two-line TSV summary to stdout:
 *   model params steps train_loss val_loss best_val_loss best_step seconds
 *   steps_per_s tokens_per_s
 * followed by m->summary_columns' columns, if any (seconds and the speeds
 * do not count the time they take).  src NULL = the names of tr_load_names. */
err_code tr_run(tr_session *s, const tr_model *m, const tr_source *src);
void     tr_close(tr_session *s);

/* Exit status for tr_run's result, printing "PROG: message" on error:
 * ERR_OK 0, ERR_INTERRUPT 130, anything else 1. */
int tr_exit_status(err_code e);

/* Write a checkpoint of m with the session's metadata, loop state and the
 * optimiser moments (used by tr_run; exposed for tests).  src may be NULL. */
err_code tr_save(const tr_session *s, const tr_model *m, const tr_source *src,
                 const char *path);

#endif
