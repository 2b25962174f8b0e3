/* train.h - the training loop shared by every trainer.
 *
 * The engine's side of training: a session (resolved options, the --resume
 * checkpoint, the names), a model as the loop sees it (tr_model: its
 * parameters and a loss on a batch), where batches come from (tr_source;
 * NULL = the session's names), and tr_run(), which trains to o.steps and
 * returns.  It reports through callbacks (tr_hooks) and never prints,
 * parses flags or installs signal handlers: the trainers' command line,
 * progress line, Ctrl-C handling, summary and exit status are the program
 * layer's (include/app/trcli.h).  A front end drives it as:
 *
 *   tr_options o; tr_options_init(&o, "mlp", "mlp.safetensors"); ... set fields
 *   tr_session s;
 *   if (tr_open(&s, &o) || tr_load_names(&s)) ...error...
 *   ... build the model on s.vocab->size tokens, initialise it with an rng
 *       seeded with s.o.seed (the loop's own rng is seeded apart from it);
 *   tr_model m = { .kind = "mlp", .params = &net.p, .impl = &net,
 *                  .loss = net_loss, .config_json = net_config_json };
 *   err_code e = tr_run(&s, &m, NULL, &hooks);   // s.sum holds the results
 *   tr_close(&s);
 *
 * The loop: batches drawn with a seeded rng (its state is in every
 * checkpoint), one ag_tape reused (ag_reset each step, nothing allocated
 * once warm), AdamW with the schedule and optional clipping (optim.h),
 * whole-validation-set evaluation without gradients every eval_every
 * steps and at the end (mean over all non-pad targets, not a mean of batch
 * means), the --log TSV learning curve (the model may add columns), keep_best, atomic checkpoints
 * (ck_write).
 *
 * Weight averaging (o.ema > 0, or o.swa_start > 0: the plain mean of the
 * weights over the last part of the run): an average of the weights is
 * kept beside them; evaluations, keep_best and the parameters
 * written are the average's, the raw weights go under optim.raw.* so that
 * --resume continues bit-exactly; after tr_run the model holds the average.
 *
 * Data parallelism (o.threads >= 2, or several processes: s->comm).  Each
 * batch is drawn as above (the same rng draws, in every process), sorted
 * by length and cut into R x T shards of about equal work (rows times
 * padded length, with a term for attention), each trimmed to its own
 * longest name: process r of R takes shards r T .. r T + T - 1, one per
 * thread, each on a replica of the model (tr_model.replica_new: shared weights,
 * its own gradient buffer) with its own tape.  Each shard's mean loss
 * counts in proportion to its share of the whole batch's non-pad targets,
 * so the gradients summed (over the threads in a fixed order, then over
 * the processes with one sum_floats of the contiguous buffer) are the
 * whole batch's mean-loss gradient, and the loss its mean loss, up to the
 * order of the float sums: without dropout a run follows the same curve
 * whatever T and R (to about 1e-5 over hundreds of steps).  The matrix
 * products run single-threaded inside the workers (the program's part).
 * What follows the gradient is the single process's, on the summed
 * gradient: after_backward, clipping, AdamW, after_update, the weight
 * average (--ema / --swa-start); distillation's soft targets are gathered
 * per shard.  Dropout (and --input-noise, drawn first): each shard draws its masks from its own rng, seeded
 * by (seed, step, shard index) and not by the loop's rng, so the batches
 * drawn stay those of one thread but the masks depend on T and R (the
 * curves then differ by noise only).  --resume is bit-exact for the same T
 * and R (nothing else carries over).  Evaluation is split across the
 * threads (sums of losses and target counts, added in thread order).
 * Several processes: process 0 alone evaluates, logs, calls the hooks'
 * on_eval and writes checkpoints; every process reads the --resume
 * checkpoint; should_stop is asked of every process each step and summed
 * with the loss (one sum_doubles), so that all stop after the same step.
 * Not split (one tape, with a reason): a model without replica_new, and a
 * custom tr_source (its windows may carry a hidden state across batches in
 * the model; several processes are refused there).
 *
 * Checkpoints hold the parameters, the AdamW moments (optim.m.* / optim.v.*)
 * and metadata: format, format_version, model, config, vocab, step,
 * split_seed, rng, train_config (the resolved training settings, JSON),
 * train_window (recent training losses, JSON), best_val_loss and best_step, so that
 * an interrupted run resumed with --resume ends bit-for-bit where the
 * uninterrupted run ends.
 *
 * Where checkpoints go (out_path):
 *   - without keep_best: rewritten at every evaluation, at the end, and
 *     when stopped;
 *   - with keep_best: out_path holds the state of lowest validation loss;
 *     the latest state is written to the "last" file (tr_last_path:
 *     x.safetensors -> x.last.safetensors) when stopped, so the best one is kept;
 *   - with model_only: as above, the model alone; when stopped, the whole
 *     state goes to the "last" file, which --resume continues.
 *   - a run ended by stop_after before steps is "stopped" too: with
 *     keep_best or model_only its whole state also goes to the "last" file.
 * Stopping: when hooks->should_stop answers true after a step, that step's
 * evaluation (if due) is done, the checkpoint is written and tr_run returns
 * ERR_INTERRUPT ("interrupted at step N; ... --resume FILE").
 * A NaN or infinite loss: training stops before the update, nothing is
 * written (the last checkpoint written stays as it was), tr_run returns
 * ERR_NAN naming the step (and, with the tape's check_finite switch, the
 * first op whose output went non-finite).
 */
