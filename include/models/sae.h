/* sae.h - a sparse autoencoder (SAE) on a Transformer's residual stream:
 * the model, its training graph, its evaluation, steering and attribution.
 *
 * On activations x (d), with the checkpoint names of the PyTorch reference
 * (tools/villes_torch.py):
 *   pre = (x - b_dec) . W_enc + b_enc        W_enc (d, F), b_enc (F)
 *   f   = ReLU(pre)                          l1 variant
 *   f   = ReLU(TopK_k(pre))                  topk variant: the k largest kept
 *   x^  = f . W_dec + b_dec                  W_dec (F, d), b_dec (d)
 * The rows of W_dec are unit vectors: training removes from each row's
 * gradient its component along the row (sae_project_decoder_grad) and
 * renormalises the rows after every update (sae_normalize_decoder).
 *
 * Loss over N rows (activation vectors):
 *   l1:   mean_rows sum_d (x - x^)^2 + l1 * l1_ramp * mean_rows sum_f |f|
 *   topk: mean_rows sum_d (x - x^)^2 + SAE_AUX_COEF * AuxK, where AuxK (Gao et
 *         al. 2024) = mean_rows sum_d (e - e^)^2, e = x - x^ (a constant),
 *         e^ = ReLU(TopK_kaux(pre restricted to the dead features)) . W_dec,
 *         k_aux = sae_aux_k(); 0 when no feature is dead.
 *
 * An SAE checkpoint (model "sae") also names the Transformer it was
 * trained on: metadata model_file (the path given to sae-train) and
 * model_hash (ck_file_hash of that file); sae_check_pair refuses any other
 * model.
 */
#ifndef VILLES_SAE_H
#define VILLES_SAE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd.h"
#include "checkpoint.h"
#include "dataset.h"
#include "error.h"
#include "model.h"
#include "rng.h"
#include "tensor.h"
#include "text.h"
#include "transformer.h"

#define SAE_KIND "sae"
#define SAE_L1_DEFAULT 3e-4f
#define SAE_AUX_COEF (1.0f / 32.0f)

enum {
    SAE_MAX_FEATURES = 1 << 20,
    /* topk: a feature is dead for AuxK once it has not fired on this many
     * consecutive training rows (about 300 batches of 16 names). */
    SAE_DEAD_ROWS = 50000,
    SAE_DENSE_PERCENT = 10,      /* dense: active on more than 10% of the rows */
    SAE_HIST_BINS = 13,          /* dead, then half-decades [1e-6, 1e-5.5) ... [1e-0.5, 1] */
};

typedef enum sae_variant { SAE_L1, SAE_TOPK } sae_variant;

typedef struct sae_config {
    int         d_model;      /* width of the residual stream */
    int         n_features;   /* F */
    int         layer;        /* residual stream after this many blocks (transformer.h) */
    sae_variant variant;
    float       l1;           /* L1 coefficient (l1 variant; 0 for topk) */
    int         k;            /* kept features per row (topk variant; 0 for l1) */
} sae_config;

/* The l1 variant with the default coefficient; d_model and layer come from
 * the Transformer, n_features from the trainer's expansion. */
#define SAE_DEFAULTS ((sae_config){ .d_model = 0, .n_features = 0, .layer = 0, \
    .variant = SAE_L1, .l1 = SAE_L1_DEFAULT, .k = 0 })

/* ERR_ARG naming the first field out of range. */
err_code sae_config_check(const sae_config *c);
/* {"d_model":64,"n_features":256,"layer":2,"variant":"l1","l1":0.0003,"k":0};
 * caller frees. */
err_code sae_config_to_json(const sae_config *c, char **json);
/* Parse and check; ERR_FORMAT on a missing or malformed field. */
err_code sae_config_from_json(sae_config *c, const char *json);
/* AuxK's k: d_model / 2 (at least 1, at most n_features). */
int      sae_aux_k(const sae_config *c);

/* The tensors point into p: an sae_model must not be moved once initialised. */
typedef struct sae_model {
    sae_config c;
    tn_params  p;
    tensor    *W_enc, *b_enc, *W_dec, *b_dec;
    char      *model_file;        /* metadata model_file (malloc'ed), NULL if none */
    char       model_hash[17];    /* metadata model_hash, "" if none */
    float      l1_ramp;           /* share of c.l1 sae_loss applies: 1, or less during
                                     a training warm-up of the coefficient */
} sae_model;

