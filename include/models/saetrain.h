/* saetrain.h - training a sparse autoencoder (sae.h) on a frozen
 * Transformer's residual stream with the shared loop (train.h): the model
 * and the source sae-train hands to tr_run.
 *
 * The Transformer is frozen, so its activations are computed once, for
 * every real position of every training and validation name (36k names x
 * ~12 positions x 64 floats is about 100 MB), and a batch is the rows of
 * batch_size names drawn at random: a step costs the SAE alone.  The
 * validation loss is the SAE loss over every validation row.
 *
 * TopK's AuxK and the L1 path's resampling need to know which features
 * are dead: a feature is dead once it has not fired on SAE_DEAD_ROWS
 * consecutive training rows.  The count of rows since each feature last
 * fired is kept in checkpoints as the int32 tensor
 * source.rows_since_fired (F), so --resume continues exactly.
 *
 * The L1 recipe of SAELens, on top of the reference loss:
 *   - normalisation: sat_l1_scale() is s = sqrt(d / mean |x|^2) over the
 *     training rows; an L1 coefficient given for activations scaled by s
 *     (mean |x|^2 = d, so that one coefficient suits every model and layer)
 *     is lambda / s on the raw ones (the loss on s x is s^2 times the raw
 *     loss with lambda / s), which is what the checkpoint's config holds;
 *   - warm-up: the coefficient ramps linearly from 0 over l1_warmup steps;
 *   - resampling (Anthropic, "Towards monosemanticity"): every
 *     resample_every steps, each dead feature gets a new decoder row, the
 *     reconstruction error of a training row drawn with probability
 *     proportional to its squared error (normalised), the same encoder
 *     column scaled to 0.2 x the mean norm of the live ones, b_enc 0, and
 *     its Adam moments reset.
 *
 *   sat_trainer *tr = ...;                       // must not move
 *   sat_init(tr, &cfg, tf, model_path, &corpus.train, &corpus.val, seed);
 *   tr_model m = sat_tr_model(tr);
 *   tr_source src = sat_tr_source(tr);
 *   tr_run(&session, &m, &src, hooks);   // m.summary_columns: sae_evaluate's
 *   sat_free(tr);
 */
#ifndef VILLES_SAETRAIN_H
#define VILLES_SAETRAIN_H

#include <stdint.h>

#include "checkpoint.h"
#include "dataset.h"
#include "error.h"
#include "sae.h"
#include "train.h"
#include "transformer.h"

enum {
    SAT_EVAL_ROWS = 4096,   /* activation rows per validation batch */
    SAT_EVAL_NAMES = 64,    /* names per batch of the final sae_evaluate */
};

typedef struct sat_trainer {
    sae_model       sae;
    const tf_model *tf;          /* the frozen Transformer */
    const ds_names *val_names;   /* evaluated at the end (summary columns) */
    sae_acts        train, val;  /* batch row ids index train, then val (offset train.n_rows) */
    int32_t        *since;       /* (F) training rows since each feature last fired */
    uint8_t        *dead;        /* (F) since >= SAE_DEAD_ROWS */
    uint64_t        seed;        /* sat_init's: resampling draws from rng_at(seed, step) */
    /* The L1 recipe (0 = off); sae-train sets them after sat_init. */
    long            l1_warmup, resample_every;
    const long     *step;        /* steps done (tr_session.step), NULL = no schedule */
    /* The last validation pass (sat_tr_source's eval), for the --log columns. */
    size_t         *val_active;  /* (F) rows where each feature fired */
    double          val_l0;      /* sum over rows of the features active */
    size_t          val_rows;
} sat_trainer;

/* A fresh SAE of config c (checked) on tf (read from model_path, recorded
 * in the checkpoint), initialised from seed (sae_init_weights, then b_dec =
 * the mean training activation, as the reference), with the activations of
 * the train and val names after layer c->layer.  tf, val and tr must
 * outlive the training; train is not used after this call.  On error tr is
 * safe to sat_free. */
err_code sat_init(sat_trainer *tr, const sae_config *c, const tf_model *tf, const char *model_path,
                  const ds_names *train, const ds_names *val, uint64_t seed);
void     sat_free(sat_trainer *tr);

/* The normalisation factor of the L1 coefficient (above). */
double sat_l1_scale(const sat_trainer *tr);
/* A fresh l1 SAE's recipe: the coefficient l1 for normalised activations
 * (the config gets l1 / sat_l1_scale), the warm-up and the resampling
 * period in steps (negative = 0 = off). */
void   sat_set_l1(sat_trainer *tr, double l1, long warmup, long resample_every);

/* The SAE as the loop sees it: loss over a batch's activation rows
 * (training batches also update the firing counts, AuxK uses the dead
 * features, the L1 coefficient warms up), the decoder kept at unit norm,
 * dead features resampled (l1), the checkpoint's model_file, model_hash
 * and layer, the --log columns l0 and dead_frac of each validation pass
 * (dead: no activation on any validation row), and the summary columns of
 * sae_evaluate on the validation names with the final weights. */
tr_model  sat_tr_model(sat_trainer *tr);
/* next: the rows of batch_size training names drawn uniformly with the
 * loop's rng, as one row of ids (b->B = 1, b->T = b->n_tokens = rows,
 * b->x = row ids, b->y unused); eval: every validation row once;
 * save / load: source.rows_since_fired, source.l1_warmup and
 * source.resample_every (a resumed run keeps the recipe). */
tr_source sat_tr_source(sat_trainer *tr);

/* The activation row (d) of a batch row id. */
const float *sat_row(const sat_trainer *tr, int id);
/* Count rows since each feature fired, given the features f (N, F) of N
 * training rows, and mark the dead ones. */
void sat_track_firing(sat_trainer *tr, const float *f, int N);
/* Resample the dead features now (above), drawing from rng_at(seed, step);
 * the number resampled. */
int  sat_resample(sat_trainer *tr, long step);

/* The SAE being resumed (the checkpoint f read from path) must have been
 * trained on tf, read from model_path (sae_check_pair). */
err_code sat_check_resume(const ck_file *f, const char *path, const tf_model *tf,
                          const char *model_path);

#endif