#ifndef VILLES_TRAIN_H
#define VILLES_TRAIN_H

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

/* Which training settings were given on the command line: on --resume the
 * others are taken from the checkpoint's train_config. */
enum {
    TR_SET_SEED = 1u << 0, TR_SET_STEPS = 1u << 1, TR_SET_BATCH = 1u << 2,
    TR_SET_LR = 1u << 3, TR_SET_WD = 1u << 4, TR_SET_SCHEDULE = 1u << 5,
    TR_SET_WARMUP = 1u << 6, TR_SET_CLIP = 1u << 7, TR_SET_EVAL = 1u << 8,
    TR_SET_SPLIT_SEED = 1u << 9, TR_SET_EMA = 1u << 10, TR_SET_FOLD = 1u << 11,
    TR_SET_DISTILL = 1u << 12, TR_SET_SWA = 1u << 13,
    TR_SET_NOISE = 1u << 14
};

enum { TR_MAX_TEACHERS = 16 };

/* Checkpoint name prefix of the raw training weights when the parameters
 * saved are their average (--ema). */
#define TR_RAW_PREFIX "optim.raw."

typedef struct tr_options {
    const char *kind;         /* model kind written to checkpoints ("mlp") */
    const char *data;         /* --data; required unless the program sets a default */
    const char *val_data;     /* --val-data, NULL = seeded 90/10 split */
    uint64_t    seed;         /* --seed: initialisation and batch sampling (default 1) */
    uint64_t    split_seed;   /* --split-seed: the train/validation split (default 0,
                                 so the validation set does not change with --seed) */
    long        steps;        /* --steps: total optimiser steps, resumed ones included */
    long        stop_after;   /* --stop-after N: end the run after step N of the
                                 --steps schedule, as if it were the last (evaluated,
                                 saved; --resume goes on with the schedule); 0 = off */
    int         batch_size;   /* --batch-size (64) */
    opt_config  opt;          /* --lr --weight-decay --schedule --warmup --clip */
    long        eval_every;   /* --eval-every (500); 0 = only at the end */
    const char *log_path;     /* --log FILE, NULL = none */
    const char *out_path;     /* -o FILE */
    const char *resume_path;  /* --resume FILE, NULL = fresh start */
    bool        keep_best;    /* --keep-best */
    bool        check_finite; /* check every op's output: a NaN names the first op
                                 whose output went non-finite (slower) */
    float       ema;          /* --ema DECAY: evaluate and save an exponential moving
                                 average of the weights; 0 = off */
    float       swa_start;    /* --swa-start FRAC: evaluate and save the plain mean of
                                 the weights after every step from FRAC * steps on
                                 (stochastic weight averaging); 0 = off */
    int         threads;      /* --threads: >= 2 splits every batch across that many
                                 threads (the data-parallel step below); 0 or 1 = one
                                 tape (the program sets the matrix products' threads) */
    const char *dump_split;   /* --dump-split DIR (the program writes the two sides) */
    bool        model_only;   /* --model-only: checkpoints hold the model alone (no
                                 optimiser moments, rng, recent losses, source state):
                                 smaller, not resumable; when stopped, the whole state
                                 goes to the "last" file instead (tr_last_path) */
    long        samples;      /* --samples N: names the program samples at each
                                 evaluation (trcli.h); the loop ignores it */
    int         fold, n_folds; /* --fold K/N: train without fold K of N (ds_drop_fold);
                                 n_folds 0 = every training name */
    const char *teacher[TR_MAX_TEACHERS];   /* --teacher FILE, one per fold (the
                                 program layer scores them: tr_session.soft) */
    int         n_teachers;
    float       distill_weight; /* --distill-weight A: loss = (1-A) CE(hard) +
                                 A CE(teacher); 0 = no distillation */
    float       input_noise;  /* --input-noise P: each input letter of a training batch
                                 is replaced, with probability P, by a letter drawn
                                 from the training letters' frequencies (the targets
                                 stay); 0 = off.  Data noising as smoothing (Xie et
                                 al., 2017): a regulariser akin to an n-gram's
                                 back-off.  Names only; drawn from the loop's rng */
    unsigned    set;          /* TR_SET_* bits of the flags given */
} tr_options;