err_code sae_init(sae_model *m, const sae_config *c);
/* W_dec rows normal then unit-norm, W_enc = W_dec^T, biases 0. */
void     sae_init_weights(sae_model *m, rng *r);
/* Config, parameters (and moments when optim), model_file and model_hash
 * from a checkpoint already read; the model kind must be SAE_KIND. */
err_code sae_load(sae_model *m, const ck_file *f, const char *path, bool optim);
/* ck_read + sae_load. */
err_code sae_read(sae_model *m, const char *path);
/* The SAE alone (no training state), with the vocabulary v of its
 * Transformer and the metadata of sae_put_meta. */
err_code sae_save(const sae_model *m, const txt_vocab *v, const char *path);
void     sae_free(sae_model *m);
/* Record the model this SAE belongs to (its path and ck_file_hash). */
err_code sae_set_model_file(sae_model *m, const char *model_path);
/* Metadata model_file, model_hash and layer, for the checkpoint writer. */
err_code sae_put_meta(const sae_model *m, ck_writer *w);
/* The SAE at sae_path must have been trained on the Transformer tf read
 * from model_path: same file hash, same d_model, layer within range.
 * ERR_MISMATCH with one line naming both files otherwise. */
err_code sae_check_pair(const sae_model *s, const char *sae_path, const tf_model *tf,
                        const char *model_path);

/* ---- Plain forward (no tape) --------------------------------------------- */

/* Floats of scratch sae_encode needs. */
static inline size_t sae_scratch_floats(const sae_config *c) { return 2 * (size_t)c->n_features; }
/* f (N, F) = the features of rows x (N, d).  topk keeps the k largest
 * pre-activations of each row (ties: the lowest indices).  scratch holds
 * sae_scratch_floats() floats, so that a steering step allocates nothing. */
void sae_encode(const sae_model *m, const float *x, int N, float *f, float *scratch);
/* xhat (N, d) = f . W_dec + b_dec. */
void sae_decode(const sae_model *m, const float *f, int N, float *xhat);

/* The logits a feature's decoder direction writes directly (V): through the
 * final RMSNorm weight and the unembedding, W_dec[i] . (w * emb[v]), without
 * the position's 1/rms scale (positive, so the ranking is the same). */
void sae_feature_logits(const sae_model *s, const tf_model *tf, int feature, float *out);

/* ---- Training graph ---------------------------------------------------- */

/* The loss of rows x (N, d) as one fused op on tape t (scalar); gradients
 * flow to the four parameters (not to x).  dead (F, may be NULL) marks the
 * features AuxK may use (topk variant).  *features, when non-NULL, receives
 * f (N, F) on the tape (data only). */
tensor *sae_loss(const sae_model *m, ag_tape *t, tensor *x, const uint8_t *dead,
                 tensor **features);
/* grad(W_dec)[i] -= (grad(W_dec)[i] . W_dec[i]) W_dec[i], for every row i. */
void    sae_project_decoder_grad(sae_model *m);
/* W_dec[i] /= |W_dec[i]| (a zero row is left as it is). */
void    sae_normalize_decoder(sae_model *m);

/* ---- Residual activations of many names ---------------------------------- */

/* The residual stream after `layer` at every real position of every name:
 * name i has ds_len + 1 rows (position 0 = <SOS>, position p = after its
 * p-th character), rows row[i] .. row[i + 1] - 1 of x. */
typedef struct sae_acts {
    float  *x;        /* (n_rows, d) */
    size_t *row;      /* n_names + 1 */
    size_t  n_names, n_rows;
    int     d;
} sae_acts;

/* Run the frozen transformer over names in batches of similar lengths. */
err_code sae_acts_compute(sae_acts *a, const tf_model *m, const ds_names *names, int layer);
void     sae_acts_free(sae_acts *a);
/* Mean row of the table into mean (d), e.g. to initialise b_dec. */
void     sae_acts_mean(const sae_acts *a, float *mean);

/* ---- Evaluation ---------------------------------------------------------- */

typedef struct sae_stats {
    size_t n_rows;          /* real positions of the names evaluated */
    double l0;              /* mean number of active features per row */
    double explained_var;   /* 1 - sum|x - x^|^2 / sum|x - mean x|^2 */
    double mse;             /* mean over rows and dimensions of (x - x^)^2 */
    double ce_clean;        /* the transformer's loss (nats/char) */
    double ce_sae;          /* with x^ spliced in at every real position */
    double ce_zero;         /* with the residual zero-ablated there */
    double ce_score;        /* (ce_zero - ce_sae) / (ce_zero - ce_clean) */
    int    n_dead, n_dense; /* features never active / active on > 10% of rows */
    double dead_frac, dense_frac;
    /* KL(p_clean || p) per target, p the next-letter distribution with x^
     * spliced in (kl_sae) or the residual zero-ablated (kl_zero), nats */
    double kl_sae, kl_zero;
    double kl_score;        /* 1 - kl_sae / kl_zero (1 = x^ changes nothing) */
    double cos_sim;         /* mean over rows of cos(x, x^) */
    double l2_ratio;        /* mean over rows of |x^| / |x| (< 1: shrinkage) */
} sae_stats;