/* Defaults of the reference recipe; the program may change fields
 * afterwards (e.g. o->steps) to set its own defaults. */
void tr_options_init(tr_options *o, const char *kind, const char *default_out);

/* The words of the schedules, in opt_schedule order, NULL-terminated. */
extern const char *const tr_schedule_names[];

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
     * final weights.  Write a two-line TSV (header, values) to f; the
     * program prints its columns after the common ones, in the one summary
     * (trcli.h), after tr_run. */
    err_code  (*summary_columns)(const void *impl, FILE *f);
    /* Optional: more columns of the --log learning curve (e.g. an SAE's L0),
     * before the hooks' ones: their names, each after a tab ("\tl0"), and at
     * each row log_values writes their values after the evaluation just
     * done, each after a tab. */
    const char *log_columns;
    void      (*log_values)(const void *impl, FILE *f);
    /* The loss honours the batch's soft targets (ds_batch.soft: through
     * op_batch_cross_entropy); tr_run refuses to distil into a model that
     * does not. */
    bool      soft_targets;
    /* Optional (NULL: the model trains on one tape, --threads only sets
     * the matrix products' threads): a replica of impl for one worker of
     * data-parallel training, whose parameter tensors read impl's values
     * and accumulate their gradients into grad (params->n floats);
     * model.h's P_replica_new / P_replica_free.  loss must then be safe to
     * run on several replicas at once. */
    void     *(*replica_new)(const void *impl, float *grad);
    void      (*replica_free)(void *replica);
} tr_model;

/* Processes that train one model together, each on a slice of every batch
 * (data parallelism across machines).  The program layer supplies it (MPI:
 * include/app/trmpi.h); the loop only calls it.  Every process calls each
 * sum with the same n at the same point of the run. */