/* Evaluate on names (batches of batch_size names, tape without gradients).
 * freq (F, may be NULL) receives each feature's activation frequency. */
err_code sae_evaluate(const sae_model *s, const tf_model *tf, const ds_names *names,
                      int batch_size, sae_stats *out, double *freq);
/* The two-line TSV (header, values) of sae-train and explore sae-stats:
 * SAE_STATS_COLUMNS */
#define SAE_STATS_COLUMNS "l0 explained_var mse ce_clean ce_sae ce_zero ce_score dead_frac " \
    "dense_frac kl_sae kl_zero kl_score cos_sim l2_ratio"
void     sae_stats_write_tsv(FILE *f, const sae_stats *s);
/* Bin i > 0 counts the features of frequency in [10^lo, 10^hi), the last
 * bin including 1; bin 0 counts the dead ones (frequency 0) and anything
 * below 1e-6. */
void     sae_freq_histogram(const double *freq, int F, int count[SAE_HIST_BINS]);
/* log10 bounds of bin i >= 1 (bin 0 is "dead"). */
void     sae_hist_bounds(int i, double *lo, double *hi);

/* ---- Steering ------------------------------------------------------------ */

typedef struct sae_edit {
    int   feature;
    float value;
    bool  clamp;       /* true: set f = value; false: add value . W_dec[feature] */
} sae_edit;

/* A tf_hook_fn context: at every position, x <- decode(f') + (x - decode(f))
 * = x + sum over edits of (f'_i - f_i) W_dec[i], f = encode(x). */
typedef struct sae_steerer {
    const sae_model *s;
    const sae_edit  *edit;
    int              n_edit;
    float           *f;        /* (F) scratch */
} sae_steerer;

err_code sae_steerer_init(sae_steerer *st, const sae_model *s, const sae_edit *edit, int n_edit);
void     sae_steerer_free(sae_steerer *st);
void     sae_steer_hook(void *ctx, int layer, int pos, float *x, int d);

/* ---- Attribution --------------------------------------------------------- */

typedef enum sae_part_kind { SAE_PART_FEATURE, SAE_PART_ERROR, SAE_PART_BIAS,
                             SAE_PART_LATER } sae_part_kind;

typedef struct sae_part {
    sae_part_kind kind;
    int    id;          /* feature index (SAE_PART_FEATURE), else -1 */
    float  act;         /* the feature's activation (features only) */
    double dla;         /* direct logit attribution to the target's logit */
    double act_grad;    /* the part's vector . d logit / d residual */
    double ablation;    /* change of the target's log-probability without it */
} sae_part;

/* Which parts drove the logit of `target` at position pos of a name.
 *   x = x^ + error = sum_i f_i W_dec[i] + b_dec + error   (after layer L)
 *   u = out_norm.weight * emb[target],  r = 1 / rms(final residual)
 * dla(part) = r * (part's vector . u).  For an SAE on the final residual
 * (L = n_layers) the parts sum to the logit exactly.  For L < n_layers it
 * is the direct path only, and one SAE_PART_LATER row holds what the
 * blocks after L add (logit - the other parts), so the sum still holds.
 * act_grad uses the exact gradient of the logit through every later block
 * and the final norm; ablation removes the part's vector at position pos
 * only and reruns the model (the other parts, the error included, kept). */
typedef struct sae_attribution {
    int       pos, target;
    double    logit, logprob;   /* of the target at pos */
    int       predicted;        /* the argmax token at pos */
    bool      exact;            /* L == n_layers */
    sae_part *part;             /* active features by decreasing |dla|, then
                                   error, bias (and later) */
    int       n_parts;
} sae_attribution;

/* tok: the name's n character tokens; pos in [0, n] (0 = <SOS>, p = after
 * the p-th character); target a token, or -1 for the predicted one. */
err_code sae_attribute(const sae_model *s, const tf_model *tf, const int *tok, int n, int pos,
                       int target, sae_attribution *out);
void     sae_attribution_free(sae_attribution *a);

#endif