typedef struct tr_comm {
    void *ctx;
    int   rank, size;       /* this process, how many */
    /* buf = the element-wise sum of every process's buf, in place. */
    err_code (*sum_floats)(void *ctx, float *buf, size_t n);
    err_code (*sum_doubles)(void *ctx, double *buf, size_t n);
} tr_comm;

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
    /* Data parallelism (train.h): the CPU time (each thread's own clock)
     * of the shards' forward and backward passes over this run's steps, in
     * all and of the slowest shard of each step.  cpu_sum / cpu_max is the
     * speed-up of that part on idle cores, whatever else loads the machine
     * (0 without data parallelism). */
    double shard_cpu_sum, shard_cpu_max;
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
    float           *ema;      /* with o.ema or o.swa_start: the average of the weights (params->n
                                  floats, laid out like params->data), else NULL */
    /* Soft targets (distillation), set by the program before tr_run, freed
     * by tr_close: the teachers' next-token probabilities at every target of
     * every training name, (positions, V) floats, name i's target j (j <=
     * len, <EOS> last) at row corpus.train.start[i] + i + j.  NULL = none. */
    float           *soft;
    /* Set by tr_run: the FNV-1a hash of soft, written into train_config
     * ("teachers_fnv1a64") and, on --resume, checked against it: other
     * teachers would not continue the same run. */
    uint64_t         soft_hash;
    /* Set by the program before tr_run: the processes training together,
     * NULL = this one alone. */
    const tr_comm   *comm;
} tr_session;

/* The row of soft of name i's first target. */
static inline size_t tr_soft_row(const ds_names *d, size_t i) { return d->start[i] + i; }

/* Resolve o: read and check the --resume checkpoint (its model must be
 * o->kind, ERR_MISMATCH otherwise) and take its training settings for the
 * flags not given; check that -o's directory is writable. */
err_code tr_open(tr_session *s, const tr_options *o);
/* Load --data / --val-data as names (ds_load with the split seed; on
 * --resume with the checkpoint's vocabulary) and set s->vocab. */
err_code tr_load_names(tr_session *s);
/* What the loop tells its caller, and asks it.  Every member is optional
 * (a NULL hooks pointer = none at all).  The callbacks must not touch the
 * model or the session: they only look. */
typedef struct tr_hooks {
    void *ctx;
    /* After every optimiser step: the batch loss, and the seconds spent in
     * training steps so far in this run (for speeds and an ETA). */
    void (*on_step)(void *ctx, const tr_session *s, float loss, double train_seconds);
    /* After every evaluation of the whole validation set, before its --log
     * row, with the weights evaluated in the model (the average with --ema). */
    void (*on_eval)(void *ctx, const tr_session *s, double val_loss);
    /* Optional more columns of the --log learning curve: their header names,
     * each after a tab ("\tcopied\tdistinct"), and at each row log_values
     * writes their values, each after a tab.  Appending to a log (--resume)
     * whose header differs is an error. */
    const char *log_columns;
    void (*log_values)(void *ctx, const tr_session *s, FILE *log);
    /* Polled after every step: true = write the checkpoint and return
     * ERR_INTERRUPT (e.g. on Ctrl-C). */
    bool (*should_stop)(void *ctx);
} tr_hooks;

/* Train to s->o.steps, then evaluate the final weights; on success s->sum
 * holds the results (the caller prints them).  src NULL = the names of
 * tr_load_names. */
err_code tr_run(tr_session *s, const tr_model *m, const tr_source *src, const tr_hooks *hooks);
/* How many data-parallel workers (threads) tr_run will split each batch
 * across in this process: 0 = none, one tape (o.threads <= 1 in one
 * process, or a model or source that cannot be split). */
int      tr_workers(const tr_session *s, const tr_model *m, const tr_source *src);
void     tr_close(tr_session *s);

/* Write a checkpoint of m with the session's metadata, loop state and the
 * optimiser moments (used by tr_run; exposed for tests).  src may be NULL. */
err_code tr_save(const tr_session *s, const tr_model *m, const tr_source *src,
                 const char *path);

#endif
